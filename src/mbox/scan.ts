// Reads an mbox mailbox for POP3 (SPEC §3, §6): one streaming pass finds the messages, their
// wire sizes and UIDLs (parser.ts has the rules); an index in `indexDir` lets the next open of
// an unchanged or only-appended mailbox skip what was already scanned. The file is read in
// large pieces, the next one already on its way while the parser works on the last (so a cold
// 1 GB mailbox costs about as long as the slower of the disk and the parser, not both).
//
// Index: `indexDir/<basename>.idx`, mode 0600, written to a temporary file and renamed: a line
// `MAILSRV-MBOX-INDEX 1`, a JSON line { path, dev, ino, scannedSize, mtimeMs, head, tail, count,
// endian, sha1 } (head and tail: sha1 hex of the first and of the last 4 KiB of
// [0, scannedSize); sha1: of the rest of the file), padded to a multiple of 8 bytes, then the
// offset, contentOffset, contentLength, spanLength and size columns as float64 in this
// machine's byte order, then the UIDLs joined by LF (binary, so that a 100,000-message index
// loads in tens of milliseconds). It is reused when path, dev and ino match, the part to scan
// ends at or after scannedSize, head and tail match the file, and, if the file is still
// exactly scannedSize long, its mtime is unchanged. Then an equal end returns the indexed
// messages without reading further; a longer one keeps all but the last indexed message and
// rescans from the last one's From_ line, since bytes appended after it can change its
// length (its separator, a final line without LF). Anything else, or an index that fails its
// checksum or its consistency checks (offsets in order and inside scannedSize), means a full
// scan. The daemon keeps the last decoded index files in memory (while the file is unchanged), so
// a warm reopen reads only the fingerprints and builds no per-message objects.
import { createHash, randomBytes } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, join } from 'node:path';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from './mailbox.js';
import { CARRY_MAX, MboxParser, ResumeMismatch } from './parser.js';
import { isErrno } from '../fsutil.js';

/** bytes per read(2) of a scan; two such reads are in memory (one parsed, the next arriving) */
const READ_SIZE = 2 * 1024 * 1024;
const FINGERPRINT_BYTES = 4096;
const INDEX_VERSION = 1;
const LF = 0x0a;

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

/** Reads until `length` bytes are in or the file ends; returns the count read. */
async function readFull(
  handle: FileHandle,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, offset + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** A read buffer with room before the read for the carried start of a line. */
function readBuffer(): Buffer {
  return Buffer.allocUnsafe(CARRY_MAX + READ_SIZE);
}

/**
 * Feeds [from, to) of the file through the parser in READ_SIZE reads, each issued before the
 * parser works on the one before it; returns where it ended. The unconsumed end of a piece (a
 * line start shorter than CARRY_MAX) is copied in front of the next piece.
 */
async function scanRange(
  handle: FileHandle,
  from: number,
  to: number,
  parser: MboxParser,
  stats: ScanStats,
): Promise<number> {
  const buffers = [readBuffer(), readBuffer()];
  const readInto = (buffer: Buffer, position: number): Promise<number> => {
    const want = Math.min(READ_SIZE, to - position);
    return want > 0 ? readFull(handle, buffer, CARRY_MAX, want, position) : Promise.resolve(0);
  };
  let position = from;
  let current = 0;
  let pending = readInto(buffers[0]!, position);
  let carry: Buffer = Buffer.alloc(0);
  for (;;) {
    const want = Math.min(READ_SIZE, to - position);
    const n = await pending;
    position += n;
    stats.bytesRead += n;
    const eof = n < want || position >= to;
    const buffer = buffers[current]!;
    const start = CARRY_MAX - carry.length;
    carry.copy(buffer, start);
    const piece = buffer.subarray(start, CARRY_MAX + n);
    // the next read goes into the other buffer (where the carry was) while this one is parsed
    current = 1 - current;
    if (!eof) pending = readInto(buffers[current]!, position);
    const consumed = parser.feed(piece, position - piece.length, eof);
    if (eof) return position;
    carry = piece.subarray(consumed);
  }
}

interface Fingerprints {
  head: string;
  tail: string;
}

async function sha1Of(handle: FileHandle, start: number, length: number, stats: ScanStats | null): Promise<string> {
  const buffer = Buffer.alloc(length);
  const n = await readFull(handle, buffer, 0, length, start);
  if (stats) stats.bytesRead += n;
  return createHash('sha1').update(buffer.subarray(0, n)).update(`:${n}`).digest('hex');
}

/** sha1 of the first and of the last FINGERPRINT_BYTES of [0, size) of the file. */
async function fingerprints(handle: FileHandle, size: number, stats: ScanStats | null): Promise<Fingerprints> {
  const length = Math.min(FINGERPRINT_BYTES, size);
  return { head: await sha1Of(handle, 0, length, stats), tail: await sha1Of(handle, size - length, length, stats) };
}

interface IndexData extends Fingerprints {
  path: string;
  dev: number;
  ino: number;
  scannedSize: number;
  mtimeMs: number;
  messages: MessageInfo[];
}

const INDEX_MAGIC = Buffer.from(`MAILSRV-MBOX-INDEX ${INDEX_VERSION}\n`, 'latin1');
/** float64 columns of the index: offset, contentOffset, contentLength, spanLength, size */
const COLUMNS = 5;

export function indexPathOf(path: string, indexDir: string): string {
  return join(indexDir, `${basename(path)}.idx`);
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** The index file, in parts: magic line, JSON header line (padded to 8 bytes), float64 columns, UIDLs. */
function encodeIndex(data: IndexData): Buffer[] {
  const messages = data.messages;
  const n = messages.length;
  const numbers = new Float64Array(n * COLUMNS);
  for (let i = 0; i < n; i++) {
    const m = messages[i]!;
    numbers[i] = m.offset;
    numbers[n + i] = m.contentOffset;
    numbers[2 * n + i] = m.contentLength;
    numbers[3 * n + i] = m.spanLength;
    numbers[4 * n + i] = m.size;
  }
  const columns = Buffer.from(numbers.buffer);
  const uidls = Buffer.from(messages.map((m) => m.uidl).join('\n'), 'latin1');
  const sha1 = createHash('sha1').update(columns).update(uidls).digest('hex');
  const { path, dev, ino, scannedSize, mtimeMs, head, tail } = data;
  const header = JSON.stringify({
    path,
    dev,
    ino,
    scannedSize,
    mtimeMs,
    head,
    tail,
    count: n,
    endian: endianness(),
    sha1,
  });
  const headerBytes = INDEX_MAGIC.length + Buffer.byteLength(header) + 1;
  const padding = ' '.repeat((8 - (headerBytes % 8)) % 8);
  return [INDEX_MAGIC, Buffer.from(`${header}${padding}\n`, 'utf8'), columns, uidls];
}

/** Whether the messages lie in order inside [0, scannedSize), each content inside its span. */
function consistent(messages: readonly MessageInfo[], scannedSize: number): boolean {
  let previousEnd = 0;
  for (const { offset, contentOffset, contentLength, spanLength, size } of messages) {
    const end = offset + spanLength;
    // positive form, so that NaN fails too; integers: the checksum vouches for what we wrote
    if (
      !(
        offset >= previousEnd &&
        contentOffset >= offset &&
        contentLength >= 0 &&
        contentOffset + contentLength <= end &&
        end <= scannedSize &&
        size >= 0
      )
    ) {
      return false;
    }
    previousEnd = end;
  }
  return true;
}

/** The index file's content, or null unless it is intact, of this mailbox, and self-consistent. */
function decodeIndex(file: Buffer, path: string): IndexData | null {
  if (!file.subarray(0, INDEX_MAGIC.length).equals(INDEX_MAGIC)) return null;
  const newline = file.indexOf(LF, INDEX_MAGIC.length);
  if (newline === -1) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(file.toString('utf8', INDEX_MAGIC.length, newline));
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const h = raw as Record<string, unknown>;
  if (h.path !== path || h.endian !== endianness() || typeof h.head !== 'string' || typeof h.tail !== 'string')
    return null;
  if (
    !isCount(h.dev) ||
    !isCount(h.ino) ||
    !isCount(h.scannedSize) ||
    !isCount(h.count) ||
    typeof h.mtimeMs !== 'number'
  )
    return null;
  const n = h.count;
  const start = newline + 1;
  const uidlStart = start + n * COLUMNS * 8;
  if (
    start % 8 !== 0 ||
    file.length < uidlStart ||
    createHash('sha1').update(file.subarray(start)).digest('hex') !== h.sha1
  )
    return null;
  const aligned = (file.byteOffset + start) % 8 === 0 ? file : Buffer.from(file);
  const numbers = new Float64Array(aligned.buffer, aligned.byteOffset + start, n * COLUMNS);
  const uidls = n === 0 ? [] : file.toString('latin1', uidlStart).split('\n');
  if (uidls.length !== n) return null;
  const messages: MessageInfo[] = new Array<MessageInfo>(n);
  for (let i = 0; i < n; i++) {
    messages[i] = {
      offset: numbers[i]!,
      contentOffset: numbers[n + i]!,
      contentLength: numbers[2 * n + i]!,
      spanLength: numbers[3 * n + i]!,
      size: numbers[4 * n + i]!,
      uidl: uidls[i]!,
    };
  }
  if (!consistent(messages, h.scannedSize)) return null;
  return {
    path,
    dev: h.dev,
    ino: h.ino,
    scannedSize: h.scannedSize,
    mtimeMs: h.mtimeMs,
    head: h.head,
    tail: h.tail,
    messages,
  };
}

/** Decoded index files, kept so that reopening an unchanged mailbox reads and builds nothing. */
interface CachedIndex {
  ino: number;
  size: number;
  mtimeMs: number;
  data: IndexData | null;
  messages: number;
}
/**
 * Index path → its decoded content, valid while the file keeps its inode, size and mtime (every
 * write renames a new file in). Least recently used first; at most MAX_CACHED_MESSAGES messages in
 * all (~150 bytes each). The MessageInfo objects are shared by every snapshot made from an entry:
 * nothing may modify them.
 */
const decodedIndexes = new Map<string, CachedIndex>();
const MAX_CACHED_MESSAGES = 300_000;
let cachedMessages = 0;

function forgetDecoded(indexPath: string): void {
  const old = decodedIndexes.get(indexPath);
  if (old === undefined) return;
  decodedIndexes.delete(indexPath);
  cachedMessages -= old.messages;
}

function rememberDecoded(
  indexPath: string,
  st: { ino: number; size: number; mtimeMs: number },
  data: IndexData | null,
): void {
  forgetDecoded(indexPath);
  const messages = data?.messages.length ?? 0;
  if (messages > MAX_CACHED_MESSAGES) return;
  decodedIndexes.set(indexPath, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, data, messages });
  cachedMessages += messages;
  for (const oldest of decodedIndexes.keys()) {
    if (cachedMessages <= MAX_CACHED_MESSAGES) break;
    forgetDecoded(oldest);
  }
}

async function readIndex(path: string, indexDir: string, onError: (error: Error) => void): Promise<IndexData | null> {
  const indexPath = indexPathOf(path, indexDir);
  let handle: FileHandle;
  try {
    handle = await fs.open(indexPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) onError(asError(err));
    return null;
  }
  try {
    const st = await handle.stat();
    const hit = decodedIndexes.get(indexPath);
    if (hit !== undefined && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs) {
      decodedIndexes.delete(indexPath);
      decodedIndexes.set(indexPath, hit);
      return hit.data?.path === path ? hit.data : null;
    }
    const data = decodeIndex(await handle.readFile(), path);
    rememberDecoded(indexPath, st, data);
    return data;
  } catch (err) {
    onError(asError(err));
    return null;
  } finally {
    await handle.close();
  }
}

async function writeIndex(data: IndexData, indexDir: string): Promise<void> {
  await fs.mkdir(indexDir, { recursive: true, mode: 0o700 });
  const target = indexPathOf(data.path, indexDir);
  const temporary = `${target}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  let written: Stats;
  try {
    const handle = await fs.open(temporary, 'wx', 0o600);
    try {
      await handle.writev(encodeIndex(data));
      written = await handle.stat();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, target);
  } catch (err) {
    await fs.rm(temporary, { force: true });
    forgetDecoded(target);
    throw err;
  }
  // what was just written is what the next open would decode (a rename keeps inode and mtime)
  rememberDecoded(target, written, consistent(data.messages, data.scannedSize) ? data : null);
}

/**
 * Saves `snapshot` as the index of its mailbox, fingerprinting the file as it is now: for a
 * caller that rewrote the mailbox (under its lock) and knows the new messages, so that the next
 * open needs no rescan. Throws MailboxChangedError if the file is not the one the snapshot
 * describes (other dev/ino, or shorter than scannedSize).
 */
export async function saveIndex(snapshot: MailboxSnapshot, indexDir: string): Promise<void> {
  const handle = await fs.open(snapshot.path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = await handle.stat();
    if (st.dev !== snapshot.dev || st.ino !== snapshot.ino)
      throw new MailboxChangedError(snapshot.path, 'the file was replaced');
    if (st.size < snapshot.scannedSize)
      throw new MailboxChangedError(snapshot.path, `it is shorter than ${snapshot.scannedSize} bytes`);
    const prints = await fingerprints(handle, snapshot.scannedSize, null);
    await writeIndex({ ...snapshot, mtimeMs: st.mtimeMs, ...prints }, indexDir);
  } finally {
    await handle.close();
  }
}

/**
 * Scans the mbox file at `path` (up to `options.upTo`) and returns its messages; see the top of
 * this file for the rules. A missing file is an empty mailbox (dev = ino = 0).
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
    const index = await readIndex(path, options.indexDir, onIndexError);
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
