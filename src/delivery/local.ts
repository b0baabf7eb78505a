// The local delivery agent (Postfix's `local`): appends messages to one user's mbox with the
// trace headers on top, under the mailbox lock, fsynced, or not at all. Queued messages come
// from the queue manager; a just-received message for a single mailbox is offered directly
// (deliverNow) and goes to the queue only if the mailbox cannot take it at once. Both kinds go
// through one GroupAppender, so what arrives for a mailbox during an append shares the next fsync.
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Mailboxes, MailboxRule } from '../accounts/mailboxes.js';
import { normalizeUsername } from '../auth/username.js';
import type { Logger } from '../log.js';
import {
  MailboxFullError,
  MailboxLockedError,
  mailboxSize,
  renderedLength,
  type InMemoryMessage,
  type MailboxTarget,
  type MessageToAppend,
} from '../mbox/append.js';
import { GroupAppender } from '../mbox/group-append.js';
import type { StaleLockInfo } from '../mbox/lock.js';
import { settleInterruptedAppend } from '../mbox/probe.js';
import { delivered, permanent, temporary, type DeliveryStatus } from '../message/status.js';
import type { AppendRecorder, DeliveryAgent, DeliveryJob } from '../queue/agents.js';
import type { Envelope } from '../message/envelope.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { domainOf, qualify } from '../message/address.js';
import { missingSubmissionHeaders, traceHeaders } from '../message/trace.js';

export interface LocalDeliveryOptions {
  spoolDir: string;
  hostname: string;
  mailboxSizeLimit: number;
  lockTimeoutMs: number;
  store: QueueStore;
  /** whether the user has a mailbox here (Directory.hasMailbox) */
  userExists: (user: string) => Promise<boolean>;
  /** whose each mailbox is, and who creates it (accounts = "file" or "system") */
  mailboxes: Mailboxes;
  /**
   * Whether a message for a mailbox may be written without the thread pool, blocking the event
   * loop for that write (GroupAppender's writeInPlace); the daemon allows it while no other
   * client is connected and the spool is on local storage.
   */
  writeInPlace?: () => boolean;
  logger: Logger;
}

/** What offering a just-received message to its mailbox came to. */
export type DirectOutcome = 'delivered' | 'mailbox-full' | 'use-queue';

/** Mailbox paths remembered at most (a cache: the name check and the join cost more than a lookup). */
const MAILBOX_PATHS_KEPT = 10_000;

export class LocalDelivery implements DeliveryAgent {
  private readonly appender: GroupAppender;
  /** user → mailbox path, for names that can name one */
  private readonly mailboxPaths = new Map<string, string>();

  constructor(private readonly options: LocalDeliveryOptions) {
    this.appender = new GroupAppender(options.writeInPlace);
  }

  /** Applies changed settings (SIGHUP); the next decision uses them. */
  reconfigure(settings: Partial<LocalDeliveryOptions>): void {
    Object.assign(this.options, settings);
    this.mailboxPaths.clear();
  }

  private readonly staleLockLogger = (info: StaleLockInfo) =>
    this.options.logger.warn({ lock: info.path, reason: info.reason }, 'stale mailbox lock broken');

  /** The user's mbox; null for a name that cannot name one. */
  private mailboxPath(user: string): string | null {
    let path = this.mailboxPaths.get(user);
    if (path !== undefined) return path;
    const name = normalizeUsername(user);
    if (name === null || name !== user) return null;
    path = join(this.options.spoolDir, name);
    if (this.mailboxPaths.size >= MAILBOX_PATHS_KEPT) this.mailboxPaths.clear();
    this.mailboxPaths.set(user, path);
    return path;
  }

  /** Appends each job's message to its user's mailbox (all jobs name the same user). */
  async deliver(jobs: DeliveryJob[], recorder: AppendRecorder): Promise<DeliveryStatus[]> {
    const targets = jobs.map(({ entry, index }) => entry.envelope.recipients[index]!.target);
    const user = targets[0]?.kind === 'local' ? targets[0].user : undefined;
    if (user === undefined || targets.some((t) => t.kind !== 'local' || t.user !== user)) {
      throw new Error('a local delivery batch must name one local user');
    }
    const mailbox = this.mailboxPath(user);
    if (mailbox === null) return jobs.map(() => permanent('5.1.3', `invalid mailbox name ${JSON.stringify(user)}`));
    let rule: MailboxRule;
    try {
      if (!(await this.options.userExists(user))) {
        return jobs.map(({ entry, index }) =>
          permanent('5.1.1', `<${entry.envelope.recipients[index]!.address}>: user unknown`),
        );
      }
      rule = await this.options.mailboxes.prepare(user, mailbox);
    } catch (err) {
      return jobs.map(() => temporary('4.3.0', `cannot prepare mailbox of ${user}: ${(err as Error).message}`));
    }
    const results = await this.appender.append(
      this.target(mailbox, this.options.lockTimeoutMs, rule),
      jobs.map((job) => ({
        ...this.message(job.entry.envelope, job.index, user, this.options.store.openMessage(job.entry), (offset) =>
          recorder.appending(job, mailbox, offset),
        ),
        afterCommit: () => recorder.appended(job),
      })),
    );
    return results.map((result) => (result instanceof Error ? appendFailure(result, user) : delivered()));
  }

  /**
   * Delivers a message that is not queued yet, if its only recipient is a local mailbox that is
   * free right now; fsynced when this resolves 'delivered'. 'use-queue': nothing was written
   * (several or remote recipients, a busy or failing mailbox), the caller queues the message.
   */
  async deliverNow(envelope: Envelope, source: InMemoryMessage | (() => Readable)): Promise<DirectOutcome> {
    const [recipient, ...others] = envelope.recipients;
    if (recipient === undefined || others.length > 0 || recipient.target.kind !== 'local') return 'use-queue';
    const user = recipient.target.user;
    const mailbox = this.mailboxPath(user);
    if (mailbox === null) return 'use-queue';
    let rule: MailboxRule;
    try {
      if (!(await this.options.userExists(user))) return 'use-queue';
      rule = await this.options.mailboxes.prepare(user, mailbox);
    } catch {
      return 'use-queue'; // the queue tries again and says why
    }
    const result = await this.appender.appendOne(
      this.target(mailbox, 0, rule),
      this.message(envelope, 0, user, typeof source === 'function' ? source() : source),
    );
    if (result instanceof MailboxFullError) return 'mailbox-full';
    if (result instanceof Error) {
      const details = { queueId: envelope.id, to: recipient.address, user, reason: result.message };
      // locked by another program is routine; any other failure (EIO, EACCES) needs the administrator
      if (result instanceof MailboxLockedError)
        this.options.logger.info(details, 'mailbox busy: queued for later delivery');
      else this.options.logger.warn(details, 'mailbox unavailable: queued for later delivery');
      return 'use-queue';
    }
    return 'delivered';
  }

  /** Size of the user's mailbox in bytes (0 if none): from the open mailbox while one is, else stat. */
  async mailboxSize(user: string): Promise<number> {
    const path = this.mailboxPath(user);
    if (path === null) return 0;
    return this.appender.knownSize(path) ?? (await mailboxSize(path));
  }

  /** Lets go of mailboxes kept open between batches (daemon stop, after the last delivery). */
  close(): Promise<void> {
    return this.appender.close();
  }

  private target(mailboxPath: string, lockTimeoutMs: number, rule: MailboxRule): MailboxTarget {
    return {
      mailboxPath,
      sizeLimit: this.options.mailboxSizeLimit,
      lockTimeoutMs,
      onStaleBroken: this.staleLockLogger,
      owner: rule.owner,
      create: rule.create,
    };
  }

  private message(
    envelope: Envelope,
    index: number,
    user: string,
    source: Readable | InMemoryMessage,
    beforeWrite?: (offset: number) => Promise<void>,
  ): MessageToAppend {
    const address = envelope.recipients[index]!.address;
    const domain = domainOf(qualify(address, this.options.hostname));
    return {
      source,
      sender: envelope.sender,
      date: new Date(envelope.receivedAt),
      addHeaders: traceHeaders(envelope, index, this.options.hostname, `${user}@${domain}`),
      addHeadersIfMissing: missingSubmissionHeaders(envelope, this.options.hostname),
      beforeWrite,
    };
  }

  /** After a crash: keeps a complete append (true), cuts a torn one off (false: deliver again). */
  async settleInterruptedAppend(entry: QueueEntry, index: number, mailbox: string, offset: number): Promise<boolean> {
    const recipient = entry.envelope.recipients[index]!;
    if (recipient.target.kind !== 'local') return false;
    const expectedBytes = await renderedLength(
      this.message(entry.envelope, index, recipient.target.user, this.options.store.openMessage(entry)),
    );
    return settleInterruptedAppend({
      mailboxPath: mailbox,
      offset,
      expectedBytes,
      deliveryId: recipient.deliveryId,
      lockTimeoutMs: this.options.lockTimeoutMs,
      onStaleBroken: this.staleLockLogger,
    });
  }
}

/** What an append failure means for the recipient (always worth another try). */
function appendFailure(err: Error, user: string): DeliveryStatus {
  if (err instanceof MailboxFullError) return temporary('4.2.2', `mailbox of ${user} is full`);
  if (err instanceof MailboxLockedError) return temporary('4.2.0', `mailbox of ${user} is locked by another program`);
  return temporary('4.3.0', `cannot write mailbox of ${user}: ${err.message}`);
}
