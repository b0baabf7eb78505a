// The bytes of a mailbox index file: encoding a scanned mailbox's messages, and decoding them
// back only when the file is intact and self-consistent. No I/O here (index-store.ts reads and
// writes the files). Contract: the layout is specified in docs/formats.md, "Mailbox index";
// a change to it must bump INDEX_VERSION so that old files are rescanned, never misread.
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import type { MessageInfo } from './mailbox.js';

const INDEX_VERSION = 1;
const INDEX_MAGIC = Buffer.from(`MAILSRV-MBOX-INDEX ${INDEX_VERSION}\n`, 'latin1');
/** float64 columns of the index: offset, contentOffset, contentLength, spanLength, size */
const COLUMNS = 5;
const LF = 0x0a;

/** sha1 (hex) of the first and of the last 4 KiB of the indexed part of the mailbox */
export interface Fingerprints {
  head: string;
  tail: string;
}

/** What an index file says: which file it describes, as it was, and its messages. */
export interface IndexData extends Fingerprints {
  path: string;
  dev: number;
  ino: number;
  scannedSize: number;
  mtimeMs: number;
  messages: MessageInfo[];
}

/** Whether `value` is a whole number of bytes (or of anything): a safe integer, not negative. */
export function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** The index file, in parts: magic line, JSON header line (padded to 8 bytes), float64 columns, UIDLs. */
export function encodeIndex(data: IndexData): Buffer[] {
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
export function isConsistent(messages: readonly MessageInfo[], scannedSize: number): boolean {
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
export function decodeIndex(file: Buffer, path: string): IndexData | null {
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
  if (!isConsistent(messages, h.scannedSize)) return null;
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
