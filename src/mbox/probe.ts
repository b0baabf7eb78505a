// Answers "does the message at this offset of a mailbox carry this header line?" without
// reading more than its first 64 KiB: used after a crash to tell whether an append that was
// under way completed (its X-Delivery-ID is there) or must be redone.
import { open } from 'node:fs/promises';

const PROBE_BYTES = 64 * 1024;

export async function messageAtOffsetHasHeader(mailboxPath: string, offset: number, headerLine: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(mailboxPath, 'r');
  } catch {
    return false;
  }
  try {
    const buffer = Buffer.alloc(PROBE_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, PROBE_BYTES, offset);
    const text = buffer.subarray(0, bytesRead).toString('latin1');
    if (!text.startsWith('From ')) return false;
    const headerEnd = text.indexOf('\n\n');
    const headers = headerEnd < 0 ? text : text.slice(0, headerEnd);
    return headers.split('\n').includes(headerLine);
  } finally {
    await handle.close();
  }
}
