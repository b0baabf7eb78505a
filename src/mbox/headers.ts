// Streaming header edit for delivery: drops headers only a mailbox store may write, adds new
// ones at the top, and passes every other byte through unchanged (bounded buffering).
//
// Not built on @zone-eu/mailsplit: once headers are edited, its Headers.build() rewrites the
// header block (bare CRs inside header lines are deleted, LF line ends become CRLF, a blank line
// is appended to a message that has none, a leading `From ` line is kept above added headers),
// and its Splitter fails messages with more than 1000 MIME parts. Only the top-level header
// block needs editing, so this small state machine does it byte-exactly.
import { Transform, type TransformCallback } from 'node:stream';

/** Headers that only a mailbox store may write; removed from every delivered message. */
const STORE_ONLY_HEADERS: readonly string[] = [
  'x-uidl',
  'x-uid',
  'x-imapbase',
  'x-imap',
  'status',
  'x-status',
  'x-keywords',
  'content-length',
  'x-delivery-id',
];

const STRIPPED = new Set(STORE_ONLY_HEADERS);
const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const CRLF = '\r\n';
const CRLF_BUF = Buffer.from(CRLF, 'latin1');
/** Longest line start searched for the `:` of a field name (RFC 5322 line limit + CRLF). */
export const MAX_FIELD_PREFIX = 1000;

export interface EditHeadersOptions {
  /** complete header lines without the final CRLF (may be folded with CRLF + WSP), added at the top in this order */
  add: string[];
  /** header lines added at the end of the header block when no field of their name is there */
  addIfMissing?: string[];
}

const FIELD_NAME_START = /^[!-9;-~]+:/;

/**
 * A line to add must be exactly one header field: `name: value`, no NUL, and no CR or LF but
 * as a fold (CR LF, then a space or a tab).
 */
function checkAddedLine(line: string): void {
  let ok = FIELD_NAME_START.test(line) && !line.includes('\0');
  for (let i = line.indexOf('\r'); ok && i !== -1; i = line.indexOf('\r', i + 1)) ok = line[i + 1] === '\n';
  for (let i = line.indexOf('\n'); ok && i !== -1; i = line.indexOf('\n', i + 1))
    ok = line[i - 1] === '\r' && (line[i + 1] === ' ' || line[i + 1] === '\t');
  if (!ok) {
    throw new TypeError(`not a single header line: ${JSON.stringify(line)}`);
  }
}

/** Field name of a header line start `name WSP* :`, lowercased, or null if it is no header line. */
export function fieldName(prefix: Buffer, colon: number): string | null {
  let end = colon;
  while (end > 0 && (prefix[end - 1] === SP || prefix[end - 1] === HTAB)) end--;
  if (end === 0) return null;
  for (let i = 0; i < end; i++) {
    const b = prefix[i];
    if (b < 0x21 || b > 0x7e) return null;
  }
  return prefix.toString('latin1', 0, end).toLowerCase();
}

/**
 * The header edit, incremental: write() takes the message in chunks of any size, end() finishes
 * it; the output goes into the array each call is given (slices of the input where possible).
 */
export class HeaderEditing {
  private out: Buffer[] = [];
  private added: Buffer | null;
  private inBody = false;
  /** at the start of a header-section line (collecting its first bytes in `prefix`) */
  private atLineStart = true;
  /** made when a line start first runs past a chunk's end (most messages come in one piece) */
  private prefix: Buffer | null = null;
  private prefixLen = 0;
  /** whether the rest of the current line is passed on */
  private keepLine = true;
  /** whether the current header field (and so its continuation lines) is kept */
  private keepField = true;
  /** addIfMissing lines by lowercased field name; a name seen in the message is deleted */
  private readonly missing = new Map<string, string>();

  constructor(options: EditHeadersOptions) {
    for (const line of [...options.add, ...(options.addIfMissing ?? [])]) checkAddedLine(line);
    this.added = Buffer.from(options.add.map((line) => line + CRLF).join(''), 'utf8');
    for (const line of options.addIfMissing ?? [])
      this.missing.set(line.slice(0, line.indexOf(':')).toLowerCase(), line);
  }

  write(chunk: Buffer, out: Buffer[]): void {
    this.out = out;
    this.pushAdded();
    if (this.inBody) {
      this.push(chunk);
      return;
    }
    const len = chunk.length;
    let pos = 0;
    while (pos < len && !this.inBody) {
      if (this.atLineStart) {
        pos = this.scanLineStart(chunk, pos);
        continue;
      }
      const nl = chunk.indexOf(LF, pos);
      const end = nl === -1 ? len : nl + 1;
      if (this.keepLine) this.push(chunk.subarray(pos, end));
      this.atLineStart = nl !== -1;
      pos = end;
    }
    if (pos < len) this.push(chunk.subarray(pos));
  }

  end(out: Buffer[]): void {
    this.out = out;
    this.pushAdded();
    // an unfinished first part of a last line without a colon: not a header, keep it
    const unfinishedLine = this.prefixLen > 0 || !this.atLineStart;
    if (this.prefix !== null && this.prefixLen > 0) this.push(Buffer.from(this.prefix.subarray(0, this.prefixLen)));
    if (!this.inBody && this.missing.size > 0) {
      if (unfinishedLine) this.push(CRLF_BUF);
      this.pushMissing();
    }
  }

  private push(chunk: Buffer): void {
    this.out.push(chunk);
  }

  /** The addIfMissing lines whose field never appeared, at the end of the header block. */
  private pushMissing(): void {
    if (this.missing.size > 0)
      this.push(Buffer.from([...this.missing.values()].map((line) => line + CRLF).join(''), 'utf8'));
    this.missing.clear();
  }

  private pushAdded(): void {
    if (this.added) {
      if (this.added.length > 0) this.push(this.added);
      this.added = null;
    }
  }

  /**
   * Collects the start of a header-section line until it can be classified (continuation,
   * blank line, header field with a name, or other line). Returns the new position. A line
   * start found whole within the chunk is passed on as a slice of it; only one that runs past
   * the chunk's end is gathered in `prefix`.
   */
  private scanLineStart(chunk: Buffer, start: number): number {
    if (this.prefixLen === 0 && (chunk[start] === SP || chunk[start] === HTAB)) {
      // folded continuation: belongs to the field before it
      this.beginRest(this.keepField);
      return start;
    }
    const inChunk = this.prefixLen === 0;
    const room = MAX_FIELD_PREFIX - this.prefixLen;
    const limit = Math.min(chunk.length, start + room);
    let pos = start;
    while (pos < limit) {
      const b = chunk[pos++];
      if (b !== LF && b !== COLON) continue;
      const line = inChunk ? chunk.subarray(start, pos) : this.takePrefix(chunk, start, pos);
      if (b === LF) {
        const blank = line.length === 1 || (line.length === 2 && line[0] === CR);
        if (blank) this.pushMissing();
        this.push(line);
        if (blank) this.inBody = true;
        else this.keepField = true;
        return pos;
      }
      const name = fieldName(line, line.length - 1);
      this.keepField = name === null || !STRIPPED.has(name);
      if (name !== null) this.missing.delete(name);
      if (this.keepField) this.push(line);
      this.beginRest(this.keepField);
      return pos;
    }
    if (pos - start === room) {
      // far too long for a field name: some other line, kept as it is
      this.keepField = true;
      this.push(inChunk ? chunk.subarray(start, pos) : this.takePrefix(chunk, start, pos));
      this.beginRest(true);
      return pos;
    }
    // the chunk ends inside the line start: kept until the next chunk
    this.prefix ??= Buffer.allocUnsafe(MAX_FIELD_PREFIX);
    chunk.copy(this.prefix, this.prefixLen, start, pos);
    this.prefixLen += pos - start;
    return pos;
  }

  private beginRest(keep: boolean): void {
    this.keepLine = keep;
    this.atLineStart = false;
  }

  /** The line start gathered in `prefix` followed by `chunk[start, end)`, as one new buffer. */
  private takePrefix(chunk: Buffer, start: number, end: number): Buffer {
    const line = Buffer.allocUnsafe(this.prefixLen + end - start);
    this.prefix?.copy(line, 0, 0, this.prefixLen);
    chunk.copy(line, this.prefixLen, start, end);
    this.prefixLen = 0;
    return line;
  }
}

/**
 * Transform for a raw message: removes every STORE_ONLY_HEADERS field (with its folded
 * continuation lines) from the top-level header block, which ends at the first empty line,
 * and puts `add` at the top. All other bytes, header and body, pass unchanged. Lines in the
 * header block that are not header fields are kept as they are.
 */
export function editHeaders(options: EditHeadersOptions): Transform {
  const editing = new HeaderEditing(options);
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      const out: Buffer[] = [];
      editing.write(chunk, out);
      for (const piece of out) this.push(piece);
      callback();
    },
    flush(callback: TransformCallback) {
      const out: Buffer[] = [];
      editing.end(out);
      for (const piece of out) this.push(piece);
      callback();
    },
  });
}
