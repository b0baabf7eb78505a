// Streams one message of an mbox mailbox as POP3 RETR/TOP sends it, before dot-stuffing:
// every line ends in CRLF (an LF gets its CR, an existing CRLF stays), one `>` is dropped from
// lines matching `^>+From ` (mboxrd), a last line without LF gets CRLF. For RETR that is exactly
// MessageInfo.size bytes (scan.ts counts by the same rules). Only
// [contentOffset, contentOffset + contentLength) is used, read through a FileWindow: one 64 KiB
// buffer over the file that a session shares between the messages it sends, so a run of small
// messages (RETR 1, RETR 2, ... pipelined) costs one read(2) per 64 KiB, not one per message.
// Each piece is converted in bulk: without CR or `>` at a line start (most mail), one string
// replace of LF by CRLF; otherwise line by line into one output buffer. At most the first `>`
// and 4 bytes of `From` of a line are held back.
//
// A plain pull reader, not a stream: the caller asks for the next piece when it can take it
// (that is the backpressure).
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { MailboxChangedError, type MessageInfo } from './mailbox.js';

/** bytes of a FileWindow: one read(2), and the largest piece a reader converts at once */
const WINDOW_BYTES = 64 * 1024;
const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const FROM_ = Buffer.from('From ', 'latin1');
const LF_GT = Buffer.from('\n>', 'latin1');

/**
 * Where convert() builds a piece: every reader shares it (convert runs to the end without
 * awaiting). An LF becomes at most two bytes and a held-back prefix adds at most five, so twice
 * the largest input plus 8 always fits.
 */
const scratch = Buffer.allocUnsafe(2 * WINDOW_BYTES + 8);
/** lines shorter than this are copied byte by byte: cheaper than a Buffer.copy call */
const NATIVE_COPY_MIN = 256;

/** Copies from[start, end) to to[at...]; returns the offset after the copy. */
function copyBytes(from: Buffer, start: number, end: number, to: Buffer, at: number): number {
  if (end - start >= NATIVE_COPY_MIN) return at + from.copy(to, at, start, end);
  for (let i = start; i < end; i++) to[at++] = from[i]!;
  return at;
}

export interface RetrieveOptions {
  /** TOP: the header block, the blank line, and this many body lines; undefined: the whole message (RETR) */
  bodyLines?: number;
  /** the file at `path`, already open, with its read buffer: read through it, left open (the caller's to close) */
  window?: FileWindow;
}

/**
 * The last 64 KiB read from an open file: a read that falls inside it costs no I/O. What it
 * returns is valid until its next read.
 */
export class FileWindow {
  private buffer: Buffer | null = null;
  /** file offsets the buffer holds: [start, end) */
  private start = 0;
  private end = 0;

  constructor(readonly handle: FileHandle) {}

  /** Up to `length` bytes of the file from `position` (fewer at the window's end; empty at the file's end). */
  async read(position: number, length: number): Promise<Buffer> {
    this.buffer ??= Buffer.allocUnsafe(WINDOW_BYTES);
    if (position < this.start || position >= this.end) {
      this.start = position;
      this.end = position;
      const { bytesRead } = await this.handle.read(this.buffer, 0, WINDOW_BYTES, position);
      this.end = position + bytesRead;
    }
    return this.buffer.subarray(position - this.start, Math.min(this.end, position + length) - this.start);
  }

  close(): Promise<void> {
    this.buffer = null;
    this.end = this.start;
    return this.handle.close();
  }
}

export class MessageReader implements AsyncIterable<Buffer> {
  /** the window reads go through; null until the path is opened (or once closed) */
  private window: FileWindow | null;
  /** the window (and its file) was opened here, so it is closed here */
  private readonly ownsWindow: boolean;
  private position: number;
  private remaining: number;
  /** all returned (or failed, or closed): next() gives null */
  private finished = false;
  /** at the start of a line, still inside its `>*From ` prefix check */
  private atLineStart = true;
  /** the line's first `>` is held back (the one to drop if `From ` follows the run) */
  private heldGt = false;
  /** bytes of `From ` matched after the `>` run (held back) */
  private matched = 0;
  /** bytes of the current line so far, before its LF */
  private lineBytes = 0;
  /** the last byte of the current line so far is CR */
  private lastCR = false;
  private inHeader = true;
  /** body lines still to send for TOP; null for RETR */
  private bodyLeft: number | null;

  constructor(
    private readonly path: string,
    message: MessageInfo,
    bodyLines: number | undefined,
    window: FileWindow | undefined,
  ) {
    this.window = window ?? null;
    this.ownsWindow = window === undefined;
    this.position = message.contentOffset;
    this.remaining = message.contentLength;
    this.bodyLeft = bodyLines ?? null;
  }

  /** The next piece of the message (never empty, the caller's to keep), or null once it is all out. */
  async next(): Promise<Buffer | null> {
    if (this.finished) return null;
    try {
      this.window ??= new FileWindow(await fs.open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW));
      let piece: Buffer | null = null;
      let done = false;
      while (piece === null && !done) {
        if (this.remaining === 0) {
          piece = this.endOfContent();
          done = true;
          break;
        }
        const input = await this.window.read(this.position, this.remaining);
        if (input.length === 0) throw new MailboxChangedError(this.path, `message at offset ${this.position} is shorter than expected`);
        this.position += input.length;
        this.remaining -= input.length;
        ({ piece, done } = this.convert(input));
      }
      if (done) await this.close();
      return piece;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Stops early: closes the file if it was opened here. Safe to call more than once. */
  async close(): Promise<void> {
    this.finished = true;
    const window = this.window;
    this.window = null;
    if (window !== null && this.ownsWindow) await window.close();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    try {
      for (let chunk = await this.next(); chunk !== null; chunk = await this.next()) yield chunk;
    } finally {
      await this.close();
    }
  }

  /** Converts one piece of content into a new buffer (null if all of it is held back); `done` once TOP has all its lines. */
  private convert(chunk: Buffer): { piece: Buffer | null; done: boolean } {
    const len = chunk.length;
    if (this.plainLines(chunk)) {
      // the usual case, in bulk: no CR, no line starting with `>`, not TOP: only LF → CRLF
      const lastLF = chunk.lastIndexOf(LF);
      this.lineBytes = lastLF === -1 ? this.lineBytes + len : len - lastLF - 1;
      this.atLineStart = lastLF === len - 1;
      return { piece: Buffer.from(chunk.toString('latin1').replaceAll('\n', '\r\n'), 'latin1'), done: false };
    }
    const out = scratch;
    let o = 0;
    let pos = 0;
    let done = false;
    while (pos < len) {
      if (this.atLineStart) {
        const b = chunk[pos];
        if (this.matched === 0 && b === GT) {
          // hold the first `>` of the line; the rest of the run can go out at once
          const start = this.heldGt ? pos : pos + 1;
          this.heldGt = true;
          let end = pos + 1;
          while (end < len && chunk[end] === GT) end++;
          o += chunk.copy(out, o, start, end);
          this.lineBytes += end - pos;
          pos = end;
          continue;
        }
        if (this.heldGt && b === FROM_[this.matched]) {
          this.lineBytes++;
          pos++;
          if (++this.matched === FROM_.length) {
            o += FROM_.copy(out, o);
            this.heldGt = false;
            this.matched = 0;
            this.atLineStart = false;
            this.lastCR = false;
          }
          continue;
        }
        o = this.releasePrefix(out, o);
      }
      const nl = chunk.indexOf(LF, pos);
      if (nl === -1) {
        o = copyBytes(chunk, pos, len, out, o);
        this.lineBytes += len - pos;
        this.lastCR = chunk[len - 1] === CR;
        break;
      }
      const crBeforeLF = nl > pos ? chunk[nl - 1] === CR : this.lastCR;
      o = copyBytes(chunk, pos, nl, out, o);
      if (!crBeforeLF) out[o++] = CR;
      out[o++] = LF;
      const lineBytes = this.lineBytes + (nl - pos);
      pos = nl + 1;
      this.atLineStart = true;
      this.lineBytes = 0;
      this.lastCR = false;
      if (this.bodyLeft !== null && this.lineDone(lineBytes === 0 || (lineBytes === 1 && crBeforeLF))) {
        done = true;
        break;
      }
    }
    // a copy of just the bytes made (from Node's buffer pool when small): scratch is reused
    return { piece: o > 0 ? Buffer.from(out.subarray(0, o)) : null, done };
  }

  /** Whether converting the chunk is only adding CR before every LF. */
  private plainLines(chunk: Buffer): boolean {
    if (this.bodyLeft !== null || this.heldGt || this.matched > 0 || this.lastCR) return false;
    if (this.atLineStart && chunk[0] === GT) return false;
    return chunk.indexOf(CR) === -1 && chunk.indexOf(LF_GT) === -1;
  }

  /** TOP: counts a finished line; true when the requested lines are all out. */
  private lineDone(blank: boolean): boolean {
    if (this.inHeader) {
      if (blank) this.inHeader = false;
      return blank && this.bodyLeft === 0;
    }
    this.bodyLeft = this.bodyLeft! - 1;
    return this.bodyLeft === 0;
  }

  /** The held-back start of the line turned out not to be `>+From `: writes it at out[o]; returns the new o. */
  private releasePrefix(out: Buffer, o: number): number {
    if (this.heldGt) {
      out[o++] = GT;
      this.lastCR = false;
    }
    if (this.matched > 0) o += FROM_.copy(out, o, 0, this.matched);
    this.heldGt = false;
    this.matched = 0;
    this.atLineStart = false;
    return o;
  }

  /** All content read: a last line without LF gets CRLF (null when nothing is left to send). */
  private endOfContent(): Buffer | null {
    if (this.atLineStart && !this.heldGt && this.matched === 0 && this.lineBytes === 0) return null;
    const out = Buffer.allocUnsafe(8);
    let o = this.atLineStart ? this.releasePrefix(out, 0) : 0;
    out[o++] = CR;
    out[o++] = LF;
    return out.subarray(0, o);
  }
}

/**
 * The message as POP3 sends it (before dot-stuffing): RETR without `bodyLines`, exactly
 * `message.size` bytes; TOP with `bodyLines: n`: the header block, the blank line and the first
 * n body lines (a message without a blank line: all of it, as headers). Reading fails with
 * MailboxChangedError if the file ends before the message does. Without `options.window` the
 * file is opened at the first read and closed at the end, on an error, or by close().
 */
export function retrieveMessage(path: string, message: MessageInfo, options: RetrieveOptions = {}): MessageReader {
  const { bodyLines, window } = options;
  if (bodyLines !== undefined && !(Number.isSafeInteger(bodyLines) && bodyLines >= 0)) {
    throw new RangeError(`bodyLines must be a non-negative integer, not ${bodyLines}`);
  }
  return new MessageReader(path, message, bodyLines, window);
}
