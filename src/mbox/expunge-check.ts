// The change check of a POP3 update (SPEC §6), under the mailbox lock, before anything is
// written: the file must have the snapshot's dev/ino, be at least `scannedSize` long, and at
// every message of the snapshot still hold a From_ line of the same length (`From ` ... its LF
// exactly at contentOffset - 1) and, where another message follows, the blank line ("\n\n")
// ending its span. Only bytes around the boundaries are read (64 KiB windows). That catches
// every edit that moves a boundary: a truncated or replaced file, a message removed, inserted
// or rewritten to another length (another server's expunge, mutt adding a Status: header), a
// restore from a backup. It misses edits that keep every boundary where it was (same-length
// changes inside a message, two equal-length messages swapped, a From_ line changed to another
// of the same length): the snapshot keeps no message bytes to compare with. Those cannot tear
// the file: whole spans between verified boundaries are moved or dropped.
import type { FileHandle } from 'node:fs/promises';
import { readAt } from '../fsutil.js';
import { MailboxChangedError, type MailboxSnapshot } from './mailbox.js';

/** the change check reads all the message boundaries within this many bytes at once */
const CHECK_WINDOW_BYTES = 64 * 1024;
/** of a longer From_ line, the change check compares only this much (its end is not checked) */
const FROM_LINE_CHECK_BYTES = 4096;
const LF = 0x0a;
const FROM_ = Buffer.from('From ', 'latin1');
const BLANK_LINE_END = Buffer.from('\n\n', 'latin1');
/** the same in a mailbox written with CRLF line ends */
const CRLF_BLANK_LINE_END = Buffer.from('\n\r\n', 'latin1');

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
 * Throws MailboxChangedError unless the file is the snapshot's, at least as long, with every
 * message boundary in place; returns its size. Reads only around the boundaries: one read
 * covers all the checks that fit in 64 KiB.
 */
export async function verifyUnchanged(mailbox: FileHandle, snapshot: MailboxSnapshot): Promise<number> {
  const changed = (reason: string): MailboxChangedError => new MailboxChangedError(snapshot.path, reason);
  const st = await mailbox.stat();
  if (st.dev !== snapshot.dev || st.ino !== snapshot.ino) throw changed('the file was replaced');
  if (st.size < snapshot.scannedSize) throw changed(`it shrank to ${st.size} bytes from ${snapshot.scannedSize}`);
  const checks = boundaryChecks(snapshot);
  const window = Buffer.allocUnsafe(CHECK_WINDOW_BYTES);
  let start = 0;
  let end = 0;
  for (const [r, check] of checks.entries()) {
    const checkEnd = check.position + check.length;
    if (check.position < start || checkEnd > end) {
      let until = checkEnd;
      for (
        let s = r + 1;
        s < checks.length && checks[s].position + checks[s].length - check.position <= window.length;
        s++
      ) {
        until = Math.max(until, checks[s].position + checks[s].length);
      }
      start = check.position;
      end = start + (await readAt(mailbox, window, 0, until - start, start));
    }
    const bytes = window.subarray(check.position - start, Math.min(checkEnd, end) - start);
    const message = snapshot.messages[check.message];
    if (check.kind === 'blank') {
      if (!bytes.subarray(1).equals(BLANK_LINE_END) && !bytes.equals(CRLF_BLANK_LINE_END)) {
        throw changed(`message ${check.message + 1} no longer ends with a blank line at offset ${checkEnd}`);
      }
      continue;
    }
    const lineLength = message.contentOffset - message.offset;
    const lineOk =
      bytes.length === check.length &&
      bytes.subarray(0, FROM_.length).equals(FROM_) &&
      bytes.indexOf(LF) === (lineLength <= FROM_LINE_CHECK_BYTES ? lineLength - 1 : -1);
    if (!lineOk)
      throw changed(`message ${check.message + 1} no longer starts with its From_ line at offset ${message.offset}`);
  }
  return st.size;
}
