// The body of a POP3 multi-line reply (RFC 1939 §3), a chunk at a time: every line that
// starts with "." gets one more "." in front, and the reply ends with the terminating ".CRLF"
// line. The input is a message with CRLF line ends (what mbox/retrieve.ts produces); should its
// last line lack a line end, CRLF is added so the terminator stands on a line of its own.
//
// With `expectedBytes` (RETR: the size LIST announced), a different number of input bytes is an
// error at the end, and the terminator is not sent: the client must not take a short or long
// message for a complete one.
//
// Nothing is held back: each chunk goes out as it comes in, so the caller's backpressure
// (socket → the file read) bounds what is in memory. A chunk is searched for "\n." as a whole
// (one native search; lines starting with "." are rare), so a chunk without one goes out as it is.

const LF = 0x0a;
const DOT = 0x2e;
const DOT_BUF = Buffer.from('.', 'latin1');
const LF_DOT = Buffer.from('\n.', 'latin1');
const TERMINATOR = Buffer.from('.\r\n', 'latin1');
const CRLF_TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');

export interface DotStufferOptions {
  /** the input must be exactly this many bytes */
  expectedBytes?: number;
}

export class DotStuffer {
  /** bytes taken in (before stuffing): what RETR promised in its octet count */
  bytesIn = 0;
  private atLineStart = true;
  private readonly expectedBytes: number | undefined;

  constructor(options: DotStufferOptions = {}) {
    this.expectedBytes = options.expectedBytes;
  }

  /** The chunk as it goes on the wire (the chunk itself when nothing needs stuffing). */
  push(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    this.bytesIn += chunk.length;
    const dotFirst = this.atLineStart && chunk[0] === DOT;
    this.atLineStart = chunk[chunk.length - 1] === LF;
    let hit = chunk.indexOf(LF_DOT);
    if (!dotFirst && hit < 0) return chunk;
    const out: Buffer[] = dotFirst ? [DOT_BUF] : [];
    let start = 0;
    for (; hit >= 0; hit = chunk.indexOf(LF_DOT, start)) {
      // the line after this LF starts with "."
      out.push(chunk.subarray(start, hit + 1), DOT_BUF);
      start = hit + 1;
    }
    out.push(chunk.subarray(start));
    return Buffer.concat(out);
  }

  /** What ends the reply: the terminator (after a CRLF if the input lacked one); throws on an octet mismatch. */
  end(): Buffer {
    if (this.expectedBytes !== undefined && this.bytesIn !== this.expectedBytes) {
      throw new Error(`message has ${this.bytesIn} octets, ${this.expectedBytes} expected`);
    }
    return this.atLineStart ? TERMINATOR : CRLF_TERMINATOR;
  }
}
