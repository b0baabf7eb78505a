// src/auth/session-logins.ts: the logins of one connection as SMTP and POP3 both see them — the
// log line of each refusal (with the protocol's own fields last) and of a login after a penalty,
// the per-connection limit counting wrong passwords and temporary refusals alike, a failed check
// that is not counted, and a connection that ends while its check runs.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { Authenticator, MAX_QUEUED_CHECKS_PER_CLIENT } from '../../src/auth/authenticator.js';
import { hashPassword } from '../../src/auth/password.js';
import { MAX_LOGIN_FAILURES_PER_SESSION, SessionLogins } from '../../src/auth/session-logins.js';
import type { UserDb } from '../../src/auth/users.js';
import { FakeClock } from '../support/fake-clock.js';

const CLIENT = '198.51.100.20';
const hash = await hashPassword('pw-a');
const users: UserDb = {
  has: (name) => name === 'alice',
  hashOf: (name) => (name === 'alice' ? hash : undefined),
  names: () => ['alice'],
  problems: [],
};

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  return { lines, log: pino({ level: 'info', base: null, timestamp: false }, sink) };
}

function authenticator(maxFailures: number, db: () => UserDb = () => users): Authenticator {
  return new Authenticator(db, {
    failureDelayMs: 1,
    maxFailures,
    forgetAfterMs: 60_000,
    cacheTtlMs: 0,
    exempt: () => false,
  });
}

test('refusals are logged and counted, penalties noted; the limit closes the connection', async () => {
  const { lines, log } = capture();
  const logins = new SessionLogins(authenticator(3), log, CLIENT);
  const outcomes = [];
  for (let i = 0; i < MAX_LOGIN_FAILURES_PER_SESSION; i++) {
    outcomes.push(await logins.attempt({ name: 'alice', password: 'wrong', logFields: { method: 'PLAIN' } }));
  }
  assert.deepEqual(outcomes, [
    { ok: false, reason: 'invalid', closeConnection: false },
    { ok: false, reason: 'invalid', closeConnection: false },
    { ok: false, reason: 'invalid', closeConnection: false },
    { ok: false, reason: 'invalid', closeConnection: false },
    { ok: false, reason: 'invalid', closeConnection: true },
  ]);
  assert.deepEqual(lines[0], {
    level: 30,
    user: 'alice',
    client: CLIENT,
    delayMs: 1,
    method: 'PLAIN',
    msg: 'login failed',
  });
  // past auth.max_failures (3) each check first waits a penalty: 1 ms, then 2 ms
  assert.deepEqual(
    lines.map((line) => line.penaltyMs),
    [undefined, undefined, undefined, 1, 2],
  );
  assert.equal(lines.length, MAX_LOGIN_FAILURES_PER_SESSION);
  // the right password after a penalty: logged as such, and the protocol logs the login
  const again = new SessionLogins(authenticator(3), log, CLIENT);
  for (let i = 0; i < 3; i++) await again.attempt({ name: 'alice', password: 'wrong' });
  assert.deepEqual(await again.attempt({ name: 'alice', password: 'pw-a' }), { ok: true, user: 'alice' });
  assert.deepEqual(lines.at(-1), {
    level: 30,
    user: 'alice',
    client: CLIENT,
    penaltyMs: 1,
    msg: 'login after a penalty',
  });
});

test('temporary refusals are logged and counted: a penalty queue too long, a full hashing queue', async () => {
  const { lines, log } = capture();
  const clock = new FakeClock();
  const settings = {
    failureDelayMs: 30_000,
    maxFailures: 1,
    forgetAfterMs: 60_000,
    cacheTtlMs: 0,
    exempt: () => false,
  };
  const auth = new Authenticator(() => users, settings, clock);
  const logins = new SessionLogins(auth, log, CLIENT);
  await clock.runUntilSettled(logins.attempt({ name: 'alice', password: 'wrong' }), 'the first failure');
  // two checks wait their turn (30 s, then 60 s): the third's is too far away
  const waiting = [1, 2].map(() => auth.login({ name: 'alice', password: 'wrong', client: CLIENT }));
  assert.deepEqual(await logins.attempt({ name: 'alice', password: 'pw-a' }), {
    ok: false,
    reason: 'throttled',
    closeConnection: false,
  });
  assert.deepEqual(lines.at(-1), {
    level: 30,
    client: CLIENT,
    retryInS: 90,
    msg: 'login refused: too many failed logins waiting for their turn',
  });
  await clock.runUntilSettled(Promise.all(waiting), 'the waiting checks');

  const busy = new SessionLogins(
    new Authenticator(() => users, { ...settings, failureDelayMs: 0, maxFailures: 1000 }),
    log,
    CLIENT,
  );
  const flood = Array.from({ length: 2 + MAX_QUEUED_CHECKS_PER_CLIENT }, () =>
    busy.attempt({ name: 'bob', password: 'x' }),
  );
  assert.deepEqual(await busy.attempt({ name: 'alice', password: 'pw-a' }), {
    ok: false,
    reason: 'busy',
    closeConnection: false,
  });
  assert.deepEqual(lines.at(-1), {
    level: 30,
    client: CLIENT,
    msg: 'login refused: too many password checks waiting from this address',
  });
  await Promise.all(flood);
});

test('a success is not logged here; a malformed name is logged as such', async () => {
  const { lines, log } = capture();
  const logins = new SessionLogins(authenticator(10), log, CLIENT);
  assert.deepEqual(await logins.attempt({ name: 'Alice', password: 'pw-a' }), { ok: true, user: 'alice' });
  assert.equal(lines.length, 0);
  await logins.attempt({ name: '../etc', password: 'x' });
  assert.equal(lines[0]?.user, '(invalid name)');
});

test('a check that fails is logged as a server fault and not counted', async () => {
  const { lines, log } = capture();
  const broken = authenticator(10, () => {
    throw new Error('users file gone');
  });
  const logins = new SessionLogins(broken, log, CLIENT);
  for (let i = 0; i < MAX_LOGIN_FAILURES_PER_SESSION + 1; i++) {
    assert.deepEqual(await logins.attempt({ name: 'alice', password: 'pw-a' }), { ok: false, reason: 'unavailable' });
  }
  assert.deepEqual(lines[0], { level: 50, err: 'users file gone', msg: 'password check failed' });
});

test('a connection that ended while its check ran: nothing logged, nothing counted', async () => {
  const { lines, log } = capture();
  let open = true;
  const logins = new SessionLogins(authenticator(10), log, CLIENT, () => open);
  const pending = logins.attempt({ name: 'alice', password: 'wrong' });
  open = false;
  assert.deepEqual(await pending, { ok: false, reason: 'gone' });
  assert.deepEqual(lines, []);
});
