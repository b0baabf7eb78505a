// The queue manager's Notifier: turns failed or delayed recipients of a queue entry into a
// delivery status notification (dsn.ts) from MAILER-DAEMON with the null sender, and queues it
// to the entry's sender like any other mail (so it is delivered, retried and, being from <>,
// never bounced itself).
import { Readable } from 'node:stream';
import { localClient } from '../message/envelope.js';
import { temporary, type DeliveryStatus } from '../message/status.js';
import type { Injector } from '../queue/inject.js';
import type { Notifier } from '../queue/agents.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { composeDsn, ORIGINAL_HEADERS_CAP, type DsnRecipient } from './dsn.js';
import { readHeaderBlock } from '../message/header-block.js';

export interface BounceNotifierOptions {
  store: QueueStore;
  injector: Injector;
  /** what SIGHUP may change: our host name, and how long a message is retried */
  settings: () => { hostname: string; maxLifetimeMs: number };
}

/** For a recipient whose attempt was cut off (the daemon stopped mid-delivery) before it came to anything. */
const NO_STATUS: DeliveryStatus = temporary('4.0.0', 'delivery not completed yet');

export class BounceNotifier implements Notifier {
  constructor(private readonly options: BounceNotifierOptions) {}

  async notify(entry: QueueEntry, indexes: number[], kind: 'failure' | 'delay'): Promise<QueueEntry> {
    const { hostname, maxLifetimeMs } = this.options.settings();
    const { envelope } = entry;
    const recipients = indexes.map((index): DsnRecipient => {
      const progress = entry.progress[index]!;
      return {
        address: envelope.recipients[index]!.address,
        status: progress.lastStatus ?? NO_STATUS,
        lastAttemptAt: progress.lastAttemptAt,
        willRetryUntil: kind === 'delay' ? envelope.receivedAt + maxLifetimeMs : undefined,
      };
    });
    const dsn = composeDsn({
      kind,
      reportingHost: hostname,
      original: {
        queueId: envelope.id,
        sender: envelope.sender,
        receivedAt: envelope.receivedAt,
        clientHelo: envelope.client.helo || undefined,
      },
      recipients,
      originalHeaders: await readHeaderBlock(this.options.store.openMessage(entry), ORIGINAL_HEADERS_CAP),
      now: new Date(),
    });
    return this.options.injector.inject({
      sender: '',
      recipients: [envelope.sender],
      client: localClient(),
      source: Readable.from([dsn]),
      noticeOf: { queueId: envelope.id, indexes, kind },
    });
  }
}
