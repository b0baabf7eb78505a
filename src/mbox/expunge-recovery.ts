// Finishes a POP3 update that a crash interrupted, from the journal it left (the mailbox's lock
// held by the caller). No valid progress slot: the mailbox was never written, the journal is
// dropped (old content). Otherwise the copy goes on from the newest valid slot, rewriting a
// journaled chunk first (new content). Mail another program appended since the crash survives:
// the journal's probe tells whether the truncate already ran; if not, mail after the old end is
// added to the journal as one more kept range first. The reasoning, case by case:
// docs/formats.md, "Expunge journal".
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { isErrno } from '../fsutil.js';
import { type CopyTuning, copyForward } from './expunge-copy.js';
import {
  createJournal,
  type Journal,
  type JournalHeader,
  PROBE_MAX_BYTES,
  type Progress,
  probeOf,
  readChunkData,
  readJournal,
  readProgress,
  rebuildPathOf,
  removeJournal,
  writeChunkData,
} from './expunge-journal.js';

/** What recovery did with one journal. */
export interface RecoveryInfo {
  mailbox: string;
  action: 'redone' | 'discarded';
}

/**
 * Recovery found the truncate not done yet and mail appended after the old end (`size` >
 * oldSize): rebuilds the journal, atomically, with that mail as one more kept range.
 */
async function extendJournal(
  journal: Journal,
  progress: Progress,
  handle: FileHandle,
  mailbox: FileHandle,
  size: number,
): Promise<{ journal: Journal; handle: FileHandle }> {
  const old = journal.header;
  const added = size - old.oldSize;
  const end = old.end + added;
  const probeLength = Math.min(PROBE_MAX_BYTES, size - end);
  const header: JournalHeader = {
    ...old,
    end,
    oldSize: size,
    probe: await probeOf(mailbox, end, probeLength),
    probeLength,
    kept: [...old.kept, [old.oldSize, added]],
  };
  const temp = rebuildPathOf(journal.path);
  const rebuilt = await createJournal(temp, header, { ...progress, seq: progress.seq });
  try {
    if (progress.chunk !== null) {
      const data = Buffer.allocUnsafe(progress.chunk);
      await readChunkData(handle, journal, data, data.length);
      await writeChunkData(rebuilt.handle, rebuilt.journal, data, data.length);
    }
    await fs.rename(temp, journal.path);
  } catch (err) {
    await rebuilt.handle.close();
    throw err;
  }
  return { journal: { ...rebuilt.journal, path: journal.path }, handle: rebuilt.handle };
}

/** Finishes the update the journal at `path` describes (mailbox lock held) and removes it. */
export async function redoJournal(path: string, tuning: CopyTuning): Promise<RecoveryInfo> {
  let handle = await fs.open(path, constants.O_RDWR | constants.O_NOFOLLOW);
  try {
    const found = await readJournal(path, handle);
    let journal = found.journal;
    const progress = journal === null ? null : await readProgress(handle, journal);
    if (journal === null || progress === null) {
      // cut short before its first progress slot: the mailbox was never written
      await removeJournal(path);
      return { mailbox: found.mailbox ?? path, action: 'discarded' };
    }
    const { header } = journal;
    let mailbox: FileHandle;
    try {
      mailbox = await fs.open(header.mailbox, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ELOOP')) throw err;
      await removeJournal(path);
      return { mailbox: header.mailbox, action: 'discarded' };
    }
    try {
      const st = await mailbox.stat();
      if (!st.isFile() || st.dev !== header.dev || st.ino !== header.ino) {
        await removeJournal(path);
        return { mailbox: header.mailbox, action: 'discarded' };
      }
      const truncated =
        st.size < header.oldSize || (await probeOf(mailbox, header.end, header.probeLength)) !== header.probe;
      if (truncated) {
        // done = N was on disk before the truncate; bytes after N, if any, are mail delivered since
        await mailbox.sync();
      } else {
        if (st.size > header.oldSize) {
          const extended = await extendJournal(journal, progress, handle, mailbox, st.size);
          await handle.close();
          ({ journal, handle } = extended);
        }
        await copyForward(mailbox, handle, journal, progress, tuning);
      }
    } finally {
      await mailbox.close();
    }
    await removeJournal(path);
    return { mailbox: header.mailbox, action: 'redone' };
  } finally {
    await handle.close();
  }
}

/** Settles a journal of this mailbox left by a failed update, if there is one (its lock is held). */
export async function settleLeftover(path: string, tuning: CopyTuning): Promise<void> {
  try {
    await redoJournal(path, tuning);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}
