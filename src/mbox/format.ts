// mboxrd on-disk format: the From_ separator line and streaming quoting of message bodies
// (reading them back, unquoted, is retrieve.ts's job).
import { Transform, type TransformCallback } from 'node:stream';

const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const FROM_ = Buffer.from('From ', 'latin1');
const QUOTED_FROM_ = Buffer.from('>From ', 'latin1');
const LF_BUF = Buffer.from([LF]);
const CR_BUF = Buffer.from([CR]);

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Pushes the collected output pieces of one chunk as a single Buffer (nothing if empty). */
function pushAll(stream: Transform, out: Buffer[]): void {
  if (out.length === 1) stream.push(out[0]);
  else if (out.length > 1) stream.push(Buffer.concat(out));
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** asctime(3) form of a date in UTC: `Wed Nov  5 11:54:57 2026` (day padded with a space). */
function asctimeUtc(date: Date): string {
  const day = date.getUTCDate();
  return (
    `${DAYS[date.getUTCDay()]} ${MONTHS[date.getUTCMonth()]} ${day < 10 ? ` ${day}` : day} ` +
    `${pad2(date.getUTCHours())}:${pad2(date.getUTCMinutes())}:${pad2(date.getUTCSeconds())} ${date.getUTCFullYear()}`
  );
}

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
 * Incremental: write() takes the message in chunks of any size, end() finishes it; the output
 * goes into the array each call is given (slices of the input where possible). Buffering is
 * bounded: at most the first 4 bytes of a line (a partial `From`) and one CR are held back.
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

  write(chunk: Buffer, out: Buffer[]): void {
    const len = chunk.length;
    let pos = 0;
    while (pos < len) {
      if (this.pendingCr) {
        this.pendingCr = false;
        if (chunk[pos] !== LF) {
          out.push(CR_BUF);
        }
      }
      if (this.atLinePrefix) {
        const b = chunk[pos];
        if (this.matched === 0 && b === GT) {
          // a `>` run can be passed on at once: the extra `>` may go anywhere in the run
          let end = pos + 1;
          while (end < len && chunk[end] === GT) end++;
          out.push(chunk.subarray(pos, end));
          this.lineOpen = true;
          pos = end;
          continue;
        }
        if (b === FROM_[this.matched]) {
          this.matched++;
          this.lineOpen = true;
          pos++;
          if (this.matched === FROM_.length) {
            out.push(QUOTED_FROM_);
            this.matched = 0;
            this.atLinePrefix = false;
          }
          continue;
        }
        this.releasePrefix(out);
      }
      const nl = chunk.indexOf(LF, pos);
      if (nl === -1) {
        let end = len;
        if (chunk[len - 1] === CR) {
          end = len - 1;
          this.pendingCr = true;
        }
        if (end > pos) out.push(chunk.subarray(pos, end));
        this.lineOpen = true;
        pos = len;
        break;
      }
      const contentEnd = nl > pos && chunk[nl - 1] === CR ? nl - 1 : nl;
      if (contentEnd > pos) out.push(chunk.subarray(pos, contentEnd));
      out.push(LF_BUF);
      this.lineOpen = false;
      this.atLinePrefix = true;
      pos = nl + 1;
    }
  }

  end(out: Buffer[]): void {
    this.releasePrefix(out);
    if (this.pendingCr) out.push(CR_BUF);
    if (this.lineOpen) out.push(LF_BUF);
    out.push(LF_BUF);
  }

  /** The line turned out not to be a `>*From ` line: emit the held-back part of `From`. */
  private releasePrefix(out: Buffer[]): void {
    if (this.matched > 0) out.push(FROM_.subarray(0, this.matched));
    this.matched = 0;
    this.atLinePrefix = false;
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
    callback(null, Buffer.concat(out));
  }
}
