// Unit tests for src/mbox/expunge.ts (and the expunge-*.ts parts it runs): compaction in place,
// mail appended meanwhile, change detection, locking, and the recovery of journals left by an
// interrupted update.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { appendMessage } from '../../src/mbox/append.js';
import { BackgroundCopies, expungeMessages, recoverInterruptedExpunges } from '../../src/mbox/expunge.js';
import { journalPathOf } from '../../src/mbox/expunge-journal.js';
import type { RecoveryInfo } from '../../src/mbox/expunge-recovery.js';
import { MailboxLockedError } from '../../src/mbox/lock.js';
import { MailboxChangedError } from '../../src/mbox/mailbox.js';
import { scanMailbox, type ScanStats } from '../../src/mbox/scan.js';
import { expectedRead, messageOf, pythonRead, snapshotOf, writeMailbox } from '../support/mbox-expunge-fixtures.js';

const execFileP = promisify(execFile);
const hasDotlockfile = spawnSync('dotlockfile', ['-h']).error === undefined;

let dir: string;
let journalDir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-expunge-'));
  journalDir = join(dir, 'state', 'journal');
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let counter = 0;
const newPath = (): string => join(dir, `user${++counter}`);
const options = (): { journalDir: string; lockTimeoutMs: number } => ({ journalDir, lockTimeoutMs: 2000 });

/** Appends a message as a delivery does. */
async function deliver(path: string, subject: string): Promise<void> {
  await appendMessage({
    mailboxPath: path,
    source: Readable.from([Buffer.from(`Subject: ${subject}\r\n\r\n${subject} body\r\n`, 'latin1')]),
    sender: 'late@example.org',
    date: new Date('2026-11-25T12:00:00Z'),
    addHeaders: [],
    sizeLimit: 0,
    lockTimeoutMs: 2000,
  });
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Leftover files next to the mailbox (lock, temp lock) and in the journal directory. */
async function leftovers(path: string): Promise<string[]> {
  const base = path.slice(dir.length + 1);
  const near = (await fs.readdir(dir)).filter((n) => n.startsWith(`${base}.`));
  const journals = await fs.readdir(journalDir).catch(() => []);
  return [...near, ...journals];
}

describe('expungeMessages', () => {
  const cases: { name: string; deleted: number[] }[] = [
    { name: 'the first message', deleted: [0] },
    { name: 'a middle message', deleted: [4] },
    { name: 'the last message', deleted: [9] },
    { name: 'several scattered messages', deleted: [1, 2, 5, 8] },
    { name: 'every message', deleted: range(0, 10) },
  ];
  for (const { name, deleted } of cases) {
    it(`removes ${name} in place`, async () => {
      const path = newPath();
      const old = await writeMailbox(path, 10);
      await fs.chmod(path, 0o640);
      const before = await fs.stat(path);
      const snapshot = await snapshotOf(path);
      const kept = range(0, 10).filter((n) => !deleted.includes(n));
      const freed = deleted.reduce((sum, i) => sum + snapshot.messages[i].spanLength, 0);

      const { removed, bytesFreed } = await expungeMessages(snapshot, new Set(deleted), options());

      assert.deepEqual({ removed, bytesFreed }, { removed: deleted.length, bytesFreed: freed });
      const content = await fs.readFile(path);
      assert.ok(content.equals(Buffer.concat(kept.map((n) => messageOf(n)))), 'exactly the kept messages, in order');
      assert.equal(content.length, old.length - freed);
      const afterStat = await fs.stat(path);
      assert.equal(afterStat.ino, before.ino, 'same inode');
      assert.equal(afterStat.mode, before.mode, 'same mode');
      assert.deepEqual(await pythonRead(path), expectedRead(kept));
      assert.deepEqual(await leftovers(path), [], 'no lock or journal left');
    });
  }

  it('returns before a copy longer than waitForCopyBytes, which goes on under the dotlock', async () => {
    const path = newPath();
    await writeMailbox(path, 10);
    const snapshot = await snapshotOf(path);
    const kept = range(0, 10).filter((n) => n !== 0);
    const answered = await expungeMessages(snapshot, new Set([0]), { ...options(), waitForCopyBytes: 0 });
    assert.equal(answered.removed, 1);
    // looked at before this test yields to the event loop: the copy has not ended, its lock and journal are there
    assert.ok(existsSync(`${path}.lock`), 'the dotlock is held');
    assert.ok(existsSync(journalPathOf(journalDir, path)), 'the journal is there');
    await answered.completion;
    assert.ok(
      (await fs.readFile(path)).equals(Buffer.concat(kept.map((n) => messageOf(n)))),
      'exactly the kept messages',
    );
    assert.deepEqual(await leftovers(path), [], 'no lock or journal left');
  });

  it('waits for a long copy when every place for a copy after the answer is taken', async () => {
    const places = new BackgroundCopies(1);
    assert.ok(places.tryTake(), 'the one place is taken');
    const path = newPath();
    await writeMailbox(path, 10);
    const kept = range(1, 10);
    await expungeMessages(await snapshotOf(path), new Set([0]), {
      ...options(),
      waitForCopyBytes: 0,
      backgroundCopies: places,
    });
    assert.ok(!existsSync(`${path}.lock`), 'returned after its copy, the lock let go of');
    assert.ok((await fs.readFile(path)).equals(Buffer.concat(kept.map((n) => messageOf(n)))));

    places.give();
    const next = await expungeMessages(await snapshotOf(path), new Set([0]), {
      ...options(),
      waitForCopyBytes: 0,
      backgroundCopies: places,
    });
    assert.ok(existsSync(`${path}.lock`), 'a place was free: returned before its copy');
    assert.equal(places.tryTake(), false, 'its copy has the place');
    await next.completion;
    assert.ok(places.tryTake(), 'and gave it back at the end');
  });

  it('expunges a mailbox written with CRLF line ends on disk', async () => {
    const path = newPath();
    const message = (n: number) => `From a@b.test Mon Jan  5 10:00:00 2026\r\nSubject: m${n}\r\n\r\nbody ${n}\r\n\r\n`;
    await fs.writeFile(path, [1, 2, 3].map(message).join(''));
    const snapshot = await scanMailbox(path, { indexDir: join(dir, 'index') });
    assert.equal(snapshot.messages.length, 3);
    await expungeMessages(snapshot, new Set([1]), options());
    assert.equal(await fs.readFile(path, 'latin1'), message(1) + message(3));
  });

  it('changes nothing when nothing is deleted', async () => {
    const path = newPath();
    const old = await writeMailbox(path, 3);
    const mtime = (await fs.stat(path)).mtimeMs;
    const { removed, bytesFreed } = await expungeMessages(await snapshotOf(path), new Set(), options());
    assert.deepEqual({ removed, bytesFreed }, { removed: 0, bytesFreed: 0 });
    assert.ok((await fs.readFile(path)).equals(old));
    assert.equal((await fs.stat(path)).mtimeMs, mtime);
  });

  it('keeps mail delivered after the scan', async () => {
    const path = newPath();
    await writeMailbox(path, 6);
    const snapshot = await snapshotOf(path);
    await deliver(path, 'late');
    const grown = await fs.readFile(path);
    const appended = grown.subarray(snapshot.scannedSize);

    await expungeMessages(snapshot, new Set([0, 3, 5]), options());

    const content = await fs.readFile(path);
    assert.ok(content.equals(Buffer.concat([messageOf(1), messageOf(2), messageOf(4), appended])));
    const read = await pythonRead(path);
    assert.deepEqual(read.slice(0, 3), expectedRead([1, 2, 4]));
    assert.equal(read.length, 4);
    assert.equal(read[3].subject, 'late');
  });

  it('saves the index of the compacted mailbox, so the next open needs no rescan', async () => {
    const path = newPath();
    await writeMailbox(path, 8);
    const indexDir = join(dir, 'index');
    const snapshot = await scanMailbox(path, { indexDir });
    await deliver(path, 'late');
    await expungeMessages(snapshot, new Set([0, 5, 7]), { ...options(), indexDir });

    const stats: ScanStats = { bytesRead: 0, reusedMessages: 0, mode: 'full' };
    const reopened = await scanMailbox(path, { indexDir, stats });
    const fresh = await scanMailbox(path, { indexDir: join(dir, `fresh-index-${counter}`) });
    assert.equal(stats.mode, 'appended', 'the index was used; only the mail appended meanwhile was scanned');
    assert.equal(stats.reusedMessages, 4);
    assert.deepEqual(reopened, fresh);
    assert.deepEqual(
      reopened.messages.slice(0, 5).map((m) => m.uidl),
      [1, 2, 3, 4, 6].map((i) => snapshot.messages[i].uidl),
      'UIDLs survive the update',
    );
  });

  it('refuses when another program rewrote a message, changing nothing', async () => {
    const path = newPath();
    await writeMailbox(path, 5);
    const snapshot = await snapshotOf(path);
    // what mutt does when it marks message 2 read: the file is rewritten with a Status: header
    const rewritten = Buffer.concat([
      messageOf(0),
      messageOf(1),
      Buffer.from(messageOf(2).toString('latin1').replace('\n\n', '\nStatus: RO\n\n')),
      messageOf(3),
      messageOf(4),
    ]);
    await fs.writeFile(path, rewritten);
    await assert.rejects(expungeMessages(snapshot, new Set([3]), options()), MailboxChangedError);
    assert.ok((await fs.readFile(path)).equals(rewritten));
    assert.deepEqual(await leftovers(path), []);
  });

  it('refuses when another program removed a message of the same length', async () => {
    const path = newPath();
    await writeMailbox(path, 5, () => 4);
    const snapshot = await snapshotOf(path);
    // equal-length messages: only the boundaries of the first two still match
    const changed = Buffer.concat([0, 1, 3, 4].map((n) => messageOf(n, () => 4)));
    await fs.writeFile(path, changed);
    await assert.rejects(expungeMessages(snapshot, new Set([0]), options()), MailboxChangedError);
    assert.ok((await fs.readFile(path)).equals(changed));
  });

  it('refuses when the file was truncated', async () => {
    const path = newPath();
    const old = await writeMailbox(path, 5);
    const snapshot = await snapshotOf(path);
    await fs.truncate(path, old.length - 10);
    await assert.rejects(expungeMessages(snapshot, new Set([0]), options()), (err: unknown) => {
      assert.ok(err instanceof MailboxChangedError);
      assert.match(err.message, /shrank/);
      return true;
    });
    assert.ok((await fs.readFile(path)).equals(old.subarray(0, old.length - 10)));
  });

  it('refuses when the file was replaced by another one', async () => {
    const path = newPath();
    const old = await writeMailbox(path, 5);
    const snapshot = await snapshotOf(path);
    await fs.writeFile(`${path}.tmp`, old);
    await fs.rename(`${path}.tmp`, path);
    await assert.rejects(expungeMessages(snapshot, new Set([1]), options()), /replaced/);
    assert.ok((await fs.readFile(path)).equals(old));
  });

  it('refuses bad indices before locking', async () => {
    const path = newPath();
    await writeMailbox(path, 2);
    await assert.rejects(expungeMessages(await snapshotOf(path), new Set([2]), options()), RangeError);
  });

  it('gives up with MailboxLockedError while another program holds the dotlock', async () => {
    const path = newPath();
    const old = await writeMailbox(path, 3);
    const lockPath = `${path}.lock`;
    if (hasDotlockfile) await execFileP('dotlockfile', ['-l', '-r', '0', lockPath]);
    else await fs.writeFile(lockPath, `${process.pid}\n`); // a live pid: never stale
    try {
      const started = Date.now();
      await assert.rejects(
        expungeMessages(await snapshotOf(path), new Set([0]), { journalDir, lockTimeoutMs: 300 }),
        MailboxLockedError,
      );
      assert.ok(Date.now() - started >= 300);
      assert.ok((await fs.readFile(path)).equals(old));
    } finally {
      await fs.unlink(lockPath);
    }
  });

  it('first finishes a journal an earlier failed update left for the same mailbox', async () => {
    const path = newPath();
    await writeMailbox(path, 4);
    const first = await snapshotOf(path);
    const journalPath = journalPathOf(journalDir, path);
    // simulate an update that failed after its journal was complete: run one, but keep a copy
    // of the journal taken just before it was applied
    const realUnlink = fs.unlink;
    let saved: Buffer | null = null;
    fs.unlink = async (p) => {
      if (p === journalPath && saved === null) saved = await fs.readFile(journalPath);
      return realUnlink(p);
    };
    try {
      await expungeMessages(first, new Set([0]), options());
    } finally {
      fs.unlink = realUnlink;
    }
    assert.ok(saved !== null);
    // the session saw the compacted file; the journal "reappears", as if the update had failed
    const second = await snapshotOf(path);
    await fs.writeFile(journalPath, saved);
    await expungeMessages(second, new Set([0]), options());
    assert.ok((await fs.readFile(path)).equals(Buffer.concat([messageOf(2), messageOf(3)])));
    assert.deepEqual(await leftovers(path), []);
  });
});

describe('recoverInterruptedExpunges', () => {
  it('deletes an incomplete journal and leaves the mailbox as it is', async () => {
    const path = newPath();
    const old = await writeMailbox(path, 3);
    await fs.mkdir(journalDir, { recursive: true });
    const { ino, dev } = await fs.stat(path);
    const header = {
      mailbox: path,
      dev,
      ino,
      start: 0,
      end: 100,
      oldSize: old.length,
      probe: '0'.repeat(64),
      probeLength: 10,
      kept: [[200, 100]],
    };
    // the header and a torn progress slot: a crash before the mailbox was written
    await fs.writeFile(
      journalPathOf(journalDir, path),
      `MAILSRV-EXPUNGE-JOURNAL 2 ${JSON.stringify(header)}\n${' '.repeat(4096)}{"seq":0,"do`,
    );
    // a header cut short names no mailbox: the journal's own path is logged
    const torn = join(journalDir, 'other.0123456789ab.journal');
    await fs.writeFile(torn, 'MAILSRV-EXPUNGE-JOURNAL 2 {"mailb');
    const log: RecoveryInfo[] = [];
    await recoverInterruptedExpunges(journalDir, (info) => log.push(info));
    assert.deepEqual(log, [
      { mailbox: torn, action: 'discarded' },
      { mailbox: path, action: 'discarded' },
    ]);
    assert.ok((await fs.readFile(path)).equals(old));
    assert.deepEqual(await leftovers(path), []);
  });

  it('discards a complete journal whose mailbox was replaced, and redoes one whose mailbox is the same', async () => {
    const replaced = newPath();
    const same = newPath();
    const journals = new Map<string, Buffer>();
    for (const path of [replaced, same]) {
      await writeMailbox(path, 4);
      const journalPath = journalPathOf(journalDir, path);
      const realUnlink = fs.unlink;
      fs.unlink = async (p) => {
        if (p === journalPath) journals.set(path, await fs.readFile(journalPath));
        return realUnlink(p);
      };
      try {
        await expungeMessages(await snapshotOf(path), new Set([1]), options());
      } finally {
        fs.unlink = realUnlink;
      }
    }
    const replacedContent = Buffer.concat(range(0, 4).map((n) => messageOf(n)));
    await fs.writeFile(`${replaced}.tmp`, replacedContent);
    await fs.rename(`${replaced}.tmp`, replaced);
    for (const [path, journal] of journals) await fs.writeFile(journalPathOf(journalDir, path), journal);

    const log: RecoveryInfo[] = [];
    await recoverInterruptedExpunges(journalDir, (info) => log.push(info));
    assert.deepEqual(
      log.sort((a, b) => a.mailbox.localeCompare(b.mailbox)),
      [
        { mailbox: replaced, action: 'discarded' },
        { mailbox: same, action: 'redone' },
      ].sort((a, b) => a.mailbox.localeCompare(b.mailbox)),
    );
    assert.ok((await fs.readFile(replaced)).equals(replacedContent), 'a replaced mailbox is left alone');
    assert.ok(
      (await fs.readFile(same)).equals(Buffer.concat([0, 2, 3].map((n) => messageOf(n)))),
      'redo is idempotent',
    );
    assert.deepEqual(await fs.readdir(journalDir), []);
  });
});
