// Whether an existing mailbox file may be given a user's mail or served to them, as Postfix's
// `local` checks before it appends: one hard link, owned by the account mailsrv expects (or root,
// who could write it anyway), and not writable by group or others beyond what the mailbox mode
// allows. A file someone else made at
// `spool_dir/<user>` (a group-`mail` member can, in a Debian-style /var/mail) would otherwise
// capture the user's mail, or feed them a mailbox of its owner's making.
import type { Stats } from 'node:fs';

/** Who a mailbox file must belong to, and whether its group may write it. */
export interface MailboxOwner {
  uid: number;
  groupWritable: boolean;
}

/** Mailboxes of mailsrv's own users belong to the daemon's account, mode 0600. */
export function daemonOwner(): MailboxOwner {
  return { uid: process.geteuid?.() ?? 0, groupWritable: false };
}

/**
 * A Unix account's mailbox (accounts = "system") belongs to the account, group mail, mode 0660
 * (Debian policy): the daemon reads and writes it through the group.
 */
export function accountOwner(uid: number): MailboxOwner {
  return { uid, groupWritable: true };
}

export class UntrustedMailboxError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: refusing an unsafe mailbox file: ${reason}`);
    this.name = 'UntrustedMailboxError';
  }
}

/** Throws UntrustedMailboxError when the (regular) file `st` of `path` may not be trusted. */
export function checkMailboxFile(path: string, st: Stats, owner: MailboxOwner = daemonOwner()): void {
  if (st.nlink > 1) throw new UntrustedMailboxError(path, `it has ${st.nlink} hard links`);
  if (st.uid !== owner.uid && st.uid !== 0)
    throw new UntrustedMailboxError(path, `owned by uid ${st.uid}, not ${owner.uid}`);
  const unsafeWrite = owner.groupWritable ? 0o002 : 0o022;
  if ((st.mode & unsafeWrite) !== 0) {
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
    throw new UntrustedMailboxError(
      path,
      `mode ${mode} lets ${owner.groupWritable ? 'others' : 'group or others'} write`,
    );
  }
}
