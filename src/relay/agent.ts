// The queue manager's outbound agent (Postfix's smtp delivery agent seen from qmgr): for one
// queue entry and the recipients it has at one destination, finds where to send it
// (destinations.ts: relayhost, or the domain's MX hosts), sends it over one SMTP session
// (smtp-client.ts), and turns each recipient's result into an attempt outcome: sent, failed for
// good (5xx, no such domain: bounced), or to be retried (4xx, unreachable, timeouts).
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Readable } from 'node:stream';
import type { Config } from '../config/schema.js';
import type { ListenAddress } from '../config/units.js';
import { missingSubmissionHeaders, receivedHeader } from '../message/trace.js';
import type { Logger } from '../log.js';
import { domainOf } from '../message/address.js';
import { permanent, temporary, type DeliveryStatus } from '../message/status.js';
import type { AttemptOutcome, DeliveryJob, RemoteAgent, RemoteAttempt } from '../queue/agents.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { editHeaders } from '../mbox/headers.js';
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
  /** our own SMTP listeners: a destination that is one of them would send the mail back to us */
  ownListeners: ListenAddress[];
}

/** Room for the Received line (and Message-ID/Date) added on the way out, in the SIZE announced. */
const ADDED_HEADERS_ALLOWANCE = 1024;

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

  /**
   * The message as it leaves: with our Received line on top (the next hop counts it) and, for submitted mail, the
   * Message-ID and Date it lacked.
   */
  private outgoing(entry: QueueEntry, forRecipient: string | undefined): Readable {
    const { hostname } = this.settings;
    const editor = editHeaders({
      add: [receivedHeader(entry.envelope, hostname, forRecipient)],
      addIfMissing: missingSubmissionHeaders(entry.envelope, hostname),
    });
    const source = this.options.store.openMessage(entry);
    source.on('error', (err) => editor.destroy(err));
    return source.pipe(editor);
  }

  destinationOf(address: string): string {
    return this.settings.relayhost === '' ? domainOf(address) : `[relayhost] ${this.settings.relayhost}`;
  }

  async deliver(jobs: DeliveryJob[]): Promise<RemoteAttempt> {
    const { entry } = jobs[0]!;
    const recipients = jobs.map(({ index }) => entry.envelope.recipients[index]!.address);
    const settings = this.settings;
    let destinations: Destination[];
    let auth: { user: string; pass: string } | null;
    const domain = domainOf(recipients[0]!);
    const allFail = (status: DeliveryStatus): RemoteAttempt => ({
      outcomes: jobs.map((): AttemptOutcome => ({ status })),
      ended: Promise.resolve(),
    });
    try {
      destinations = await this.resolver.resolve(domain);
    } catch (err) {
      return allFail(err instanceof DestinationError ? err.status : temporary('4.4.3', (err as Error).message));
    }
    try {
      auth = await relayhostCredentials(settings);
    } catch (err) {
      return allFail(
        temporary(
          '4.3.5',
          `cannot read relay.relayhost_password_file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        ),
      );
    }
    // RFC 5321 5.1: never to ourselves (an MX or address literal pointing here would loop)
    const own = ownAddresses(settings.ownListeners);
    destinations = destinations.filter((destination) => !own.has(`${destination.address}:${destination.port}`));
    if (destinations.length === 0) return allFail(permanent('5.4.6', `mail for ${domain} loops back to myself`));
    const report = await sendToDestination(
      destinations,
      {
        sender: entry.envelope.sender,
        recipients,
        size: entry.size + ADDED_HEADERS_ALLOWANCE,
        openMessage: () => this.outgoing(entry, recipients.length === 1 ? recipients[0] : undefined),
      },
      {
        hostname: settings.hostname,
        tlsSecurity: settings.tlsSecurity,
        auth,
        connectTimeoutMs: settings.connectTimeoutMs,
        timeoutMs: settings.timeoutMs,
        protocolLogger: this.options.logger.child({ queueId: entry.envelope.id }),
      },
    );
    const outcomes = report.results.map((result): AttemptOutcome => {
      const relay = result.remote === null ? (report.relay ?? undefined) : formatDestination(result.remote);
      return { status: result.status, relay };
    });
    return { outcomes, ended: report.ended };
  }
}

/**
 * Every "address:port" our SMTP listeners answer on; a wildcard listener answers on each local
 * address (of its family, or both for "::"). Read once per attempt: interfaces may change.
 */
function ownAddresses(listeners: ListenAddress[]): Set<string> {
  const local = [
    '127.0.0.1',
    '::1',
    ...Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((info) => info.address)),
  ];
  const own = new Set<string>();
  for (const { host, port } of listeners) {
    const addresses =
      host === '::' ? local : host === '0.0.0.0' ? local.filter((address) => isIP(address) === 4) : [host];
    for (const address of addresses) own.add(`${address}:${port}`);
  }
  return own;
}

/** The relayhost login; the password is read at each attempt, so a changed file needs no reload. */
async function relayhostCredentials(settings: RemoteSettings): Promise<{ user: string; pass: string } | null> {
  if (settings.relayhost === '' || settings.relayhostUser === '') return null;
  const pass = (await readFile(settings.relayhostPasswordFile, 'utf8')).split(/\r?\n/)[0]!;
  return { user: settings.relayhostUser, pass };
}
