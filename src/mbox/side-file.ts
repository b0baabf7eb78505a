// The spool's side files of a mailbox, `spool_dir/.<mailbox><suffix>` (the update marker, the
// unsettled deliveries): their path, and which mailbox a name in the spool belongs to.
import { basename, dirname, join } from 'node:path';

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
