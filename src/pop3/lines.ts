// The POP3 command line reader: splits the bytes a client sends into command lines (CRLF, or a
// bare LF as telnet and nc users send), hands them out one at a time in the order they came
// (pipelined commands, RFC 2449 §6.6), and never buffers a line longer than the limit
// (RFC 2449 §4: 255 octets). A longer line is reported once as `too-long` and the rest of it,
// up to its LF, is dropped as it arrives.
//
// The reader only holds bytes: how much it may hold is the caller's business (the session
// pauses the socket while `buffered` is large, see connection.ts).

const LF = 0x0a;
const CR = 0x0d;

/** RFC 2449 §4: the longest command line, not counting its line end. */
export const MAX_COMMAND_LENGTH = 255;

export type LineEvent = { kind: 'line'; line: Buffer } | { kind: 'too-long' };

export class LineReader {
  private pending: Buffer = Buffer.alloc(0);
  /** inside an over-long line: drop everything up to the next LF */
  private discarding = false;

  /** maxLength: the longest line content accepted (without CR LF); may be changed between next() calls */
  constructor(public maxLength: number = MAX_COMMAND_LENGTH) {}

  /** bytes received and not handed out yet */
  get buffered(): number {
    return this.pending.length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    this.dropDiscarded();
  }

  /** Drops every byte received and not handed out yet (STLS: what came before TLS must not count). */
  clear(): void {
    this.pending = Buffer.alloc(0);
    this.discarding = false;
  }

  /** The next complete line (without its line end) or `too-long`; null when no full line is here yet. */
  next(): LineEvent | null {
    this.dropDiscarded();
    if (this.discarding || this.pending.length === 0) return null;
    // a line may take maxLength bytes, a CR and its LF
    const window = Math.min(this.pending.length, this.maxLength + 2);
    const lf = this.pending.subarray(0, window).indexOf(LF);
    if (lf < 0) {
      if (this.pending.length < this.maxLength + 2) return null;
      this.discarding = true;
      this.dropDiscarded();
      return { kind: 'too-long' };
    }
    const end = lf > 0 && this.pending[lf - 1] === CR ? lf - 1 : lf;
    const line = this.pending.subarray(0, end);
    this.pending = this.pending.subarray(lf + 1);
    if (line.length > this.maxLength) return { kind: 'too-long' };
    // copy: the slice would otherwise keep the whole received chunk alive
    return { kind: 'line', line: Buffer.from(line) };
  }

  private dropDiscarded(): void {
    if (!this.discarding) return;
    const lf = this.pending.indexOf(LF);
    if (lf < 0) {
      this.pending = Buffer.alloc(0);
      return;
    }
    this.pending = this.pending.subarray(lf + 1);
    this.discarding = false;
  }
}
