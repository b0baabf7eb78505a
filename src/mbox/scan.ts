// Reads an mbox mailbox for POP3 (SPEC §3, §6): one streaming pass finds the messages, their
// wire sizes and UIDLs; an index in `indexDir` lets the next open of an unchanged or
// only-appended mailbox skip what was already scanned.
//
// Messages: a message starts at a line beginning `From ` at the very top of the file or right
// after a blank line (popa3d's and mutt's rule); `From ` lines elsewhere are content, and bytes
// before the first such line are ignored. Lines end in LF or CRLF on disk; a blank line is one
// with nothing before its LF or CRLF. The blank line right before the next From_ line (or one
// final blank line at the end of the scanned part) is the separator, not content. Wire size
// (RETR octets): every content line ends in CRLF (LF counts 2, an existing CRLF 2), one `>` is
// dropped from lines matching `^>+From ` (mboxrd; an mboxo `>From ` loses its `>` too), a last
// line without LF gets CRLF. retrieve.ts streams exactly that.
//
// UIDL: the X-UIDL value if the header block has one (the first `X-UIDL:` field, unfolded and
// trimmed of SP/TAB, used only if it is then 1-70 characters 0x21-0x7E; a field value over
// 1 KiB is not looked at), else popa3d's UIDL,
// so users moving from popa3d keep theirs. popa3d (mailbox.c) MD5-hashes raw header lines as
// they are on disk: name, colon, value, line end (LF, or CRLF), folded continuation lines
// included, in file order, of exactly these fields, up to the first blank line:
//   - the first `Received:` field only;
//   - every `Delivered-To:` field;
//   - `Date:` and `Message-ID:` fields that come before the first `Received:`;
//   - every `X-Delivery-ID:` field (popa3d tests a capital `X`, the rest case-insensitively).
// A field matches when its line starts with the name and the colon, case-insensitively (no
// space before the colon); the From_ line is not hashed. The UIDL is 16 lowercase hex digits of
// the digest's bytes 3,2,1,0,7,6,5,4 (popa3d prints two little-endian 32-bit words). A message
// without any of these fields hashes the empty string.
// Uniqueness (popa3d has none): messages get their UIDLs in file order; a value already taken
// by an earlier message is replaced by the lowercase hex MD5 of `value NUL fromline NUL n`
// (fromline: the From_ line's bytes after `From `, line end excluded, at most 1 KiB) for the
// first n = 1, 2, ... not taken. So the first copy keeps the popa3d value, a twin delivered at
// another time (another From_ date) gets a value that depends only on its own bytes, and
// twins with equal From_ lines are numbered in file order. Appends never change an existing
// UIDL; deleting a message changes another's UIDL only if that one was its later twin (with
// byte-identical hashed headers, the content allows no better).
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
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, join } from 'node:path';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from './mailbox.js';
import { isErrno } from '../fsutil.js';

/** bytes per read(2) of a scan */
const READ_SIZE = 512 * 1024;
/** a line start shorter than this is carried into the next read, so it is seen whole */
const CARRY_MAX = 64 * 1024;
const FINGERPRINT_BYTES = 4096;
const FROM_KEY_MAX = 1024;
/** longest unfolded X-UIDL field value kept (a valid one is at most 70 characters) */
const XUIDL_MAX = 1024;
const INDEX_VERSION = 1;

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const GT = 0x3e;
const UPPER_F = 0x46;
const UPPER_X = 0x58;
const FROM_ = Buffer.from('From ', 'latin1');
const EMPTY_MD5 = createHash('md5').digest();
const NUL = Buffer.from([0]);

const RECEIVED = Buffer.from('received:', 'latin1');
const DELIVERED_TO = Buffer.from('delivered-to:', 'latin1');
const DATE = Buffer.from('date:', 'latin1');
const MESSAGE_ID = Buffer.from('message-id:', 'latin1');
const X_DELIVERY_ID = Buffer.from('x-delivery-id:', 'latin1');
const X_UIDL = Buffer.from('x-uidl:', 'latin1');

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

/** Whether data[p, end) starts with `name` (lowercase ASCII), ignoring ASCII case. */
function startsWithI(data: Buffer, p: number, end: number, name: Buffer): boolean {
  if (end - p < name.length) return false;
  for (let i = 0; i < name.length; i++) {
    let b = data[p + i];
    if (b >= 0x41 && b <= 0x5a) b += 0x20;
    if (b !== name[i]) return false;
  }
  return true;
}

/** Whether the line at data[p, nl) (nl: its LF or the end of the data) starts with `From `. */
function isFromLine(data: Buffer, p: number, nl: number): boolean {
  return nl - p >= 5 && data[p] === UPPER_F && data[p + 1] === 0x72 && data[p + 2] === 0x6f && data[p + 3] === 0x6d && data[p + 4] === SP;
}

/** Whether the line at data[p, nl), which starts with `>`, matches `^>+From `. */
function isQuotedFrom(data: Buffer, p: number, nl: number): boolean {
  let q = p + 1;
  while (q < nl && data[q] === GT) q++;
  return isFromLine(data, q, nl);
}

function popa3dUidl(digest: Buffer): string {
  return Buffer.from([digest[3], digest[2], digest[1], digest[0], digest[7], digest[6], digest[5], digest[4]]).toString('hex');
}

function validUidl(value: string): boolean {
  return /^[\x21-\x7e]{1,70}$/.test(value);
}

/** Line-at-a-time state machine over the bytes of [from, end) of an mbox file. */
class MboxParser {
  readonly messages: MessageInfo[] = [];
  /** the previous complete line was blank (true at the top: a From_ line may start there) */
  private prevBlank = true;
  private blankStart = 0;
  /** the first fragment of the current line (no LF in it yet) has been handled */
  private midLine = false;
  /** the last fragment of the current line ended in CR */
  private lastCR = false;
  /** `^>+From ` match of a fragmented line: -1 decided, 0 in the `>` run, k: k bytes of `From ` matched */
  private gtState = -1;
  /** the first line must be a From_ line (a rescan from an indexed message) */
  private requireFrom: boolean;

  private inMsg = false;
  /** the current message's From_ line has not reached its LF yet */
  private fromPending = false;
  private msgOffset = 0;
  private contentOffset = 0;
  private size = 0;
  private inHeader = false;
  private fixed = false;
  private received = false;
  private hash: Hash | null = null;
  private fromKey = '';
  /** X-UIDL field: 0 none yet, 1 collecting its value (folded lines too), 2 value complete */
  private xuidlState = 0;
  private xuidl = '';
  private xuidlTooLong = false;

  /** last n used for a UIDL value and From_ line (twins): the next twin tries from n + 1 */
  private readonly lastTwin = new Map<string, number>();

  constructor(
    private readonly used: Set<string>,
    requireFrom: boolean,
  ) {
    this.requireFrom = requireFrom;
  }

  /**
   * Handles data (starting at file offset `base`) and returns how many of its bytes were
   * consumed: an incomplete short last line is left for the next call unless `eof`.
   */
  feed(data: Buffer, base: number, eof: boolean): number {
    const len = data.length;
    let p = 0;
    if (this.midLine) {
      const nl = data.indexOf(LF);
      const end = nl === -1 ? len : nl + 1;
      this.continueLine(data, end, nl !== -1, base);
      if (nl === -1) {
        if (eof) this.endUnterminated();
        return len;
      }
      p = end;
    }
    while (p < len) {
      const nl = data.indexOf(LF, p);
      if (nl === -1) {
        if (!eof && len - p < CARRY_MAX) return p;
        this.firstFragment(data, p, base, eof);
        return len;
      }
      this.line(data, p, nl, base);
      p = nl + 1;
    }
    return len;
  }

  /** Ends the scan at file offset `end` and returns all messages. */
  finish(end: number): MessageInfo[] {
    if (this.inMsg) this.finishMessage(end);
    return this.messages;
  }

  /** A complete line data[p, nl] (nl: its LF). */
  private line(data: Buffer, p: number, nl: number, base: number): void {
    const c = data[p];
    const contentEnd = nl > p && data[nl - 1] === CR ? nl - 1 : nl;
    if (this.prevBlank && c === UPPER_F && isFromLine(data, p, nl)) {
      this.startMessage(data, p, contentEnd, base);
      this.contentOffset = base + nl + 1;
      return;
    }
    if (this.requireFrom) throw new ResumeMismatch();
    const blank = contentEnd === p;
    if (this.inMsg) {
      let add = nl + 2 - p;
      if (contentEnd !== nl) add--;
      if (c === GT && isQuotedFrom(data, p, nl)) add--;
      this.size += add;
      if (this.inHeader) {
        if (blank) this.inHeader = false;
        else this.headerFragment(data, p, nl + 1, contentEnd, true);
      }
    }
    this.prevBlank = blank;
    if (blank) this.blankStart = base + p;
  }

  /** The start data[p, len) of a line without LF: a long line (>= CARRY_MAX) or the last one. */
  private firstFragment(data: Buffer, p: number, base: number, eof: boolean): void {
    const len = data.length;
    const c = data[p];
    this.midLine = !eof;
    this.lastCR = data[len - 1] === CR;
    if (this.prevBlank && c === UPPER_F && isFromLine(data, p, len)) {
      this.startMessage(data, p, len, base);
      if (eof) this.contentOffset = base + len;
      else this.fromPending = true;
      return;
    }
    if (this.requireFrom) throw new ResumeMismatch();
    this.prevBlank = false;
    if (!this.inMsg) return;
    this.size += len - p;
    if (c === GT) {
      this.gtState = 0;
      this.continuePrefix(data, p + 1, len);
    }
    if (this.inHeader) this.headerFragment(data, p, len, len, true);
    if (eof) this.endUnterminated();
  }

  /** More of a line whose first fragment was handled: data[0, end), ending in its LF if `hasLF`. */
  private continueLine(data: Buffer, end: number, hasLF: boolean, base: number): void {
    if (hasLF) this.midLine = false;
    if (this.fromPending) {
      if (hasLF) {
        this.fromPending = false;
        this.contentOffset = base + end;
      }
      return;
    }
    if (this.inMsg) {
      this.size += end;
      if (this.gtState >= 0) this.continuePrefix(data, 0, end);
      if (this.inHeader) this.headerFragment(data, 0, end, end, false);
      if (hasLF) {
        const crBeforeLF = end >= 2 ? data[end - 2] === CR : this.lastCR;
        if (!crBeforeLF) this.size++;
      }
    }
    if (hasLF) this.gtState = -1;
    else if (end > 0) this.lastCR = data[end - 1] === CR;
  }

  /** Goes on matching `>+From ` at the start of a fragmented line over data[from, to). */
  private continuePrefix(data: Buffer, from: number, to: number): void {
    let k = this.gtState;
    for (let i = from; i < to && k >= 0; i++) {
      const b = data[i];
      if (k === 0 && b === GT) continue;
      if (b !== FROM_[k]) {
        k = -1;
      } else if (++k === FROM_.length) {
        this.size--;
        k = -1;
      }
    }
    this.gtState = k;
  }

  /** The last line of the scanned part has no LF: it gets CRLF on the wire. */
  private endUnterminated(): void {
    if (this.inMsg && !this.fromPending) this.size += 2;
    this.midLine = false;
    this.gtState = -1;
  }

  private startMessage(data: Buffer, p: number, contentEnd: number, base: number): void {
    if (this.inMsg) this.finishMessage(base + p);
    this.requireFrom = false;
    this.inMsg = true;
    this.prevBlank = false;
    this.msgOffset = base + p;
    this.size = 0;
    this.inHeader = true;
    this.fixed = false;
    this.received = false;
    this.hash = null;
    this.xuidlState = 0;
    this.xuidl = '';
    this.xuidlTooLong = false;
    this.fromKey = data.toString('latin1', p + FROM_.length, Math.min(contentEnd, p + FROM_.length + FROM_KEY_MAX));
  }

  /**
   * A header-block line fragment data[s, e) (e after its LF if it has one; contentEnd before
   * the line end); `atStart` if it begins the line.
   */
  private headerFragment(data: Buffer, s: number, e: number, contentEnd: number, atStart: boolean): void {
    let valueFrom = s;
    if (atStart) {
      const c = data[s];
      if (c !== SP && c !== TAB) {
        this.fixed = false;
        if (this.xuidlState === 1) this.xuidlState = 2;
        switch (c | 0x20) {
          case 0x72: // r
            if (!this.received && startsWithI(data, s, e, RECEIVED)) this.received = this.fixed = true;
            break;
          case 0x64: // d
            this.fixed = startsWithI(data, s, e, DELIVERED_TO) || (!this.received && startsWithI(data, s, e, DATE));
            break;
          case 0x6d: // m
            this.fixed = !this.received && startsWithI(data, s, e, MESSAGE_ID);
            break;
          case 0x78: // x
            this.fixed = c === UPPER_X && startsWithI(data, s, e, X_DELIVERY_ID);
            if (this.xuidlState === 0 && startsWithI(data, s, e, X_UIDL)) {
              this.xuidlState = 1;
              valueFrom = s + X_UIDL.length;
            }
            break;
        }
      }
    }
    if (this.fixed) (this.hash ??= createHash('md5')).update(data.subarray(s, e));
    if (this.xuidlState === 1) {
      if (!atStart || this.xuidl.length + (contentEnd - valueFrom) > XUIDL_MAX) this.xuidlTooLong = true;
      else this.xuidl += data.toString('latin1', valueFrom, contentEnd);
    }
  }

  /** The current message ends where the next one starts (or the scanned part ends): `next`. */
  private finishMessage(next: number): void {
    let contentEnd = next;
    let size = this.size;
    if (this.fromPending) {
      this.fromPending = false;
      this.contentOffset = next;
      size = 0;
    } else if (this.prevBlank) {
      contentEnd = this.blankStart;
      size -= 2;
    }
    this.messages.push({
      offset: this.msgOffset,
      contentOffset: this.contentOffset,
      contentLength: contentEnd - this.contentOffset,
      spanLength: next - this.msgOffset,
      size,
      uidl: this.takeUidl(),
    });
    this.inMsg = false;
  }

  private takeUidl(): string {
    const xuidl = this.xuidlState !== 0 && !this.xuidlTooLong ? this.xuidl.replace(/^[ \t]+|[ \t]+$/g, '') : '';
    const value = validUidl(xuidl) ? xuidl : popa3dUidl(this.hash ? this.hash.digest() : EMPTY_MD5);
    if (!this.used.has(value)) {
      this.used.add(value);
      return value;
    }
    // every n below the last one used for this value and From_ line is taken already
    const twinKey = `${value}\0${this.fromKey}`;
    for (let n = (this.lastTwin.get(twinKey) ?? 0) + 1; ; n++) {
      const derived = createHash('md5')
        .update(value, 'latin1')
        .update(NUL)
        .update(this.fromKey, 'latin1')
        .update(NUL)
        .update(String(n), 'latin1')
        .digest('hex');
      if (!this.used.has(derived)) {
        this.used.add(derived);
        this.lastTwin.set(twinKey, n);
        return derived;
      }
    }
  }
}

/** A rescan from an indexed message's offset found no From_ line there. */
class ResumeMismatch extends Error {}

/** Reads until `length` bytes are in or the file ends; returns the count read. */
async function readFull(handle: FileHandle, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, offset + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Feeds [from, to) of the file through the parser in READ_SIZE reads; returns where it ended. */
async function scanRange(handle: FileHandle, from: number, to: number, parser: MboxParser, stats: ScanStats): Promise<number> {
  const buffer = Buffer.allocUnsafe(READ_SIZE + CARRY_MAX);
  let carry = 0;
  let position = from;
  for (;;) {
    const want = Math.min(READ_SIZE, to - position);
    const n = want > 0 ? await readFull(handle, buffer, carry, want, position) : 0;
    position += n;
    stats.bytesRead += n;
    const eof = n < want || position >= to;
    const length = carry + n;
    const consumed = parser.feed(buffer.subarray(0, length), position - length, eof);
    if (eof) return position;
    carry = length - consumed;
    if (carry > 0) buffer.copy(buffer, 0, consumed, length);
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
  const header = JSON.stringify({ path, dev, ino, scannedSize, mtimeMs, head, tail, count: n, endian: endianness(), sha1 });
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
    if (!(offset >= previousEnd && contentOffset >= offset && contentLength >= 0 && contentOffset + contentLength <= end && end <= scannedSize && size >= 0)) {
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
  if (h.path !== path || h.endian !== endianness() || typeof h.head !== 'string' || typeof h.tail !== 'string') return null;
  if (!isCount(h.dev) || !isCount(h.ino) || !isCount(h.scannedSize) || !isCount(h.count) || typeof h.mtimeMs !== 'number') return null;
  const n = h.count;
  const start = newline + 1;
  const uidlStart = start + n * COLUMNS * 8;
  if (start % 8 !== 0 || file.length < uidlStart || createHash('sha1').update(file.subarray(start)).digest('hex') !== h.sha1) return null;
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
  return { path, dev: h.dev, ino: h.ino, scannedSize: h.scannedSize, mtimeMs: h.mtimeMs, head: h.head, tail: h.tail, messages };
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

function rememberDecoded(indexPath: string, st: { ino: number; size: number; mtimeMs: number }, data: IndexData | null): void {
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
    if (st.dev !== snapshot.dev || st.ino !== snapshot.ino) throw new MailboxChangedError(snapshot.path, 'the file was replaced');
    if (st.size < snapshot.scannedSize) throw new MailboxChangedError(snapshot.path, `it is shorter than ${snapshot.scannedSize} bytes`);
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
  if (options.upTo !== undefined && !isCount(options.upTo)) throw new RangeError(`upTo must be a byte count, not ${options.upTo}`);
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
