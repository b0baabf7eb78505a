// Mail mailsrv puts into its own queue: bounces and delay warnings, and messages dropped off by
// `mailsrv sendmail`. Recipients are routed as accepted mail is (aliases, local users, remote
// forwards); the entry is on disk and fsynced before it is handed to the queue manager.
import type { Readable } from 'node:stream';
import type { ClientInfo, NoticeOrigin, ResolvedRecipient } from '../message/envelope.js';
import type { PendingEntry } from './pending.js';
import type { QueueEntry, QueueStore } from './store.js';

export interface Injection {
  /** envelope sender; '' for bounces */
  sender: string;
  recipients: string[];
  /** how it came in (protocol LOCAL, no IP) */
  client: ClientInfo;
  source: Readable;
  /**
   * A delivery status notice: what it reports on is kept in its envelope, and it is not handed
   * to the queue manager here: the manager does, once the reported entry's progress is saved.
   */
  noticeOf?: NoticeOrigin;
}

export interface InjectorOptions {
  store: QueueStore;
  /** the deliveries addresses lead to, each once, as routed now (SIGHUP replaces users and aliases) */
  route: (addresses: string[]) => Promise<ResolvedRecipient[]>;
  onQueued: (entry: QueueEntry) => void;
  /** DKIM-signs a message (all of it received) made or submitted here (see SubmissionSigner) */
  sign?: (pending: PendingEntry<QueueEntry>) => Promise<unknown>;
}

/** None of the addresses leads anywhere (an empty list). */
export class NoRecipientsError extends Error {
  constructor() {
    super('no recipients');
    this.name = 'NoRecipientsError';
  }
}

export class Injector {
  constructor(private readonly options: InjectorOptions) {}

  async inject(injection: Injection): Promise<QueueEntry> {
    const recipients = await this.options.route(injection.recipients);
    if (recipients.length === 0) throw new NoRecipientsError();
    const pending = this.options.store.begin({
      sender: injection.sender,
      receivedAt: Date.now(),
      client: injection.client,
      recipients,
      ...(injection.noticeOf === undefined ? {} : { noticeOf: injection.noticeOf }),
    });
    try {
      await pending.write(injection.source);
      if (injection.client.submitted) await this.options.sign?.(pending);
      const entry = await pending.commit();
      if (injection.noticeOf === undefined) this.options.onQueued(entry);
      return entry;
    } catch (err) {
      await pending.discard();
      throw err;
    }
  }
}
