// After a crash: settles an append that was under way. Before each append the queue records
// where the message would start; at the next start this tells whether the message there is
// complete (it stays: delivered) or torn (it is cut off, under the mailbox lock, so the
// redelivery leaves no partial message behind). When no message starts there any more (another
// node sharing the spool rewrote the mailbox meanwhile), the whole mailbox is searched for it.
import { open } from 'node:fs/promises';
import { readAt } from '../fsutil.js';
import { acquireDotlock, type StaleLockHandler } from './lock.js';
import { wasDeleted } from './unsettled.js';

const PROBE_BYTES = 64 * 1024;
const NEXT_MESSAGE = Buffer.from('\n\nFrom ', 'latin1');
const FROM = Buffer.from('From ', 'latin1');

export interface InterruptedAppend {
  mailboxPath: string;
  /** where the message's From_ line was to start */
  offset: number;
  /** how many bytes the complete message takes there (From_ line through its blank line) */
  expectedBytes: number;
  /** the message's delivery id: its header line `X-Delivery-ID: <id>` is only in it */
  deliveryId: string;
  lockTimeoutMs: number;
  onStaleBroken?: StaleLockHandler;
}

const headerLineOf = (append: InterruptedAppend): string => `X-Delivery-ID: ${append.deliveryId}`;

/** True when the message is there complete; otherwise false, with a torn tail cut off. */
export async function settleInterruptedAppend(append: InterruptedAppend): Promise<boolean> {
  let handle;
  try {
    handle = await open(append.mailboxPath, 'r+');
  } catch {
    return false;
  }
  try {
    const lock = await acquireDotlock(append.mailboxPath, {
      timeoutMs: append.lockTimeoutMs,
      onStaleBroken: append.onStaleBroken,
    });
    try {
      const size = (await handle.stat()).size;
      const end = append.offset + append.expectedBytes;
      if (
        size >= end &&
        (await isOurs(handle, append)) &&
        (await bytesAt(handle, end - 2, 2)).equals(Buffer.from('\n\n'))
      )
        return true;
      if (
        !(await bytesAt(handle, append.offset, FROM.length)).equals(FROM) ||
        (await startsOtherMessage(handle, append))
      ) {
        // not ours where it was to start: nothing was written, another delivery's message is there,
        // or the mailbox was rewritten since (another node's POP3 update moved what is there).
        // Ours, if it got in whole before the crash, is elsewhere: look for its header line; cut nothing.
        if (await containsAfter(handle, 0, size, Buffer.from(`\n${headerLineOf(append)}\n`, 'latin1'))) return true;
        // or a POP3 update of another node deleted it meanwhile, and said so (unsettled.ts)
        return wasDeleted(append.mailboxPath, append.deliveryId, Date.now());
      }
      // ours, torn: cut it off, unless another program has appended a message after it since
      if (!(await containsAfter(handle, append.offset, size, NEXT_MESSAGE))) {
        await handle.truncate(append.offset);
        await handle.sync();
      }
      return false;
    } finally {
      await lock.release();
    }
  } finally {
    await handle.close();
  }
}

async function bytesAt(handle: Awaited<ReturnType<typeof open>>, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  return buffer.subarray(0, await readAt(handle, buffer, 0, length, position));
}

/** The message at the offset starts with a From_ line and carries the header line. */
async function isOurs(handle: Awaited<ReturnType<typeof open>>, append: InterruptedAppend): Promise<boolean> {
  const text = (await bytesAt(handle, append.offset, PROBE_BYTES)).toString('latin1');
  if (!text.startsWith('From ')) return false;
  const headerEnd = text.indexOf('\n\n');
  return (headerEnd < 0 ? text : text.slice(0, headerEnd)).split('\n').includes(headerLineOf(append));
}

/**
 * The offset starts a message whose header block is complete and lacks the header line: another
 * delivery's message, not ours torn (ours carries the line among its first headers).
 */
async function startsOtherMessage(
  handle: Awaited<ReturnType<typeof open>>,
  append: InterruptedAppend,
): Promise<boolean> {
  const text = (await bytesAt(handle, append.offset, PROBE_BYTES)).toString('latin1');
  const headerEnd = text.indexOf('\n\n');
  return (
    text.startsWith('From ') && headerEnd >= 0 && !text.slice(0, headerEnd).split('\n').includes(headerLineOf(append))
  );
}

/** Whether `needle` occurs in [start, end) of the file, read in bounded chunks. */
async function containsAfter(
  handle: Awaited<ReturnType<typeof open>>,
  start: number,
  end: number,
  needle: Buffer,
): Promise<boolean> {
  const chunk = Buffer.alloc(PROBE_BYTES);
  for (let position = start; position < end; position += PROBE_BYTES - needle.length) {
    const bytesRead = await readAt(handle, chunk, 0, Math.min(PROBE_BYTES, end - position), position);
    if (chunk.subarray(0, bytesRead).includes(needle)) return true;
    if (bytesRead < PROBE_BYTES) return false;
  }
  return false;
}
