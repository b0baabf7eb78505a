// Daemon start, after this node has finished what a crash of its own left under way: takes away
// the notes it left in the spool for other nodes (README "More than one node"): update markers
// (update-marker.ts) once its interrupted POP3 updates are redone, and its "crashed" notes in
// the unsettled-deliveries files (unsettled.ts) once its queue has settled every interrupted append.
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { acquireDotlock, MailboxLockedError, type StaleLockHandler } from './lock.js';
import { thisNode } from './node.js';
import { forgetNode, mailboxOfUnsettled } from './unsettled.js';
import { clearUpdate, mailboxOfUpdateMarker, updatingNode } from './update-marker.js';

/** The mailboxes in the spool that have a side file `mailboxOf` recognizes. */
async function mailboxesWith(spoolDir: string, mailboxOf: (name: string) => string | null): Promise<string[]> {
  const mailboxes: string[] = [];
  for (const name of await fs.readdir(spoolDir)) {
    const mailbox = mailboxOf(name);
    if (mailbox !== null) mailboxes.push(join(spoolDir, mailbox));
  }
  return mailboxes;
}

/** Every update of this node is finished (its journals are redone): its markers go, and markers cut short. */
export async function clearOwnUpdateMarkers(spoolDir: string): Promise<void> {
  for (const mailbox of await mailboxesWith(spoolDir, mailboxOfUpdateMarker)) {
    // this node's, or one that names nobody (cut short before any update began)
    const node = await updatingNode(mailbox);
    if (node === null || node === thisNode()) await clearUpdate(mailbox);
  }
}

/**
 * Every interrupted append of this node is settled: its "crashed" notes go, each under its
 * mailbox's lock. Returns the mailboxes whose lock it could not have in time (their note stays).
 */
export async function forgetOwnCrashes(
  spoolDir: string,
  options: { timeoutMs: number; onStaleBroken?: StaleLockHandler; now: number },
): Promise<string[]> {
  const skipped: string[] = [];
  for (const mailbox of await mailboxesWith(spoolDir, mailboxOfUnsettled)) {
    let lock;
    try {
      lock = await acquireDotlock(mailbox, options);
    } catch (err) {
      if (!(err instanceof MailboxLockedError)) throw err;
      skipped.push(mailbox);
      continue;
    }
    try {
      await forgetNode(mailbox, thisNode(), options.now);
    } finally {
      await lock.release();
    }
  }
  return skipped;
}
