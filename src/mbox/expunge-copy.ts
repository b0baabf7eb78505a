// The compaction of a POP3 update: from A (the first deleted message) to the new end N, the
// kept bytes move down, copied forward in chunks: new bytes [D, D + L) come from old bytes at
// D + shift and later (shift: the deleted bytes before them). Writing a chunk destroys old bytes
// [D, D + L); those are still needed only where the chunk's own source starts inside them
// (shift < L), so only such a chunk is first saved in the journal's data area. Every step is
// recorded in a progress slot of the journal (expunge-journal.ts) before the next one, so the
// copy can be taken up again from any point (expunge-recovery.ts). The protocol, step by step:
// docs/formats.md, "Expunge journal". Cost: the kept bytes after A are read once and written
// once (plus, for chunks the shift does not clear, once more to the journal in the page cache),
// and one fsync of the mailbox, most of whose writing is done by fdatasyncs started in the
// background while the copy goes on (the disk writes while the copy reads and writes memory).
import type { FileHandle } from 'node:fs/promises';
import { BackgroundFlush, readAt, writeAt } from '../fsutil.js';
import { type Journal, type Progress, readChunkData, writeChunkData, writeSlot } from './expunge-journal.js';

/** The index of the kept range holding new offset `d` (A <= d < N). */
function rangeAt(journal: Journal, d: number): number {
  const { destinations } = journal;
  let lo = 0;
  let hi = destinations.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (destinations[mid]! <= d) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Reads the new bytes [d, d + length) from their old places in the mailbox into `out`. */
async function assemble(mailbox: FileHandle, journal: Journal, d: number, length: number, out: Buffer): Promise<void> {
  const { kept } = journal.header;
  let filled = 0;
  for (let k = rangeAt(journal, d); filled < length; k++) {
    const [position, rangeLength] = kept[k]!;
    const skip = d + filled - journal.destinations[k]!;
    const n = Math.min(rangeLength - skip, length - filled);
    if ((await readAt(mailbox, out, filled, n, position + skip)) !== n)
      throw new Error(`mailbox ended early at ${position + skip}`);
    filled += n;
  }
}

/** How the copy goes. */
export interface CopyTuning {
  /** the largest chunk; two are in memory (one written, the next read) */
  chunkBytes: number;
  /** an fdatasync of the mailbox is started in the background after every this many bytes written */
  flushBytes: number;
}

/**
 * Copies the new bytes forward from `progress` to the end N, as the top of this file says;
 * then fsyncs the journal (done = N), truncates the mailbox to N and fsyncs it, running
 * `whileSyncing` during that last fsync (the mailbox then holds its new content).
 */
export async function copyForward(
  mailbox: FileHandle,
  handle: FileHandle,
  journal: Journal,
  progress: Progress,
  tuning: CopyTuning,
  whileSyncing: () => Promise<void> = async () => undefined,
): Promise<void> {
  const { chunkBytes } = tuning;
  const { header } = journal;
  const flush = new BackgroundFlush(mailbox, tuning.flushBytes);
  const out = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(0, header.end - progress.done)));
  let { seq, done } = progress;
  if (progress.chunk !== null) {
    // a journaled chunk may be half written: write it again from the data area (written whole
    // before the slot that names it)
    const length = progress.chunk;
    const data = out.length >= length ? out : Buffer.allocUnsafe(length);
    if ((await readChunkData(handle, journal, data, length)) !== length)
      throw new Error(`${journal.path}: the journaled chunk is cut short`);
    await writeAt(mailbox, data, 0, length, done);
    done += length;
    await writeSlot(handle, journal, { seq: ++seq, done, chunk: null });
  }
  // two buffers: the next chunk is read while this one is written (its source lies at or after
  // where this one ends, which no write of this one reaches)
  const buffers = [out, Buffer.allocUnsafe(out.length)];
  const read = (at: number, into: Buffer): Promise<void> | null => {
    if (at >= header.end) return null;
    const reading = assemble(mailbox, journal, at, Math.min(into.length, header.end - at), into);
    reading.catch(() => undefined); // awaited in its turn; not unhandled meanwhile
    return reading;
  };
  let reading = read(done, buffers[0]!);
  for (let i = 0; done < header.end; i = 1 - i) {
    const chunk = buffers[i]!;
    const length = Math.min(chunk.length, header.end - done);
    await reading;
    reading = read(done + length, buffers[1 - i]!);
    const k = rangeAt(journal, done);
    const shift = header.kept[k]![0] + (done - journal.destinations[k]!) - done;
    if (shift < length) {
      // writing this chunk destroys some of its own source: keep its bytes in the journal first
      await writeChunkData(handle, journal, chunk, length);
      await writeSlot(handle, journal, { seq: ++seq, done, chunk: length });
    }
    await writeAt(mailbox, chunk, 0, length, done);
    flush.wrote(length);
    done += length;
    await writeSlot(handle, journal, { seq: ++seq, done, chunk: null });
  }
  await Promise.all([handle.sync(), flush.settled()]);
  await mailbox.truncate(header.end);
  // both run to their end before an error of either is thrown
  for (const outcome of await Promise.allSettled([mailbox.sync(), whileSyncing()]))
    if (outcome.status === 'rejected') throw outcome.reason;
}
