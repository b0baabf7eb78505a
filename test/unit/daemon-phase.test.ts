// A start-up phase hands back what it made; whatever it throws becomes a StartupError that
// names the phase, keeps the cause, and says both in its message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { phase, StartupError } from '../../src/daemon/phase.js';

test('a phase resolves to what its step returns, sync or async', async () => {
  assert.equal(await phase('count', () => 3), 3);
  assert.equal(await phase('count later', async () => 4), 4);
});

test('a failing phase is named in the error, with its cause', async () => {
  const cause = new Error('listen EADDRINUSE: address already in use 127.0.0.1:25');
  const err = await phase('bind listeners', async () => {
    throw cause;
  }).catch((e: unknown) => e);
  assert.ok(err instanceof StartupError);
  assert.equal(err.phase, 'bind listeners');
  assert.equal(err.cause, cause);
  assert.equal(
    err.message,
    'start-up failed in phase "bind listeners": listen EADDRINUSE: address already in use 127.0.0.1:25',
  );
});

test('a phase that throws synchronously, or throws a non-Error, is named too', async () => {
  await assert.rejects(
    phase('resolve user', () => {
      throw new Error("key 'user': no such user");
    }),
    { name: 'StartupError', phase: 'resolve user', message: /phase "resolve user": key 'user': no such user$/ },
  );
  await assert.rejects(
    phase('ready', () => Promise.reject('gone')),
    { phase: 'ready', message: 'start-up failed in phase "ready": gone' },
  );
});
