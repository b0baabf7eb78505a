// The queue manager's outbound agent (Postfix's smtp delivery agent seen from qmgr): for one
// queue entry and the recipients it has at one destination, finds where to send it
// (destinations.ts: relayhost, or the domain's MX hosts), sends it over one SMTP session
// (smtp-client.ts), and turns each recipient's result into an attempt outcome: sent, failed for
// good (5xx, no such domain: bounced), or to be retried (4xx, unreachable, timeouts).
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { PermanentDeliveryError, type AttemptOutcome, type DeliveryJob, type RemoteAgent } from '../queue/manager.js';
import type { QueueStore } from '../queue/store.js';
import { DestinationError, DestinationResolver, type Destination } from './destinations.js';
import { formatDestination, sendToDestination } from './smtp-client.js';

/** What SIGHUP may change. */
export interface RemoteSettings {
  hostname: string;
  relayhost: string;
  relayhostUser: string;
  relayhostPasswordFile: string;
  tlsSecurity: Config['relay']['tls_security'];
  dnsServers: string[];
  connectTimeoutMs: number;
  timeoutMs: number;
}

export interface RemoteDeliveryOptions extends RemoteSettings {
  store: QueueStore;
  logger: Logger;
}

export class RemoteDelivery implements RemoteAgent {
  private settings: RemoteSettings;
  private resolver: DestinationResolver;

  constructor(private readonly options: RemoteDeliveryOptions) {
    this.settings = options;
    this.resolver = new DestinationResolver(options);
  }

  reconfigure(settings: RemoteSettings): void {
    this.settings = settings;
    this.resolver = new DestinationResolver(settings);
  }

  destinationOf(address: string): string {
    return this.settings.relayhost === '' ? domainOf(address) : `[relayhost] ${this.settings.relayhost}`;
  }

  async deliver(jobs: DeliveryJob[]): Promise<AttemptOutcome[]> {
    const { entry } = jobs[0]!;
    const recipients = jobs.map(({ index }) => entry.envelope.recipients[index]!.address);
    const settings = this.settings;
    let destinations: Destination[];
    let auth: { user: string; pass: string } | null;
    try {
      destinations = await this.resolver.resolve(domainOf(recipients[0]!));
      auth = await relayhostCredentials(settings);
    } catch (err) {
      const error = err instanceof DestinationError && err.permanent ? new PermanentDeliveryError(err.message) : new Error((err as Error).message);
      return jobs.map(() => ({ error }));
    }
    const report = await sendToDestination(
      destinations,
      { sender: entry.envelope.sender, recipients, size: entry.size, openMessage: () => this.options.store.openMessage(entry) },
      { hostname: settings.hostname, tlsSecurity: settings.tlsSecurity, auth, connectTimeoutMs: settings.connectTimeoutMs, timeoutMs: settings.timeoutMs, protocolLogger: this.options.logger.child({ queueId: entry.envelope.id }) },
    );
    return report.results.map((result): AttemptOutcome => {
      const relay = result.remote === null ? (report.relay ?? undefined) : formatDestination(result.remote);
      const error = result.status === 'sent' ? null : result.status === 'bounced' ? new PermanentDeliveryError(result.reply) : new Error(result.reply);
      return { error, relay, reply: result.reply };
    });
  }
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** The relayhost login; the password is read at each attempt, so a changed file needs no reload. */
async function relayhostCredentials(settings: RemoteSettings): Promise<{ user: string; pass: string } | null> {
  if (settings.relayhost === '' || settings.relayhostUser === '') return null;
  let pass: string;
  try {
    pass = (await readFile(settings.relayhostPasswordFile, 'utf8')).split(/\r?\n/)[0]!;
  } catch (err) {
    throw new Error(`4.3.5 cannot read relay.relayhost_password_file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return { user: settings.relayhostUser, pass };
}
