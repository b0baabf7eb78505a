// Unit tests for src/auth/authenticator.ts: the login decision both protocols share — right and
// wrong passwords, unknown and malformed names answered alike and after the same delay,
// authzid; on a fake clock, penalties that delay and never refuse the right password, per user
// and address (NAT), mynetworks; the credential cache; a client whose hashing queue is full.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type AuthSettings, Authenticator, MAX_QUEUED_CHECKS_PER_CLIENT } from '../../src/auth/authenticator.js';
import { hashPassword } from '../../src/auth/password.js';
import type { UserDb } from '../../src/auth/users.js';
import { networkMatcher } from '../../src/config/networks.js';
import { FakeClock } from '../support/fake-clock.js';

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
const users = await usersWith({ alice: 'pw-a', bob: 'pw-b' });

function settings(overrides: Partial<AuthSettings> = {}): AuthSettings {
  return {
    failureDelayMs: 0,
    maxFailures: 10,
    forgetAfterMs: 60 * 60_000,
    cacheTtlMs: 60_000,
    exempt: networkMatcher(['127.0.0.0/8']),
    ...overrides,
  };
}

/** An authenticator on a fake clock, and a login that moves the clock through every wait it sets. */
function onFakeClock(overrides: Partial<AuthSettings> = {}, db = users) {
  const clock = new FakeClock();
  const auth = new Authenticator(() => db, settings(overrides), clock);
  const login = (name: string, password: string, client = CLIENT) =>
    clock.runUntilSettled(auth.login({ name, password, client }), `login of ${name}`);
  return { auth, clock, login };
}

test('the right password logs in with the normalized name; authzid must be the user itself', async () => {
  const auth = new Authenticator(() => users, settings());
  assert.deepEqual(await auth.login({ name: 'Alice', password: 'pw-a', client: CLIENT }), {
    ok: true,
    user: 'alice',
    penaltyMs: 0,
  });
  const proxied = await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT, authzid: 'ALICE' });
  assert.equal(proxied.ok, true);
  const proxy = await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT, authzid: 'bob' });
  assert.equal(proxy.ok, false, 'no proxy logins');
});

test('wrong password, unknown user and malformed name fail alike, each after the failure delay', async () => {
  const { clock, login } = onFakeClock({ failureDelayMs: 150 });
  const attempts = [
    { name: 'alice', password: 'wrong' },
    { name: 'nobody-here', password: 'pw-a' },
    { name: '../etc/passwd', password: 'x' },
  ];
  for (const [i, attempt] of attempts.entries()) {
    const started = clock.now();
    const result = await login(attempt.name, attempt.password, `198.51.100.${i + 1}`);
    assert.ok(!result.ok && result.reason === 'invalid', JSON.stringify(result));
    assert.equal(result.delayMs, 150);
    assert.equal(clock.now() - started, 150, `${attempt.name}: answered when the delay was over`);
  }
});

test('past max_failures the right password waits a penalty, then logs in; bob (same address) does not', async () => {
  const { login } = onFakeClock({ failureDelayMs: 1000, maxFailures: 3 });
  const failures = [];
  for (let i = 0; i < 4; i++) failures.push(await login('alice', `wrong-${i}`));
  assert.deepEqual(
    failures.map((r) => (!r.ok && r.reason === 'invalid' ? [r.delayMs, r.penaltyMs] : r)),
    [
      [1000, 0],
      [2000, 0],
      [4000, 0],
      [8000, 1000],
    ],
  );
  assert.deepEqual(await login('bob', 'pw-b'), { ok: true, user: 'bob', penaltyMs: 0 }, 'NAT: bob is not delayed');
  assert.deepEqual(await login('alice', 'pw-a'), { ok: true, user: 'alice', penaltyMs: 2000 }, 'delayed, not refused');
  const next = await login('alice', 'wrong-again');
  assert.ok(!next.ok && next.reason === 'invalid' && next.delayMs === 1000, 'the login forgave her failures');
});

test('a cached login skips the penalty (only the right password hits it); a changed password misses', async () => {
  let current = users;
  const clock = new FakeClock();
  const auth = new Authenticator(() => current, settings({ failureDelayMs: 1000, maxFailures: 2 }), clock);
  const login = (password: string) =>
    clock.runUntilSettled(auth.login({ name: 'alice', password, client: CLIENT }), 'login');
  assert.deepEqual(await login('pw-a'), { ok: true, user: 'alice', penaltyMs: 0 });
  for (let i = 0; i < 3; i++) await login('wrong');
  assert.deepEqual(await login('pw-a'), { ok: true, user: 'alice', penaltyMs: 0 }, 'from the cache');
  current = await usersWith({ alice: 'pw-new' });
  const old = await login('pw-a');
  assert.ok(!old.ok && old.reason === 'invalid', 'the old password after the users file changed');
  const fresh = await login('pw-new');
  assert.ok(fresh.ok && fresh.penaltyMs > 0, 'a real check after failures waits its penalty');
});

test('a sprayer waits at every user past 5x max_failures; mynetworks (a webmail on loopback) does not', async () => {
  const { login } = onFakeClock({ failureDelayMs: 100, maxFailures: 2, cacheTtlMs: 0 });
  for (const client of ['198.51.100.7', '127.0.0.1']) {
    for (let i = 0; i < 10; i++) await login(`nobody-${i}`, 'guess', client);
  }
  const outside = await login('bob', 'pw-b', '198.51.100.7');
  assert.ok(outside.ok && outside.penaltyMs > 0, `a fresh user behind the sprayer waits: ${JSON.stringify(outside)}`);
  assert.deepEqual(await login('bob', 'pw-b', '127.0.0.1'), { ok: true, user: 'bob', penaltyMs: 0 });
});

test('a penalty queue too long is refused for now, uncounted; a client gone before the hash: no check', async () => {
  const { auth, clock, login } = onFakeClock({ failureDelayMs: 30_000, maxFailures: 1 });
  await login('alice', 'wrong');
  // parallel checks for alice start a penalty apart: 30 s, then 60 s; the third's turn is too far
  const waiting = [1, 2].map(() => auth.login({ name: 'alice', password: 'pw-a', client: CLIENT }));
  const refused = await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT });
  assert.deepEqual(refused, { ok: false, reason: 'throttled', retryInMs: 90_000 });
  assert.deepEqual(
    (await clock.runUntilSettled(Promise.all(waiting), 'the waiting logins')).map((r) => r.ok),
    [true, true],
  );
  const notWanted = await auth.login({ name: 'bob', password: 'wrong', client: CLIENT, stillWanted: () => false });
  assert.deepEqual(notWanted, { ok: false, reason: 'gone' });
  const first = await login('bob', 'wrong');
  assert.ok(!first.ok && first.reason === 'invalid' && first.delayMs === 30_000, 'the check never made did not count');
});

test(`over ${MAX_QUEUED_CHECKS_PER_CLIENT} checks wait for a hash from one address: the next is busy`, async () => {
  const auth = new Authenticator(() => users, settings({ maxFailures: 1000 }));
  // two hash at once, the rest wait in this address's queue
  const flood = Array.from({ length: 2 + MAX_QUEUED_CHECKS_PER_CLIENT }, (_, i) =>
    auth.login({ name: `nobody-${i}`, password: 'x', client: CLIENT }),
  );
  assert.deepEqual(await auth.login({ name: 'alice', password: 'pw-a', client: CLIENT }), {
    ok: false,
    reason: 'busy',
  });
  const other = auth.login({ name: 'alice', password: 'pw-a', client: '192.0.2.11' });
  assert.deepEqual(await other, { ok: true, user: 'alice', penaltyMs: 0 }, 'another address is served meanwhile');
  assert.ok((await Promise.all(flood)).every((r) => !r.ok && r.reason === 'invalid'));
});
