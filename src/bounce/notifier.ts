// The queue manager's Notifier: turns failed or delayed recipients of a queue entry into a
// delivery status notification (dsn.ts) from MAILER-DAEMON with the null sender, and queues it
// to the entry's sender like any other mail (so it is delivered, retried and, being from <>,
// never bounced itself).
import { Readable } from 'node:stream';
import { localClient } from '../message/envelope.js';
import type { Injector } from '../queue/inject.js';
import type { Notifier } from '../queue/manager.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { composeDsn, ORIGINAL_HEADERS_CAP, type DsnRecipient } from './dsn.js';
import { readHeaderBlock } from '../message/header-block.js';

export interface BounceNotifierOptions {
  store: QueueStore;
  injector: Injector;
  /** what SIGHUP may change: our host name, and how long a message is retried */
  settings: () => { hostname: string; maxLifetimeMs: number };
}

/** The enhanced status code (RFC 3463) a stored error text carries, e.g. "550 5.1.1 ..." or "4.4.1 ...". */
function statusOf(error: string | undefined, kind: 'failure' | 'delay'): string {
  const match = /(?:^|\s)([245]\.\d{1,3}\.\d{1,3})(?:\s|$)/.exec(error ?? '');
  return match ? match[1]! : kind === 'failure' ? '5.0.0' : '4.0.0';
}

/** The host a relay is named by in the log ("mx.remote.test[192.0.2.1]:25", or "[192.0.2.1]:25"). */
function remoteMtaOf(relay: string | undefined): string | undefined {
  const match = /^([^[]*)\[([^\]]*)\]/.exec(relay ?? '');
  return match ? match[1] || match[2] : undefined;
}

export class BounceNotifier implements Notifier {
  constructor(private readonly options: BounceNotifierOptions) {}

  async notify(entry: QueueEntry, indexes: number[], kind: 'failure' | 'delay'): Promise<void> {
    const { hostname, maxLifetimeMs } = this.options.settings();
    const { envelope } = entry;
    const recipients = indexes.map((index): DsnRecipient => {
      const progress = entry.progress[index]!;
      return {
        address: envelope.recipients[index]!.address,
        status: statusOf(progress.lastError, kind),
        remoteMta: remoteMtaOf(progress.relay),
        diagnostic: progress.lastError,
        lastAttemptAt: progress.lastAttemptAt,
        willRetryUntil: kind === 'delay' ? envelope.receivedAt + maxLifetimeMs : undefined,
      };
    });
    const dsn = composeDsn({
      kind,
      reportingHost: hostname,
      original: { queueId: envelope.id, sender: envelope.sender, receivedAt: envelope.receivedAt, clientHelo: envelope.client.helo || undefined },
      recipients,
      originalHeaders: await readHeaderBlock(this.options.store.openMessage(entry), ORIGINAL_HEADERS_CAP),
      now: new Date(),
    });
    await this.options.injector.inject({ sender: '', recipients: [envelope.sender], client: localClient(), source: Readable.from([dsn]) });
  }
}
