// An I/O error in the middle of a POP3 update (src/mbox/expunge.ts) never leaves a torn mailbox
// behind: a passing error is repaired at once from the journal (the update completes), and one
// that lasts leaves the journal (the update is committed: its completion fails, not its answer),
// which the next POP3 open finishes before it reads the mailbox (or, while the disk still fails,
// refuses to serve it), whether the copy ran before the update answered or after. Writes (or the
// background fdatasyncs) of the mailbox are made to fail by wrapping node:fs's FileHandle in this
// test process.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type ExpungeOptions, type ExpungeResult, expungeMessages } from '../../src/mbox/expunge.js';
import { journalPathOf } from '../../src/mbox/expunge-journal.js';
import { Maildrop } from '../../src/pop3/maildrop.js';
import { expectedRead, pythonRead, snapshotOf, writeMailbox } from '../support/mbox-expunge-fixtures.js';

let dir: string;
let journalDir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mailsrv-expunge-eio-'));
  journalDir = join(dir, 'journal');
});
after(() => fs.rm(dir, { recursive: true, force: true }));

/** Which writes (or fdatasyncs) to which file fail with EIO: from the nth one on, `count` of them. */
const failing = { path: '', op: 'write' as 'write' | 'datasync', from: 0, count: 0, seen: 0 };

const paths = new WeakMap<FileHandle, string>();
const realOpen = fs.open;
fs.open = async (...args: Parameters<typeof fs.open>) => {
  const handle = await realOpen(...args);
  paths.set(handle, String(args[0]));
  return handle;
};
before(async () => {
  const sample = await realOpen(process.execPath, 'r');
  type Method = (this: FileHandle, ...args: unknown[]) => Promise<unknown>;
  const proto = Object.getPrototypeOf(sample) as Record<'write' | 'datasync', Method>;
  await sample.close();
  for (const op of ['write', 'datasync'] as const) {
    const real = proto[op];
    proto[op] = async function (this: FileHandle, ...args: unknown[]) {
      if (paths.get(this) === failing.path && failing.op === op) {
        failing.seen += 1;
        if (failing.seen >= failing.from && failing.count > 0) {
          failing.count -= 1;
          throw Object.assign(new Error(`EIO: i/o error, ${op}`), { code: 'EIO' });
        }
      }
      return real.apply(this, args);
    };
  }
});

const COUNT = 40;
const DELETED = [0, 1, 2, 3, 10, 20];
const KEPT = Array.from({ length: COUNT }, (_, n) => n).filter((n) => !DELETED.includes(n));

/**
 * Deletes DELETED from a fresh mailbox `name` (COUNT messages, copied 512 bytes at a time) while
 * `fault` makes its writes or fdatasyncs fail; the mailbox's path and what the update answered.
 */
async function expungeFailing(
  name: string,
  fault: { op: 'write' | 'datasync'; from: number; count: number },
  tuning: Partial<ExpungeOptions> = {},
): Promise<{ path: string; answered: ExpungeResult }> {
  const path = join(dir, name);
  await writeMailbox(path, COUNT);
  const snapshot = await snapshotOf(path);
  Object.assign(failing, { path, ...fault, seen: 0 });
  const answered = await expungeMessages(snapshot, new Set(DELETED), {
    journalDir,
    lockTimeoutMs: 1000,
    chunkBytes: 512,
    ...tuning,
  });
  return { path, answered };
}

test('a passing write error mid-copy: the update is redone at once from its journal and completes', async () => {
  const { path, answered } = await expungeFailing('alice', { op: 'write', from: 3, count: 1 });
  assert.equal(failing.count, 0, 'the error did happen');
  assert.equal(answered.removed, DELETED.length);
  assert.deepEqual(await pythonRead(path), expectedRead(KEPT));
  await assert.rejects(fs.access(journalPathOf(journalDir, path)), 'no journal left');
});

test('a failing background fdatasync: the update is redone at once from its journal and completes', async () => {
  const { path, answered } = await expungeFailing('carol', { op: 'datasync', from: 1, count: 1 }, { flushBytes: 1024 });
  assert.equal(failing.count, 0, 'the error did happen');
  assert.equal(answered.removed, DELETED.length);
  assert.deepEqual(await pythonRead(path), expectedRead(KEPT));
  await assert.rejects(fs.access(journalPathOf(journalDir, path)), 'no journal left');
});

for (const { copy, waitForCopyBytes, user } of [
  { copy: 'short, waited for', waitForCopyBytes: undefined, user: 'bob' },
  { copy: 'long, after the answer', waitForCopyBytes: 0, user: 'dan' },
]) {
  test(`a lasting write error (copy ${copy}): completion fails, the next POP3 open finishes the update`, async () => {
    const { path, answered } = await expungeFailing(user, { op: 'write', from: 3, count: 1000 }, { waitForCopyBytes });
    assert.equal(answered.removed, DELETED.length, 'answered: the update is committed');
    await assert.rejects(answered.completion, /EIO/);
    await fs.access(journalPathOf(journalDir, path)); // the plan is kept

    const maildrop = new Maildrop({
      spoolDir: dir,
      indexDir: join(dir, 'index'),
      journalDir,
      lockTimeoutMs: () => 1000,
    });
    await assert.rejects(maildrop.open(user), /EIO/, 'while the disk still fails, the mailbox is not served');

    failing.count = 0; // the disk works again
    const reopened = await maildrop.open(user);
    assert.equal(reopened.messages.length, KEPT.length, 'served as the update left it, complete');
    assert.deepEqual(await pythonRead(path), expectedRead(KEPT));
    await assert.rejects(fs.access(journalPathOf(journalDir, path)), 'the journal is gone');
  });
}
