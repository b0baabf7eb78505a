// The spool's side files of a mailbox, `spool_dir/.<mailbox><suffix>` (the update marker, the
// unsettled deliveries): their path, which mailbox a name in the spool belongs to, and reading one.
import { constants, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isErrno, readAt } from '../fsutil.js';

/** The side file's path for a mailbox. */
export function sideFilePath(mailboxPath: string, suffix: string): string {
  return join(dirname(mailboxPath), `.${basename(mailboxPath)}${suffix}`);
}

/** The mailbox a file name in the spool is the side file of, or null if it is not one. */
export function mailboxOfSideFile(name: string, suffix: string): string | null {
  if (!name.startsWith('.') || !name.endsWith(suffix)) return null;
  const mailbox = name.slice(1, -suffix.length);
  return mailbox === '' || mailbox.includes('/') ? null : mailbox;
}

/**
 * The side file's text (at most `maxBytes`, latin1), or null if there is none, or it is not a
 * regular file of this account: anyone else who may write in the spool (group mail) must not be
 * able to steer a mailbox's recovery with one.
 */
export async function readOwnSideFile(path: string, maxBytes: number): Promise<string | null> {
  let handle;
  try {
    handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.uid !== process.geteuid?.()) return null;
    const buffer = Buffer.alloc(Math.min(st.size, maxBytes));
    const n = await readAt(handle, buffer, 0, buffer.length, 0);
    return buffer.toString('latin1', 0, n);
  } finally {
    await handle.close();
  }
}
