// Unit tests for src/queue/pickup.ts, the drop directory's pickup, with a fake inject(): files
// there at start and files arriving later are handed over and removed only after inject()
// resolved; refused files are removed with a log line naming their owner; a failing inject()
// keeps the file for the next scan; temp files are left alone until they are stale; concurrency
// is bounded; stop() waits for work in progress. Rescans, debouncing and the age of temp files
// run on a fake clock.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { prepareDropDir, writeDropFile, type DropEnvelope } from '../../src/queue/drop-dir.js';
import {
  DropDirPickup,
  DropFileRejectedError,
  type DropDirPickupOptions,
  type PickedUpMessage,
} from '../../src/queue/pickup.js';
import { eventually } from '../support/wait.js';
import { FakeClock } from '../support/fake-clock.js';

interface LogLine {
  level: number;
  msg: string;
  file?: string;
  uid?: number;
  reason?: string;
}

interface Injected extends Omit<PickedUpMessage, 'openMessage'> {
  message: string;
}

const stateDirs: string[] = [];
after(() => Promise.all(stateDirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function setup(options: Partial<DropDirPickupOptions> = {}) {
  const stateDir = await mkdtemp(join(tmpdir(), 'mailsrv-pickup-'));
  stateDirs.push(stateDir);
  const dir = await prepareDropDir(stateDir, null);
  const logs: LogLine[] = [];
  const injected: Injected[] = [];
  const clock = new FakeClock();
  const pickup = new DropDirPickup({
    clock,
    dir,
    messageSizeLimit: 1000,
    logger: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) }),
    rescanMs: 60_000,
    userName: async (uid) => `user${uid}`,
    inject: async ({ openMessage, ...rest }) => {
      injected.push({ ...rest, message: await text(openMessage()) });
    },
    ...options,
  });
  return { dir, pickup, logs, injected, clock };
}

function drop(
  dir: string,
  envelope: DropEnvelope = { sender: 'root@mx.test', recipients: ['alice@example.test'] },
  message = 'Subject: x\r\n\r\nhello\r\n',
) {
  return writeDropFile(dir, envelope, Readable.from([Buffer.from(message)]));
}

const until = (condition: () => boolean | Promise<boolean>, what: string) => eventually(condition, 10_000, what, 10);

test('files there at start are injected with envelope, owner and message, then removed', async (t) => {
  const { dir, pickup, injected } = await setup();
  t.after(() => pickup.stop());
  const name = await drop(dir, { sender: '', recipients: ['alice@example.test', 'bob@example.test'] });
  pickup.start();
  await until(() => injected.length === 1, 'the file injected');
  assert.deepEqual(injected[0], {
    file: name,
    sender: '',
    recipients: ['alice@example.test', 'bob@example.test'],
    uid: process.getuid!(),
    submittedBy: `user${process.getuid!()}`,
    size: 'Subject: x\r\n\r\nhello\r\n'.length,
    message: 'Subject: x\r\n\r\nhello\r\n',
  });
  await until(async () => (await readdir(dir)).length === 0, 'the file removed');
});

test('a file arriving later is noticed at once (fs.watch), long before the rescan', async (t) => {
  const { dir, pickup, injected, clock } = await setup();
  t.after(() => pickup.stop());
  pickup.start();
  await pickup.scan();
  const rescanAt = clock.nextDue!;
  const droppedAt = clock.now();
  await drop(dir);
  // only a watch event sets a timer before the rescan: the short pause that gathers a burst of events
  const scanAt = await clock.runTimer('the scan after the watch event', (at) => at < rescanAt);
  await until(() => injected.length === 1, 'the new file injected');
  assert.equal(scanAt - droppedAt, 50, 'scanned 50 ms after the event, not at the rescan a minute later');
});

test('the file stays until inject() resolves; a failing inject() keeps it for the next scan', async (t) => {
  let failures = 1;
  let present: string[] = [];
  const { dir, pickup, logs } = await setup({
    inject: async () => {
      present = await readdir(dir);
      if (failures-- > 0) throw new Error('disk full');
    },
  });
  t.after(() => pickup.stop());
  const name = await drop(dir);
  await pickup.scan();
  assert.deepEqual(await readdir(dir), [name], 'removed although inject() failed');
  assert.ok(
    logs.some((l) => l.msg === 'cannot queue maildrop file; will retry' && l.file === name),
    JSON.stringify(logs),
  );
  await pickup.scan();
  assert.deepEqual(present, [name], 'removed before inject() resolved');
  assert.deepEqual(await readdir(dir), []);
});

test('a message inject() rejects for good (DropFileRejectedError) is removed and logged', async (t) => {
  const { dir, pickup, logs } = await setup({
    inject: async () => {
      throw new DropFileRejectedError('recipient table says no');
    },
  });
  t.after(() => pickup.stop());
  const name = await drop(dir);
  await pickup.scan();
  assert.deepEqual(await readdir(dir), []);
  const line = logs.find((l) => l.msg === 'maildrop file rejected and removed');
  assert.deepEqual([line?.file, line?.uid, line?.reason], [name, process.getuid!(), 'recipient table says no']);
});

test('bad files, links, oversized messages: removed, owner and reason logged; directories passed over', async (t) => {
  const { dir, pickup, logs, injected } = await setup({ messageSizeLimit: 50 });
  t.after(() => pickup.stop());
  await writeFile(join(dir, '2386Z6F820YWQVRB-0000000000000001'), 'not json\nx\r\n');
  await symlink('/etc/passwd', join(dir, '2386Z6F820YWQVRB-0000000000000002'));
  await drop(dir, undefined, `Subject: big\r\n\r\n${'x'.repeat(50)}\r\n`);
  await mkdir(join(dir, '2386Z6F820YWQVRB-0000000000000003'));
  await writeFile(join(dir, '2386Z6F820YWQVRB-0000000000000003', 'inside'), 'x');
  await pickup.scan();
  assert.deepEqual(await readdir(dir), ['2386Z6F820YWQVRB-0000000000000003']);
  assert.ok(!logs.some((l) => l.file === '2386Z6F820YWQVRB-0000000000000003'), 'a directory was logged');
  assert.equal(injected.length, 0);
  const reasons = logs.filter((l) => l.msg === 'maildrop file rejected and removed').map((l) => [l.uid, l.reason]);
  assert.equal(reasons.length, 3, JSON.stringify(logs));
  assert.ok(
    reasons.every(([uid]) => uid === process.getuid!()),
    JSON.stringify(reasons),
  );
  for (const reason of [/not JSON/, /symbolic link/, /message too big/])
    assert.ok(
      reasons.some(([, r]) => reason.test(String(r))),
      `${reason}: ${JSON.stringify(reasons)}`,
    );
});

test('reconfigure() changes the size limit for the next file', async (t) => {
  const { dir, pickup, injected } = await setup({ messageSizeLimit: 10 });
  t.after(() => pickup.stop());
  pickup.reconfigure({ messageSizeLimit: 1000 });
  await drop(dir);
  await pickup.scan();
  assert.equal(injected.length, 1);
});

test('temp files are left to their writer (a slow cron job: hours old is fine); removed a day old', async (t) => {
  const { dir, pickup, logs, injected, clock } = await setup();
  t.after(() => pickup.stop());
  const name = 'tmp-0123456789abcdef0123456789abcdef';
  await writeFile(join(dir, name), 'half written');
  clock.advance(Date.now() - clock.now() + 23 * 3_600_000);
  await pickup.scan();
  assert.deepEqual(await readdir(dir), [name], 'kept when 23 hours old');
  assert.equal(injected.length, 0);
  clock.advance(3_600_000 + 1000);
  await pickup.scan();
  assert.deepEqual(await readdir(dir), [], 'removed when a day old');
  assert.equal(injected.length, 0);
  assert.ok(logs.some((l) => l.msg === 'stale maildrop temp file removed' && l.file === name));
});

test('a flood of junk files costs a bounded amount of work per scan', async (t) => {
  const { dir, pickup, logs, clock } = await setup({ debrisChecksPerScan: 2 });
  t.after(() => pickup.stop());
  const junk = ['junk-a', 'junk-b', 'junk-c', 'junk-d', 'junk-e'];
  for (const name of junk) await writeFile(join(dir, name), 'x');
  const day = 24 * 3_600_000;
  clock.advance(Date.now() - clock.now() + day + 1000);
  const removed = () => logs.filter((l) => l.msg === 'stale maildrop temp file removed').length;
  await pickup.scan();
  assert.equal(removed(), 2, 'two looked at in the first scan');
  await pickup.scan();
  assert.equal(removed(), 4, 'two more in the next');
  await pickup.scan();
  assert.equal(removed(), 5);
  assert.deepEqual(await readdir(dir), []);
});

test('junk found young is not looked at again before it can be a day old', async (t) => {
  const { dir, pickup, clock } = await setup();
  t.after(() => pickup.stop());
  const day = 24 * 3_600_000;
  await writeFile(join(dir, 'young'), 'x');
  // its day runs from its mtime (which has fractions of a millisecond, unlike Date.now())
  const writtenAt = (await stat(join(dir, 'young'))).mtimeMs;
  clock.advance(writtenAt - clock.now());
  await pickup.scan();
  // made old behind the pickup's back: it waits for the day it was given
  const old = new Date(writtenAt - 2 * day);
  await utimes(join(dir, 'young'), old, old);
  await pickup.scan();
  assert.deepEqual(await readdir(dir), ['young'], 'not looked at again before its day is over');
  clock.advance(writtenAt + day - clock.now());
  await pickup.scan();
  assert.deepEqual(await readdir(dir), [], 'removed once it may be stale');
});

test('at most `concurrency` files are injected at once, and every file is', async (t) => {
  let active = 0;
  let most = 0;
  let done = 0;
  const { dir, pickup } = await setup({
    concurrency: 2,
    inject: async () => {
      active += 1;
      most = Math.max(most, active);
      await new Promise((r) => setTimeout(r, 20));
      active -= 1;
      done += 1;
    },
  });
  t.after(() => pickup.stop());
  for (let i = 0; i < 9; i++) await drop(dir);
  await pickup.scan();
  assert.equal(done, 9);
  assert.equal(most, 2);
  assert.deepEqual(await readdir(dir), []);
});

test('stop() waits for an inject() in progress and then nothing more is picked up', async () => {
  let release!: () => void;
  const started: string[] = [];
  const events: string[] = [];
  const { dir, pickup, clock } = await setup({
    inject: async ({ file }) => {
      started.push(file);
      await new Promise<void>((r) => {
        release = r;
      });
      events.push('inject resolved');
    },
  });
  const name = await drop(dir);
  pickup.start();
  await until(() => started.length === 1, 'inject started');
  const stopping = pickup.stop().then(() => events.push('stop resolved'));
  // the inject ends only once all that stop() does without waiting has had its turn
  await new Promise((r) => setImmediate(r));
  release();
  await stopping;
  assert.deepEqual(events, ['inject resolved', 'stop resolved'], 'stop() did not wait for the inject in progress');
  assert.deepEqual(await readdir(dir), [], `${name} not removed after its inject resolved`);
  assert.equal(clock.pending, 0, 'a rescan is still scheduled');
  const late = await drop(dir);
  await pickup.scan();
  assert.equal(started.length, 1, 'picked up after stop()');
  assert.deepEqual(await readdir(dir), [late]);
});
