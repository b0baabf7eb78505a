// The local delivery agent (Postfix's `local`): appends one queued message to one user's
// mbox with the trace headers on top, under the mailbox lock, fsynced, or not at all.
import { join } from 'node:path';
import { normalizeUsername } from '../auth/username.js';
import type { Logger } from '../log.js';
import { appendMessage, MailboxFullError, MailboxLockedError } from '../mbox/append.js';
import { messageAtOffsetHasHeader } from '../mbox/probe.js';
import { PermanentDeliveryError, type DeliveryAgent } from '../queue/manager.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { missingSubmissionHeaders, traceHeaders } from './trace.js';

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

  mailboxPath(user: string): string {
    const name = normalizeUsername(user);
    if (name === null || name !== user) throw new PermanentDeliveryError(`5.1.3 invalid mailbox name ${JSON.stringify(user)}`);
    return join(this.options.spoolDir, name);
  }

  async deliver(entry: QueueEntry, index: number, recordAppend: (mailbox: string, offset: number) => Promise<void>): Promise<void> {
    const { envelope } = entry;
    const recipient = envelope.recipients[index]!;
    if (recipient.target.kind !== 'local') throw new Error('not a local recipient');
    const user = recipient.target.user;
    const mailbox = this.mailboxPath(user);
    if (!this.options.userExists(user)) throw new PermanentDeliveryError(`5.1.1 <${recipient.address}>: user unknown`);
    const domain = recipient.address.includes('@') ? recipient.address.slice(recipient.address.lastIndexOf('@') + 1) : this.options.hostname;
    try {
      await appendMessage({
        mailboxPath: mailbox,
        source: this.options.store.openMessage(entry),
        sender: envelope.sender,
        date: new Date(envelope.receivedAt),
        addHeaders: traceHeaders(envelope, index, this.options.hostname, `${user}@${domain.toLowerCase()}`),
        addHeadersIfMissing: missingSubmissionHeaders(envelope, this.options.hostname),
        sizeLimit: this.options.mailboxSizeLimit,
        lockTimeoutMs: this.options.lockTimeoutMs,
        beforeWrite: (offset) => recordAppend(mailbox, offset),
        onStaleBroken: (info) => this.options.logger.warn({ queueId: envelope.id, lock: info.path, reason: info.reason }, 'stale mailbox lock broken'),
      });
    } catch (err) {
      if (err instanceof MailboxFullError) throw new Error(`4.2.2 mailbox of ${user} is full`);
      if (err instanceof MailboxLockedError) throw new Error(`4.2.0 mailbox of ${user} is locked by another program`);
      throw new Error(`4.3.0 cannot write mailbox of ${user}: ${(err as Error).message}`);
    }
  }

  wasAppended(entry: QueueEntry, index: number, mailbox: string, offset: number): Promise<boolean> {
    return messageAtOffsetHasHeader(mailbox, offset, `X-Delivery-ID: ${entry.envelope.recipients[index]!.deliveryId}`);
  }
}
