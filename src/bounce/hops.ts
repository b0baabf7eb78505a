// Hop count of a message, as Postfix's hopcount_limit uses it: the number of Received fields
// in its header block. A message that has passed through too many servers is in a mail loop
// and is bounced (5.4.6) instead of being sent round once more.
import { headerLines } from './header-block.js';

/** A Received field starts a line (continuation lines start with white space): `Received WSP* :`. */
const RECEIVED_FIELD_START = /^received[ \t]*:/i;
/** Bytes of a line start examined: the field name and some obsolete white space before its colon. */
const FIELD_START_BYTES = 64;

/** Number of Received header fields in `headerBlock` (its first empty line ends the count). */
export function countReceivedHeaders(headerBlock: Buffer): number {
  let count = 0;
  for (const line of headerLines(headerBlock)) {
    if (RECEIVED_FIELD_START.test(line.toString('latin1', 0, FIELD_START_BYTES))) count++;
  }
  return count;
}
