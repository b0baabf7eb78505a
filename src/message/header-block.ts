// The header block of a queued message (everything before its first empty line): read from the
// message stream only as far as needed, bounded, and split into lines. A bounce quotes it and
// the hop count is taken from it; neither ever needs the body.
import type { Readable } from 'node:stream';

const LF = 0x0a;
const CR = 0x0d;

/** Finds the empty line that ends a header block, fed one chunk after another. */
class HeaderEndScanner {
  /** offset just after the last line end seen: everything before it is whole lines */
  lastLineEnd = 0;
  private state: 'lineStart' | 'crAtLineStart' | 'inLine' = 'lineStart';

  /** Scans `chunk`, which starts at `offset` of the message; returns where the empty line starts, or -1. */
  scan(chunk: Buffer, offset: number): number {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.state === 'inLine') {
        const nl = chunk.indexOf(LF, pos);
        if (nl === -1) return -1;
        pos = nl + 1;
        this.lastLineEnd = offset + pos;
        this.state = 'lineStart';
        continue;
      }
      const byte = chunk[pos];
      if (byte === LF) return this.lastLineEnd;
      if (this.state === 'lineStart' && byte === CR) {
        this.state = 'crAtLineStart';
        pos++;
      } else {
        // a line with content: its bytes (a lone CR included) are skipped up to its LF
        this.state = 'inLine';
      }
    }
    return -1;
  }
}

/** A header block as read by readHeaderSection. */
export interface HeaderSection {
  /** the header lines with their line ends, without the empty line that ends them */
  block: Buffer;
  /** false when the block was longer than the cap: `block` holds only its first lines */
  complete: boolean;
}

/**
 * Reads `source` up to the end of its header block and destroys it. A message that is all
 * header (no empty line) is returned whole; when the block is longer than `cap` bytes, only the
 * whole lines within the first `cap` bytes are, and `complete` is false.
 */
export async function readHeaderSection(source: Readable, cap: number): Promise<HeaderSection> {
  const scanner = new HeaderEndScanner();
  const chunks: Buffer[] = [];
  let read = 0;
  // leaving the loop early (return) destroys the stream
  for await (const data of source) {
    const chunk = (Buffer.isBuffer(data) ? data : Buffer.from(String(data))).subarray(0, Math.max(0, cap - read));
    chunks.push(chunk);
    const end = scanner.scan(chunk, read);
    read += chunk.length;
    if (end !== -1) return { block: Buffer.concat(chunks).subarray(0, end), complete: true };
    if (read >= cap) return { block: Buffer.concat(chunks).subarray(0, scanner.lastLineEnd), complete: false };
  }
  return { block: Buffer.concat(chunks), complete: true };
}

/** The header lines of `source` with their line ends (CRLF or LF), as readHeaderSection reads them. */
export async function readHeaderBlock(source: Readable, cap: number): Promise<Buffer> {
  return (await readHeaderSection(source, cap)).block;
}

/**
 * The lines of a header block without their line ends (CRLF or LF), up to the first empty
 * line (so a whole message may be passed: its body is never returned). A last line without a
 * line end counts as a line.
 */
export function headerLines(block: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  while (start < block.length) {
    const nl = block.indexOf(LF, start);
    const end = nl === -1 ? block.length : nl;
    const line = block.subarray(start, end > start && block[end - 1] === CR ? end - 1 : end);
    if (line.length === 0) break;
    lines.push(line);
    start = end + 1;
  }
  return lines;
}
