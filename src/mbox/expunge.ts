// The POP3 update (SPEC §6): removes the messages a session deleted from its mbox file, in
// place (same inode, mode and owner), under the dotlock, keeping mail delivered meanwhile, and
// safe against `kill -9` at any moment through a small redo journal; then refreshes scan.ts's
// index.
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
// The compaction: from A (the first deleted message) to the new end N, the kept bytes move
// down, copied forward in chunks of up to 4 MiB: new bytes [D, D + L) come from old bytes at
// D + shift and later (shift: the deleted bytes before them). Writing a chunk destroys old
// bytes [D, D + L); those are still needed only where the chunk's own source starts inside them
// (shift < L). So the journal holds the plan and the progress, and the bytes of only such
// chunks, never the whole tail: `<journalDir>/<mailbox name>.<hash of its path>.journal`, 0600:
//   "MAILSRV-EXPUNGE-JOURNAL 2 " JSON "\n"    mailbox path, dev, ino, A, N, old size S, probe,
//                                             and the kept ranges after A (their sources)
//   two 256-byte progress slots (at the next 4 KiB boundary), written in turn, each
//     JSON { seq, done, chunk } "\n" sha256(JSON) "\n": [A, done) is new content; chunk, if
//     set, is the length of [done, done + chunk) whose new bytes are in the data area
//   the data area: one chunk's new bytes
// A torn slot fails its checksum and the other one, one step older, is used: every step is
// safe to redo from the step before. Per chunk: (shift < L: chunk's bytes to the data area,
// slot "chunk"), the chunk to the mailbox, slot "done D + L". At the end: fsync the journal
// (its last slot says done = N), ftruncate the mailbox to N, fsync it, unlink the journal.
// What a `kill -9` at any point leaves after recovery (at daemon start, or by the next update
// of the mailbox, under its lock): before the first slot is written, no valid slot: the
// journal is deleted, the mailbox was never written: old content. After it: the copy goes on
// from the newest valid slot, rewriting a journaled chunk first: new content. This relies on
// the page cache: what the killed process wrote is what the recovery reads. A power loss
// during the copy can leave the mailbox torn (as any in-place rewrite that does not first
// copy the whole tail to stable storage): only the result is made durable, by the fsyncs at
// the end (the journal's "done = N" first, so that a stale journal is never replayed over the
// finished file).
// Mail another program appends between a crash and the recovery (our dotlock's pid is dead, so
// it is stale at once) survives: the probe, sha256 of the old bytes [N, N + min(4 KiB, S - N)),
// which the copy never writes, tells whether the truncate ran. Still there (and size >= S):
// bytes after S are new mail, and the journal is first rebuilt (temp file, rename) with them as
// one more kept range. Gone: bytes after N are new mail, and the redo leaves them be. (A new
// message that matched those old bytes exactly, From_ line included, would fool it.)
// Cost: the kept bytes after A are read once and written once (plus, for chunks the shift does
// not clear, once more to the journal in the page cache), and one fsync of the mailbox.
import { createHash } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { acquireDotlock, type StaleLockHandler } from './lock.js';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from './mailbox.js';
import { saveIndex } from './scan.js';
import { fsyncDir, isErrno } from '../fsutil.js';

/** the largest chunk copied at once; two are in memory (one written, the next read): the most of a mailbox ever held */
const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/** the change check reads all the message boundaries within this many bytes at once */
const CHECK_WINDOW_BYTES = 64 * 1024;
/** of a longer From_ line, the change check compares only this much (its end is not checked) */
const FROM_LINE_CHECK_BYTES = 4096;
const PROBE_MAX_BYTES = 4096;
const MAGIC = 'MAILSRV-EXPUNGE-JOURNAL 2 ';
const SLOT_BYTES = 256;
const SLOT_ALIGN = 4096;
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
  /** largest chunk of the copy (default 4 MiB; crash tests make it small to get many steps) */
  chunkBytes?: number;
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
  chunkBytes?: number;
}

const count = z.number().int().nonnegative();
const headerSchema = z.object({
  mailbox: z.string().min(1),
  // stat numbers, compared as Node gives them: inode numbers above 2^53 are not exact integers
  dev: z.number().nonnegative(),
  ino: z.number().nonnegative(),
  /** A: the offset of the first deleted message, where the new bytes start */
  start: count,
  /** N: the new end of the mailbox */
  end: count,
  /** S: the mailbox size when the update began */
  oldSize: count,
  /** sha256 (hex) of the old bytes [N, N + probeLength) */
  probe: z.string().regex(/^[0-9a-f]{64}$/),
  probeLength: z.number().int().positive(),
  /** the kept ranges after A, [position, length] in the old file: their bytes, in order, are [A, N) */
  kept: z.array(z.tuple([count, count])),
});
type JournalHeader = z.infer<typeof headerSchema>;

const slotSchema = z.object({
  seq: count,
  /** [A, done) of the mailbox holds new content */
  done: count,
  /** [done, done + chunk) is being written from the data area, which holds its new bytes */
  chunk: z.number().int().positive().nullable(),
});
type Progress = z.infer<typeof slotSchema>;

interface Journal {
  path: string;
  header: JournalHeader;
  /** where the progress slots start; the data area follows them */
  slotsAt: number;
  /** the kept ranges' start offsets in the new file */
  destinations: number[];
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

/** sha256 (hex) of the file's bytes [position, position + length) (fewer at its end). */
async function probeOf(handle: FileHandle, position: number, length: number): Promise<string> {
  const buffer = Buffer.alloc(length);
  const n = await readAt(handle, buffer, length, position);
  return createHash('sha256').update(buffer.subarray(0, n)).digest('hex');
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** The journal file of a mailbox in `journalDir`. */
export function journalPathOf(journalDir: string, mailboxPath: string): string {
  const full = resolve(mailboxPath);
  const tag = createHash('sha256').update(full).digest('hex').slice(0, 12);
  return join(journalDir, `${basename(full)}.${tag}${JOURNAL_SUFFIX}`);
}

function journalOf(path: string, header: JournalHeader, headerBytes: number): Journal {
  const destinations: number[] = [];
  let at = header.start;
  for (const [, length] of header.kept) {
    destinations.push(at);
    at += length;
  }
  return { path, header, slotsAt: Math.ceil(headerBytes / SLOT_ALIGN) * SLOT_ALIGN, destinations };
}

/** Writes a new journal: the header, then the first progress slot. The caller decides about fsyncs. */
async function createJournal(
  path: string,
  header: JournalHeader,
  progress: Progress,
): Promise<{ journal: Journal; handle: FileHandle }> {
  const flags = constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  const handle = await fs.open(path, flags, 0o600);
  try {
    const head = Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`, 'utf8');
    await writeAt(handle, head, head.length, 0);
    const journal = journalOf(path, header, head.length);
    await writeSlot(handle, journal, progress);
    return { journal, handle };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

async function writeSlot(handle: FileHandle, journal: Journal, progress: Progress): Promise<void> {
  const json = JSON.stringify(progress);
  const slot = Buffer.alloc(SLOT_BYTES, 0x20);
  slot.write(`${json}\n${sha256(json)}\n`, 'latin1');
  await writeAt(handle, slot, SLOT_BYTES, journal.slotsAt + (progress.seq % 2) * SLOT_BYTES);
}

/** The newest intact progress slot, or null. */
async function readProgress(handle: FileHandle, journal: Journal): Promise<Progress | null> {
  const slots = Buffer.alloc(2 * SLOT_BYTES);
  await readAt(handle, slots, slots.length, journal.slotsAt);
  let newest: Progress | null = null;
  for (let i = 0; i < 2; i++) {
    const m = /^([^\n]*)\n([0-9a-f]{64})\n/.exec(slots.toString('latin1', i * SLOT_BYTES, (i + 1) * SLOT_BYTES));
    if (m === null || sha256(m[1]!) !== m[2]) continue;
    let parsed;
    try {
      parsed = slotSchema.safeParse(JSON.parse(m[1]!));
    } catch {
      continue;
    }
    if (parsed.success && parsed.data.seq % 2 === i && (newest === null || parsed.data.seq > newest.seq))
      newest = parsed.data;
  }
  return newest;
}

/** Reads a journal's header: `journal` is null unless it is intact; `mailbox` is the mailbox it names, if readable. */
async function readJournal(
  path: string,
  handle: FileHandle,
): Promise<{ journal: Journal | null; mailbox: string | null }> {
  const size = (await handle.stat()).size;
  const buffer = Buffer.alloc(Math.min(size, 64 * 1024 * 1024));
  const head = buffer.subarray(0, await readAt(handle, buffer, buffer.length, 0));
  const newline = head.indexOf(LF);
  if (newline < MAGIC.length || head.toString('latin1', 0, MAGIC.length) !== MAGIC)
    return { journal: null, mailbox: null };
  let parsed;
  try {
    parsed = headerSchema.safeParse(JSON.parse(head.toString('utf8', MAGIC.length, newline)));
  } catch {
    return { journal: null, mailbox: null };
  }
  if (!parsed.success) return { journal: null, mailbox: null };
  return { journal: journalOf(path, parsed.data, newline + 1), mailbox: parsed.data.mailbox };
}

async function removeJournal(path: string): Promise<void> {
  await fs.unlink(path);
  await fsyncDir(dirname(path));
}

/** The index of the kept range holding new offset `d` (A <= d < N). */
function rangeAt(journal: Journal, d: number): number {
  const { destinations } = journal;
  let lo = 0;
  let hi = destinations.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (destinations[mid]! <= d) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Reads the new bytes [d, d + length) from their old places in the mailbox into `out`. */
async function assemble(mailbox: FileHandle, journal: Journal, d: number, length: number, out: Buffer): Promise<void> {
  const { kept } = journal.header;
  let filled = 0;
  for (let k = rangeAt(journal, d); filled < length; k++) {
    const [position, rangeLength] = kept[k]!;
    const skip = d + filled - journal.destinations[k]!;
    const n = Math.min(rangeLength - skip, length - filled);
    if ((await readAt(mailbox, out.subarray(filled), n, position + skip)) !== n)
      throw new Error(`mailbox ended early at ${position + skip}`);
    filled += n;
  }
}

/**
 * Copies the new bytes forward from `progress` to the end N, as the top of this file says;
 * then fsyncs the journal (done = N), truncates the mailbox to N and fsyncs it.
 */
async function copyForward(
  mailbox: FileHandle,
  handle: FileHandle,
  journal: Journal,
  progress: Progress,
  chunkBytes: number,
): Promise<void> {
  const { header } = journal;
  const dataAt = journal.slotsAt + 2 * SLOT_BYTES;
  const out = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(0, header.end - progress.done)));
  let { seq, done } = progress;
  if (progress.chunk !== null) {
    // a journaled chunk may be half written: write it again from the data area (written whole
    // before the slot that names it)
    const length = progress.chunk;
    const data = out.length >= length ? out : Buffer.allocUnsafe(length);
    if ((await readAt(handle, data, length, dataAt)) !== length)
      throw new Error(`${journal.path}: the journaled chunk is cut short`);
    await writeAt(mailbox, data, length, done);
    done += length;
    await writeSlot(handle, journal, { seq: ++seq, done, chunk: null });
  }
  // two buffers: the next chunk is read while this one is written (its source lies at or after
  // where this one ends, which no write of this one reaches)
  const buffers = [out, Buffer.allocUnsafe(out.length)];
  const read = (at: number, into: Buffer): Promise<void> | null => {
    if (at >= header.end) return null;
    const reading = assemble(mailbox, journal, at, Math.min(into.length, header.end - at), into);
    reading.catch(() => undefined); // awaited in its turn; not unhandled meanwhile
    return reading;
  };
  let reading = read(done, buffers[0]!);
  for (let i = 0; done < header.end; i = 1 - i) {
    const chunk = buffers[i]!;
    const length = Math.min(chunk.length, header.end - done);
    await reading;
    reading = read(done + length, buffers[1 - i]!);
    const k = rangeAt(journal, done);
    const shift = header.kept[k]![0] + (done - journal.destinations[k]!) - done;
    if (shift < length) {
      // writing this chunk destroys some of its own source: keep its bytes in the journal first
      await writeAt(handle, chunk, length, dataAt);
      await writeSlot(handle, journal, { seq: ++seq, done, chunk: length });
    }
    await writeAt(mailbox, chunk, length, done);
    done += length;
    await writeSlot(handle, journal, { seq: ++seq, done, chunk: null });
  }
  await handle.sync();
  await mailbox.truncate(header.end);
  await mailbox.sync();
}

/**
 * Recovery found the truncate not done yet and mail appended after the old end (`size` >
 * oldSize): rebuilds the journal, atomically, with that mail as one more kept range.
 */
async function extendJournal(
  journal: Journal,
  progress: Progress,
  handle: FileHandle,
  mailbox: FileHandle,
  size: number,
): Promise<{ journal: Journal; handle: FileHandle }> {
  const old = journal.header;
  const added = size - old.oldSize;
  const end = old.end + added;
  const probeLength = Math.min(PROBE_MAX_BYTES, size - end);
  const header: JournalHeader = {
    ...old,
    end,
    oldSize: size,
    probe: await probeOf(mailbox, end, probeLength),
    probeLength,
    kept: [...old.kept, [old.oldSize, added]],
  };
  const temp = journal.path.slice(0, -JOURNAL_SUFFIX.length) + REBUILD_SUFFIX;
  const rebuilt = await createJournal(temp, header, { ...progress, seq: progress.seq });
  try {
    if (progress.chunk !== null) {
      const data = Buffer.allocUnsafe(progress.chunk);
      await readAt(handle, data, data.length, journal.slotsAt + 2 * SLOT_BYTES);
      await writeAt(rebuilt.handle, data, data.length, rebuilt.journal.slotsAt + 2 * SLOT_BYTES);
    }
    await fs.rename(temp, journal.path);
  } catch (err) {
    await rebuilt.handle.close();
    throw err;
  }
  return { journal: { ...rebuilt.journal, path: journal.path }, handle: rebuilt.handle };
}

/** Finishes the update a journal describes (mailbox lock held) and removes it. */
async function redoJournal(path: string, chunkBytes: number): Promise<RecoveryInfo> {
  let handle = await fs.open(path, constants.O_RDWR | constants.O_NOFOLLOW);
  try {
    const found = await readJournal(path, handle);
    let journal = found.journal;
    const progress = journal === null ? null : await readProgress(handle, journal);
    if (journal === null || progress === null) {
      // cut short before its first progress slot: the mailbox was never written
      await removeJournal(path);
      return { mailbox: found.mailbox ?? path, action: 'discarded' };
    }
    const { header } = journal;
    let mailbox: FileHandle;
    try {
      mailbox = await fs.open(header.mailbox, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ELOOP')) throw err;
      await removeJournal(path);
      return { mailbox: header.mailbox, action: 'discarded' };
    }
    try {
      const st = await mailbox.stat();
      if (!st.isFile() || st.dev !== header.dev || st.ino !== header.ino) {
        await removeJournal(path);
        return { mailbox: header.mailbox, action: 'discarded' };
      }
      const truncated =
        st.size < header.oldSize || (await probeOf(mailbox, header.end, header.probeLength)) !== header.probe;
      if (truncated) {
        // done = N was on disk before the truncate; bytes after N, if any, are mail delivered since
        await mailbox.sync();
      } else {
        if (st.size > header.oldSize) {
          const extended = await extendJournal(journal, progress, handle, mailbox, st.size);
          await handle.close();
          ({ journal, handle } = extended);
        }
        await copyForward(mailbox, handle, journal, progress, chunkBytes);
      }
    } finally {
      await mailbox.close();
    }
    await removeJournal(path);
    return { mailbox: header.mailbox, action: 'redone' };
  } finally {
    await handle.close();
  }
}

/** Settles a journal of this mailbox left by a failed update (its lock is held). */
async function settleLeftover(path: string, chunkBytes: number): Promise<void> {
  try {
    await redoJournal(path, chunkBytes);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
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
    checks.push({
      message: i,
      kind: 'from',
      position: message.offset,
      length: Math.min(lineLength, FROM_LINE_CHECK_BYTES),
    });
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
      for (
        let s = r + 1;
        s < checks.length && checks[s].position + checks[s].length - check.position <= window.length;
        s++
      ) {
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
    if (!lineOk)
      throw changed(`message ${check.message + 1} no longer starts with its From_ line at offset ${message.offset}`);
  }
  return st.size;
}

/** The compacted mailbox as a snapshot: offsets shifted, deleted messages gone, appended mail not indexed. */
function compactedSnapshot(
  snapshot: MailboxSnapshot,
  deleted: ReadonlySet<number>,
  bytesFreed: number,
): MailboxSnapshot {
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
  const last = spans[spans.length - 1]!;
  if (last.offset + last.spanLength > snapshot.scannedSize)
    throw new RangeError('message span beyond the scanned part');

  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  await ensureDir(options.journalDir);
  const journalPath = journalPathOf(options.journalDir, snapshot.path);
  const lock = await acquireDotlock(snapshot.path, {
    timeoutMs: options.lockTimeoutMs,
    onStaleBroken: options.onStaleBroken,
  });
  let bytesFreed = 0;
  try {
    await settleLeftover(journalPath, chunkBytes);
    const mailbox = await fs.open(snapshot.path, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      const size = await verifyUnchanged(mailbox, snapshot);
      // what stays after the first deleted message: the gaps between deleted spans, then the rest of the file
      const start = spans[0]!.offset;
      const kept: [number, number][] = [];
      let cursor = start;
      for (const span of spans) {
        if (span.offset > cursor) kept.push([cursor, span.offset - cursor]);
        cursor = span.offset + span.spanLength;
        bytesFreed += span.spanLength;
      }
      if (size > cursor) kept.push([cursor, size - cursor]);
      const end = size - bytesFreed;
      const probeLength = Math.min(PROBE_MAX_BYTES, bytesFreed);
      const header: JournalHeader = {
        mailbox: resolve(snapshot.path),
        dev: snapshot.dev,
        ino: snapshot.ino,
        start,
        end,
        oldSize: size,
        probe: await probeOf(mailbox, end, probeLength),
        probeLength,
        kept,
      };
      const first: Progress = { seq: 0, done: start, chunk: null };
      let created: { journal: Journal; handle: FileHandle };
      try {
        created = await createJournal(journalPath, header, first);
      } catch (err) {
        // the mailbox is untouched: a journal left here would delete what the client was told is kept
        await fs.unlink(journalPath).catch(() => undefined);
        throw err;
      }
      try {
        await copyForward(mailbox, created.handle, created.journal, first, chunkBytes);
      } finally {
        await created.handle.close();
      }
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
 * interrupted. A journal with progress is redone under its mailbox's dotlock ('redone'), or
 * dropped if that mailbox is gone or was replaced ('discarded'); one without (cut short before
 * the mailbox was written) is deleted ('discarded').
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
    const handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    let mailbox: string | null;
    try {
      mailbox = (await readJournal(path, handle)).mailbox;
    } finally {
      await handle.close();
    }
    if (mailbox === null) {
      await removeJournal(path);
      log({ mailbox: path, action: 'discarded' });
      continue;
    }
    const lock = await acquireDotlock(mailbox, {
      timeoutMs: options.lockTimeoutMs ?? DEFAULT_RECOVERY_LOCK_TIMEOUT_MS,
      onStaleBroken: options.onStaleBroken,
    });
    try {
      log(await redoJournal(path, options.chunkBytes ?? DEFAULT_CHUNK_BYTES));
    } finally {
      await lock.release().catch(() => undefined);
    }
  }
}
