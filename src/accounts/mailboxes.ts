// Whose each mailbox is, and who makes a missing one (README, "Using the box's Unix accounts"):
// with accounts = "file" every mailbox is the daemon's own (0600, created by the append); with
// accounts = "system" a user's mailbox belongs to their account, group mail, mode 0660, and
// only the root helper may create it so (helper-client.ts). A name without an account there
// (postmaster with no alias) keeps a mailbox of the daemon's own.
import { accountOwner, daemonOwner, type MailboxOwner } from '../mbox/trust.js';
import type { SystemAccounts } from './system-accounts.js';
import { pathExists } from '../fsutil.js';

export interface MailboxRule {
  owner: MailboxOwner;
  /** whether the append may create the mailbox itself (else it exists by now) */
  create: boolean;
}

export interface Mailboxes {
  /** The rule for `user`'s mailbox at `path`, after making it when it is the helper's to make. */
  prepare(user: string, path: string): Promise<MailboxRule>;
  /** Who `user`'s existing mailbox must belong to (POP3 reads it). */
  ownerOf(user: string): Promise<MailboxOwner>;
}

/** accounts = "file": every mailbox is the daemon's. */
export const daemonMailboxes: Mailboxes = {
  prepare: async () => ({ owner: daemonOwner(), create: true }),
  ownerOf: async () => daemonOwner(),
};

/** accounts = "system": `createMailbox` asks the helper to make spool_dir/<login> for the account. */
export function accountMailboxes(
  accounts: SystemAccounts,
  createMailbox: (login: string, path: string) => Promise<void>,
): Mailboxes {
  const ownerOf = async (user: string) => {
    const account = await accounts.find(user);
    return account === null ? daemonOwner() : accountOwner(account.uid);
  };
  return {
    ownerOf,
    prepare: async (user, path) => {
      const account = await accounts.find(user);
      if (account === null) return { owner: daemonOwner(), create: true };
      if (!(await pathExists(path))) await createMailbox(account.login, path);
      return { owner: accountOwner(account.uid), create: false };
    },
  };
}
