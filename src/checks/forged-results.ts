// Removes, from the top-level header block of a message as it is received, every
// Authentication-Results field that names our hostname (or whose authserv-id cannot be read):
// only this server may vouch for its own checks (RFC 8601 5). Streaming and byte-exact: other
// fields and the body pass unchanged; only an Authentication-Results field is held, up to
// MAX_HELD bytes, until its authserv-id is known. It also counts the DKIM-Signature fields it
// sees, so the DKIM check can refuse to verify an absurd number of them.
import { fieldName, MAX_FIELD_PREFIX } from '../mbox/headers.js';
import { authservId } from './auth-results.js';

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const FIELD = 'authentication-results';
/** Bytes of one Authentication-Results field held to find its authserv-id. */
const MAX_HELD = 8192;

/** What happens to the bytes of the field being read. */
type FieldMode = 'pass' | 'hold' | 'drop';

export class ForgedResultsFilter {
  private inBody = false;
  private atLineStart = true;
  private readonly prefix = Buffer.allocUnsafe(MAX_FIELD_PREFIX);
  private prefixLen = 0;
  private mode: FieldMode = 'pass';
  private held: Buffer[] = [];
  private heldLen = 0;
  /** Authentication-Results fields removed so far */
  removed = 0;
  /** DKIM-Signature fields seen so far */
  dkimSignatures = 0;
  private readonly hostname: string;

  constructor(hostname: string) {
    this.hostname = hostname.toLowerCase();
  }

  /** Whether the header block has ended (everything from here on is body). */
  get headerDone(): boolean {
    return this.inBody;
  }

  /** Filters one chunk of the message; what is kept goes into `out` (slices of `chunk` where possible). */
  write(chunk: Buffer, out: Buffer[]): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.inBody) {
        out.push(chunk.subarray(pos));
        return;
      }
      if (this.atLineStart) {
        pos = this.scanLineStart(chunk, pos, out);
        continue;
      }
      const nl = chunk.indexOf(LF, pos);
      const end = nl === -1 ? chunk.length : nl + 1;
      this.emit(chunk.subarray(pos, end), out);
      this.atLineStart = nl !== -1;
      pos = end;
    }
  }

  /** The message has ended: what is still held is decided on and passed on. */
  end(out: Buffer[]): void {
    this.finishField(out);
    if (this.prefixLen > 0) out.push(this.takePrefix());
  }

  /** Classifies a line from its first bytes: continuation, blank line, field (by name) or other. */
  private scanLineStart(chunk: Buffer, start: number, out: Buffer[]): number {
    let pos = start;
    if (this.prefixLen === 0) {
      if (chunk[pos] === SP || chunk[pos] === HTAB) {
        // folded continuation of the field before it
        this.atLineStart = false;
        return pos;
      }
      this.finishField(out);
    }
    while (pos < chunk.length) {
      const b = chunk[pos++]!;
      this.prefix[this.prefixLen++] = b;
      if (b === LF) {
        const line = this.takePrefix();
        // a blank line ends the header block; a line without a colon is kept as it is
        if (line.length === 1 || (line.length === 2 && line[0] === CR)) this.inBody = true;
        out.push(line);
        return pos;
      }
      if (b === COLON || this.prefixLen === MAX_FIELD_PREFIX) {
        const name = b === COLON ? fieldName(this.prefix, this.prefixLen - 1) : null;
        this.mode = name === FIELD ? 'hold' : 'pass';
        if (name === 'dkim-signature') this.dkimSignatures++;
        this.atLineStart = false;
        this.emit(this.takePrefix(), out);
        return pos;
      }
    }
    return pos;
  }

  private emit(bytes: Buffer, out: Buffer[]): void {
    if (this.mode === 'pass') out.push(bytes);
    if (this.mode !== 'hold') return;
    this.held.push(bytes);
    this.heldLen += bytes.length;
    if (this.heldLen > MAX_HELD) this.finishField(out);
  }

  /** Decides on a held Authentication-Results field: kept unless it names us (or cannot be read). */
  private finishField(out: Buffer[]): void {
    if (this.mode !== 'hold') {
      this.mode = 'pass';
      return;
    }
    // only the first MAX_HELD bytes count, however the message was cut into chunks
    const field = Buffer.concat(this.held).toString('latin1', 0, MAX_HELD);
    const id = authservId(field.slice(field.indexOf(':') + 1));
    const forged = id === null || id === this.hostname;
    if (forged) this.removed++;
    else out.push(...this.held);
    this.held = [];
    this.heldLen = 0;
    // a field cut off at MAX_HELD goes on as decided
    this.mode = forged ? 'drop' : 'pass';
  }

  private takePrefix(): Buffer {
    const copy = Buffer.from(this.prefix.subarray(0, this.prefixLen));
    this.prefixLen = 0;
    return copy;
  }
}
