// The mailbox side of a POP3 session, in one place: open (measure the file under its dotlock,
// then scan up to that size, so the session sees only messages whose delivery was complete),
// open the file once for the session's reads (with one read buffer the messages share), read one
// message, the QUIT update, and the session lock that keeps a mailbox to one POP3 session across
// every node sharing the spool. The mbox format, the lock and the update itself live in src/mbox/;
// this file only puts the pieces together for the protocol code.
import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { normalizeUsername } from '../auth/username.js';
import { expungeMessages, type ExpungeResult, finishLeftoverExpunge } from '../mbox/expunge.js';
import { acquireDotlock, type Dotlock, type StaleLockHandler } from '../mbox/lock.js';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from '../mbox/mailbox.js';
import { FileWindow, retrieveMessage, type MessageReader } from '../mbox/retrieve.js';
import { scanMailbox } from '../mbox/scan.js';
import { checkMailboxFile, daemonOwner, type MailboxOwner } from '../mbox/trust.js';

/** The mailbox path names something that is not a regular file: no retry will help. */
export class NotAMailboxError extends Error {
  constructor(readonly path: string) {
    super(`${path} is not a regular file`);
    this.name = 'NotAMailboxError';
  }
}

export interface MaildropOptions {
  spoolDir: string;
  /** who each user's mailbox must belong to (default: the daemon's account) */
  mailboxOwner?: (user: string) => Promise<MailboxOwner>;
  /** state_dir/index: scan.ts keeps what it learnt about each mailbox here */
  indexDir: string;
  /** state_dir/journal: expunge.ts's crash journal */
  journalDir: string;
  /** how long opening and the update wait for the dotlock (read at each use: SIGHUP may change it) */
  lockTimeoutMs: () => number;
  onStaleBroken?: StaleLockHandler;
}

export class Maildrop {
  constructor(private readonly options: MaildropOptions) {}

  /** spool_dir/<user>; the name must already be a normalized user name (never a path). */
  pathOf(user: string): string {
    if (normalizeUsername(user) !== user) throw new Error(`not a normalized user name: ${JSON.stringify(user)}`);
    return join(this.options.spoolDir, user);
  }

  /**
   * The messages of a user's mailbox as they are now. A delivery in progress holds the dotlock,
   * so the size measured under it ends after the last complete message; the scan itself runs
   * without the lock (deliveries go on meanwhile and only append after that size). An update that
   * an I/O error left part way is finished first; if it cannot be, the mailbox is not served.
   * Throws MailboxLockedError when another program keeps the lock past the timeout.
   */
  async open(user: string): Promise<MailboxSnapshot> {
    const path = this.pathOf(user);
    const owner = await (this.options.mailboxOwner?.(user) ?? daemonOwner());
    const lock = await acquireDotlock(path, this.lockOptions());
    let size: number;
    try {
      await finishLeftoverExpunge(path, this.options.journalDir);
      const st = await lstat(path);
      // a symlink is refused too (scan.ts opens with O_NOFOLLOW): it could lead out of the spool
      if (!st.isFile()) throw new NotAMailboxError(path);
      checkMailboxFile(path, st, owner);
      size = st.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      size = 0; // no mailbox yet: an empty one
    } finally {
      await lock.release();
    }
    return scanMailbox(path, { indexDir: this.options.indexDir, upTo: size });
  }

  /**
   * Takes the POP3 session lock of a user's mailbox, `spool_dir/.<user>.pop3.lock`: a dotlock
   * like the mailbox's own (link(2), NFS-safe; refreshed while held, so it goes stale only with
   * its holder), so a session on another node sharing the spool finds the mailbox in use. The
   * name can never be a mailbox or its lock (user names do not start with a dot). Deliveries
   * never look at it. Throws MailboxLockedError at once when another session holds it.
   */
  lockSession(user: string): Promise<Dotlock> {
    const mailbox = this.pathOf(user);
    return acquireDotlock(join(dirname(mailbox), `.${user}.pop3`), { ...this.lockOptions(), timeoutMs: 0 });
  }

  /**
   * The snapshot's file, opened for retrieve() with its read buffer (the caller closes it).
   * Throws MailboxChangedError if the path now names another file than the one scanned.
   */
  async openWindow(snapshot: MailboxSnapshot): Promise<FileWindow> {
    const handle = await open(snapshot.path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await handle.stat();
      if (st.dev !== snapshot.dev || st.ino !== snapshot.ino)
        throw new MailboxChangedError(snapshot.path, 'the file was replaced');
    } catch (err) {
      await handle.close();
      throw err;
    }
    return new FileWindow(handle);
  }

  /** One message as POP3 sends it (CRLF, dot-stuffed, without the terminator); with bodyLines, TOP's part of it. */
  retrieve(snapshot: MailboxSnapshot, window: FileWindow, message: MessageInfo, bodyLines?: number): MessageReader {
    return retrieveMessage(snapshot.path, message, { bodyLines, window, dotStuff: true });
  }

  /** The QUIT update: removes the messages at these indexes of snapshot.messages (see ExpungeResult). */
  expunge(snapshot: MailboxSnapshot, deleted: ReadonlySet<number>): Promise<ExpungeResult> {
    return expungeMessages(snapshot, deleted, {
      journalDir: this.options.journalDir,
      lockTimeoutMs: this.options.lockTimeoutMs(),
      indexDir: this.options.indexDir,
      onStaleBroken: this.options.onStaleBroken,
    });
  }

  private lockOptions() {
    return { timeoutMs: this.options.lockTimeoutMs(), onStaleBroken: this.options.onStaleBroken };
  }
}
