// The POP3 update (SPEC §6): removes the messages a session deleted from its mbox file, in
// place (same inode, mode and owner), under the dotlock, keeping mail delivered meanwhile, and
// crash-safely through a redo journal; then refreshes scan.ts's index.
//
// Change detection, under the lock, before anything is written: the file must have the
// snapshot's dev/ino, be at least `scannedSize` long, and at every message of the snapshot
// still hold a From_ line of the same length (`From ` ... its LF exactly at contentOffset - 1)
// and, where another message follows, the blank line ("\n\n") ending its span. Only bytes
// around the boundaries are read (64 KiB windows). That catches every edit that moves a
// boundary: a truncated or replaced file, a message removed, inserted or rewritten to another
// length (another server's expunge, mutt adding a Status: header), a restore from a backup.
// It misses edits that keep every boundary where it was (same-length changes inside a message,
// two equal-length messages swapped, a From_ line changed to another of the same length): the
// snapshot keeps no message bytes to compare with. Those cannot tear the file: whole spans
// between verified boundaries are moved or dropped.
//
// Journal: `<journalDir>/<mailbox name>.<hash of its path>.journal`, mode 0600, holding the
// mailbox's new bytes from A (the first deleted message) to its new end N = A + L:
//   "MAILSRV-EXPUNGE-JOURNAL 1 " JSON "\n"   mailbox path, dev, ino, A, L, old size S, probe
//   L bytes                                  kept spans after A, then everything after the scan
//   "\nCOMPLETE " sha256(all before) "\n"     the complete marker
// Steps, and what a `kill -9` (or power loss) at any point in each leaves after recovery:
//  1. lock, verify. The mailbox is only read until step 3: old content.
//  2. write header + data, fsync; then the marker, fsync; fsync the journal directory. Until
//     the marker is durable, recovery finds no valid marker or checksum, deletes the journal,
//     and the mailbox was never written: old content. (The first fsync orders data before
//     marker; the checksum also catches a torn or damaged journal.)
//  3. copy the journal's data over the mailbox at A (1 MiB chunks), ftruncate to N, fsync.
//     The mailbox may be torn, but [0, A) is untouched and the durable journal holds all of
//     [A, N): recovery rewrites [A, N) and truncates, which is idempotent: new content.
//  4. unlink the journal, fsync the directory, unlock. Before the unlink is durable, recovery
//     re-applies the journal onto the finished file: new content.
// So every kept byte is, at every instant, in the mailbox or in a complete durable journal.
// Mail another program appends between a crash and the recovery (our dotlock's pid is dead, so
// it is stale at once) survives the redo: the probe, sha256 of the old bytes [N, N + min(4 KiB,
// S - N)), which step 3 never writes, tells whether the truncate ran. Still there (and size >=
// S): bytes after S are new mail, and the journal is first rebuilt (temp file, rename) with
// them added to its data. Gone: bytes after N are new mail, and the redo leaves them be. (A new
// message that matched those old bytes exactly, From_ line included, would fool it.)
// Cost: the kept bytes after A are written twice, and the journal needs that much free space.
import { createHash, type Hash } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { acquireDotlock, type StaleLockHandler } from './lock.js';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from './mailbox.js';
import { saveIndex } from './scan.js';
import { fsyncDir, isErrno } from '../fsutil.js';

/** copy buffer: the most of a mailbox ever held in memory */
const CHUNK_BYTES = 1024 * 1024;
/** the change check reads all the message boundaries within this many bytes at once */
const CHECK_WINDOW_BYTES = 64 * 1024;
/** of a longer From_ line, the change check compares only this much (its end is not checked) */
const FROM_LINE_CHECK_BYTES = 4096;
const PROBE_MAX_BYTES = 4096;
const MAGIC = 'MAILSRV-EXPUNGE-JOURNAL 1 ';
const FOOTER_PREFIX = '\nCOMPLETE ';
const FOOTER_BYTES = FOOTER_PREFIX.length + 64 + 1;
const MAX_HEADER_BYTES = 64 * 1024;
const JOURNAL_SUFFIX = '.journal';
/** a journal being rebuilt by recovery; only renamed over the journal once complete */
const REBUILD_SUFFIX = '.journal.new';
const DEFAULT_RECOVERY_LOCK_TIMEOUT_MS = 60_000;
const LF = 0x0a;
const FROM_ = Buffer.from('From ', 'latin1');
const BLANK_LINE_END = Buffer.from('\n\n', 'latin1');
/** the same in a mailbox written with CRLF line ends */
const CRLF_BLANK_LINE_END = Buffer.from('\n\r\n', 'latin1');

export interface ExpungeOptions {
  /** where the journal is kept during the update (created 0700 if missing) */
  journalDir: string;
  lockTimeoutMs: number;
  onStaleBroken?: StaleLockHandler;
  /** scan.ts's index directory: the compacted mailbox's index is saved there afterwards (errors ignored) */
  indexDir?: string;
}

export interface ExpungeResult {
  removed: number;
  bytesFreed: number;
}

export interface RecoveryInfo {
  mailbox: string;
  action: 'redone' | 'discarded';
}

export interface RecoveryOptions {
  /** how long to wait for each mailbox's dotlock; default 60 s */
  lockTimeoutMs?: number;
  onStaleBroken?: StaleLockHandler;
}

const headerSchema = z.object({
  mailbox: z.string().min(1),
  // stat numbers, compared as Node gives them: inode numbers above 2^53 are not exact integers
  dev: z.number().nonnegative(),
  ino: z.number().nonnegative(),
  /** A: where the data goes, the offset of the first deleted message */
  offset: z.number().int().nonnegative(),
  /** L: bytes of data; the mailbox ends at A + L afterwards */
  length: z.number().int().nonnegative(),
  /** S: the mailbox size when the update began */
  oldSize: z.number().int().nonnegative(),
  /** sha256 (hex) of the old bytes [A + L, A + L + probeLength) */
  probe: z.string().regex(/^[0-9a-f]{64}$/),
  probeLength: z.number().int().positive(),
});
type JournalHeader = z.infer<typeof headerSchema>;

interface Journal {
  path: string;
  header: JournalHeader;
  /** where the data starts in the journal file */
  dataPosition: number;
}

/** A byte range of an open file. */
interface Range {
  handle: FileHandle;
  position: number;
  length: number;
}

/** mkdir -p (0700), making every created directory's entry durable. */
async function ensureDir(path: string): Promise<void> {
  const first = await fs.mkdir(path, { recursive: true, mode: 0o700 });
  if (first === undefined) return;
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    await fsyncDir(dirname(dir));
    if (dir === resolve(first)) return;
  }
}

/** Reads up to `length` bytes at `position`, fewer only at the end of the file. */
async function readAt(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeAt(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, done, length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Writes the concatenation of `ranges` (each file's ranges in increasing order) to `to` at
 * `toPosition` in chunks of up to 1 MiB, feeding the bytes to `hash` if given; returns the
 * bytes written. Ranges of one file within 1 MiB of each other are fetched with one read.
 */
async function copyRanges(ranges: readonly Range[], to: FileHandle, toPosition: number, hash?: Hash): Promise<number> {
  const input = Buffer.allocUnsafe(CHUNK_BYTES);
  const output = Buffer.allocUnsafe(CHUNK_BYTES);
  let window: { handle: FileHandle; start: number; end: number } | null = null;
  let filled = 0;
  let written = 0;
  const flush = async (): Promise<void> => {
    hash?.update(output.subarray(0, filled));
    await writeAt(to, output, filled, toPosition + written);
    written += filled;
    filled = 0;
  };
  for (const [i, range] of ranges.entries()) {
    for (let done = 0; done < range.length; ) {
      const position = range.position + done;
      if (window === null || window.handle !== range.handle || position < window.start || position >= window.end) {
        // read this range's rest and whatever of the next ranges of the file falls within 1 MiB
        let end = range.position + range.length;
        for (let k = i + 1; k < ranges.length && ranges[k].handle === range.handle && ranges[k].position < position + CHUNK_BYTES; k++) {
          end = ranges[k].position + ranges[k].length;
        }
        const n = await readAt(range.handle, input, Math.min(CHUNK_BYTES, end - position), position);
        if (n === 0) throw new Error(`file ended early at ${position}`);
        window = { handle: range.handle, start: position, end: position + n };
      }
      const n = Math.min(range.length - done, window.end - position, CHUNK_BYTES - filled);
      input.copy(output, filled, position - window.start, position - window.start + n);
      filled += n;
      done += n;
      if (filled === CHUNK_BYTES) await flush();
    }
  }
  if (filled > 0) await flush();
  return written;
}

/** sha256 (hex) of the file's bytes [position, position + length) (fewer at its end). */
async function probeOf(handle: FileHandle, position: number, length: number): Promise<string> {
  const buffer = Buffer.alloc(length);
  const n = await readAt(handle, buffer, length, position);
  return createHash('sha256').update(buffer.subarray(0, n)).digest('hex');
}

/** The journal file of a mailbox in `journalDir`. */
export function journalPathOf(journalDir: string, mailboxPath: string): string {
  const full = resolve(mailboxPath);
  const tag = createHash('sha256').update(full).digest('hex').slice(0, 12);
  return join(journalDir, `${basename(full)}.${tag}${JOURNAL_SUFFIX}`);
}

/**
 * Writes a complete journal: header, the data (the concatenation of `data`), fsync, then the
 * marker and fsync again. The caller fsyncs the directory.
 */
async function writeJournal(path: string, header: JournalHeader, data: readonly Range[]): Promise<Journal> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  const handle = await fs.open(path, flags, 0o600);
  try {
    const head = Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`, 'utf8');
    const hash = createHash('sha256').update(head);
    await writeAt(handle, head, head.length, 0);
    const position = head.length + (await copyRanges(data, handle, head.length, hash));
    if (position !== head.length + header.length) throw new Error(`journal data is not ${header.length} bytes long`);
    await handle.sync();
    const footer = Buffer.from(`${FOOTER_PREFIX}${hash.digest('hex')}\n`, 'latin1');
    await writeAt(handle, footer, footer.length, position);
    await handle.sync();
    return { path, header, dataPosition: head.length };
  } finally {
    await handle.close();
  }
}

/**
 * Reads a journal. `journal` is null unless it is complete and intact (marker present,
 * checksum right); `mailbox` is the mailbox its header names, if readable.
 */
async function readJournal(path: string): Promise<{ journal: Journal | null; mailbox: string | null }> {
  const handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const size = (await handle.stat()).size;
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    const head = buffer.subarray(0, await readAt(handle, buffer, Math.min(size, MAX_HEADER_BYTES), 0));
    const newline = head.indexOf(LF);
    if (newline < MAGIC.length || head.toString('latin1', 0, MAGIC.length) !== MAGIC) return { journal: null, mailbox: null };
    let parsed;
    try {
      parsed = headerSchema.safeParse(JSON.parse(head.toString('utf8', MAGIC.length, newline)));
    } catch {
      return { journal: null, mailbox: null };
    }
    if (!parsed.success) return { journal: null, mailbox: null };
    const header = parsed.data;
    const incomplete = { journal: null, mailbox: header.mailbox };
    const dataPosition = newline + 1;
    const hashed = dataPosition + header.length;
    if (size !== hashed + FOOTER_BYTES) return incomplete;
    const footer = Buffer.alloc(FOOTER_BYTES);
    await readAt(handle, footer, FOOTER_BYTES, hashed);
    const marker = /^\nCOMPLETE ([0-9a-f]{64})\n$/.exec(footer.toString('latin1'));
    if (marker === null) return incomplete;
    const hash = createHash('sha256');
    for (let position = 0; position < hashed; ) {
      const got = await readAt(handle, buffer, Math.min(buffer.length, hashed - position), position);
      hash.update(buffer.subarray(0, got));
      position += got;
    }
    if (hash.digest('hex') !== marker[1]) return incomplete;
    return { journal: { path, header, dataPosition }, mailbox: header.mailbox };
  } finally {
    await handle.close();
  }
}

async function removeJournal(path: string): Promise<void> {
  await fs.unlink(path);
  await fsyncDir(dirname(path));
}

/** Writes the journal's data over the mailbox at its offset, truncates to `finalSize`, fsyncs. */
async function applyJournal(mailbox: FileHandle, journal: Journal, finalSize: number): Promise<void> {
  const source = await fs.open(journal.path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    await copyRanges([{ handle: source, position: journal.dataPosition, length: journal.header.length }], mailbox, journal.header.offset);
  } finally {
    await source.close();
  }
  await mailbox.truncate(finalSize);
  await mailbox.sync();
}

/**
 * Recovery found the update's truncate not done yet and mail appended after the old end
 * (`size` > oldSize): rebuilds the journal with that mail added to its data, atomically.
 */
async function extendJournal(journal: Journal, mailbox: FileHandle, size: number): Promise<Journal> {
  const old = journal.header;
  const added = size - old.oldSize;
  const newEnd = old.offset + old.length + added;
  const probeLength = Math.min(PROBE_MAX_BYTES, size - newEnd);
  const header = { ...old, length: old.length + added, oldSize: size, probe: await probeOf(mailbox, newEnd, probeLength), probeLength };
  const temp = journal.path.slice(0, -JOURNAL_SUFFIX.length) + REBUILD_SUFFIX;
  const source = await fs.open(journal.path, constants.O_RDONLY | constants.O_NOFOLLOW);
  let rebuilt: Journal;
  try {
    rebuilt = await writeJournal(temp, header, [
      { handle: source, position: journal.dataPosition, length: old.length },
      { handle: mailbox, position: old.oldSize, length: added },
    ]);
  } finally {
    await source.close();
  }
  await fs.rename(temp, journal.path);
  await fsyncDir(dirname(journal.path));
  return { ...rebuilt, path: journal.path };
}

/** Completes the update a complete journal describes (mailbox lock held) and removes it. */
async function redoJournal(journal: Journal): Promise<RecoveryInfo['action']> {
  const { header } = journal;
  let mailbox: FileHandle;
  try {
    mailbox = await fs.open(header.mailbox, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch (err) {
    if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ELOOP')) throw err;
    await removeJournal(journal.path);
    return 'discarded';
  }
  try {
    const st = await mailbox.stat();
    if (!st.isFile() || st.dev !== header.dev || st.ino !== header.ino) {
      await removeJournal(journal.path);
      return 'discarded';
    }
    const newEnd = header.offset + header.length;
    const truncateDone = st.size < header.oldSize || (await probeOf(mailbox, newEnd, header.probeLength)) !== header.probe;
    if (truncateDone) {
      // bytes after the new end, if any, are mail delivered after the crash
      await applyJournal(mailbox, journal, Math.max(newEnd, st.size));
    } else {
      const current = st.size > header.oldSize ? await extendJournal(journal, mailbox, st.size) : journal;
      await applyJournal(mailbox, current, current.header.offset + current.header.length);
    }
  } finally {
    await mailbox.close();
  }
  await removeJournal(journal.path);
  return 'redone';
}

/** Settles a journal of this mailbox left by a failed update (its lock is held). */
async function settleLeftover(path: string): Promise<void> {
  let found;
  try {
    found = await readJournal(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  if (found.journal === null) await removeJournal(path);
  else await redoJournal(found.journal);
}

/** Bytes of the mailbox the change check compares: a From_ line, or the blank line ending a span. */
interface BoundaryCheck {
  message: number;
  kind: 'from' | 'blank';
  position: number;
  length: number;
}

function boundaryChecks(snapshot: MailboxSnapshot): BoundaryCheck[] {
  const checks: BoundaryCheck[] = [];
  for (const [i, message] of snapshot.messages.entries()) {
    const lineLength = message.contentOffset - message.offset;
    checks.push({ message: i, kind: 'from', position: message.offset, length: Math.min(lineLength, FROM_LINE_CHECK_BYTES) });
    const end = message.offset + message.spanLength;
    if (end < snapshot.scannedSize) checks.push({ message: i, kind: 'blank', position: end - 3, length: 3 });
  }
  return checks;
}

/**
 * Throws MailboxChangedError unless the file is the snapshot's, at least as long, with every
 * message boundary in place; returns its size. Reads only around the boundaries: one read
 * covers all the checks that fit in 64 KiB.
 */
async function verifyUnchanged(mailbox: FileHandle, snapshot: MailboxSnapshot): Promise<number> {
  const changed = (reason: string): MailboxChangedError => new MailboxChangedError(snapshot.path, reason);
  const st = await mailbox.stat();
  if (st.dev !== snapshot.dev || st.ino !== snapshot.ino) throw changed('the file was replaced');
  if (st.size < snapshot.scannedSize) throw changed(`it shrank to ${st.size} bytes from ${snapshot.scannedSize}`);
  const checks = boundaryChecks(snapshot);
  const window = Buffer.allocUnsafe(CHECK_WINDOW_BYTES);
  let start = 0;
  let end = 0;
  for (const [r, check] of checks.entries()) {
    const checkEnd = check.position + check.length;
    if (check.position < start || checkEnd > end) {
      let until = checkEnd;
      for (let s = r + 1; s < checks.length && checks[s].position + checks[s].length - check.position <= window.length; s++) {
        until = Math.max(until, checks[s].position + checks[s].length);
      }
      start = check.position;
      end = start + (await readAt(mailbox, window, until - start, start));
    }
    const bytes = window.subarray(check.position - start, Math.min(checkEnd, end) - start);
    const message = snapshot.messages[check.message];
    if (check.kind === 'blank') {
      if (!bytes.subarray(1).equals(BLANK_LINE_END) && !bytes.equals(CRLF_BLANK_LINE_END)) {
        throw changed(`message ${check.message + 1} no longer ends with a blank line at offset ${checkEnd}`);
      }
      continue;
    }
    const lineLength = message.contentOffset - message.offset;
    const lineOk =
      bytes.length === check.length &&
      bytes.subarray(0, FROM_.length).equals(FROM_) &&
      bytes.indexOf(LF) === (lineLength <= FROM_LINE_CHECK_BYTES ? lineLength - 1 : -1);
    if (!lineOk) throw changed(`message ${check.message + 1} no longer starts with its From_ line at offset ${message.offset}`);
  }
  return st.size;
}

/** The compacted mailbox as a snapshot: offsets shifted, deleted messages gone, appended mail not indexed. */
function compactedSnapshot(snapshot: MailboxSnapshot, deleted: ReadonlySet<number>, bytesFreed: number): MailboxSnapshot {
  let shift = 0;
  const messages: MessageInfo[] = [];
  for (const [i, message] of snapshot.messages.entries()) {
    if (deleted.has(i)) shift += message.spanLength;
    else messages.push({ ...message, offset: message.offset - shift, contentOffset: message.contentOffset - shift });
  }
  return { ...snapshot, scannedSize: snapshot.scannedSize - bytesFreed, messages };
}

/**
 * The update for one POP3 QUIT: removes the messages at the `deleted` indices of `snapshot`
 * from the mailbox file, keeping everything else, including mail appended after the scan.
 * Throws MailboxLockedError (lock not had in time) or MailboxChangedError (another program
 * changed the part the session read); then nothing was deleted. A RangeError for bad indices
 * is thrown before anything is locked.
 */
export async function expungeMessages(
  snapshot: MailboxSnapshot,
  deleted: ReadonlySet<number>,
  options: ExpungeOptions,
): Promise<ExpungeResult> {
  const spans = [...deleted]
    .map((i) => {
      const message = snapshot.messages[i];
      if (!Number.isInteger(i) || message === undefined) throw new RangeError(`no message with index ${i}`);
      return message;
    })
    .sort((a, b) => a.offset - b.offset);
  if (spans.length === 0) return { removed: 0, bytesFreed: 0 };
  const last = spans[spans.length - 1];
  if (last.offset + last.spanLength > snapshot.scannedSize) throw new RangeError('message span beyond the scanned part');

  await ensureDir(options.journalDir);
  const journalPath = journalPathOf(options.journalDir, snapshot.path);
  const lock = await acquireDotlock(snapshot.path, { timeoutMs: options.lockTimeoutMs, onStaleBroken: options.onStaleBroken });
  let bytesFreed = 0;
  try {
    await settleLeftover(journalPath);
    const mailbox = await fs.open(snapshot.path, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      const size = await verifyUnchanged(mailbox, snapshot);
      // what stays after the first deleted message: the gaps between deleted spans, then the rest of the file
      const start = spans[0].offset;
      const data: Range[] = [];
      let cursor = start;
      for (const span of spans) {
        if (span.offset > cursor) data.push({ handle: mailbox, position: cursor, length: span.offset - cursor });
        cursor = span.offset + span.spanLength;
        bytesFreed += span.spanLength;
      }
      if (size > cursor) data.push({ handle: mailbox, position: cursor, length: size - cursor });
      const newEnd = size - bytesFreed;
      const probeLength = Math.min(PROBE_MAX_BYTES, bytesFreed);
      const header: JournalHeader = {
        mailbox: resolve(snapshot.path),
        dev: snapshot.dev,
        ino: snapshot.ino,
        offset: start,
        length: newEnd - start,
        oldSize: size,
        probe: await probeOf(mailbox, newEnd, probeLength),
        probeLength,
      };
      let journal: Journal;
      try {
        journal = await writeJournal(journalPath, header, data);
        await fsyncDir(options.journalDir);
      } catch (err) {
        // the mailbox is untouched: a journal left here would delete what the client was told is kept
        await fs.unlink(journalPath).catch(() => undefined);
        throw err;
      }
      await applyJournal(mailbox, journal, newEnd);
      await removeJournal(journalPath);
    } finally {
      await mailbox.close();
    }
  } finally {
    await lock.release().catch(() => undefined);
  }
  // outside the lock: mail appended meanwhile leaves [0, new scannedSize) as it is
  if (options.indexDir !== undefined) {
    await saveIndex(compactedSnapshot(snapshot, deleted, bytesFreed), options.indexDir).catch(() => undefined);
  }
  return { removed: spans.length, bytesFreed };
}

/**
 * Daemon start, before any delivery or POP3 session: finishes every update a crash
 * interrupted. A complete journal is redone under its mailbox's dotlock ('redone'), or
 * dropped if that mailbox is gone or was replaced ('discarded'); an incomplete one is deleted
 * ('discarded': its mailbox was never written).
 */
export async function recoverInterruptedExpunges(
  journalDir: string,
  log: (info: RecoveryInfo) => void,
  options: RecoveryOptions = {},
): Promise<void> {
  await ensureDir(journalDir);
  for (const name of (await fs.readdir(journalDir)).sort()) {
    const path = join(journalDir, name);
    if (name.endsWith(REBUILD_SUFFIX)) {
      // a rebuild a crash cut short: the journal it was to replace is still there
      await removeJournal(path);
      continue;
    }
    if (!name.endsWith(JOURNAL_SUFFIX)) continue;
    const { journal, mailbox } = await readJournal(path);
    if (journal === null) {
      await removeJournal(path);
      log({ mailbox: mailbox ?? path, action: 'discarded' });
      continue;
    }
    const lock = await acquireDotlock(journal.header.mailbox, {
      timeoutMs: options.lockTimeoutMs ?? DEFAULT_RECOVERY_LOCK_TIMEOUT_MS,
      onStaleBroken: options.onStaleBroken,
    });
    try {
      log({ mailbox: journal.header.mailbox, action: await redoJournal(journal) });
    } finally {
      await lock.release().catch(() => undefined);
    }
  }
}
