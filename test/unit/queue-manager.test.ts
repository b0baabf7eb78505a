// The queue manager with a scripted delivery agent: retries after failures, one delivery
// per mailbox at a time, permanent failures end a recipient, and an append recorded before
// a crash is settled at start.
import assert from 'node:assert/strict';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { PermanentDeliveryError, QueueManager, type DeliveryAgent, type DeliveryJob } from '../../src/queue/manager.js';
import { QueueStore } from '../../src/queue/store.js';

const logger = pino({ level: 'silent' });

async function setup(users: string[], existing?: QueueStore) {
  const store = existing ?? new QueueStore(await mkdtemp(join(tmpdir(), 'mailsrv-qmgr-')));
  await store.init();
  const pending = store.begin({
    sender: 's@x.test',
    receivedAt: Date.now(),
    client: { ip: '127.0.0.1', helo: 'h', protocol: 'ESMTP', hostname: '', submitted: false },
    recipients: users.map((user) => ({ address: `${user}@x.test`, target: { kind: 'local' as const, user } })),
  });
  await pending.write(Readable.from([Buffer.from('m\r\n')]));
  return { store, entry: await pending.commit() };
}

function manager(store: QueueStore, local: DeliveryAgent) {
  return new QueueManager({ store, local, logger, concurrency: 4, localRetryMs: [20], remoteRetryMs: [20], maxLifetimeMs: 60_000 });
}

async function until(condition: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('a failing delivery is retried until it succeeds, then the entry is removed', async () => {
  const { store, entry } = await setup(['a']);
  let calls = 0;
  const qmgr = manager(store, {
    deliver: async (jobs) => {
      calls += 1;
      return jobs.map(() => (calls < 3 ? new Error('4.2.0 locked') : null));
    },
    settleInterruptedAppend: async () => false,
  });
  qmgr.add(entry);
  await until(async () => (await readdir(store.dir)).length === 0);
  assert.equal(calls, 3);
  assert.equal(qmgr.size, 0);
});

test('deliveries to one mailbox never overlap; different mailboxes run together', async () => {
  const { store, entry } = await setup(['a', 'b']);
  const second = await setup(['a'], store);
  const active = new Map<string, number>();
  let maxSameMailbox = 0;
  let maxTotal = 0;
  const qmgr = manager(store, {
    deliver: async (jobs: DeliveryJob[]) => {
      const target = jobs[0]!.entry.envelope.recipients[jobs[0]!.index]!.target;
      const user = target.kind === 'local' ? target.user : '';
      active.set(user, (active.get(user) ?? 0) + 1);
      maxSameMailbox = Math.max(maxSameMailbox, active.get(user)!);
      maxTotal = Math.max(maxTotal, [...active.values()].reduce((a, b) => a + b, 0));
      await new Promise((r) => setTimeout(r, 30));
      active.set(user, active.get(user)! - 1);
      return jobs.map(() => null);
    },
    settleInterruptedAppend: async () => false,
  });
  qmgr.add(entry);
  qmgr.add(second.entry);
  await until(() => qmgr.size === 0);
  assert.equal(maxSameMailbox, 1);
  assert.equal(maxTotal, 2);
});

test('a permanent failure ends the recipient without retries', async () => {
  const { store, entry } = await setup(['gone']);
  let calls = 0;
  const qmgr = manager(store, {
    deliver: async (jobs) => {
      calls += 1;
      return jobs.map(() => new PermanentDeliveryError('5.1.1 user unknown'));
    },
    settleInterruptedAppend: async () => false,
  });
  qmgr.add(entry);
  await until(() => qmgr.size === 0);
  assert.equal(calls, 1);
});

test('an append recorded before a crash is found complete at start, not redone', async () => {
  const { store, entry } = await setup(['a', 'b']);
  entry.progress[0]!.appendingAt = { mailbox: '/spool/a', offset: 42 };
  entry.progress[1]!.appendingAt = { mailbox: '/spool/b', offset: 7 };
  await store.saveProgress(entry.envelope.id, entry.progress);
  const delivered: number[] = [];
  const qmgr = manager(store, {
    deliver: async (jobs) => {
      delivered.push(...jobs.map((job) => job.index));
      return jobs.map(() => null);
    },
    settleInterruptedAppend: async (_e, index, mailbox, offset) => index === 0 && mailbox === '/spool/a' && offset === 42,
  });
  await qmgr.start();
  await until(() => qmgr.size === 0);
  assert.deepEqual(delivered, [1]);
});

test('what queued up for a busy mailbox goes in as one batch, in order', async () => {
  const first = await setup(['a']);
  const rest = await Promise.all([1, 2, 3, 4].map(() => setup(['a'], first.store)));
  const batches: string[][] = [];
  const qmgr = manager(first.store, {
    deliver: async (jobs) => {
      batches.push(jobs.map((job) => job.entry.envelope.id));
      await new Promise((r) => setTimeout(r, 30));
      return jobs.map(() => null);
    },
    settleInterruptedAppend: async () => false,
  });
  qmgr.add(first.entry);
  for (const { entry } of rest) qmgr.add(entry);
  await until(async () => (await readdir(first.store.dir)).length === 0);
  assert.deepEqual(batches, [[first.entry.envelope.id], rest.map(({ entry }) => entry.envelope.id)]);
});
