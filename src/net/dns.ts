// The one DNS resolver setup every lookup uses (MX for relaying, and the mail-authentication
// and DNSBL checks): the top-level `dns_servers` ("ip", "ip:port", "[ipv6]:port"; [] = the
// system's resolvers), a timeout per query attempt and two attempts per server.
import { Resolver } from 'node:dns/promises';

export const DEFAULT_QUERY_TIMEOUT_MS = 5000;
export const QUERY_TRIES = 2;

export function createResolver(dnsServers: string[], queryTimeoutMs = DEFAULT_QUERY_TIMEOUT_MS): Resolver {
  const resolver = new Resolver({ timeout: queryTimeoutMs, tries: QUERY_TRIES });
  // setServers takes "ip", "ip:port" and "[ipv6]:port", the forms the config allows
  if (dnsServers.length > 0) resolver.setServers(dnsServers);
  return resolver;
}
