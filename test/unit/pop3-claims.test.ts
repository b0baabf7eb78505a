// MailboxClaims: one POP3 session per mailbox in this process; a session letting go of its
// mailbox (removing its session lock) holds the claim until that is done, and a new login waits
// for it instead of being told the mailbox is in use by the session that just hung up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MailboxClaims } from '../../src/pop3/context.js';

test('a claim is exclusive; a mailbox being let go is free for the next session once the lock is gone', async () => {
  const claims = new MailboxClaims();
  const first = {};
  const second = {};
  assert.equal(claims.claim('alice', first), true);
  assert.equal(claims.claim('alice', second), false, 'two sessions on one mailbox');

  let lockRemoved!: () => void;
  const removal = new Promise<void>((resolve) => {
    lockRemoved = resolve;
  });
  claims.releaseAfter('alice', first, removal);
  const order: string[] = [];
  const waiting = claims.settled('alice').then(() => order.push('settled'));
  assert.equal(claims.claim('alice', second), false, 'claimed while the old session still removes its lock');
  order.push('lock removed');
  lockRemoved();
  await waiting;
  assert.deepEqual(order, ['lock removed', 'settled']);
  assert.equal(claims.claim('alice', second), true);
  await claims.settled('alice'); // nobody leaving: at once
  assert.equal(claims.holderOf('alice'), second);
});

test('a failed lock removal still frees the claim', async () => {
  const claims = new MailboxClaims();
  const session = {};
  claims.claim('bob', session);
  const failed = Promise.reject(new Error('EIO'));
  claims.releaseAfter('bob', session, failed);
  await claims.settled('bob');
  assert.equal(claims.claim('bob', {}), true);
});
