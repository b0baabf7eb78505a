// What a mail client is told to use (README "Client autoconfig"): this host's name, the local
// domains, and the POP3 and submission ports the daemon listens on, implicit TLS first (RFC 8314
// prefers it), each with how the client secures it: SSL, STARTTLS, or plain when TLS is off.
import type { Config } from '../config/schema.js';
import { parseListen } from '../config/units.js';
import { isSafeAddress, splitAddress } from '../message/address.js';

/** How a client connects to a port, named as Thunderbird's clientConfig names it. */
export type SocketType = 'SSL' | 'STARTTLS' | 'plain';

export interface MailService {
  port: number;
  socketType: SocketType;
}

export interface MailSite {
  hostname: string;
  /** the local domains, the configured ones first, then the hostname */
  domains: string[];
  /** POP3, preferred first */
  incoming: MailService[];
  /** submission (SMTP with AUTH), preferred first */
  outgoing: MailService[];
}

/** The ports listened on for each service, each once. */
export interface ServicePorts {
  pop3s: number[];
  pop3: number[];
  smtps: number[];
  submission: number[];
}

/** From the config the daemon started with: listen keys change only at a restart. */
export function servicePorts(config: Config): ServicePorts {
  const ports = (addresses: string[]) => [...new Set(addresses.map((address) => parseListen(address)!.port))];
  return {
    pop3s: ports(config.pop3.pop3s),
    pop3: ports(config.pop3.listen),
    smtps: ports(config.smtp.smtps),
    submission: ports(config.smtp.submission),
  };
}

/** The site as it is now: names from `config`; `tls`: whether STARTTLS and STLS are offered. */
export function mailSite(config: Pick<Config, 'hostname' | 'domains'>, ports: ServicePorts, tls: boolean): MailSite {
  const upgrade: SocketType = tls ? 'STARTTLS' : 'plain';
  const services = (implicitTls: number[], plain: number[]): MailService[] => [
    ...implicitTls.map((port) => ({ port, socketType: 'SSL' as const })),
    ...plain.map((port) => ({ port, socketType: upgrade })),
  ];
  return {
    hostname: config.hostname,
    domains: [...new Set([...config.domains, config.hostname].map((domain) => domain.toLowerCase()))],
    incoming: services(ports.pop3s, ports.pop3),
    outgoing: services(ports.smtps, ports.submission),
  };
}

/** Whose account a client asks about: an address of a local domain. */
export type AccountQuery =
  | { kind: 'account'; domain: string; localPart: string | null }
  | { kind: 'malformed' }
  | { kind: 'other domain' };

/** An address (null: none given, the first local domain is meant), checked against the site's domains. */
export function accountQuery(site: MailSite, address: string | null): AccountQuery {
  if (address === null) return { kind: 'account', domain: site.domains[0]!, localPart: null };
  const parts = isSafeAddress(address) ? splitAddress(address) : null;
  if (parts === null) return { kind: 'malformed' };
  if (!site.domains.includes(parts.domain)) return { kind: 'other domain' };
  return { kind: 'account', domain: parts.domain, localPart: parts.localPart };
}
