// What `mailsrv sendmail` makes of its standard input, read as a stream: the message with CRLF
// line ends (LF input is converted), a leading mbox `From ` line dropped (as Postfix does), and,
// unless -i, a line holding only "." ending the input (classic sendmail; nothing after it is
// read). The header block is read first, bounded, so -t can take the recipients from it; Bcc: is
// removed; the header lines the caller adds for missing fields go at its end. The message as
// written may be at most `sizeLimit` bytes.
import { CrlfConverter } from '../message/crlf.js';

/** Most bytes the header block may have (it is held until it is complete). */
export const MAX_HEADER_BLOCK = 1024 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const SP = 0x20;
const HTAB = 0x09;
const CRLF = Buffer.from('\r\n');
const DOT_BUFFER = Buffer.from('.');
const DOT_CR_BUFFER = Buffer.from('.\r');
const EMPTY = Buffer.alloc(0);

export interface SubmittedHeader {
  /** lowercase names of the fields in the header block (Bcc included) */
  fieldNames: Set<string>;
  /** the unfolded values of the To:, Cc: and Bcc: fields (for -t) */
  recipientFields: string[];
}

export interface SubmissionOptions {
  /** false with -i / -oi: a "." line is just a line */
  dotEnds: boolean;
  /** message_size_limit */
  sizeLimit: number;
}

/** Where the body stands at a line start when "." lines end the input. */
type LineState = 'start' | 'dot' | 'dotCr' | 'inLine';

export class SubmittedMessage {
  private readonly input: AsyncIterator<Buffer | string>;
  private readonly crlf = new CrlfConverter();
  /** input converted to CRLF, not used yet */
  private pending: Buffer = EMPTY;
  /** the header fields kept (raw lines) */
  private readonly kept: Buffer[] = [];
  /** a line that ended the header block without being a header field: the body's first line */
  private firstBodyLine: Buffer | null = null;
  /** the end of the input (or a "." line) was reached while reading the header block */
  private inputEnded = false;
  private written = 0;

  constructor(
    input: AsyncIterable<Buffer | string>,
    private readonly options: SubmissionOptions,
  ) {
    this.input = input[Symbol.asyncIterator]();
  }

  /** Reads up to the end of the header block (an empty line, a line that is no header field, or the end). */
  async readHeader(): Promise<SubmittedHeader> {
    const header: SubmittedHeader = { fieldNames: new Set(), recipientFields: [] };
    let field: Buffer[] = [];
    let held = 0;
    const completeField = () => {
      if (field.length === 0) return;
      const text = Buffer.concat(field).toString('utf8');
      const name = text.slice(0, text.indexOf(':')).trim().toLowerCase();
      header.fieldNames.add(name);
      if (name === 'to' || name === 'cc' || name === 'bcc')
        header.recipientFields.push(
          text
            .slice(text.indexOf(':') + 1)
            .replace(/\r\n/g, '')
            .trim(),
        );
      if (name !== 'bcc') this.kept.push(...field);
      field = [];
    };
    let leading = true;
    for (;;) {
      const read = await this.nextLine(MAX_HEADER_BLOCK - held);
      if (read === null || (this.options.dotEnds && isDotLine(read))) {
        await this.endInput();
        break;
      }
      // only the input's last line can lack its line end; here it gets one, as headers follow
      const line = read[read.length - 1] === LF ? read : Buffer.concat([read, CRLF]);
      held += line.length;
      if (leading && /^>*From /.test(line.toString('latin1', 0, 100))) continue;
      leading = false;
      if (line.equals(CRLF)) break;
      if ((line[0] === SP || line[0] === HTAB) && field.length > 0) {
        field.push(line);
        continue;
      }
      completeField();
      if (!isFieldStart(line)) {
        this.firstBodyLine = line;
        break;
      }
      field.push(line);
    }
    completeField();
    return header;
  }

  /**
   * The message to store: the header block with `addHeaders` (complete lines without CRLF) at
   * its end, the empty line, the body. Call after readHeader(); throws once it grows past the
   * size limit.
   */
  async *content(addHeaders: string[]): AsyncGenerator<Buffer> {
    yield this.count(
      Buffer.concat([...this.kept, ...addHeaders.map((line) => Buffer.from(`${line}\r\n`, 'utf8')), CRLF]),
    );
    if (this.firstBodyLine !== null) yield this.count(this.firstBodyLine);
    let endsInLf = true;
    if (!this.inputEnded) {
      let state: LineState = 'start';
      for (let chunk = this.takePending() ?? (await this.read()); chunk !== null; chunk = await this.read()) {
        const { output, next, ended } = this.scanBody(chunk, state);
        state = next;
        if (output.length > 0) {
          yield this.count(output);
          endsInLf = output[output.length - 1] === LF;
        }
        if (ended) {
          await this.endInput();
          break;
        }
      }
      // a "." (or ".\r") with no line end at the very end of the input ends it too: it is dropped
      if (state === 'dot' || state === 'dotCr') endsInLf = true;
    }
    if (!endsInLf) yield this.count(CRLF);
  }

  /**
   * One chunk of the body: passed on as it is, except that a line consisting of "." ends the
   * input (when dotEnds); only the "." or ".\r" at a line start is held back until it is known.
   */
  private scanBody(chunk: Buffer, state: LineState): { output: Buffer; next: LineState; ended: boolean } {
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      if (!this.options.dotEnds || state === 'inLine') {
        const lf = chunk.indexOf(LF, pos);
        const end = lf === -1 ? chunk.length : lf + 1;
        out.push(chunk.subarray(pos, end));
        pos = end;
        state = lf === -1 ? 'inLine' : 'start';
        continue;
      }
      const byte = chunk[pos];
      if (state === 'start') {
        if (byte === DOT) pos++;
        state = byte === DOT ? 'dot' : 'inLine';
      } else if (state === 'dot') {
        if (byte === CR) {
          pos++;
          state = 'dotCr';
        } else {
          out.push(DOT_BUFFER);
          state = 'inLine';
        }
      } else if (byte === LF) {
        return { output: Buffer.concat(out), next: state, ended: true };
      } else {
        out.push(DOT_CR_BUFFER);
        state = 'inLine';
      }
    }
    return { output: Buffer.concat(out), next: state, ended: false };
  }

  private count(bytes: Buffer): Buffer {
    this.written += bytes.length;
    if (this.written > this.options.sizeLimit)
      throw new Error(`message too big (limit ${this.options.sizeLimit} bytes)`);
    return bytes;
  }

  /** The next line with its CRLF (the last one may have none), or null at the end of the input. */
  private async nextLine(limit: number): Promise<Buffer | null> {
    for (;;) {
      const lf = this.pending.indexOf(LF);
      if (lf !== -1 && lf < limit) {
        const line = this.pending.subarray(0, lf + 1);
        this.pending = this.pending.subarray(lf + 1);
        return line;
      }
      if (this.pending.length >= limit)
        throw new Error(`message header too big (more than ${MAX_HEADER_BLOCK} bytes before the body)`);
      const chunk = await this.read();
      if (chunk === null) return this.takePending();
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    }
  }

  private takePending(): Buffer | null {
    const rest = this.pending;
    this.pending = EMPTY;
    return rest.length > 0 ? rest : null;
  }

  private async read(): Promise<Buffer | null> {
    const { done, value } = await this.input.next();
    if (done) return null;
    return this.crlf.convert(typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
  }

  /** Stops reading: after a "." line the rest of the input is not read (stdin is closed). */
  private async endInput(): Promise<void> {
    this.inputEnded = true;
    this.pending = EMPTY;
    await this.input.return?.();
  }
}

/** "." alone on a line (with or without its line end). */
function isDotLine(line: Buffer): boolean {
  return (
    line[0] === DOT &&
    (line.length === 1 ||
      (line.length === 3 && line[1] === CR && line[2] === LF) ||
      (line.length === 2 && line[1] === CR))
  );
}

/** `name:` as RFC 5322 field names go (printable ASCII but ":"; blanks before the colon tolerated). */
function isFieldStart(line: Buffer): boolean {
  return /^[!-9;-~]+[ \t]*:/.test(line.toString('latin1', 0, 1000));
}
