// src/auth/session-logins.ts: the logins of one connection as SMTP and POP3 both see them — the
// log line of each refusal (with the protocol's own fields last), the per-connection limit
// counting wrong passwords and lockouts alike, a failed check that is not counted, and a
// connection that ends while its check runs.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { Authenticator } from '../../src/auth/authenticator.js';
import { hashPassword } from '../../src/auth/password.js';
import { MAX_LOGIN_FAILURES_PER_SESSION, SessionLogins } from '../../src/auth/session-logins.js';
import type { UserDb } from '../../src/auth/users.js';

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
  return new Authenticator(db, { failureDelayMs: 1, maxFailures, lockoutMs: 60_000, cacheTtlMs: 0 });
}

test('refusals are logged and counted, lockouts too; the limit closes the connection', async () => {
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
    { ok: false, reason: 'locked-out', closeConnection: false },
    { ok: false, reason: 'locked-out', closeConnection: true },
  ]);
  assert.deepEqual(lines[0], {
    level: 30,
    user: 'alice',
    client: CLIENT,
    delayMs: 1,
    method: 'PLAIN',
    msg: 'login failed',
  });
  assert.deepEqual(lines[3], {
    level: 30,
    client: CLIENT,
    retryInS: 60,
    msg: 'login refused: too many failures from this address',
  });
  assert.equal(lines.length, MAX_LOGIN_FAILURES_PER_SESSION);
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
