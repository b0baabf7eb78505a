// Where mail for a remote domain goes (the address lookup of Postfix's smtp client): the
// relayhost when one is set; else the domain's MX hosts by preference, equal preferences in
// random order (RFC 5321 5.1); else, with no MX at all, the domain itself. Every host is
// resolved to addresses here, through `dns_servers`, so the SMTP client connects to an
// address and still knows the host name (for TLS and the logs). A domain that can never take
// mail (unknown, null MX, no address) fails for good; a DNS failure only for now.
import { lookup, type Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { parseListen } from '../config/units.js';
import { createResolver, DEFAULT_QUERY_TIMEOUT_MS, QUERY_TRIES } from '../net/dns.js';
import { describeStatus, permanent, temporary, type DeliveryStatus } from '../message/status.js';

/** One address to try, in order. */
export interface Destination {
  /** the MX host or relayhost name (an IP for an address literal or an IP relayhost) */
  host: string;
  /** the IP address to connect to */
  address: string;
  port: number;
}

/** Why a domain has no destination: its recipients' status, failed for good (bounce) or not (retry later). */
export class DestinationError extends Error {
  readonly status: DeliveryStatus;

  constructor(code: string, isPermanent: boolean, explanation: string) {
    const status = isPermanent ? permanent(code, explanation) : temporary(code, explanation);
    super(describeStatus(status));
    this.name = 'DestinationError';
    this.status = status;
  }
}

export interface DestinationSettings {
  /** relay.relayhost: "" or "host" or "host:port" */
  relayhost: string;
  /** dns_servers: "ip" or "ip:port"; [] = the system's resolvers */
  dnsServers: string[];
}

export interface DestinationResolverOptions {
  /** orders MX hosts of equal preference; Math.random unless a test fixes it */
  random?: () => number;
  /** per DNS query attempt (two attempts per server) */
  queryTimeoutMs?: number;
}

const SMTP_PORT = 25;
/** MX hosts looked up per domain, and addresses returned in all (Postfix: smtp_mx_address_limit). */
const MAX_MX_HOSTS = 10;
const MAX_DESTINATIONS = 10;
/** DNS answers that mean "this name has no such record", as opposed to "ask again later". */
const NO_RECORD = new Set(['ENODATA', 'ENOTFOUND']);

export class DestinationResolver {
  private readonly resolver: Resolver;
  private readonly relayhost: { host: string; port: number } | null;
  private readonly random: () => number;
  private readonly lookupTimeoutMs: number;

  constructor(settings: DestinationSettings, options: DestinationResolverOptions = {}) {
    const queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    this.resolver = createResolver(settings.dnsServers, queryTimeoutMs);
    this.relayhost =
      settings.relayhost === ''
        ? null
        : (parseListen(settings.relayhost) ?? { host: settings.relayhost, port: SMTP_PORT });
    this.random = options.random ?? Math.random;
    this.lookupTimeoutMs = queryTimeoutMs * QUERY_TRIES;
  }

  /** The addresses to try for mail to `domain`, best first; throws a DestinationError when there are none. */
  async resolve(domain: string): Promise<Destination[]> {
    if (this.relayhost) return this.relayhostDestinations(this.relayhost);
    const literal = addressLiteral(domain);
    if (literal !== undefined) {
      if (literal === null) throw new DestinationError('5.1.3', true, `bad address literal ${domain}`);
      return [{ host: literal, address: literal, port: SMTP_PORT }];
    }
    // DNS knows internationalized names by their A-labels ("bücher.test" is "xn--bcher-kva.test")
    const name = domainToASCII(domain.replace(/\.$/, ''));
    if (name === '') throw new DestinationError('5.1.2', true, `bad domain name ${domain}`);
    return this.mxDestinations(name);
  }

  /**
   * The relayhost is named by the admin of this box: resolved like any local name (/etc/hosts,
   * then the system's DNS). A relayhost that does not resolve defers all mail, never bounces it.
   */
  private async relayhostDestinations({ host, port }: { host: string; port: number }): Promise<Destination[]> {
    if (isIP(host) !== 0) return [{ host, address: host, port }];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(Object.assign(new Error('timed out'), { code: 'ETIMEOUT' })),
        this.lookupTimeoutMs,
      );
    });
    try {
      const found = await Promise.race([lookup(host, { all: true }), timeout]);
      return found.slice(0, MAX_DESTINATIONS).map(({ address }) => ({ host, address, port }));
    } catch (err) {
      throw new DestinationError('4.4.3', false, `cannot resolve relayhost ${host}: ${errorCode(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private async mxDestinations(domain: string): Promise<Destination[]> {
    let records: { exchange: string; priority: number }[];
    try {
      records = await this.resolver.resolveMx(domain);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ENOTFOUND') throw new DestinationError('5.1.2', true, `domain ${domain} not found`);
      if (code !== 'ENODATA') throw new DestinationError('4.4.3', false, `MX lookup for ${domain} failed: ${code}`);
      records = [];
    }
    if (records.length === 0) {
      // no MX: the domain itself is the mail host (RFC 5321 5.1, "implicit MX")
      return this.addressDestinations([domain], `${domain} has no MX and no address record`);
    }
    // RFC 7505: one MX record with the root as exchange (Node shows it as '') says "no mail here"
    const hosts = records.filter((record) => record.exchange !== '' && record.exchange !== '.');
    if (hosts.length === 0)
      throw new DestinationError('5.1.10', true, `domain ${domain} does not accept mail (null MX)`);
    const ordered = byPreference(hosts, this.random).slice(0, MAX_MX_HOSTS);
    return this.addressDestinations(
      ordered.map((record) => record.exchange),
      `no MX host of ${domain} has an address`,
    );
  }

  /** The addresses of `hosts` in their order (IPv4 before IPv6 for each); `noneText` when none has one. */
  private async addressDestinations(hosts: string[], noneText: string): Promise<Destination[]> {
    const lookups = await Promise.all(hosts.map((host) => this.addressesOf(host)));
    const destinations = lookups.flatMap(({ addresses }, i) =>
      addresses.map((address) => ({ host: hosts[i]!, address, port: SMTP_PORT })),
    );
    if (destinations.length > 0) return destinations.slice(0, MAX_DESTINATIONS);
    const failed = lookups.find((result) => result.failure !== null);
    if (failed) throw new DestinationError('4.4.3', false, `address lookup failed: ${failed.failure}`);
    throw new DestinationError('5.4.4', true, noneText);
  }

  /** A host's A and AAAA records; `failure` names a lookup that failed for now (not "no such record"). */
  private async addressesOf(host: string): Promise<{ addresses: string[]; failure: string | null }> {
    const answers = await Promise.allSettled([this.resolver.resolve4(host), this.resolver.resolve6(host)]);
    const addresses: string[] = [];
    let failure: string | null = null;
    for (const answer of answers) {
      if (answer.status === 'fulfilled') addresses.push(...answer.value);
      else if (!NO_RECORD.has(errorCode(answer.reason))) failure = `${host}: ${errorCode(answer.reason)}`;
    }
    return { addresses, failure };
  }
}

/** "[192.0.2.1]" or "[IPv6:2001:db8::1]" → the IP; null for a malformed literal; undefined for a domain name. */
function addressLiteral(domain: string): string | null | undefined {
  const match = /^\[(?:ipv6:)?(.*)\]$/i.exec(domain);
  if (!match) return undefined;
  const ip = match[1]!;
  const wantsV6 = /^\[ipv6:/i.test(domain);
  return isIP(ip) === (wantsV6 ? 6 : 4) ? ip : null;
}

/** Ascending preference; hosts of equal preference shuffled (Fisher-Yates within each group). */
function byPreference<T extends { priority: number }>(records: T[], random: () => number): T[] {
  const groups = new Map<number, T[]>();
  for (const record of records) groups.set(record.priority, [...(groups.get(record.priority) ?? []), record]);
  return [...groups.keys()]
    .sort((a, b) => a - b)
    .flatMap((priority) => {
      const group = groups.get(priority)!;
      for (let i = group.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [group[i], group[j]] = [group[j]!, group[i]!];
      }
      return group;
    });
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
