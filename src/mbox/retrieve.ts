// Sends one message of an mbox mailbox as POP3 RETR/TOP wants it: every line ends in CRLF (an
// LF gets its CR, an existing CRLF stays), one `>` is dropped from lines matching `^>+From `
// (mboxrd), a last line without LF gets CRLF. For RETR that is exactly MessageInfo.size bytes
// (parser.ts counts by the same rules). With `dotStuff`, a line starting with "." also gets one
// more "." in front (POP3's byte-stuffing, RFC 1939 §3), in the same pass; the size counts the
// bytes before that. Only [contentOffset, contentOffset + contentLength) is used.
//
// WireEncoder does the conversion, one byte loop over each piece (for mail's usual line lengths
// faster than a native call per line or a string replace; a piece without CR or a line starting
// with `>` or `.` only gets CRs, checked and converted 16 bytes at a time: crlf.ts),
// holding at most the first `>` and 4 bytes of `From` of a line between pieces. Reads go
// through a FileWindow: one 256 KiB buffer over the file that a session shares between the
// messages it sends, so a run of small messages (RETR 1, RETR 2, ... pipelined) costs one
// read(2) per 256 KiB, not one per message.
// MessageReader is a plain pull reader over a message, a piece per window read: the caller asks
// for the next piece when it can take it (that is the backpressure).
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { toPlainWire } from './crlf.js';
import { MailboxChangedError, type MessageInfo } from './mailbox.js';

/** bytes of a FileWindow: one read(2), and the largest piece a reader converts at once */
export const WINDOW_BYTES = 256 * 1024;
/** the longest piece MessageReader.next gives: the wire form of a window's worth of content */
export const OUTPUT_BYTES = encodedBound(WINDOW_BYTES);
const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const DOT = 0x2e;
const FROM_ = Buffer.from('From ', 'latin1');

export interface EncodeOptions {
  /** double a "." that starts a line (POP3) */
  dotStuff?: boolean;
  /** TOP: the header block, the blank line, and this many body lines; undefined: everything (RETR) */
  bodyLines?: number;
}

/**
 * The most bytes encode() writes for `inputBytes` bytes of input (an LF or a line-start "."
 * doubles; a held prefix adds 5).
 */
export function encodedBound(inputBytes: number): number {
  return 2 * inputBytes + 8;
}

/** Converts a message's content, given in consecutive pieces, to its wire form. */
export class WireEncoder {
  /** bytes produced before dot-stuffing: what RETR's size counts */
  wireBytes = 0;
  /** TOP has all its lines: the rest of the input is not wanted */
  done = false;
  private readonly dotStuff: boolean;
  /** body lines still to send for TOP; null for RETR */
  private bodyLeft: number | null;
  private inHeader = true;
  /** the next byte starts a line */
  private atLineStart = true;
  /** the line's first `>` is held back (the one to drop if `From ` follows the run) */
  private heldGt = false;
  /** bytes of `From ` matched after the `>` run (held back) */
  private matched = 0;
  /** the last byte of the current line so far is CR */
  private lastCR = false;
  /** bytes of the current line in earlier pieces (TOP: a blank line ends the headers) */
  private lineBytes = 0;

  constructor(options: EncodeOptions = {}) {
    this.dotStuff = options.dotStuff ?? false;
    this.bodyLeft = options.bodyLines ?? null;
  }

  /**
   * Encodes input[start, end) into out from offset o (out must have encodedBound(end - start)
   * bytes free there); returns the offset after the output. Stops early once `done`.
   */
  encode(input: Buffer, start: number, end: number, out: Buffer, o: number): number {
    if (this.mayBePlain(input, start, end)) {
      // most mail: the only change is a CR before every LF (-1: not so, the loop below does it)
      const after = toPlainWire(input, start, end, out, o, this.dotStuff);
      if (after >= 0) {
        this.atLineStart = input[end - 1] === LF;
        this.wireBytes += after - o;
        return after;
      }
    }
    const o0 = o;
    let stuffed = 0;
    let lineStart = start;
    let i = start;
    while (i < end && !this.done) {
      if (this.atLineStart) {
        const b = input[i]!;
        if (this.matched === 0 && b === GT) {
          // hold the first `>` of the line; the rest of the run goes out at once
          if (this.heldGt) out[o++] = GT;
          this.heldGt = true;
          i++;
          continue;
        }
        if (this.heldGt && b === FROM_[this.matched]) {
          i++;
          if (++this.matched === FROM_.length) {
            o += FROM_.copy(out, o);
            this.heldGt = false;
            this.matched = 0;
            this.atLineStart = false;
          }
          continue;
        }
        if (this.heldGt || this.matched > 0) {
          o = this.release(out, o);
        } else {
          this.atLineStart = false;
          if (b === DOT && this.dotStuff) {
            out[o++] = DOT;
            stuffed++;
          }
        }
      }
      // the rest of the line, up to and with its LF
      let lastCR = this.lastCR;
      let crBeforeLF = false;
      while (i < end) {
        const b = input[i++]!;
        if (b === LF) {
          if (!lastCR) out[o++] = CR;
          out[o++] = LF;
          crBeforeLF = lastCR;
          lastCR = false;
          this.atLineStart = true;
          break;
        }
        out[o++] = b;
        lastCR = b === CR;
      }
      this.lastCR = lastCR;
      if (this.atLineStart && this.bodyLeft !== null) {
        // i is just after the LF; the line had lineBytes + (i - 1 - lineStart) bytes before it
        const before = this.lineBytes + (i - 1 - lineStart);
        this.lineDone(before === 0 || (before === 1 && crBeforeLF));
        this.lineBytes = 0;
        lineStart = i;
      }
    }
    if (this.bodyLeft !== null) this.lineBytes += i - lineStart;
    this.wireBytes += o - o0 - stuffed;
    return o;
  }

  /**
   * Whether input[start, end) may need only CR before LF (toPlainWire checks the rest): not TOP,
   * nothing held from the previous piece, and it does not start a line with `>` or `.`.
   */
  private mayBePlain(input: Buffer, start: number, end: number): boolean {
    if (this.bodyLeft !== null || this.heldGt || this.matched > 0 || this.lastCR || start === end) return false;
    const first = input[start];
    return !(this.atLineStart && (first === GT || first === DOT));
  }

  /** At the end of the content: a held prefix and CRLF for a last line without LF (out needs 8 bytes free). */
  finish(out: Buffer, o: number): number {
    if (this.done) return o;
    const o0 = o;
    if (this.heldGt || this.matched > 0) o = this.release(out, o);
    if (!this.atLineStart) {
      out[o++] = CR;
      out[o++] = LF;
      this.atLineStart = true;
    }
    this.wireBytes += o - o0;
    return o;
  }

  /** The held-back start of the line turned out not to be `>+From `: writes it at out[o]; returns the new o. */
  private release(out: Buffer, o: number): number {
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

  /** TOP: counts a finished line; sets done when the requested lines are all out. */
  private lineDone(blank: boolean): void {
    if (this.inHeader) {
      if (blank) this.inHeader = false;
      this.done = blank && this.bodyLeft === 0;
      return;
    }
    this.bodyLeft = this.bodyLeft! - 1;
    this.done = this.bodyLeft === 0;
  }
}

/**
 * The last 256 KiB read from an open file: a read that falls inside it costs no I/O. What it
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

  /** The file's bytes [position, position + length) if the window holds them all (no I/O), else null. */
  holding(position: number, length: number): Buffer | null {
    if (this.buffer === null || position < this.start || position + length > this.end) return null;
    return this.buffer.subarray(position - this.start, position + length - this.start);
  }

  /**
   * The file's bytes [position, position + length) in one piece (length at most WINDOW_BYTES),
   * reading from `position` unless the window holds them all; fewer only at the file's end.
   */
  async span(position: number, length: number): Promise<Buffer> {
    if (length > WINDOW_BYTES) throw new RangeError(`span of ${length} bytes is over ${WINDOW_BYTES}`);
    if (position + length > this.end) this.end = this.start;
    return this.read(position, length);
  }

  close(): Promise<void> {
    this.buffer = null;
    this.end = this.start;
    return this.handle.close();
  }
}

export interface RetrieveOptions extends EncodeOptions {
  /** the file at `path`, already open, with its read buffer: read through it, left open (the caller's to close) */
  window?: FileWindow;
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
  readonly encoder: WireEncoder;

  constructor(
    private readonly path: string,
    message: MessageInfo,
    options: RetrieveOptions,
  ) {
    this.window = options.window ?? null;
    this.ownsWindow = options.window === undefined;
    this.position = message.contentOffset;
    this.remaining = message.contentLength;
    this.encoder = new WireEncoder(options);
  }

  /**
   * The next piece of the message (never empty), or null once it is all out. Without `into` the
   * piece is a buffer of its own, the caller's to keep; with it (at least OUTPUT_BYTES long) the
   * piece is a part of `into`, valid until `into` is written again, so a caller that streams a
   * big message can use a couple of buffers over and over instead of one per piece.
   */
  async next(into?: Buffer): Promise<Buffer | null> {
    if (into !== undefined && into.length < OUTPUT_BYTES)
      throw new RangeError(`an output buffer of ${into.length} bytes is under ${OUTPUT_BYTES}`);
    if (this.finished) return null;
    try {
      this.window ??= new FileWindow(await fs.open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW));
      for (;;) {
        if (this.remaining === 0 || this.encoder.done) {
          const out = into ?? Buffer.allocUnsafe(encodedBound(0));
          const end = this.encoder.finish(out, 0);
          await this.close();
          return end > 0 ? out.subarray(0, end) : null;
        }
        const input = await this.window.read(this.position, this.remaining);
        if (input.length === 0)
          throw new MailboxChangedError(this.path, `message at offset ${this.position} is shorter than expected`);
        this.position += input.length;
        this.remaining -= input.length;
        const out = into ?? Buffer.allocUnsafe(encodedBound(input.length));
        const end = this.encoder.encode(input, 0, input.length, out, 0);
        if (end > 0) return out.subarray(0, end);
      }
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
}

/**
 * The message as POP3 sends it: RETR without `bodyLines`, exactly `message.size` bytes before
 * dot-stuffing; TOP with `bodyLines: n`: the header block, the blank line and the first n body
 * lines (a message without a blank line: all of it, as headers). Reading fails with
 * MailboxChangedError if the file ends before the message does. Without `options.window` the
 * file is opened at the first read and closed at the end, on an error, or by close().
 */
export function retrieveMessage(path: string, message: MessageInfo, options: RetrieveOptions = {}): MessageReader {
  const { bodyLines } = options;
  if (bodyLines !== undefined && !(Number.isSafeInteger(bodyLines) && bodyLines >= 0)) {
    throw new RangeError(`bodyLines must be a non-negative integer, not ${bodyLines}`);
  }
  return new MessageReader(path, message, options);
}
