// Hop count of a message, as Postfix's hopcount_limit uses it: the number of Received fields
// in its header block. A message that has passed through too many servers is in a mail loop:
// refused at the end of DATA, and bounced (5.4.6) if it got into the queue some other way,
// instead of being sent round once more.
import type { Readable } from 'node:stream';
import { headerLines, readHeaderBlock } from './header-block.js';

/** More Received headers than this: a mail loop (Postfix's hopcount_limit). */
export const MAX_HOPS = 50;

/** A Received field starts a line (continuation lines start with white space): `Received WSP* :`. */
const RECEIVED_FIELD_START = /^received[ \t]*:/i;
/** Bytes of a line start examined: the field name and some obsolete white space before its colon. */
const FIELD_START_BYTES = 64;
/** `r`, as a line's first byte is lowercased (`| 0x20`) to pass by other fields at once */
const LOWER_R = 0x72;

/** Number of Received header fields in `headerBlock` (its first empty line ends the count). */
export function countReceivedHeaders(headerBlock: Buffer): number {
  let count = 0;
  for (const line of headerLines(headerBlock)) {
    if ((line[0]! | 0x20) !== LOWER_R) continue;
    if (RECEIVED_FIELD_START.test(line.toString('latin1', 0, FIELD_START_BYTES))) count++;
  }
  return count;
}

/** Header bytes looked at for the count: a loop's Received lines are near the top. */
const HEAD_BYTES = 64 * 1024;

/** Hop count of a whole message (a queued one, say), read from `message` up to its header block's end. */
export async function countHops(message: Readable): Promise<number> {
  return countReceivedHeaders(await readHeaderBlock(message, HEAD_BYTES));
}

/**
 * Sees a message go by, chunk by chunk, and keeps (references to) its first bytes, so the hop
 * count is known once it has been received: a looping message is refused in the SMTP session
 * (as Postfix does), not accepted and bounced to a sender who may be forged.
 */
export class HopCounter {
  private readonly head: Buffer[] = [];
  private kept = 0;

  observe(chunk: Buffer): void {
    if (this.kept >= HEAD_BYTES) return;
    const part = chunk.subarray(0, HEAD_BYTES - this.kept);
    this.head.push(part);
    this.kept += part.length;
  }

  get hops(): number {
    return countReceivedHeaders(this.head.length === 1 ? this.head[0]! : Buffer.concat(this.head));
  }
}
