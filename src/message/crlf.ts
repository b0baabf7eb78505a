// Line ends as mail is stored and sent: CRLF. Input with bare LF (sendmail's standard input, a
// maildrop file written by hand) is converted on the fly, chunk by chunk.
import { Transform, type TransformCallback } from 'node:stream';

const LF = 0x0a;
const CR = 0x0d;
const CR_BUFFER = Buffer.from([CR]);

/** LF → CRLF, one chunk after another: a LF without a CR before it gets one; everything else is kept. */
export class CrlfConverter {
  private afterCr = false;

  convert(chunk: Buffer): Buffer {
    const bareLfs: number[] = [];
    for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
      if (!(i === 0 ? this.afterCr : chunk[i - 1] === CR)) bareLfs.push(i);
    }
    if (chunk.length > 0) this.afterCr = chunk[chunk.length - 1] === CR;
    if (bareLfs.length === 0) return chunk;
    const parts: Buffer[] = [];
    let start = 0;
    for (const lf of bareLfs) {
      parts.push(chunk.subarray(start, lf), CR_BUFFER);
      start = lf;
    }
    parts.push(chunk.subarray(start));
    return Buffer.concat(parts, chunk.length + bareLfs.length);
  }
}

/** CrlfConverter as a stream. */
export class CrlfLineEnds extends Transform {
  private readonly converter = new CrlfConverter();

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    callback(null, this.converter.convert(chunk));
  }
}
