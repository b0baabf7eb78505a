// The change check of a POP3 update (README, "POP3"), under the mailbox lock, before anything is
// written: the file must have the snapshot's dev/ino, be at least `scannedSize` long, and at
// every message of the snapshot still hold a From_ line of the same length (`From ` ... its LF
// exactly at contentOffset - 1) and, where another message follows, the blank line ("\n\n")
// ending its span. Only bytes around the boundaries are read (runs of up to 1 MiB). That catches
// every edit that moves a boundary: a truncated or replaced file, a message removed, inserted
// or rewritten to another length (another server's expunge, mutt adding a Status: header), a
// restore from a backup. It misses edits that keep every boundary where it was (same-length
// changes inside a message, two equal-length messages swapped, a From_ line changed to another
// of the same length): the snapshot keeps no message bytes to compare with. Those cannot tear
// the file: whole spans between verified boundaries are moved or dropped.
import type { FileHandle } from 'node:fs/promises';
import { readAt } from '../fsutil.js';
import { MailboxChangedError, type MailboxSnapshot } from './mailbox.js';

/**
 * the change check reads the boundaries in runs: a run's checks lie within this many bytes, with no
 * gap between two of them wider than MAX_GAP_BYTES (wider gaps are skipped, not read): few large
 * reads cost far less than one small read per message, and reading a gap costs no more than a call
 */
const READ_RUN_BYTES = 1024 * 1024;
const MAX_GAP_BYTES = 64 * 1024;
/** runs read at once, ahead of the one being checked (the kernel's copies run on libuv's threads) */
const READS_IN_FLIGHT = 3;
/** of a longer From_ line, the change check compares only this much (its end is not checked) */
const FROM_LINE_CHECK_BYTES = 4096;
const LF = 0x0a;
const CR = 0x0d;
const FROM_ = Buffer.from('From ', 'latin1');

/**
 * The boundary checks, two per message, numbered in file order without an object each (100,000
 * messages: 200,000 checks): check 2i is message i's From_ line (`From ` ... its LF exactly at
 * contentOffset - 1; of a longer line only the first 4 KiB, without its end), check 2i + 1 the
 * blank line ending its span ("\n\n", or "\n\r\n" with CRLF line ends), absent (length 0) for
 * the last message of the scanned part.
 */
class BoundaryChecks {
  readonly count: number;

  constructor(private readonly snapshot: MailboxSnapshot) {
    this.count = 2 * snapshot.messages.length;
  }

  position(c: number): number {
    const message = this.snapshot.messages[c >> 1]!;
    return c % 2 === 0 ? message.offset : message.offset + message.spanLength - 3;
  }

  length(c: number): number {
    const message = this.snapshot.messages[c >> 1]!;
    if (c % 2 === 0) return Math.min(message.contentOffset - message.offset, FROM_LINE_CHECK_BYTES);
    return message.offset + message.spanLength < this.snapshot.scannedSize ? 3 : 0;
  }

  /** Whether `window`, holding file bytes from `windowStart` (`filled` of them), passes check c. */
  passes(c: number, window: Buffer, windowStart: number, filled: number): boolean {
    const length = this.length(c);
    if (length === 0) return true;
    const at = this.position(c) - windowStart;
    if (at + length > filled) return false;
    // "\n\n", or "\n\r\n" in a mailbox written with CRLF line ends (bytes at, at + 1, at + 2)
    if (c % 2 === 1)
      return window[at + 2] === LF && (window[at + 1] === LF || (window[at + 1] === CR && window[at] === LF));
    if (length <= FROM_.length) return false;
    for (let i = 0; i < FROM_.length; i++) if (window[at + i] !== FROM_[i]) return false;
    const message = this.snapshot.messages[c >> 1]!;
    const lineLength = message.contentOffset - message.offset;
    const lf = lineLength <= FROM_LINE_CHECK_BYTES ? lineLength - 1 : -1;
    for (let i = FROM_.length; i < length; i++) if ((window[at + i] === LF) !== (i === lf)) return false;
    return true;
  }

  failure(c: number): string {
    const message = c >> 1;
    return c % 2 === 1
      ? `message ${message + 1} no longer ends with a blank line at offset ${this.position(c) + 3}`
      : `message ${message + 1} no longer starts with its From_ line at offset ${this.position(c)}`;
  }
}

/** The checks [first, last) lie in the file's bytes [start, end): one read. */
interface ReadRun {
  first: number;
  last: number;
  start: number;
  end: number;
}

function readRuns(checks: BoundaryChecks): ReadRun[] {
  const runs: ReadRun[] = [];
  let run: ReadRun | null = null;
  for (let c = 0; c < checks.count; c++) {
    const length = checks.length(c);
    if (length === 0) continue;
    const position = checks.position(c);
    if (run === null || position + length - run.start > READ_RUN_BYTES || position - run.end > MAX_GAP_BYTES) {
      run = { first: c, last: c + 1, start: position, end: position + length };
      runs.push(run);
    } else {
      run.last = c + 1;
      run.end = Math.max(run.end, position + length);
    }
  }
  return runs;
}

/**
 * Throws MailboxChangedError unless the file is the snapshot's, at least as long, with every
 * message boundary in place; returns its size. Reads only around the boundaries, in runs of up
 * to 1 MiB, the next run read while one is checked.
 */
export async function verifyUnchanged(mailbox: FileHandle, snapshot: MailboxSnapshot): Promise<number> {
  const changed = (reason: string): MailboxChangedError => new MailboxChangedError(snapshot.path, reason);
  const st = await mailbox.stat();
  if (st.dev !== snapshot.dev || st.ino !== snapshot.ino) throw changed('the file was replaced');
  if (st.size < snapshot.scannedSize) throw changed(`it shrank to ${st.size} bytes from ${snapshot.scannedSize}`);
  const checks = new BoundaryChecks(snapshot);
  const runs = readRuns(checks);
  // a small mailbox gets buffers of its size, not of READ_RUN_BYTES
  const longest = runs.reduce((most, run) => Math.max(most, run.end - run.start), 0);
  const buffers = Array.from({ length: READS_IN_FLIGHT + 1 }, () => Buffer.allocUnsafe(longest));
  const read = (r: number): Promise<number> | undefined => {
    const run = runs[r];
    if (run === undefined) return undefined;
    const reading = readAt(mailbox, buffers[r % buffers.length]!, 0, run.end - run.start, run.start);
    reading.catch(() => undefined); // awaited in its turn; not unhandled meanwhile
    return reading;
  };
  const readings = Array.from({ length: READS_IN_FLIGHT }, (_, r) => read(r));
  for (const [r, run] of runs.entries()) {
    const end = run.start + (await readings.shift()!);
    readings.push(read(r + READS_IN_FLIGHT));
    const window = buffers[r % buffers.length]!;
    for (let c = run.first; c < run.last; c++)
      if (!checks.passes(c, window, run.start, end - run.start)) throw changed(checks.failure(c));
  }
  return st.size;
}
