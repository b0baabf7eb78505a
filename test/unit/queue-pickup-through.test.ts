// What the daemon does with a picked-up maildrop file (queueThrough): the message is routed and
// queued as local mail from the file's owner and logged as `queued`; one whose recipients lead
// nowhere is rejected for good (DropFileRejectedError), so the pickup removes the file.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { pino } from 'pino';
import type { ResolvedRecipient } from '../../src/message/envelope.js';
import { Injector } from '../../src/queue/inject.js';
import { DropFileRejectedError, type PickedUpMessage, queueThrough } from '../../src/queue/pickup.js';
import { type QueueEntry, QueueStore } from '../../src/queue/store.js';

const stateDirs: string[] = [];
after(() => Promise.all(stateDirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function setup() {
  const stateDir = await mkdtemp(join(tmpdir(), 'mailsrv-queue-through-'));
  stateDirs.push(stateDir);
  const store = new QueueStore(stateDir);
  await store.init();
  const queued: QueueEntry[] = [];
  const injector = new Injector({
    store,
    // only alice exists; anyone else leads nowhere
    route: async (addresses) =>
      addresses
        .filter((address) => address === 'alice@mx.test')
        .map((address): ResolvedRecipient => ({ address, target: { kind: 'local', user: 'alice' } })),
    onQueued: (entry) => queued.push(entry),
  });
  const logs: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info', base: null, timestamp: false },
    { write: (line: string) => void logs.push(JSON.parse(line)) },
  );
  return { inject: queueThrough(injector, logger), queued, logs };
}

function pickedUp(recipients: string[]): PickedUpMessage {
  return {
    file: 'f',
    sender: 'cron@mx.test',
    recipients,
    uid: 1234,
    submittedBy: 'cron',
    size: 20,
    openMessage: () => Readable.from([Buffer.from('Subject: x\r\n\r\nhi\r\n')]),
  };
}

test('the message is queued as local mail from the owner, and logged as queued', async () => {
  const { inject, queued, logs } = await setup();
  await inject(pickedUp(['alice@mx.test']));
  assert.equal(queued.length, 1);
  const { envelope } = queued[0]!;
  assert.equal(envelope.sender, 'cron@mx.test');
  assert.deepEqual(envelope.client, { ip: '', helo: '', hostname: '', protocol: 'LOCAL', submitted: true, uid: 1234 });
  assert.deepEqual(logs, [
    {
      level: 30,
      msg: 'queued',
      queueId: envelope.id,
      from: 'cron@mx.test',
      nrcpt: 1,
      size: queued[0]!.size,
      uid: 1234,
      submittedBy: 'cron',
    },
  ]);
});

test('recipients that lead nowhere reject the file for good; nothing is queued', async () => {
  const { inject, queued } = await setup();
  await assert.rejects(inject(pickedUp(['nobody@elsewhere.test'])), DropFileRejectedError);
  assert.equal(queued.length, 0);
});
