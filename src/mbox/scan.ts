// Reads an mbox mailbox for POP3 (README, "Files on disk" and "POP3"): one streaming pass finds the messages, their
// wire sizes and UIDLs (parser.ts has the rules); the mailbox's index (index-store.ts) lets the
// next open of an unchanged or only-appended mailbox skip what was already scanned. The file is
// read in large pieces, the next few already on their way while the parser works on the last (so
// a cold 1 GB mailbox costs about as long as the slower of the disk and the parser, not both: on
// the bench VM ~0.3 s of reads against ~0.45 s of parsing, README "Performance").
//
// When the index is used: its path, dev and ino match the file, the part to scan ends at or
// after its scannedSize, its head and tail fingerprints match the file, and, if the file is
// still exactly scannedSize long, its mtime is unchanged. Then an equal end returns the indexed
// messages without reading further; a longer one keeps all but the last indexed message and
// rescans from the last one's From_ line, since bytes appended after it can change its length
// (its separator, a final line without LF). Anything else, or an index that fails its checksum
// or its consistency checks (see docs/formats.md, "Mailbox index"), means a full scan, after
// which the index is written anew. The daemon keeps the last decoded index files in memory
// (while the file is unchanged), so a warm reopen reads only the fingerprints and builds no
// per-message objects.
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { isErrno, readAt } from '../fsutil.js';
import { isCount } from './index-format.js';
import { fingerprints, readIndex, writeIndex } from './index-store.js';
import type { MailboxSnapshot, MessageInfo } from './mailbox.js';
import { CARRY_MAX, MboxParser, ResumeMismatch } from './parser.js';

/** bytes per read(2) of a scan */
const READ_SIZE = 2 * 1024 * 1024;
/** reads of a scan in memory at once: one being parsed, the others on their way */
const READS_IN_FLIGHT = 4;

export interface ScanStats {
  /** bytes read from the mailbox file, fingerprints included */
  bytesRead: number;
  /** messages taken from the index without reading them */
  reusedMessages: number;
  /** 'unchanged': all from the index; 'appended': index plus a scan of the end; 'full': no usable index */
  mode: 'full' | 'appended' | 'unchanged';
}

export interface ScanOptions {
  /** directory of the index files (created 0700 if missing) */
  indexDir: string;
  /** scan only [0, upTo): the size measured under the mailbox lock */
  upTo?: number;
  /** filled in with what the scan did */
  stats?: ScanStats;
  /** called when the index cannot be read (other than missing or corrupt) or written; the scan goes on */
  onIndexError?: (error: Error) => void;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A read buffer with room before the read for the carried start of a line. */
function readBuffer(): Buffer {
  return Buffer.allocUnsafe(CARRY_MAX + READ_SIZE);
}

/**
 * Feeds [from, to) of the file through the parser in READ_SIZE reads, READS_IN_FLIGHT of them
 * issued ahead of the parser (a cold file is read about three times faster here with several
 * reads waiting on the disk than with one); returns where it ended. The unconsumed end of a
 * piece (a line start shorter than CARRY_MAX) is copied in front of the next piece.
 */
async function scanRange(
  handle: FileHandle,
  from: number,
  to: number,
  parser: MboxParser,
  stats: ScanStats,
): Promise<number> {
  const buffers = Array.from({ length: READS_IN_FLIGHT }, readBuffer);
  const pending: Promise<number>[] = [];
  let readFrom = from;
  /** issues the next read into buffers[slot], if any of the range is left */
  const readAhead = (slot: number): void => {
    const want = Math.min(READ_SIZE, to - readFrom);
    pending[slot] = want > 0 ? readAt(handle, buffers[slot]!, CARRY_MAX, want, readFrom) : Promise.resolve(0);
    readFrom += want;
  };
  for (let slot = 0; slot < READS_IN_FLIGHT; slot++) readAhead(slot);
  let position = from;
  let current = 0;
  let carry: Buffer = Buffer.alloc(0);
  try {
    for (let step = 0; ; step++) {
      const want = Math.min(READ_SIZE, to - position);
      const n = await pending[current]!;
      position += n;
      stats.bytesRead += n;
      const eof = n < want || position >= to;
      const buffer = buffers[current]!;
      const start = CARRY_MAX - carry.length;
      carry.copy(buffer, start);
      const piece = buffer.subarray(start, CARRY_MAX + n);
      // the buffer the carry came from is free now: the read after the ones in flight goes there
      if (!eof && step > 0) readAhead((current + READS_IN_FLIGHT - 1) % READS_IN_FLIGHT);
      current = (current + 1) % READS_IN_FLIGHT;
      const consumed = parser.feed(piece, position - piece.length, eof);
      if (eof) return position;
      carry = piece.subarray(consumed);
    }
  } finally {
    // reads still in flight (a file that ended early, a parser that threw) finish before the
    // caller closes the file
    await Promise.allSettled(pending);
  }
}

/**
 * Scans the mbox file at `path` (up to `options.upTo`) and returns its messages, using and
 * renewing its index as the top of this file says. A missing file is an empty mailbox (dev =
 * ino = 0).
 */
export async function scanMailbox(path: string, options: ScanOptions): Promise<MailboxSnapshot> {
  if (options.upTo !== undefined && !isCount(options.upTo))
    throw new RangeError(`upTo must be a byte count, not ${options.upTo}`);
  const stats = options.stats ?? { bytesRead: 0, reusedMessages: 0, mode: 'full' };
  stats.bytesRead = 0;
  stats.reusedMessages = 0;
  stats.mode = 'full';
  const onIndexError = options.onIndexError ?? (() => undefined);
  let handle: FileHandle;
  try {
    handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return { path, dev: 0, ino: 0, scannedSize: 0, messages: [] };
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error(`${path}: not a regular file`);
    const end = Math.min(options.upTo ?? st.size, st.size);
    const index = await readIndex(path, options.indexDir).catch((err: unknown) => {
      onIndexError(asError(err));
      return null;
    });
    let kept: MessageInfo[] = [];
    if (
      index !== null &&
      index.dev === st.dev &&
      index.ino === st.ino &&
      end >= index.scannedSize &&
      (st.size !== index.scannedSize || st.mtimeMs === index.mtimeMs)
    ) {
      const now = await fingerprints(handle, index.scannedSize, stats);
      if (now.head === index.head && now.tail === index.tail) {
        if (end === index.scannedSize) {
          stats.mode = 'unchanged';
          stats.reusedMessages = index.messages.length;
          return { path, dev: st.dev, ino: st.ino, scannedSize: end, messages: index.messages };
        }
        kept = index.messages;
      }
    }
    let messages: MessageInfo[] | null = null;
    let scannedSize = 0;
    const last = kept[kept.length - 1];
    if (last !== undefined) {
      const reused = kept.slice(0, -1);
      const used = new Set<string>();
      for (const m of reused) used.add(m.uidl);
      const parser = new MboxParser(used, true);
      try {
        scannedSize = await scanRange(handle, last.offset, end, parser, stats);
        messages = reused.concat(parser.finish(scannedSize));
        stats.mode = 'appended';
        stats.reusedMessages = reused.length;
      } catch (err) {
        if (!(err instanceof ResumeMismatch)) throw err;
      }
    }
    if (messages === null) {
      const parser = new MboxParser(new Set(), false);
      scannedSize = await scanRange(handle, 0, end, parser, stats);
      messages = parser.finish(scannedSize);
    }
    const snapshot: MailboxSnapshot = { path, dev: st.dev, ino: st.ino, scannedSize, messages };
    try {
      const prints = await fingerprints(handle, scannedSize, stats);
      await writeIndex({ ...snapshot, mtimeMs: st.mtimeMs, ...prints }, options.indexDir);
    } catch (err) {
      onIndexError(asError(err));
    }
    return snapshot;
  } finally {
    await handle.close();
  }
}
