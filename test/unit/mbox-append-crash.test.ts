// Crash test for group-committed appends (src/mbox/group-append.ts, append.ts, lock.ts): a child
// appends a batch and is SIGKILLed at chosen file operations; whoever then breaks its stale lock
// (the daemon at start, or the next writer) must find the mailbox exactly as it was before the
// batch (nothing of it was acknowledged), or, once the fsync is done and the lock notes the new
// size, with the whole batch: never a torn message, never half a batch.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { appendMessage } from '../../src/mbox/append.js';
import { acquireDotlock, clearStaleLocks, type StaleLockInfo } from '../../src/mbox/lock.js';
import { runCrashChild, type ChildOutcome } from '../support/crash-hooks.js';
import type { ChildArgs, CrashPoint } from '../support/append-crash-child.js';

const CHILD = new URL('../support/append-crash-child.ts', import.meta.url).pathname;
const EXISTING = 'From old@example.org Sun Dec  6 09:00:00 2026\nSubject: old\n\nold body\n\n';
const MESSAGES = Array.from({ length: 4 }, (_, i) => `Subject: m${i}\r\n\r\n${`line ${i}\r\n`.repeat(50 + i)}`);

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-append-crash-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function runChild(args: ChildArgs, killAfterMs?: number): Promise<ChildOutcome> {
  return runCrashChild(CHILD, 'APPEND_CHILD', args, killAfterMs);
}

let counter = 0;
async function freshMailbox(): Promise<string> {
  const run = join(dir, `run${++counter}`);
  await fs.mkdir(run);
  const mailbox = join(run, 'user');
  await fs.writeFile(mailbox, EXISTING);
  return mailbox;
}

/** Subjects of the messages in the mailbox, and whether every message is whole (its body lines all there). */
async function contents(mailbox: string): Promise<string[]> {
  const text = await fs.readFile(mailbox, 'latin1');
  assert.ok(text.endsWith('\n\n'), 'the mailbox ends with a complete message');
  const messages = text.split(/\n\n(?=From )/);
  return messages.map((m) => {
    const subject = /^Subject: (\S+)$/m.exec(m)![1]!;
    const n = Number(subject.slice(1));
    if (subject !== 'old')
      assert.equal(m.split('\n').filter((l) => l === `line ${n}`).length, 50 + n, `${subject} is whole`);
    return subject;
  });
}

const BEFORE = ['old'];
const ALL = ['old', 'm0', 'm1', 'm2', 'm3'];

interface Scenario {
  name: string;
  crash: CrashPoint;
  expected: string[];
  /** the batch (default MESSAGES) */
  messages?: string[];
}

const scenarios: Scenario[] = [
  { name: 'before the first message is written', crash: { op: 'writev', target: 'mailbox', nth: 1 }, expected: BEFORE },
  {
    name: 'halfway through the first message (in memory)',
    crash: { op: 'writev', target: 'mailbox', nth: 1, torn: true },
    expected: BEFORE,
  },
  {
    name: 'halfway through the second message (streamed)',
    crash: { op: 'writev', target: 'mailbox', nth: 3, torn: true },
    expected: BEFORE,
  },
  {
    name: 'halfway through the last message',
    crash: { op: 'writev', target: 'mailbox', nth: 6, torn: true },
    expected: BEFORE,
  },
  { name: 'before the fsync (all written)', crash: { op: 'sync', target: 'mailbox', nth: 1 }, expected: BEFORE },
  {
    name: 'before the lock notes the size before the batch',
    crash: { op: 'write', target: 'lock', nth: 2 },
    expected: BEFORE,
  },
  {
    name: 'after the fsync, before the lock notes the new size',
    crash: { op: 'write', target: 'lock', nth: 3 },
    expected: BEFORE,
  },
  // the lock's first unlink is its temporary name, right after link(); the second is the release
  { name: 'after the lock notes the new size', crash: { op: 'unlink', target: 'lock', nth: 2 }, expected: ALL },
  // a batch of one message held in memory is one O_DSYNC write and no fsync
  ...(
    [
      {
        name: 'halfway through the write',
        crash: { op: 'writev', target: 'mailbox', nth: 1, torn: true },
        expected: BEFORE,
      },
      {
        name: 'after the write, before the lock notes the new size',
        crash: { op: 'write', target: 'lock', nth: 3 },
        expected: BEFORE,
      },
      {
        name: 'after the lock notes the new size',
        crash: { op: 'unlink', target: 'lock', nth: 2 },
        expected: ['old', 'm0'],
      },
    ] satisfies Scenario[]
  ).map((s): Scenario => ({ ...s, name: `one message in memory, ${s.name}`, messages: MESSAGES.slice(0, 1) })),
];

describe('a batch append killed part-way', () => {
  for (const scenario of scenarios) {
    for (const recovery of ['daemon start', 'next writer'] as const) {
      const leaves = scenario.expected === BEFORE ? 'the mailbox as it was' : 'the whole batch';
      it(`${scenario.name}: ${recovery} leaves ${leaves}`, async () => {
        const mailbox = await freshMailbox();
        const messages = scenario.messages ?? MESSAGES;
        const { killed } = await runChild({ mailbox, messages, crash: scenario.crash });
        assert.ok(killed, 'the child reached the crash point');
        assert.ok(await fs.stat(`${mailbox}.lock`), 'the dead child left its lock');
        const broken: StaleLockInfo[] = [];
        if (recovery === 'daemon start') {
          await clearStaleLocks(join(mailbox, '..'), (info) => broken.push(info));
          await fs.access(`${mailbox}.lock`).then(
            () => assert.fail('the stale lock is still there'),
            () => undefined,
          );
        }
        // the next delivery breaks the lock (if still there) and appends after what is left
        await appendMessage({
          mailboxPath: mailbox,
          source: [Buffer.from(`Subject: m9\r\n\r\n${'line 9\r\n'.repeat(59)}`)],
          sender: 'next@example.org',
          date: new Date('2026-12-06T11:00:00Z'),
          addHeaders: [],
          sizeLimit: 0,
          lockTimeoutMs: 1000,
          onStaleBroken: (info) => broken.push(info),
        });
        assert.deepEqual(await contents(mailbox), [...scenario.expected, 'm9']);
        const cut = broken.some((info) => /unfinished append/.test(info.reason));
        const nothingWritten =
          (scenario.crash.op === 'writev' && scenario.crash.nth === 1 && !scenario.crash.torn) ||
          (scenario.crash.target === 'lock' && scenario.crash.nth === 2);
        assert.equal(
          cut,
          scenario.expected === BEFORE && !nothingWritten,
          'a written, unacknowledged batch is reported as cut off',
        );
      });
    }
  }

  it('a batch of one message held in memory is durable without an fsync of the mailbox', async () => {
    const mailbox = await freshMailbox();
    // the child dies at the mailbox's first fsync, if there is one
    const { killed } = await runChild({
      mailbox,
      messages: MESSAGES.slice(0, 1),
      crash: { op: 'sync', target: 'mailbox', nth: 1 },
    });
    assert.equal(killed, false, 'no fsync of the mailbox');
    assert.deepEqual(await contents(mailbox), ['old', 'm0']);
  });

  it('without a crash, every message gets its offset and the batch is whole', async () => {
    const mailbox = await freshMailbox();
    const { killed, stdout } = await runChild({ mailbox, messages: MESSAGES, crash: null });
    assert.equal(killed, false);
    const outcomes = JSON.parse(stdout) as { offset: number; bytes: number }[];
    assert.equal(outcomes.length, 4);
    assert.equal(outcomes[0]!.offset, Buffer.byteLength(EXISTING));
    for (let i = 1; i < 4; i++) assert.equal(outcomes[i]!.offset, outcomes[i - 1]!.offset + outcomes[i - 1]!.bytes);
    assert.deepEqual(await contents(mailbox), ALL);
    await fs.access(`${mailbox}.lock`).then(
      () => assert.fail('lock left behind'),
      () => undefined,
    );
  });

  // the data may be all that survived a power loss
  it('an append note from another boot is never rolled back', async () => {
    const mailbox = await freshMailbox();
    await fs.writeFile(
      `${mailbox}.lock`,
      `999999999\nappend 0 ${(await import('node:os')).hostname().split('.')[0]} some-earlier-boot\n`,
    );
    const lock = await acquireDotlock(mailbox, { timeoutMs: 1000 });
    await lock.release();
    assert.deepEqual(await contents(mailbox), BEFORE);
  });
});
