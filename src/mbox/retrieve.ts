// Streams one message of an mbox mailbox as POP3 RETR/TOP sends it, before dot-stuffing:
// every line ends in CRLF (an LF gets its CR, an existing CRLF stays), one `>` is dropped from
// lines matching `^>+From ` (mboxrd), a last line without LF gets CRLF. For RETR that is exactly
// MessageInfo.size bytes (scan.ts counts by the same rules). Only
// [contentOffset, contentOffset + contentLength) is read, in chunks of at most 64 KiB; at most
// the first `>` and 4 bytes of `From` of a line are held back.
//
// A plain pull reader, not a stream: the caller asks for the next chunk when it can take it
// (that is the backpressure), and may pass a file handle it keeps open for many messages.
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { MailboxChangedError, type MessageInfo } from './mailbox.js';

const CHUNK = 64 * 1024;
const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const CRLF = Buffer.from('\r\n', 'latin1');
const LF_ONLY = CRLF.subarray(1);
const GT_BUF = Buffer.from('>', 'latin1');
const FROM_ = Buffer.from('From ', 'latin1');

export interface RetrieveOptions {
  /** TOP: the header block, the blank line, and this many body lines; undefined: the whole message (RETR) */
  bodyLines?: number;
  /** the file at `path`, already open: read from it, left open (the caller's to close) */
  handle?: FileHandle;
}

export class MessageReader implements AsyncIterable<Buffer> {
  /** the handle reads go to; null until the path is opened (or once closed) */
  private handle: FileHandle | null;
  /** the handle was opened here, so it is closed here */
  private readonly ownsHandle: boolean;
  /** read buffer, reused: what is returned is always a copy */
  private readonly buffer: Buffer;
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
    handle: FileHandle | undefined,
  ) {
    this.handle = handle ?? null;
    this.ownsHandle = handle === undefined;
    this.position = message.contentOffset;
    this.remaining = message.contentLength;
    this.bodyLeft = bodyLines ?? null;
    this.buffer = Buffer.allocUnsafe(Math.max(1, Math.min(CHUNK, message.contentLength)));
  }

  /** The next piece of the message (never empty), or null once it is all out. */
  async next(): Promise<Buffer | null> {
    if (this.finished) return null;
    try {
      this.handle ??= await fs.open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
      const out: Buffer[] = [];
      let done = false;
      while (out.length === 0 && !done) {
        if (this.remaining === 0) {
          this.endOfContent(out);
          done = true;
          break;
        }
        const { bytesRead } = await this.handle.read(this.buffer, 0, Math.min(this.buffer.length, this.remaining), this.position);
        if (bytesRead === 0) throw new MailboxChangedError(this.path, `message at offset ${this.position} is shorter than expected`);
        this.position += bytesRead;
        this.remaining -= bytesRead;
        done = this.convert(this.buffer.subarray(0, bytesRead), out);
      }
      if (done) await this.close();
      return out.length > 0 ? Buffer.concat(out) : null;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Stops early: closes the file if it was opened here. Safe to call more than once. */
  async close(): Promise<void> {
    this.finished = true;
    const handle = this.handle;
    this.handle = null;
    if (handle !== null && this.ownsHandle) await handle.close();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    try {
      for (let chunk = await this.next(); chunk !== null; chunk = await this.next()) yield chunk;
    } finally {
      await this.close();
    }
  }

  /** Converts one chunk of content into `out`; true once TOP has all its lines. */
  private convert(chunk: Buffer, out: Buffer[]): boolean {
    const len = chunk.length;
    let pos = 0;
    while (pos < len) {
      if (this.atLineStart) {
        const b = chunk[pos];
        if (this.matched === 0 && b === GT) {
          // hold the first `>` of the line; the rest of the run can go out at once
          const start = this.heldGt ? pos : pos + 1;
          this.heldGt = true;
          let end = pos + 1;
          while (end < len && chunk[end] === GT) end++;
          if (end > start) out.push(chunk.subarray(start, end));
          this.lineBytes += end - pos;
          pos = end;
          continue;
        }
        if (this.heldGt && b === FROM_[this.matched]) {
          this.lineBytes++;
          pos++;
          if (++this.matched === FROM_.length) {
            out.push(FROM_);
            this.heldGt = false;
            this.matched = 0;
            this.atLineStart = false;
            this.lastCR = false;
          }
          continue;
        }
        this.releasePrefix(out);
      }
      const nl = chunk.indexOf(LF, pos);
      if (nl === -1) {
        out.push(chunk.subarray(pos));
        this.lineBytes += len - pos;
        this.lastCR = chunk[len - 1] === CR;
        break;
      }
      const crBeforeLF = nl > pos ? chunk[nl - 1] === CR : this.lastCR;
      if (nl > pos) out.push(chunk.subarray(pos, nl));
      out.push(crBeforeLF ? LF_ONLY : CRLF);
      const lineBytes = this.lineBytes + (nl - pos);
      pos = nl + 1;
      this.atLineStart = true;
      this.lineBytes = 0;
      this.lastCR = false;
      if (this.bodyLeft !== null && this.lineDone(lineBytes === 0 || (lineBytes === 1 && crBeforeLF))) return true;
    }
    return false;
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

  /** The held-back start of the line turned out not to be `>+From `: send it. */
  private releasePrefix(out: Buffer[]): void {
    if (this.heldGt) {
      out.push(GT_BUF);
      this.lastCR = false;
    }
    if (this.matched > 0) out.push(FROM_.subarray(0, this.matched));
    this.heldGt = false;
    this.matched = 0;
    this.atLineStart = false;
  }

  /** All content read: a last line without LF gets CRLF. */
  private endOfContent(out: Buffer[]): void {
    if (this.atLineStart && !this.heldGt && this.matched === 0 && this.lineBytes === 0) return;
    if (this.atLineStart) this.releasePrefix(out);
    out.push(CRLF);
  }
}

/**
 * The message as POP3 sends it (before dot-stuffing): RETR without `bodyLines`, exactly
 * `message.size` bytes; TOP with `bodyLines: n`: the header block, the blank line and the first
 * n body lines (a message without a blank line: all of it, as headers). Reading fails with
 * MailboxChangedError if the file ends before the message does. Without `options.handle` the
 * file is opened at the first read and closed at the end, on an error, or by close().
 */
export function retrieveMessage(path: string, message: MessageInfo, options: RetrieveOptions = {}): MessageReader {
  const { bodyLines, handle } = options;
  if (bodyLines !== undefined && !(Number.isSafeInteger(bodyLines) && bodyLines >= 0)) {
    throw new RangeError(`bodyLines must be a non-negative integer, not ${bodyLines}`);
  }
  return new MessageReader(path, message, bodyLines, handle);
}
