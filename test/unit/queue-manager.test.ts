// The queue manager with a scripted delivery agent: retries after failures, one delivery
// per mailbox at a time, permanent failures end a recipient, and an append recorded before
// a crash is settled at start. Schedules of minutes and days run on a fake clock.
import assert from 'node:assert/strict';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { delivered as sent, permanent, statusFromReply, temporary } from '../../src/message/status.js';
import { localClient, type NoticeOrigin } from '../../src/message/envelope.js';
import type {
  AttemptOutcome,
  DeliveryAgent,
  DeliveryJob,
  Notifier,
  RemoteAgent,
  RemoteAttempt,
} from '../../src/queue/agents.js';
import { QueueManager, type QueueManagerOptions } from '../../src/queue/manager.js';
import { type QueueEntry, QueueStore } from '../../src/queue/store.js';
import { eventually } from '../support/wait.js';
import { FakeClock } from '../support/fake-clock.js';

const logger = pino({ level: 'silent' });

async function setup(users: string[], existing?: QueueStore, receivedAt = Date.now()) {
  const store = existing ?? new QueueStore(await mkdtemp(join(tmpdir(), 'mailsrv-qmgr-')));
  await store.init();
  const pending = store.begin({
    sender: 's@x.test',
    receivedAt,
    client: { ip: '127.0.0.1', helo: 'h', protocol: 'ESMTP', hostname: '', submitted: false },
    recipients: users.map((user) => ({ address: `${user}@x.test`, target: { kind: 'local' as const, user } })),
  });
  await pending.write(Readable.from([Buffer.from('m\r\n')]));
  return { store, entry: await pending.commit() };
}

const noRemote: RemoteAgent = {
  destinationOf: (address) => address.slice(address.lastIndexOf('@') + 1),
  deliver: async (jobs) =>
    attempted(jobs.map(() => ({ status: temporary('4.3.0', 'no remote delivery in this test') }))),
};
/** A remote attempt whose session is over at once. */
function attempted(outcomes: AttemptOutcome[]): RemoteAttempt {
  return { outcomes, ended: Promise.resolve() };
}
const noNotices: Notifier = { notify: async () => assert.fail('no notice expected') };

/**
 * What a notifier hands back: a real notice in `store` reporting on `origin` (no recipients here,
 * so the manager settles and removes it at once).
 */
async function noticeFor(store: QueueStore, origin: NoticeOrigin): Promise<QueueEntry> {
  const pending = store.begin({
    sender: '',
    receivedAt: Date.now(),
    client: localClient(),
    recipients: [],
    noticeOf: origin,
  });
  await pending.write(Readable.from([Buffer.from('Subject: notice\r\n\r\n')]));
  return pending.commit();
}

function manager(store: QueueStore, local: DeliveryAgent, more: Partial<QueueManagerOptions> = {}) {
  return new QueueManager({
    store,
    local,
    remote: noRemote,
    notifier: noNotices,
    hops: async () => 1,
    logger,
    concurrency: 4,
    remoteConcurrency: 4,
    destinationConcurrency: 2,
    localRetryMs: [20],
    remoteRetryMs: [20],
    maxLifetimeMs: 60_000,
    delayWarningMs: 60_000,
    ...more,
  });
}

const until = (condition: () => boolean | Promise<boolean>) =>
  eventually(condition, 10_000, 'the manager to get there', 5);

test('a failing delivery is retried along the schedule until it succeeds, then the entry is removed', async () => {
  const clock = new FakeClock();
  const start = clock.now();
  const { store, entry } = await setup(['a'], undefined, start);
  const attemptsAt: number[] = [];
  const qmgr = manager(
    store,
    {
      deliver: async (jobs) => {
        attemptsAt.push(clock.now() - start);
        return jobs.map(() => (attemptsAt.length < 3 ? temporary('4.2.0', 'locked') : sent()));
      },
      settleInterruptedAppend: async () => false,
    },
    { clock, localRetryMs: [60_000, 300_000], maxLifetimeMs: 3_600_000, delayWarningMs: 3_600_000 },
  );
  qmgr.add(entry);
  await clock.runTimer('the first retry');
  await clock.runTimer('the second retry', (at) => at > start + 60_000);
  await until(async () => (await readdir(store.dir)).length === 0);
  assert.deepEqual(attemptsAt, [0, 60_000, 360_000], 'at once, then 1 minute and 5 minutes later');
  assert.equal(qmgr.size, 0);
  assert.equal(clock.pending, 0, 'no timer left behind');
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
      maxTotal = Math.max(
        maxTotal,
        [...active.values()].reduce((a, b) => a + b, 0),
      );
      await new Promise((r) => setTimeout(r, 30));
      active.set(user, active.get(user)! - 1);
      return jobs.map(() => sent());
    },
    settleInterruptedAppend: async () => false,
  });
  qmgr.add(entry);
  qmgr.add(second.entry);
  await until(() => qmgr.size === 0);
  assert.equal(maxSameMailbox, 1);
  assert.equal(maxTotal, 2);
});

test('a permanent failure ends the recipient without retries and is reported to the sender once', async () => {
  const { store, entry } = await setup(['gone', 'fine']);
  let calls = 0;
  const notices: { indexes: number[]; kind: string }[] = [];
  const qmgr = manager(
    store,
    {
      deliver: async (jobs) => {
        calls += 1;
        return jobs.map((job) => (job.index === 0 ? permanent('5.1.1', 'user unknown') : sent()));
      },
      settleInterruptedAppend: async () => false,
    },
    {
      notifier: {
        notify: async (reported, indexes, kind) => {
          notices.push({ indexes, kind });
          return noticeFor(store, { queueId: reported.envelope.id, indexes, kind });
        },
      },
    },
  );
  qmgr.add(entry);
  await until(() => qmgr.size === 0);
  assert.equal(calls, 2);
  assert.deepEqual(notices, [{ indexes: [0], kind: 'failure' }]);
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
      return jobs.map(() => sent());
    },
    settleInterruptedAppend: async (_e, index, mailbox, offset) =>
      index === 0 && mailbox === '/spool/a' && offset === 42,
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
      return jobs.map(() => sent());
    },
    settleInterruptedAppend: async () => false,
  });
  qmgr.add(first.entry);
  for (const { entry } of rest) qmgr.add(entry);
  await until(async () => (await readdir(first.store.dir)).length === 0);
  assert.deepEqual(batches, [[first.entry.envelope.id], rest.map(({ entry }) => entry.envelope.id)]);
});

/** An entry with remote recipients (addresses as given). */
async function setupRemote(addresses: string[], sender = 's@x.test', existing?: QueueStore, receivedAt = Date.now()) {
  const store = existing ?? new QueueStore(await mkdtemp(join(tmpdir(), 'mailsrv-qmgr-')));
  await store.init();
  const pending = store.begin({
    sender,
    receivedAt,
    client: { ip: '127.0.0.1', helo: 'h', protocol: 'ESMTP', hostname: '', submitted: true },
    recipients: addresses.map((address) => ({ address, target: { kind: 'remote' as const } })),
  });
  await pending.write(Readable.from([Buffer.from('m\r\n')]));
  return { store, entry: await pending.commit() };
}

const neverLocal: DeliveryAgent = {
  deliver: async () => assert.fail('no local delivery expected'),
  settleInterruptedAppend: async () => false,
};

test('remote recipients: one attempt per destination carries all its recipients; its cap holds', async () => {
  const { store, entry } = await setupRemote(['a@one.test', 'b@one.test', 'c@two.test', 'd@one.test']);
  const batches: string[][] = [];
  const qmgr = manager(store, neverLocal, {
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) => {
        batches.push(jobs.map((j) => j.entry.envelope.recipients[j.index]!.address));
        return attempted(jobs.map(() => ({ status: statusFromReply('250 ok', 'sent', 'mx'), relay: 'mx:25' })));
      },
    },
  });
  qmgr.add(entry);
  await until(() => qmgr.size === 0);
  assert.deepEqual(batches.map((b) => b.sort()).sort(), [['a@one.test', 'b@one.test', 'd@one.test'], ['c@two.test']]);
});

test('a dead destination holds only its own slots: other destinations are delivered meanwhile', async () => {
  const dead = await setupRemote(['x@dead.test']);
  const more = await Promise.all(
    [1, 2, 3].map((n) => setupRemote([`u@dead.test`, `v${n}@live.test`], 's@x.test', dead.store)),
  );
  let releaseDead!: () => void;
  const deadHangs = new Promise<void>((r) => (releaseDead = r));
  const delivered: string[] = [];
  const store = dead.store;
  const qmgr = manager(store, neverLocal, {
    destinationConcurrency: 1,
    remoteConcurrency: 2,
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) => {
        const addresses = jobs.map((j) => j.entry.envelope.recipients[j.index]!.address);
        if (addresses[0]!.endsWith('@dead.test')) await deadHangs;
        delivered.push(...addresses);
        return attempted(jobs.map(() => ({ status: sent() })));
      },
    },
  });
  qmgr.add(dead.entry);
  for (const m of more) qmgr.add(m.entry);
  await until(() => ['v1@live.test', 'v2@live.test', 'v3@live.test'].every((a) => delivered.includes(a)));
  assert.ok(!delivered.some((a) => a.endsWith('@dead.test')), 'dead.test is still on its first attempt');
  releaseDead();
  await until(() => qmgr.size === 0);
});

test('a deferred remote recipient past delay_warning is warned about once; expiry bounces it', async () => {
  const clock = new FakeClock();
  const start = clock.now();
  const hour = 3_600_000;
  const { store, entry } = await setupRemote(['slow@far.test'], 's@x.test', undefined, start);
  const notices: string[] = [];
  let attempts = 0;
  const qmgr = manager(store, neverLocal, {
    clock,
    remoteRetryMs: [hour],
    delayWarningMs: 4 * hour,
    maxLifetimeMs: 5 * 24 * hour,
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) => {
        attempts += 1;
        return attempted(jobs.map(() => ({ status: temporary('4.4.1', 'connection refused') })));
      },
    },
    notifier: {
      notify: async (reported, indexes, kind) => {
        notices.push(`${kind} after ${(clock.now() - start) / hour} h`);
        return noticeFor(store, { queueId: reported.envelope.id, indexes, kind });
      },
    },
  });
  qmgr.add(entry);
  while (attempts < 121) await clock.runTimer(`retry ${attempts}`, (at) => at >= start + attempts * hour);
  await until(() => qmgr.size === 0);
  assert.deepEqual(notices, ['delay after 4 h', 'failure after 120 h'], 'hourly tries: warned at 4 h, expired at 5 d');
  assert.equal(attempts, 121);
});

test('mail from the null sender is never bounced; too many hops fail as a loop', async () => {
  const { store, entry } = await setupRemote(['x@far.test'], '');
  let attempts = 0;
  const qmgr = manager(store, neverLocal, {
    hops: async () => 51,
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) => attempted(jobs.map(() => ({ status: sent(String(++attempts)) }))),
    },
  });
  qmgr.add(entry);
  await until(() => qmgr.size === 0);
  assert.equal(attempts, 0, 'a looping message is not sent on');
  assert.equal(entry.progress[0]!.lastStatus?.code, '5.4.6');
  assert.equal(entry.progress[0]!.lastStatus?.permanent, true);
});

test('retryDeferredNow retries deferred mail now; forgetDeleted drops an entry deleted under the manager', async () => {
  const clock = new FakeClock();
  const { store, entry } = await setupRemote(['a@far.test'], 's@x.test', undefined, clock.now());
  let attempts = 0;
  const qmgr = manager(store, neverLocal, {
    clock,
    remoteRetryMs: [60_000],
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) =>
        attempted(jobs.map(() => ({ status: attempts++ === 0 ? temporary('4.4.1', 'down') : sent() }))),
    },
  });
  qmgr.add(entry);
  await clock.waitForTimer('the retry in a minute');
  assert.equal(await qmgr.forgetDeleted(), 0, 'nothing was deleted');
  assert.equal(qmgr.retryDeferredNow(), 1);
  await until(() => qmgr.size === 0);
  assert.equal(attempts, 2);
  assert.equal(clock.now(), entry.envelope.receivedAt, 'retried without waiting for the minute');

  const second = await setupRemote(['b@far.test'], 's@x.test', undefined, clock.now());
  let tried = 0;
  const qmgr2 = manager(second.store, neverLocal, {
    clock,
    remoteRetryMs: [60_000],
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) =>
        attempted(
          jobs.map(() => {
            tried++;
            return { status: temporary('4.4.1', 'down') };
          }),
        ),
    },
  });
  qmgr2.add(second.entry);
  await clock.waitForTimer('the retry in a minute');
  await second.store.remove(second.entry.envelope.id);
  assert.equal(await qmgr2.forgetDeleted(), 1);
  assert.equal(qmgr2.size, 0);
  assert.equal(tried, 1, 'not attempted again once deleted');
  assert.equal(clock.pending, 0, 'no retry left for the deleted entry');
});

test('failures at two destinations make one bounce; a bounce that cannot be queued keeps the entry', async () => {
  const { store, entry } = await setupRemote(['a@one.test', 'b@two.test']);
  const notices: number[][] = [];
  const qmgr = manager(store, neverLocal, {
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) => {
        // two.test answers only once one.test's failure is recorded: the entry then waits for it
        if (jobs[0]!.index === 1) await until(() => entry.progress[0]!.state === 'failed');
        return attempted(jobs.map(() => ({ status: statusFromReply('550 5.1.1 no such user', 'permanent', 'mx') })));
      },
    },
    notifier: {
      notify: async (reported, indexes, kind) => {
        notices.push(indexes);
        return noticeFor(store, { queueId: reported.envelope.id, indexes, kind });
      },
    },
  });
  qmgr.add(entry);
  await until(() => qmgr.size === 0);
  assert.deepEqual(notices, [[0, 1]]);

  const clock = new FakeClock();
  const second = await setupRemote(['c@three.test'], 's@x.test', undefined, clock.now());
  let calls = 0;
  const failing = manager(second.store, neverLocal, {
    clock,
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) =>
        attempted(jobs.map(() => ({ status: statusFromReply('550 5.1.1 no', 'permanent', 'mx') }))),
    },
    notifier: {
      notify: async (reported, indexes, kind) => {
        calls += 1;
        if (calls === 1) throw new Error('ENOSPC: no space left on device');
        return noticeFor(second.store, { queueId: reported.envelope.id, indexes, kind });
      },
    },
  });
  failing.add(second.entry);
  const retryAt = await clock.waitForTimer('the bounce tried again');
  assert.equal(retryAt - clock.now(), 60_000, 'a minute later');
  assert.equal(calls, 1);
  assert.equal(failing.size, 1, 'the original waits until its bounce is queued');
  assert.equal(second.entry.progress[0]!.notified, false);
  assert.deepEqual(
    await readdir(second.store.dir).then((names) => names.filter((n) => n === second.entry.envelope.id)),
    [second.entry.envelope.id],
  );
  clock.advance(60_000);
  await until(() => failing.size === 0);
  assert.equal(calls, 2, 'the bounce queued at the second try');
  assert.equal(second.entry.progress[0]!.notified, true);
});

test('a crash after a bounce was queued, before the progress saying so: no second bounce after restart', async () => {
  const { store, entry } = await setup(['gone']);
  // as the daemon left it: the recipient failed, its bounce is on disk, the progress not saved
  entry.progress[0]!.state = 'failed';
  entry.progress[0]!.lastStatus = permanent('5.1.1', 'user unknown');
  await store.saveProgress(entry.envelope.id, entry.progress);
  const notice = await noticeFor(store, { queueId: entry.envelope.id, indexes: [0], kind: 'failure' });
  let bounces = 0;
  const restarted = manager(store, neverLocal, {
    notifier: {
      notify: async (reported, indexes, kind) => {
        bounces += 1;
        return noticeFor(store, { queueId: reported.envelope.id, indexes, kind });
      },
    },
  });
  await restarted.start();
  await until(() => restarted.size === 0);
  assert.equal(bounces, 0, 'the queued bounce counts: none made again');
  assert.deepEqual(await readdir(store.dir).then((names) => names.filter((n) => n === notice.envelope.id)), []);
});

test('a crash after a bounce was queued, before any progress was saved: the recipient stays failed', async () => {
  const { store, entry } = await setup(['gone']);
  // as the daemon left it: the attempt failed for good and its bounce is on disk, but the
  // progress on disk still says pending (the crash came before the save)
  const notice = await noticeFor(store, { queueId: entry.envelope.id, indexes: [0], kind: 'failure' });
  let attempts = 0;
  let bounces = 0;
  const restarted = manager(
    store,
    {
      deliver: async (jobs) => {
        attempts += 1;
        return jobs.map(() => sent());
      },
      settleInterruptedAppend: async () => false,
    },
    {
      notifier: {
        notify: async (reported, indexes, kind) => {
          bounces += 1;
          return noticeFor(store, { queueId: reported.envelope.id, indexes, kind });
        },
      },
    },
  );
  await restarted.start();
  await until(() => restarted.size === 0);
  assert.equal(attempts, 0, 'not delivered after its bounce told the sender it failed');
  assert.equal(bounces, 0, 'the queued bounce counts: none made again');
  assert.deepEqual(await readdir(store.dir).then((names) => names.filter((n) => n === notice.envelope.id)), []);
});

test('a remote outcome is saved while the session says QUIT; the connection counts until it is closed', async () => {
  const first = await setupRemote(['a@one.test']);
  const second = await setupRemote(['b@one.test'], 's@x.test', first.store);
  const attempted: string[] = [];
  let closeSession: () => void = () => undefined;
  const qmgr = manager(first.store, neverLocal, {
    destinationConcurrency: 1,
    remote: {
      destinationOf: noRemote.destinationOf,
      deliver: async (jobs) => {
        attempted.push(jobs[0]!.entry.envelope.recipients[jobs[0]!.index]!.address);
        const ended = new Promise<void>((resolve) => (closeSession = resolve));
        return { outcomes: jobs.map(() => ({ status: sent() })), ended };
      },
    },
  });
  qmgr.add(first.entry);
  qmgr.add(second.entry);
  const files = () => readdir(first.store.dir);
  await until(async () => !(await files()).includes(first.entry.envelope.id));
  assert.deepEqual(attempted, ['a@one.test'], 'recorded and removed; the session still holds the one connection');
  closeSession();
  await until(() => qmgr.size === 0);
  assert.deepEqual(attempted, ['a@one.test', 'b@one.test']);
  closeSession();
});
