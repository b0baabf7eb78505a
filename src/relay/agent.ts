// The queue manager's outbound agent (Postfix's smtp delivery agent seen from qmgr): for one
// queue entry and the recipients it has at one destination, finds where to send it
// (destinations.ts: relayhost, or the domain's MX hosts), sends it over one SMTP session
// (smtp-client.ts), and turns each recipient's result into an attempt outcome: sent, failed for
// good (5xx, no such domain: bounced), or to be retried (4xx, unreachable, timeouts). A copy an
// alias forwards leaves with an SRS sender and an ARC seal (README, "Forwarding: SRS and ARC").
// A domain's MTA-STS policy (README, "MTA-STS") decides which MX hosts may take its mail and
// whether the TLS certificate must be verified.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { domainToASCII } from 'node:url';
import type { DNSResolver } from 'mailauth';
import type { DomainMatcher } from '../config/domains.js';
import type { Config } from '../config/schema.js';
import type { SigningKey } from '../dkim/keys.js';
import { arcSeal } from '../forward/arc.js';
import type { Srs } from '../forward/srs.js';
import { createResolver } from '../net/dns.js';
import type { ListenAddress } from '../config/units.js';
import { missingSubmissionHeaders, receivedHeader } from '../message/trace.js';
import type { Logger } from '../log.js';
import { domainOf } from '../message/address.js';
import { permanent, temporary, type DeliveryStatus } from '../message/status.js';
import type { AttemptOutcome, DeliveryJob, RemoteAgent, RemoteAttempt } from '../queue/agents.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { readSecretDirectly, type SecretReader } from '../secret-reader.js';
import { editHeaders } from '../mbox/headers.js';
import { DestinationError, DestinationResolver, type Destination } from './destinations.js';
import { listedIn, StsPolicies } from './mta-sts.js';
import { formatDestination, sendToDestination } from './smtp-client.js';

/** What SIGHUP may change. */
export interface RemoteSettings {
  hostname: string;
  isLocalDomain: DomainMatcher;
  relayhost: string;
  relayhostUser: string;
  relayhostPasswordFile: string;
  tlsSecurity: Config['relay']['tls_security'];
  /** relay.mta_sts: honour the MTA-STS policies of the domains mail goes to */
  mtaSts: boolean;
  /** relay.ca_file: more CAs for outbound TLS and policy fetches; '' = the system's only */
  caFile: string;
  dnsServers: string[];
  connectTimeoutMs: number;
  timeoutMs: number;
  /** our own SMTP listeners: a destination that is one of them would send the mail back to us */
  ownListeners: ListenAddress[];
}

/** Room for the Received line (and Message-ID/Date) added on the way out, in the SIZE announced. */
const ADDED_HEADERS_ALLOWANCE = 1024;
/** and for an ARC set (two RSA signatures and the authentication results) */
const ARC_ALLOWANCE = 4096;

export interface RemoteDeliveryOptions extends RemoteSettings {
  store: QueueStore;
  logger: Logger;
  srs: Srs;
  /** the hostname's DKIM key, which seals forwarded copies; undefined: none (they go unsealed) */
  sealingKey: () => SigningKey | undefined;
  /** reads relayhost_password_file (the root helper when started as root) */
  readSecret?: SecretReader;
}

/** The TLS and the policy decisions for one domain's delivery. */
interface TlsPlan {
  destinations: Destination[];
  tlsSecurity: Config['relay']['tls_security'];
  /** MTA-STS testing: a session without verified TLS is logged */
  reportUnverified: boolean;
}

export class RemoteDelivery implements RemoteAgent {
  private settings: RemoteSettings;
  private resolver: DestinationResolver;
  private dns: DNSResolver;
  private ca: string[] | undefined;
  private readonly policies: StsPolicies;

  constructor(private readonly options: RemoteDeliveryOptions) {
    this.settings = options;
    this.resolver = new DestinationResolver(options);
    this.dns = dnsLookup(options.dnsServers);
    this.ca = trustedCas(options.caFile);
    this.policies = new StsPolicies({ resolver: this.dns, ca: this.ca });
  }

  /** A relay.ca_file that cannot be read throws: the running settings stay. */
  reconfigure(settings: RemoteSettings): void {
    const ca = trustedCas(settings.caFile);
    this.settings = settings;
    this.ca = ca;
    this.resolver = new DestinationResolver(settings);
    this.dns = dnsLookup(settings.dnsServers);
    this.policies.reconfigure({ resolver: this.dns, ca });
  }

  /**
   * The message as it leaves: with our Received line on top (the next hop counts it), the results of our inbound
   * checks, and, for submitted mail, the Message-ID and Date it lacked.
   */
  private outgoing(entry: QueueEntry, forRecipient: string | undefined, seal: string[] = []): Readable {
    const { hostname } = this.settings;
    const editor = editHeaders({
      add: [...seal, receivedHeader(entry.envelope, hostname, forRecipient), ...(entry.envelope.addedHeaders ?? [])],
      addIfMissing: missingSubmissionHeaders(entry.envelope, hostname),
    });
    const source = this.options.store.openMessage(entry);
    source.on('error', (err) => editor.destroy(err));
    return source.pipe(editor);
  }

  destinationOf(address: string): string {
    return this.settings.relayhost === '' ? domainOf(address) : `[relayhost] ${this.settings.relayhost}`;
  }

  /** Forwarded copies and the others leave in separate transactions: their senders differ. */
  async deliver(jobs: DeliveryJob[]): Promise<RemoteAttempt> {
    const forwarded = jobs.filter(isForwarded);
    if (forwarded.length === 0 || forwarded.length === jobs.length)
      return this.deliverTogether(jobs, forwarded.length > 0);
    const outcomes = new Map<DeliveryJob, AttemptOutcome>();
    const sessionsEnded: Promise<void>[] = [];
    for (const [group, forwarding] of [
      [forwarded, true],
      [jobs.filter((job) => !isForwarded(job)), false],
    ] as const) {
      const attempt = await this.deliverTogether(group, forwarding);
      for (const [i, job] of group.entries()) outcomes.set(job, attempt.outcomes[i]!);
      sessionsEnded.push(attempt.ended);
    }
    return {
      outcomes: jobs.map((job) => outcomes.get(job)!),
      ended: Promise.all(sessionsEnded).then(() => undefined),
    };
  }

  /**
   * A forwarded copy's sender: SRS unless it is local or null (a bounce to it comes back here and is
   * turned back, see SmtpPolicy).
   */
  private forwardSender(sender: string): string {
    const { hostname, isLocalDomain } = this.settings;
    return sender === '' || isLocalDomain(domainOf(sender)) ? sender : this.options.srs.forward(sender, hostname);
  }

  /** The ARC set for a forwarded copy, or none without a key (or when it cannot be made: logged). */
  private async seal(entry: QueueEntry, forRecipient: string | undefined): Promise<string[]> {
    const key = this.options.sealingKey();
    if (key === undefined) return [];
    try {
      return await arcSeal({
        message: this.outgoing(entry, forRecipient),
        client: entry.envelope.client,
        sender: entry.envelope.sender,
        hostname: this.settings.hostname,
        key,
        resolver: this.dns,
      });
    } catch (err) {
      this.options.logger
        .child({ queueId: entry.envelope.id })
        .warn({ err: (err as Error).message }, 'cannot ARC-seal the forwarded copy; sent unsealed');
      return [];
    }
  }

  /**
   * What the domain's MTA-STS policy asks (none with a relayhost, an address literal or
   * relay.mta_sts off): enforce keeps the MX hosts it lists, with a verified certificate, or
   * defers the mail (a temporary status); testing only logs what enforce would refuse.
   */
  private async tlsPlan(domain: string, destinations: Destination[], log: Logger): Promise<TlsPlan | DeliveryStatus> {
    const plain: TlsPlan = { destinations, tlsSecurity: this.settings.tlsSecurity, reportUnverified: false };
    if (!this.settings.mtaSts || this.settings.relayhost !== '' || domain.startsWith('[')) return plain;
    const name = domainToASCII(domain.replace(/\.$/, ''));
    if (name === '') return plain;
    const policy = await this.policies.policyFor(name);
    if (policy === null || policy.mode === 'none') return plain;
    const listed = destinations.filter((destination) => listedIn(destination.host, policy));
    if (policy.mode === 'testing') {
      const unlisted = [...new Set(destinations.filter((d) => !listed.includes(d)).map((d) => d.host))];
      if (unlisted.length > 0) log.warn({ hosts: unlisted }, 'MTA-STS testing: MX hosts not in the policy');
      return { ...plain, reportUnverified: true };
    }
    if (listed.length === 0)
      return temporary('4.7.5', `MTA-STS policy of ${domain} (enforce) lists none of its MX hosts`);
    return { destinations: listed, tlsSecurity: 'verify', reportUnverified: false };
  }

  private async deliverTogether(jobs: DeliveryJob[], forwarding: boolean): Promise<RemoteAttempt> {
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
      auth = await relayhostCredentials(settings, this.options.readSecret ?? readSecretDirectly);
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
    const log = this.options.logger.child({ queueId: entry.envelope.id, domain });
    const plan = await this.tlsPlan(domain, destinations, log);
    if (!('destinations' in plan)) return allFail(plan);
    const forRecipient = recipients.length === 1 ? recipients[0] : undefined;
    const seal = forwarding ? await this.seal(entry, forRecipient) : [];
    const report = await sendToDestination(
      plan.destinations,
      {
        sender: forwarding ? this.forwardSender(entry.envelope.sender) : entry.envelope.sender,
        recipients,
        size: entry.size + ADDED_HEADERS_ALLOWANCE + (forwarding ? ARC_ALLOWANCE : 0),
        openMessage: () => this.outgoing(entry, forRecipient, seal),
      },
      {
        hostname: settings.hostname,
        tlsSecurity: plan.tlsSecurity,
        ca: this.ca,
        ...(plan.reportUnverified
          ? {
              onUnverifiedTls: (where: string, reason: string) =>
                log.warn({ relay: where, reason }, 'MTA-STS testing: TLS not verified; delivering anyway'),
            }
          : {}),
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

/** mailauth's DNS lookups through dns_servers. */
function dnsLookup(dnsServers: string[]): DNSResolver {
  const resolver = createResolver(dnsServers);
  return (name, type) => resolver.resolve(name, type) as Promise<string[]>;
}

/** The system's CAs plus relay.ca_file's; undefined (Node's default) without one. */
function trustedCas(caFile: string): string[] | undefined {
  if (caFile === '') return undefined;
  try {
    return [...rootCertificates, readFileSync(caFile, 'utf8')];
  } catch (err) {
    throw new Error(`cannot read relay.ca_file ${caFile}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

function isForwarded(job: DeliveryJob): boolean {
  const { target } = job.entry.envelope.recipients[job.index]!;
  return target.kind === 'remote' && target.forwarded === true;
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
async function relayhostCredentials(
  settings: RemoteSettings,
  read: SecretReader,
): Promise<{ user: string; pass: string } | null> {
  if (settings.relayhost === '' || settings.relayhostUser === '') return null;
  const file = await read(settings.relayhostPasswordFile);
  if (file === null) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
  const pass = file.toString('utf8').split(/\r?\n/)[0]!;
  return { user: settings.relayhostUser, pass };
}
