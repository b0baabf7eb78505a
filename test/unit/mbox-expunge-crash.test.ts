// Crash test for src/mbox/expunge.ts: a child process runs the update on a mailbox of
// 2,000 messages (every other one deleted) and is SIGKILLed at every write (torn), fsync,
// background fdatasync, truncate and unlink of the journal and the mailbox in turn, at chosen points with mail
// delivered before the recovery, during the recovery itself, and at random moments; after
// recoverInterruptedExpunges the mailbox must hold exactly the old 2,000 or exactly the 1,000
// kept messages, byte for byte, plus any mail delivered after the crash.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { appendMessage } from '../../src/mbox/append.js';
import { recoverInterruptedExpunges } from '../../src/mbox/expunge.js';
import type { RecoveryInfo } from '../../src/mbox/expunge-recovery.js';
import { acquireDotlock } from '../../src/mbox/lock.js';
import { setThisNode } from '../../src/mbox/node.js';
import { runCrashChild, type ChildOutcome } from '../support/crash-hooks.js';
import type { ChildArgs, CrashPoint } from '../support/expunge-crash-child.js';
import { expectedRead, messageOf, pythonRead, writeMailbox, type LinesOf } from '../support/mbox-expunge-fixtures.js';

const CHILD = new URL('../support/expunge-crash-child.ts', import.meta.url).pathname;
const COUNT = 2000;
/** ~2.7 KB messages: 5.4 MB mailbox, ~2.7 MB rewritten */
const linesOf: LinesOf = (n) => 35 + (n % 30);
const DELETED = Array.from({ length: COUNT / 2 }, (_, i) => 2 * i + 1);
const KEPT = Array.from({ length: COUNT / 2 }, (_, i) => 2 * i);
const ALL = Array.from({ length: COUNT }, (_, n) => n);

let dir: string;
let original: Buffer;
let compacted: Buffer;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-expunge-crash-'));
  // the children and this process are one node: its recovery may finish what they left
  setThisNode(dir);
  original = await writeMailbox(join(dir, 'original'), COUNT, linesOf);
  compacted = Buffer.concat(KEPT.map((n) => messageOf(n, linesOf)));
  await fs.writeFile(join(dir, 'compacted'), compacted);
  // Python reads both reference contents right; a mailbox equal to one byte for byte reads the same
  assert.deepEqual(await pythonRead(join(dir, 'original')), expectedRead(ALL, linesOf));
  assert.deepEqual(await pythonRead(join(dir, 'compacted')), expectedRead(KEPT, linesOf));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function runChild(args: ChildArgs, killAfterMs?: number): Promise<ChildOutcome> {
  return runCrashChild(CHILD, 'EXPUNGE_CHILD', args, killAfterMs);
}

let counter = 0;
async function freshMailbox(): Promise<{ mailbox: string; journalDir: string }> {
  const run = join(dir, `run${++counter}`);
  await fs.mkdir(run);
  const mailbox = join(run, 'user');
  await fs.copyFile(join(dir, 'original'), mailbox);
  return { mailbox, journalDir: join(run, 'journal') };
}

/** Delivers one more message the way the SMTP side does (another MDA would append the same way). */
async function deliverLate(mailbox: string, n: number): Promise<void> {
  await appendMessage({
    mailboxPath: mailbox,
    source: Readable.from([Buffer.from(`Subject: late ${n}\r\n\r\nlate body ${n}\r\n`, 'latin1')]),
    sender: 'late@example.org',
    date: new Date('2026-11-25T13:00:00Z'),
    addHeaders: [],
    sizeLimit: 0,
    lockTimeoutMs: 5000,
  });
}

async function recover(journalDir: string): Promise<RecoveryInfo[]> {
  const log: RecoveryInfo[] = [];
  await recoverInterruptedExpunges(journalDir, (info) => log.push(info));
  return log;
}

/**
 * The mailbox is exactly the `expected` reference content (old or new), byte for byte, then
 * `late` late deliveries, which Python's mailbox.mbox must read too.
 */
async function assertContent(mailbox: string, expected: 'old' | 'new', late = 0): Promise<void> {
  const content = await fs.readFile(mailbox);
  const base = expected === 'old' ? original : compacted;
  assert.ok(content.subarray(0, base.length).equals(base), `the ${expected} content, byte for byte`);
  if (late === 0) {
    assert.equal(content.length, base.length, `the ${expected} content and nothing more`);
  } else {
    const read = await pythonRead(mailbox);
    const numbers = expected === 'old' ? ALL : KEPT;
    assert.deepEqual(read.slice(0, numbers.length), expectedRead(numbers, linesOf), 'every body intact, no duplicates');
    const lateSubjects = Array.from({ length: late }, (_, i) => `late ${i}`);
    assert.deepEqual(
      read.slice(numbers.length).map((m) => m.subject),
      lateSubjects,
      'late deliveries kept',
    );
  }
  // the dead child's dotlock, if still there, is stale: the mailbox can be locked at once
  const lock = await acquireDotlock(mailbox, { timeoutMs: 1000 });
  await lock.release();
}

/**
 * small chunks: the ~2.7 MB rewrite takes 11 steps; the first two need their bytes journaled
 * (shift < chunk), the rest not
 */
const CHUNK_BYTES = 256 * 1024;
/** a background fdatasync of the mailbox after every other chunk: several run during the copy */
const FLUSH_BYTES = 512 * 1024;

/**
 * Whether recovery may still drop the update at this crash point: only while the journal's
 * header and first progress slot are being written (a torn slot may or may not be whole); from
 * then on the update must be finished.
 */
function mayDiscard(crash: CrashPoint): boolean {
  return crash.target === 'journal' && crash.op === 'write' && crash.nth <= 2;
}

const args = (run: { mailbox: string; journalDir: string }, crash: CrashPoint | null): ChildArgs => ({
  mode: 'expunge',
  ...run,
  nodeStateDir: dir,
  deleted: DELETED,
  crash,
  chunkBytes: CHUNK_BYTES,
  flushBytes: FLUSH_BYTES,
});

describe('expunge killed with SIGKILL, then recovered', { concurrency: 2 }, () => {
  it('completes when not killed', async () => {
    const { mailbox, journalDir } = await freshMailbox();
    const outcome = await runChild(args({ mailbox, journalDir }, null));
    assert.equal(outcome.killed, false);
    assert.match(outcome.stdout, /"removed":1000/);
    await assertContent(mailbox, 'new');
    assert.deepEqual(await fs.readdir(journalDir), []);
  });

  // every write (torn halfway), fsync, background fdatasync, truncate and unlink of the journal
  // and the mailbox, in turn
  const kinds: Omit<CrashPoint, 'nth'>[] = [
    { op: 'write', target: 'journal', torn: true },
    { op: 'write', target: 'mailbox', torn: true },
    { op: 'sync', target: 'journal' },
    { op: 'datasync', target: 'mailbox' },
    { op: 'truncate', target: 'mailbox' },
    { op: 'sync', target: 'mailbox' },
    { op: 'unlink', target: 'journal' },
  ];
  for (const kind of kinds) {
    it(`killed at every ${kind.op} of the ${kind.target}${kind.torn ? ' (torn)' : ''}`, async () => {
      let nth = 1;
      for (; ; nth++) {
        const crash = { ...kind, nth };
        const run = await freshMailbox();
        const outcome = await runChild(args(run, crash));
        if (!outcome.killed) {
          await assertContent(run.mailbox, 'new');
          break;
        }
        const log = await recover(run.journalDir);
        assert.equal(log.length, 1, `${kind.op} ${kind.target} #${nth}: one journal recovered`);
        const action = log[0]!.action;
        if (!mayDiscard(crash)) assert.equal(action, 'redone', `${kind.op} ${kind.target} #${nth}`);
        // a discarded update leaves the old content, a redone one the new
        await assertContent(run.mailbox, action === 'discarded' ? 'old' : 'new');
        assert.deepEqual(await fs.readdir(run.journalDir), []);
      }
      assert.ok(nth > 1, 'the operation happens at least once');
    });
  }

  // a long copy goes on after the update has returned (a POP3 client has its +OK): from the
  // answer on, a crash anywhere in the copy ends in the new content
  const afterAnswer: Omit<CrashPoint, 'nth'>[] = [
    { op: 'write', target: 'mailbox', torn: true },
    { op: 'unlink', target: 'journal' },
  ];
  for (const kind of afterAnswer) {
    it(`answered before its copy, then killed at every ${kind.op} of the ${kind.target}: the new content`, async () => {
      let nth = 1;
      for (; ; nth++) {
        const run = await freshMailbox();
        const outcome = await runChild({ ...args(run, { ...kind, nth }), waitForCopyBytes: 0 });
        if (!outcome.killed) {
          await assertContent(run.mailbox, 'new');
          break;
        }
        assert.match(outcome.stdout, /^answered$/m, `${kind.op} #${nth}: the answer came before it`);
        assert.deepEqual(
          (await recover(run.journalDir)).map((l) => l.action),
          ['redone'],
        );
        await assertContent(run.mailbox, 'new');
      }
      assert.ok(nth > 1, 'the operation happens at least once');
    });
  }

  it('answered before its copy: the journal is fsynced before the answer', async () => {
    const run = await freshMailbox();
    const crash = { op: 'sync', target: 'journal', nth: 1 } as const;
    const outcome = await runChild({ ...args(run, crash), waitForCopyBytes: 0 });
    assert.equal(outcome.killed, true);
    assert.doesNotMatch(outcome.stdout, /^answered$/m, 'killed at the first journal fsync, before the answer');
    assert.deepEqual(
      (await recover(run.journalDir)).map((l) => l.action),
      ['redone'],
    );
    await assertContent(run.mailbox, 'new');
  });

  const late: { name: string; crash: CrashPoint; expected: 'old' | 'new' }[] = [
    { name: 'in the journal header', crash: { op: 'write', target: 'journal', nth: 1, torn: true }, expected: 'old' },
    {
      name: 'in the first journaled chunk',
      crash: { op: 'write', target: 'journal', nth: 3, torn: true },
      expected: 'new',
    },
    {
      name: 'mid copy, in a journaled chunk',
      crash: { op: 'write', target: 'mailbox', nth: 1, torn: true },
      expected: 'new',
    },
    {
      name: 'mid copy, in a chunk not journaled',
      crash: { op: 'write', target: 'mailbox', nth: 6, torn: true },
      expected: 'new',
    },
    { name: 'before the truncate', crash: { op: 'truncate', target: 'mailbox', nth: 1 }, expected: 'new' },
    { name: 'after the truncate', crash: { op: 'unlink', target: 'journal', nth: 1 }, expected: 'new' },
  ];
  for (const scenario of late) {
    it(`killed ${scenario.name}, then mail is delivered before the recovery`, async () => {
      const run = await freshMailbox();
      assert.equal((await runChild(args(run, scenario.crash))).killed, true, 'the crash point was reached');
      for (let i = 0; i < 2; i++) await deliverLate(run.mailbox, i);
      await recover(run.journalDir);
      await assertContent(run.mailbox, scenario.expected, 2);
      assert.deepEqual(await fs.readdir(run.journalDir), []);
    });
  }

  it('survives a crash of the recovery itself (during a journal rebuild and during the redo)', async () => {
    const run = await freshMailbox();
    const crash = { op: 'write', target: 'mailbox', nth: 2, torn: true } as const;
    assert.equal((await runChild(args(run, crash))).killed, true);
    await deliverLate(run.mailbox, 0);
    // the recovery must first rebuild the journal with the late mail: killed in the middle of it
    const rebuild = { op: 'write', target: 'rebuild', nth: 1, torn: true } as const;
    assert.equal((await runChild({ ...args(run, rebuild), mode: 'recover' })).killed, true);
    await deliverLate(run.mailbox, 1);
    // then killed in the middle of the redo with the rebuilt journal
    const redo = { op: 'write', target: 'mailbox', nth: 3, torn: true } as const;
    assert.equal((await runChild({ ...args(run, redo), mode: 'recover' })).killed, true);
    assert.deepEqual(
      (await recover(run.journalDir)).map((l) => l.action),
      ['redone'],
    );
    await assertContent(run.mailbox, 'new', 2);
    assert.deepEqual(await fs.readdir(run.journalDir), []);
  });

  it('ends with the old or the new content when killed at random moments', async () => {
    const first = await freshMailbox();
    const full = await runChild(args(first, null));
    const figures = full.stdout.split('\n').find((l) => l.startsWith('{'))!;
    const updateMs = (JSON.parse(figures) as { ms: number }).ms;
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const run = await freshMailbox();
      const outcome = await runChild(args(run, null), Math.random() * updateMs * 1.2);
      const log = await recover(run.journalDir);
      const content = await fs.readFile(run.mailbox);
      const expected = content.length === original.length && content.equals(original) ? 'old' : 'new';
      await assertContent(run.mailbox, expected);
      seen.push(
        `${outcome.killed ? 'killed' : 'finished'}:${log.map((l) => l.action).join('') || 'no journal'}:${expected}`,
      );
    }
    // which phases were hit varies from run to run; the test output shows them
    console.log(`random kills (update took ${updateMs} ms): ${seen.join(', ')}`);
  });
});
