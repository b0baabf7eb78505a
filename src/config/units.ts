// Parsers for the config file's human units: durations ("30s", "5m", "4h", "5d"),
// listen addresses ("0.0.0.0:25", "[::]:25", HTTP ones "https://0.0.0.0:443") and networks ("127.0.0.0/8").
import { isIP } from 'node:net';

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function isDuration(text: string): boolean {
  return DURATION.test(text);
}

/** "5m" → 300000. Throws on anything isDuration() rejects. */
export function durationMs(text: string): number {
  const match = DURATION.exec(text);
  if (!match) throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. "30s", "5m", "4h", "5d")`);
  return Number(match[1]) * UNIT_MS[match[2]!]!;
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** "0.0.0.0:25" or "[::1]:2525" → { host, port }; null when malformed. */
export function parseListen(text: string): ListenAddress | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return null;
  const host = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return null;
  if (match[1] !== undefined && isIP(host) !== 6) return null;
  return { host, port };
}

export interface HttpListenAddress extends ListenAddress {
  /** marked "https://": TLS with the mail certificate */
  https: boolean;
}

/** "0.0.0.0:80" (or "http://0.0.0.0:80") for HTTP, "https://0.0.0.0:443" for HTTPS; null when malformed. */
export function parseHttpListen(text: string): HttpListenAddress | null {
  const scheme = /^(https?):\/\//.exec(text);
  const address = parseListen(scheme === null ? text : text.slice(scheme[0].length));
  return address === null ? null : { ...address, https: scheme?.[1] === 'https' };
}

/**
 * What net.Server#listen takes for an address. An IPv6 socket is IPv6-only, so "0.0.0.0:25"
 * and "[::]:25" can both be listened on (Linux would otherwise give the IPv6 one the IPv4
 * port too, and the second listen would fail with EADDRINUSE).
 */
export function listenOptions(address: ListenAddress): { host: string; port: number; ipv6Only: boolean } {
  return { host: address.host, port: address.port, ipv6Only: isIP(address.host) === 6 };
}

/** Whether binding both would clash: the same port on the same address, or on the wildcard of its family. */
export function listenersOverlap(a: ListenAddress, b: ListenAddress): boolean {
  if (a.port !== b.port || isIP(a.host) !== isIP(b.host)) return false;
  const wildcard = (host: string) => host === '0.0.0.0' || host === '::';
  return a.host === b.host || wildcard(a.host) || wildcard(b.host);
}

export interface Network {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** "10.0.0.0/8", "::1/128" or a bare address → Network; null when malformed. */
export function parseNetwork(text: string): Network | null {
  const [address, prefixText, extra] = text.split('/');
  if (address === undefined || extra !== undefined) return null;
  const version = isIP(address);
  if (version === 0) return null;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d+$/.test(prefixText ?? String(max)) || prefix > max) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}
