// Unit tests for src/auth/authenticator.ts: the login decision both protocols share — right and
// wrong passwords, unknown and malformed names answered alike and after the same delay,
// authzid, the growing delay and the lockout (even for the right password).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Authenticator } from '../../src/auth/authenticator.js';
import { hashPassword } from '../../src/auth/password.js';
import type { UserDb } from '../../src/auth/users.js';

async function usersWith(entries: Record<string, string>): Promise<UserDb> {
  const hashes = new Map<string, string>();
  for (const [name, password] of Object.entries(entries)) hashes.set(name, await hashPassword(password));
  return {
    has: (name) => hashes.has(name),
    hashOf: (name) => hashes.get(name),
    names: () => [...hashes.keys()],
    problems: [],
  };
}

const CLIENT = '192.0.2.10';

test('the right password logs in with the normalized name; authzid must be the user itself', async () => {
  const users = await usersWith({ alice: 'pw-a' });
  const auth = new Authenticator(() => users, {
    failureDelayMs: 0,
    maxFailures: 10,
    lockoutMs: 60_000,
    cacheTtlMs: 60_000,
  });
  assert.deepEqual(await auth.login({ name: 'Alice', password: 'pw-a', client: CLIENT }), { ok: true, user: 'alice' });
  assert.deepEqual(await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT, authzid: 'ALICE' }), {
    ok: true,
    user: 'alice',
  });
  const proxy = await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT, authzid: 'bob' });
  assert.equal(proxy.ok, false, 'no proxy logins');
});

test('wrong password, unknown user and malformed name fail alike, each after the failure delay', async () => {
  const users = await usersWith({ alice: 'pw-a' });
  const auth = new Authenticator(() => users, {
    failureDelayMs: 150,
    maxFailures: 100,
    lockoutMs: 60_000,
    cacheTtlMs: 60_000,
  });
  const attempts = [
    { name: 'alice', password: 'wrong' },
    { name: 'nobody-here', password: 'pw-a' },
    { name: '../etc/passwd', password: 'x' },
  ];
  for (const [i, attempt] of attempts.entries()) {
    const client = `198.51.100.${i + 1}`; // a fresh address each: the first failure's delay
    const started = Date.now();
    const result = await auth.login({ ...attempt, client });
    const took = Date.now() - started;
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.reason, 'invalid');
    // at least half the delay: a timer may end a little early by the clock read here
    assert.ok(took >= 75, `${attempt.name}: answered after ${took} ms, long before the 150 ms delay`);
  }
});

test('the delay doubles per failure from one address, and a lockout refuses even the right password', async () => {
  const users = await usersWith({ alice: 'pw-a' });
  const auth = new Authenticator(() => users, {
    failureDelayMs: 10,
    maxFailures: 3,
    lockoutMs: 60_000,
    cacheTtlMs: 60_000,
  });
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    const result = await auth.login({ name: 'alice', password: 'wrong', client: CLIENT });
    assert.ok(!result.ok && result.reason === 'invalid');
    delays.push(result.delayMs);
  }
  assert.deepEqual(delays, [10, 20, 40]);
  const locked = await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT });
  assert.ok(!locked.ok && locked.reason === 'locked-out', JSON.stringify(locked));
  assert.ok(locked.retryInMs > 59_000);
  assert.ok(auth.lockedOutFor(CLIENT) > 0);
  assert.deepEqual(
    await auth.login({ name: 'alice', password: 'pw-a', client: '192.0.2.99' }),
    { ok: true, user: 'alice' },
    'other addresses still log in',
  );
});

test('a remembered login still obeys the lockout, and a changed password is not remembered', async () => {
  const users = await usersWith({ alice: 'pw-a' });
  const auth = new Authenticator(() => users, {
    failureDelayMs: 1,
    maxFailures: 2,
    lockoutMs: 60_000,
    cacheTtlMs: 60_000,
  });
  assert.deepEqual(await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT }), { ok: true, user: 'alice' });
  assert.deepEqual(
    await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT }),
    { ok: true, user: 'alice' },
    'from the cache',
  );
  for (let i = 0; i < 2; i++) await auth.login({ name: 'alice', password: 'wrong', client: CLIENT });
  const locked = await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT });
  assert.ok(!locked.ok && locked.reason === 'locked-out', JSON.stringify(locked));

  const other = '192.0.2.50';
  const changed = await usersWith({ alice: 'pw-new' });
  let current = users;
  const switching = new Authenticator(() => current, {
    failureDelayMs: 1,
    maxFailures: 10,
    lockoutMs: 60_000,
    cacheTtlMs: 60_000,
  });
  assert.equal((await switching.login({ name: 'alice', password: 'pw-a', client: other })).ok, true);
  current = changed;
  assert.equal(
    (await switching.login({ name: 'alice', password: 'pw-a', client: other })).ok,
    false,
    'the old password after the users file changed',
  );
  assert.equal((await switching.login({ name: 'alice', password: 'pw-new', client: other })).ok, true);
});
