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
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from './mailbox.js';

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

/** Bytes of the mailbox the change check compares: a From_ line, or the blank line ending a span. */
interface BoundaryCheck {
  message: number;
  kind: 'from' | 'blank';
  position: number;
  length: number;
}

function boundaryChecks(snapshot: MailboxSnapshot): BoundaryCheck[] {
  const checks: BoundaryCheck[] = [];
  for (const [i, message] of snapshot.messages.entries()) {
    const lineLength = message.contentOffset - message.offset;
    checks.push({
      message: i,
      kind: 'from',
      position: message.offset,
      length: Math.min(lineLength, FROM_LINE_CHECK_BYTES),
    });
    const end = message.offset + message.spanLength;
    if (end < snapshot.scannedSize) checks.push({ message: i, kind: 'blank', position: end - 3, length: 3 });
  }
  return checks;
}

/**
 * Whether `window` holds, at `at`, the checked part of the message's From_ line: "From ", no LF
 * before the line's end, and its LF exactly there when the line is short enough to be checked whole.
 */
function isFromLine(window: Buffer, at: number, check: BoundaryCheck, filled: number, message: MessageInfo): boolean {
  if (check.length <= FROM_.length || at + check.length > filled) return false;
  for (let i = 0; i < FROM_.length; i++) if (window[at + i] !== FROM_[i]) return false;
  const lineLength = message.contentOffset - message.offset;
  const lf = lineLength <= FROM_LINE_CHECK_BYTES ? lineLength - 1 : -1;
  for (let i = FROM_.length; i < check.length; i++) if ((window[at + i] === LF) !== (i === lf)) return false;
  return true;
}

/** The checks [first, last) lie in the file's bytes [start, end): one read. */
interface ReadRun {
  first: number;
  last: number;
  start: number;
  end: number;
}

function readRuns(checks: readonly BoundaryCheck[]): ReadRun[] {
  const runs: ReadRun[] = [];
  for (let first = 0; first < checks.length; ) {
    const start = checks[first]!.position;
    let end = start + checks[first]!.length;
    let last = first + 1;
    for (; last < checks.length; last++) {
      const { position, length } = checks[last]!;
      if (position + length - start > READ_RUN_BYTES || position - end > MAX_GAP_BYTES) break;
      end = Math.max(end, position + length);
    }
    runs.push({ first, last, start, end });
    first = last;
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
  const checks = boundaryChecks(snapshot);
  const runs = readRuns(checks);
  const buffers = Array.from({ length: READS_IN_FLIGHT + 1 }, () => Buffer.allocUnsafe(READ_RUN_BYTES));
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
    for (let c = run.first; c < run.last; c++) {
      const check = checks[c]!;
      const at = check.position - run.start;
      if (check.kind === 'blank') {
        // "\n\n", or "\n\r\n" in a mailbox written with CRLF line ends (3 bytes: at, at + 1, at + 2)
        const blank =
          check.position + 3 <= end &&
          window[at + 2] === LF &&
          (window[at + 1] === LF || (window[at + 1] === CR && window[at] === LF));
        if (!blank)
          throw changed(
            `message ${check.message + 1} no longer ends with a blank line at offset ${check.position + 3}`,
          );
      } else if (!isFromLine(window, at, check, end - run.start, snapshot.messages[check.message]!)) {
        const { offset } = snapshot.messages[check.message]!;
        throw changed(`message ${check.message + 1} no longer starts with its From_ line at offset ${offset}`);
      }
    }
  }
  return st.size;
}
