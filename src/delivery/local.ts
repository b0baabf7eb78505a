// The local delivery agent (Postfix's `local`): appends queued messages to one user's mbox
// with the trace headers on top, under the mailbox lock, fsynced, or not at all.
import { join } from 'node:path';
import { normalizeUsername } from '../auth/username.js';
import type { Logger } from '../log.js';
import { appendMessages, MailboxFullError, MailboxLockedError, renderedLength, type MessageToAppend } from '../mbox/append.js';
import type { StaleLockInfo } from '../mbox/lock.js';
import { settleInterruptedAppend } from '../mbox/probe.js';
import { delivered, permanent, temporary, type DeliveryStatus } from '../message/status.js';
import type { DeliveryAgent, DeliveryJob } from '../queue/agents.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { domainOf, qualify } from '../message/address.js';
import { missingSubmissionHeaders, traceHeaders } from '../message/trace.js';

export interface LocalDeliveryOptions {
  spoolDir: string;
  hostname: string;
  mailboxSizeLimit: number;
  lockTimeoutMs: number;
  store: QueueStore;
  userExists: (user: string) => boolean;
  logger: Logger;
}

export class LocalDelivery implements DeliveryAgent {
  constructor(private readonly options: LocalDeliveryOptions) {}

  /** Applies changed settings (SIGHUP); the next decision uses them. */
  reconfigure(settings: Partial<LocalDeliveryOptions>): void {
    Object.assign(this.options, settings);
  }

  private readonly staleLockLogger = (info: StaleLockInfo) => this.options.logger.warn({ lock: info.path, reason: info.reason }, 'stale mailbox lock broken');

  /** The user's mbox; null for a name that cannot name one. */
  private mailboxPath(user: string): string | null {
    const name = normalizeUsername(user);
    return name === null || name !== user ? null : join(this.options.spoolDir, name);
  }

  /** Appends each job's message to its user's mailbox (all jobs name the same user). */
  async deliver(jobs: DeliveryJob[], recordAppend: (job: DeliveryJob, mailbox: string, offset: number) => Promise<void>): Promise<DeliveryStatus[]> {
    const targets = jobs.map(({ entry, index }) => entry.envelope.recipients[index]!.target);
    const user = targets[0]?.kind === 'local' ? targets[0].user : undefined;
    if (user === undefined || targets.some((t) => t.kind !== 'local' || t.user !== user)) {
      throw new Error('a local delivery batch must name one local user');
    }
    const mailbox = this.mailboxPath(user);
    if (mailbox === null) return jobs.map(() => permanent('5.1.3', `invalid mailbox name ${JSON.stringify(user)}`));
    if (!this.options.userExists(user)) {
      return jobs.map(({ entry, index }) => permanent('5.1.1', `<${entry.envelope.recipients[index]!.address}>: user unknown`));
    }
    const results = await appendMessages(
      {
        mailboxPath: mailbox,
        sizeLimit: this.options.mailboxSizeLimit,
        lockTimeoutMs: this.options.lockTimeoutMs,
        onStaleBroken: this.staleLockLogger,
      },
      jobs.map((job) => this.message(job, user, (offset) => recordAppend(job, mailbox, offset))),
    );
    return results.map((result) => (result instanceof Error ? appendFailure(result, user) : delivered()));
  }

  private message({ entry, index }: DeliveryJob, user: string, beforeWrite: (offset: number) => Promise<void>): MessageToAppend {
    const { envelope } = entry;
    const address = envelope.recipients[index]!.address;
    const domain = domainOf(qualify(address, this.options.hostname));
    return {
      source: this.options.store.openMessage(entry),
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
    const expectedBytes = await renderedLength(this.message({ entry, index }, recipient.target.user, async () => undefined));
    return settleInterruptedAppend({
      mailboxPath: mailbox,
      offset,
      expectedBytes,
      headerLine: `X-Delivery-ID: ${recipient.deliveryId}`,
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
