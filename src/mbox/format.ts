// mboxrd on-disk format: the From_ separator line and streaming quoting of message bodies
// (reading them back, unquoted, is retrieve.ts's job).
import { Transform, type TransformCallback } from 'node:stream';
import { oncePerSecond } from '../message/date.js';

const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const FROM_ = Buffer.from('From ', 'latin1');
const QUOTED_FROM_ = Buffer.from('>From ', 'latin1');
const CR_BUF = Buffer.from([CR]);
const NO_BYTES = Buffer.alloc(0);
/** room in an output buffer before its input, for bytes held back from before it (a CR, 4 of `From`) and a `>` */
const SLACK = 8;
/** the most end() adds: 4 held-back bytes of `From`, a CR, a missing newline, the separator line */
const MAX_END_BYTES = 7;

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** An upper bound of the From_ lines in `chunk` (every `From ` counts, at a line start or not). */
function countFromLines(chunk: Buffer): number {
  let count = 0;
  for (let at = chunk.indexOf(FROM_); at !== -1; at = chunk.indexOf(FROM_, at + 1)) count++;
  return count;
}

/** Pushes the collected output pieces of one chunk as a single Buffer (nothing if empty). */
function pushAll(stream: Transform, out: Buffer[]): void {
  if (out.length === 1) stream.push(out[0]);
  else if (out.length > 1) stream.push(Buffer.concat(out));
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** asctime(3) form of a date in UTC: `Wed Nov  5 11:54:57 2026` (day padded with a space). */
const asctimeUtc = oncePerSecond((date) => {
  const day = date.getUTCDate();
  return (
    `${DAYS[date.getUTCDay()]} ${MONTHS[date.getUTCMonth()]} ${day < 10 ? ` ${day}` : day} ` +
    `${pad2(date.getUTCHours())}:${pad2(date.getUTCMinutes())}:${pad2(date.getUTCSeconds())} ${date.getUTCFullYear()}`
  );
});

/**
 * The mbox separator line `From <sender> <asctime>\n`. The null sender `''` is written as
 * MAILER-DAEMON. A sender with whitespace, CR, LF or NUL would break the line and is refused.
 */
export function fromLine(sender: string, date: Date): string {
  if (/[\s\0]/.test(sender)) {
    throw new TypeError(`envelope sender not usable in a From_ line: ${JSON.stringify(sender)}`);
  }
  if (Number.isNaN(date.getTime())) {
    throw new TypeError('invalid date for From_ line');
  }
  return `From ${sender === '' ? 'MAILER-DAEMON' : sender} ${asctimeUtc(date)}\n`;
}

/**
 * Raw RFC 5322 message (CRLF or LF line ends) → mboxrd message body: LF line ends (a CR right
 * before LF is dropped, other CRs kept), `^>*From ` lines get one more `>`, a missing final
 * newline is added, and one blank separator line is appended.
 *
 * Incremental: write() takes the message in chunks of any size, end() finishes it; each call
 * adds its output to the array it is given. Buffering is bounded: at most the first 4 bytes of
 * a line (a partial `From`) and one CR are held back. A chunk is converted in one copy: it is
 * copied whole into its output buffer (a little way in, to leave room for the bytes the
 * quoting adds), and its lines are then moved down in place, each without its CR (no object
 * per line: a message of 100 KiB has ~1,300 of them). A message held in memory is converted
 * whole by quoteWhole(), into one buffer.
 */
export class MboxrdQuoting {
  /** still inside the `>*` run at the start of a line (nothing else seen on it yet) */
  private atLinePrefix = true;
  /** how many bytes of `From ` have been matched after the `>*` run (held back, 0..4) */
  private matched = 0;
  /** a CR ended the previous chunk: dropped if the next byte is LF */
  private pendingCr = false;
  /** the current output line has content (so a final newline is missing) */
  private lineOpen = false;
  /** the output buffer of the chunk being written, the input copied into it at `inputAt` */
  private target: Buffer = NO_BYTES;
  private inputAt = 0;
  /** how much of `target` is output */
  private written = 0;
  /** the last output buffer, used again by the next write() when it is big enough (reuseOutput) */
  private spare: Buffer = NO_BYTES;

  /**
   * reuseOutput: each write() puts its output in the buffer of the one before when it fits, so
   * what a write() adds to `out` is valid only until the next write() (for a caller that has
   * written it out by then: a big message then leaves no trail of dead buffers)
   */
  constructor(private readonly reuseOutput = false) {}

  write(chunk: Buffer, out: Buffer[]): void {
    // what the output may have beyond the input: the held-back bytes (a CR, up to 4 of `From`),
    // and a `>` per From_ line (one whose `From ` began in the previous chunk included)
    const inputAt = SLACK + countFromLines(chunk);
    const size = inputAt + chunk.length;
    const target = this.reuseOutput && this.spare.length >= size ? this.spare : Buffer.allocUnsafe(size);
    target.set(chunk, inputAt);
    this.convert(target, inputAt, chunk.length);
    if (this.written > 0) out.push(target.subarray(0, this.written));
    if (this.reuseOutput) this.spare = target;
    this.target = NO_BYTES;
  }

  /**
   * A whole message, in the pieces it is held in, as write() of each piece and then end() would
   * render it, in one buffer: no other buffer is made (nor the pieces joined first). Like end(),
   * it finishes the message: a new message needs a new MboxrdQuoting.
   */
  quoteWhole(pieces: readonly Buffer[]): Buffer {
    let length = 0;
    // a `From ` cut in two by a boundary between pieces is counted in neither: one more each
    let fromLines = pieces.length - 1;
    for (const piece of pieces) {
      length += piece.length;
      fromLines += countFromLines(piece);
    }
    const inputAt = SLACK + fromLines;
    const target = Buffer.allocUnsafe(inputAt + length + MAX_END_BYTES);
    let at = inputAt;
    for (const piece of pieces) {
      target.set(piece, at);
      at += piece.length;
    }
    this.convert(target, inputAt, length);
    this.written = this.finishInto(target, this.written);
    const whole = target.subarray(0, this.written);
    this.target = NO_BYTES;
    return whole;
  }

  /**
   * Converts the `len` input bytes at `inputAt` in `target` into output at its start. The
   * input is read where it lies: the output stays behind the next input byte to read, as the
   * room before `inputAt` covers whatever it gains on the input.
   */
  private convert(target: Buffer, inputAt: number, len: number): void {
    const chunk = target.subarray(inputAt, inputAt + len);
    this.target = target;
    this.inputAt = inputAt;
    this.written = 0;
    let pos = 0;
    while (pos < len) {
      if (this.pendingCr) {
        this.pendingCr = false;
        if (chunk[pos] !== LF) this.put(CR_BUF);
      }
      if (this.atLinePrefix) {
        const b = chunk[pos];
        if (this.matched === 0 && b === GT) {
          // a `>` run can be passed on at once: the extra `>` may go anywhere in the run
          let end = pos + 1;
          while (end < len && chunk[end] === GT) end++;
          this.copy(pos, end);
          this.lineOpen = true;
          pos = end;
          continue;
        }
        if (b === FROM_[this.matched]) {
          this.matched++;
          this.lineOpen = true;
          pos++;
          if (this.matched === FROM_.length) {
            this.put(QUOTED_FROM_);
            this.matched = 0;
            this.atLinePrefix = false;
          }
          continue;
        }
        const held = this.releasePrefix();
        if (held) this.put(held);
      }
      const nl = chunk.indexOf(LF, pos);
      if (nl === -1) {
        let end = len;
        if (chunk[len - 1] === CR) {
          end = len - 1;
          this.pendingCr = true;
        }
        this.copy(pos, end);
        this.lineOpen = true;
        pos = len;
        break;
      }
      const contentEnd = nl > pos && chunk[nl - 1] === CR ? nl - 1 : nl;
      this.copy(pos, contentEnd);
      this.target[this.written++] = LF;
      this.lineOpen = false;
      this.atLinePrefix = true;
      pos = nl + 1;
    }
  }

  /** Moves input bytes [start, end) of the chunk being written down to the end of the output. */
  private copy(start: number, end: number): void {
    if (end <= start) return;
    if (this.written !== this.inputAt + start)
      this.target.copyWithin(this.written, this.inputAt + start, this.inputAt + end);
    this.written += end - start;
  }

  /** Adds bytes that are not in the chunk (a held-back CR or `From` prefix, the quoting `>`). */
  private put(bytes: Buffer): void {
    this.target.set(bytes, this.written);
    this.written += bytes.length;
  }

  end(out: Buffer[]): void {
    const tail = Buffer.allocUnsafe(MAX_END_BYTES);
    out.push(tail.subarray(0, this.finishInto(tail, 0)));
  }

  /** Writes what end() adds (held-back bytes, a missing newline, the separator) at `at`; returns where it ends. */
  private finishInto(target: Buffer, at: number): number {
    const held = this.releasePrefix();
    if (held) at += held.copy(target, at);
    if (this.pendingCr) target[at++] = CR;
    if (this.lineOpen) target[at++] = LF;
    target[at++] = LF;
    return at;
  }

  /** The line turned out not to be a `>*From ` line: the held-back part of `From`, if any, to go out. */
  private releasePrefix(): Buffer | null {
    const held = this.matched > 0 ? FROM_.subarray(0, this.matched) : null;
    this.matched = 0;
    this.atLinePrefix = false;
    return held;
  }
}

/** MboxrdQuoting as a stream Transform. */
export class MboxrdQuoter extends Transform {
  private readonly quoting = new MboxrdQuoting();

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const out: Buffer[] = [];
    this.quoting.write(chunk, out);
    pushAll(this, out);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const out: Buffer[] = [];
    this.quoting.end(out);
    pushAll(this, out);
    callback();
  }
}
