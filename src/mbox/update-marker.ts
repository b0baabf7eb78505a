// The spool's note that a POP3 update of a mailbox is under way: `spool_dir/.<mailbox>.updating`,
// naming the node doing it. The update's redo journal is in that node's own state_dir, so if the
// node dies part way, only it can finish the update when it starts again; until then the mailbox
// is torn, and every other node must keep off it (acquireDotlock treats the marker as a held
// lock). Written and fsynced before the mailbox is first written, removed after the journal.
// Format and rules: docs/formats.md, "Mailbox dotlock".
import { constants, promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDir, isErrno } from '../fsutil.js';
import { mailboxOfSideFile, readOwnSideFile, sideFilePath } from './side-file.js';

const SUFFIX = '.updating';
/** A marker holds one node name: anything longer is not ours. */
const MARKER_READ_BYTES = 256;

const updateMarkerPath = (mailboxPath: string): string => sideFilePath(mailboxPath, SUFFIX);

/** The mailbox a file name in the spool is the marker of, or null. */
export const mailboxOfUpdateMarker = (name: string): string | null => mailboxOfSideFile(name, SUFFIX);

/** Notes (durably) that `node` is about to rewrite the mailbox. */
export async function markUpdate(mailboxPath: string, node: string): Promise<void> {
  const path = updateMarkerPath(mailboxPath);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  const handle = await fs.open(path, flags, 0o600);
  try {
    await handle.writeFile(`${node}\n`, 'latin1');
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsyncDir(dirname(path));
}

/** Removes the marker (the update is finished, or was never begun). */
export async function clearUpdate(mailboxPath: string): Promise<void> {
  try {
    await fs.unlink(updateMarkerPath(mailboxPath));
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  await fsyncDir(dirname(mailboxPath));
}

/** The node whose update of the mailbox is under way or was interrupted, or null (none, or none begun). */
export async function updatingNode(mailboxPath: string): Promise<string | null> {
  const text = await readOwnSideFile(updateMarkerPath(mailboxPath), MARKER_READ_BYTES);
  // the mailbox is written only once the whole marker is fsynced: a marker cut short (its
  // writer killed between creating and writing it) stands for an update that never began
  return text === null ? null : (/^(\S+)\n/.exec(text)?.[1] ?? null);
}
