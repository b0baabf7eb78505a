// The durable queue store: entries survive a reload, interrupted receipts are cleaned up,
// progress is replaced atomically, and ids are unique and file-name safe.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { test } from 'node:test';
import { temporary } from '../../src/message/status.js';
import { isQueueId, newQueueId } from '../../src/queue/id.js';
import { QueueStore } from '../../src/queue/store.js';

const client = { ip: '127.0.0.1', helo: 'client.test', protocol: 'ESMTP', hostname: 'localhost', submitted: false };

const noCorruption = (id: string, err: Error) => assert.fail(`unexpected corrupt entry ${id}: ${err.message}`);

async function freshStore(): Promise<QueueStore> {
  const store = new QueueStore(await mkdtemp(join(tmpdir(), 'mailsrv-queue-')));
  await store.init();
  return store;
}

function begin(store: QueueStore) {
  return store.begin({
    sender: 'a@b.test',
    receivedAt: Date.now(),
    client,
    recipients: [
      { address: 'x@local.test', target: { kind: 'local', user: 'x' } },
      { address: 'y@remote.test', target: { kind: 'remote' } },
    ],
  });
}

test('a committed entry reloads with its envelope, message and fresh progress', async () => {
  const store = await freshStore();
  const pending = begin(store);
  const message = 'Subject: hi\r\n\r\nbody \u00e9\r\n';
  assert.equal(await pending.write(Readable.from([Buffer.from(message)])), Buffer.byteLength(message));
  const entry = await pending.commit();
  assert.deepEqual(
    entry.envelope.recipients.map((r) => r.deliveryId),
    [`${entry.envelope.id}.0`, `${entry.envelope.id}.1`],
  );

  const [loaded] = await store.loadAll(noCorruption);
  assert.deepEqual(loaded!.envelope, entry.envelope);
  assert.equal(loaded!.size, Buffer.byteLength(message));
  assert.deepEqual(
    loaded!.progress.map((p) => p.state),
    ['pending', 'pending'],
  );
  assert.equal(await text(store.openMessage(loaded!)), message);
});

test('an entry keeps every field of the envelope it was begun with, the optional ones too', async () => {
  const store = await freshStore();
  const given = {
    sender: 'a@b.test',
    receivedAt: 1_765_000_000_000,
    client: { ...client, uid: 1000 },
    recipients: [{ address: 'x@local.test', target: { kind: 'local' as const, user: 'x' } }],
    addedHeaders: ['Authentication-Results: mx.test; spf=pass'],
    noticeOf: { queueId: 'Q', indexes: [0], kind: 'failure' as const },
  };
  const pending = store.begin(given);
  await pending.write(Readable.from([Buffer.from('x\r\n')]));
  const entry = await pending.commit();
  const { id, recipients, ...fields } = entry.envelope;
  const { recipients: givenRecipients, ...givenFields } = given;
  assert.deepEqual(fields, givenFields);
  assert.deepEqual(recipients, [{ ...givenRecipients[0], deliveryId: `${id}.0` }]);
  const [loaded] = await store.loadAll(noCorruption);
  assert.deepEqual(loaded!.envelope, entry.envelope);
});

test('progress is saved and reloaded; remove deletes both files', async () => {
  const store = await freshStore();
  const pending = begin(store);
  await pending.write(Readable.from([Buffer.from('x\r\n')]));
  const entry = await pending.commit();
  entry.progress[0]!.state = 'delivered';
  entry.progress[1]!.lastStatus = temporary('4.4.0', 'later');
  await store.saveProgress(entry.envelope.id, entry.progress);
  const [loaded] = await store.loadAll(noCorruption);
  assert.equal(loaded!.progress[0]!.state, 'delivered');
  assert.deepEqual(loaded!.progress[1]!.lastStatus, { code: '4.4.0', permanent: false, text: 'later' });
  await store.remove(entry.envelope.id);
  assert.deepEqual(await readdir(store.dir), []);
});

test('a removal cut short leaves a progress file alone, never an entry without its progress', async () => {
  const store = await freshStore();
  const pending = begin(store);
  await pending.write(Readable.from([Buffer.from('x\r\n')]));
  const entry = await pending.commit();
  entry.progress[0]!.state = 'delivered';
  await store.saveProgress(entry.envelope.id, entry.progress);
  // as a crash between remove()'s two steps leaves it: the entry is gone, its progress not yet
  await unlink(join(store.dir, entry.envelope.id));
  assert.deepEqual(await store.loadAll(noCorruption), []);
  assert.deepEqual(await readdir(store.dir), [], 'the orphan progress file is removed at load');
});

test('progress written by an earlier version (error text, no status) loads as statuses', async () => {
  const store = await freshStore();
  const pending = begin(store);
  await pending.write(Readable.from([Buffer.from('x\r\n')]));
  const entry = await pending.commit();
  const old = [
    {
      state: 'pending',
      attempts: 2,
      nextAttemptAt: 1,
      lastError: '4.2.0 mailbox of alice is locked by another program',
    },
    {
      state: 'failed',
      attempts: 1,
      nextAttemptAt: 1,
      lastError: '550 5.1.1 <bob@remote.test>: User unknown',
      relay: 'mx[192.0.2.1]:25',
    },
  ];
  await writeFile(join(store.dir, `${entry.envelope.id}.progress`), JSON.stringify(old));
  const [loaded] = await store.loadAll(noCorruption);
  assert.deepEqual(
    loaded!.progress.map((p) => p.lastStatus),
    [
      { code: '4.2.0', permanent: false, text: 'mailbox of alice is locked by another program' },
      {
        code: '5.1.1',
        permanent: true,
        text: '<bob@remote.test>: User unknown',
        remote: { reply: '550 5.1.1 <bob@remote.test>: User unknown' },
      },
    ],
  );
  assert.ok(loaded!.progress.every((p) => !('lastError' in p)));
});

test('a discarded or interrupted receipt leaves nothing behind', async () => {
  const store = await freshStore();
  const discarded = begin(store);
  await discarded.write(Readable.from([Buffer.from('x\r\n')]));
  await discarded.discard();
  await writeFile(join(store.dir, `${newQueueId()}.tmp`), 'half a message');
  assert.deepEqual(await store.loadAll(noCorruption), []);
  assert.deepEqual(await readdir(store.dir), []);
});

test('queue ids are unique, time-ordered and file-name safe', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 10_000; i++) ids.add(newQueueId());
  assert.equal(ids.size, 10_000);
  for (const id of ids) assert.ok(isQueueId(id), id);
  assert.ok(newQueueId(1_000) < newQueueId(2_000_000_000_000));
  assert.equal(isQueueId('../etc/passwd'), false);
});

test('an unreadable entry is moved to queue/corrupt and the others still load', async () => {
  const store = await freshStore();
  const good = begin(store);
  await good.write(Readable.from([Buffer.from('x\r\n')]));
  const entry = await good.commit();
  const badId = newQueueId();
  await writeFile(join(store.dir, badId), '{"id": "truncated envel');
  const corrupt: string[] = [];
  const loaded = await store.loadAll((id) => corrupt.push(id));
  assert.deepEqual(
    loaded.map((e) => e.envelope.id),
    [entry.envelope.id],
  );
  assert.deepEqual(corrupt, [badId]);
  assert.deepEqual(await readdir(join(store.dir, 'corrupt')), [badId]);
});

test('concurrent progress saves of one entry all succeed, leaving one progress file', async () => {
  const store = new QueueStore(await mkdtemp(join(tmpdir(), 'mailsrv-queue-')));
  await store.init();
  const saves = Array.from({ length: 50 }, (_, i) =>
    store.saveProgress('ID1', [{ state: 'pending', attempts: i, nextAttemptAt: 0 }]),
  );
  await Promise.all(saves);
  const names = await readdir(store.dir);
  assert.deepEqual(names.sort(), ['ID1.progress']);
});

test('prepend puts header lines in front of a message held in memory and of one spilled to disk', async () => {
  const store = await freshStore();
  const head = Buffer.from('DKIM-Signature: v=1; a=rsa-sha256\r\n');
  for (const message of ['Subject: small\r\n\r\nbody\r\n', `Subject: big\r\n\r\n${'x'.repeat(300_000)}\r\n`]) {
    const pending = begin(store);
    await pending.write(Readable.from([Buffer.from(message)]));
    await pending.prepend(head);
    assert.equal(pending.messageSize, head.length + message.length);
    assert.equal(await text(pending.openData()), head.toString() + message);
    const entry = await pending.commit();
    assert.equal(entry.size, head.length + message.length);
    assert.equal(await text(store.openMessage(entry)), head.toString() + message);
  }
  assert.deepEqual(
    (await readdir(store.dir)).filter((name) => name.endsWith('.tmp')),
    [],
    'no temporary file is left',
  );
});
