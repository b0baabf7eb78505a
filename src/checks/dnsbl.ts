// DNS blocklists (RFC 5782): the client's address, reversed (IPv4 octets, IPv6 nibbles), is
// looked up as an A record under each zone of `checks.dnsbl`; an answer in 127.0.0.0/8 means
// listed. Answers are kept per their TTL (a "not listed" answer for a minute) in a bounded
// cache; a lookup that fails or times out counts as not listed (README, "DNS blocklists").
import { isIPv4, isIPv6 } from 'node:net';
import { type Clock, systemClock } from '../clock.js';
import { BoundedCache } from './bounded-cache.js';
import type { CheckDns } from './dns-lookup.js';

const MAX_CACHED_ADDRESSES = 10_000;
/** A "not listed" answer carries no TTL we can see: it is reused this long. */
const NOT_LISTED_CACHE_MS = 60_000;
/** A listing's TTL is honoured up to this. */
const MAX_LISTED_CACHE_MS = 3_600_000;

export interface DnsblListing {
  zone: string;
  /** the client address that is listed */
  client: string;
  /** the zone's answer (127.0.0.x: its reason code) */
  answer: string;
}

export interface DnsblVerdict {
  listing: DnsblListing | null;
  /** zones that could not be asked (timeout, server failure): not held against the client */
  failures: { zone: string; code: string }[];
}

/** "::ffff:192.0.2.1" (an IPv4 client on a dual-stack socket) → "192.0.2.1". */
export function plainAddress(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped ? mapped[1]! : ip;
}

/** The 8 hextets of an IPv6 address, each as 4 hex digits. */
function expandIPv6(ip: string): string[] {
  let text = ip.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((hextet) => hextet.padStart(4, '0'));
}

/** The name to look up for `ip` in `zone`: "4.3.2.1.zone", or 32 reversed nibbles for IPv6. */
export function dnsblQueryName(ip: string, zone: string): string | null {
  const address = plainAddress(ip);
  if (isIPv4(address)) return `${address.split('.').reverse().join('.')}.${zone}`;
  if (isIPv6(address)) return `${[...expandIPv6(address).join('')].reverse().join('.')}.${zone}`;
  return null;
}

/** A listing answer: 127.0.0.0/8, except 127.0.0.1 and 127.255.255.x (the zone refusing the query). */
function isListingAnswer(address: string): boolean {
  return address.startsWith('127.') && address !== '127.0.0.1' && !address.startsWith('127.255.255.');
}

export class Dnsbl {
  private readonly cache: BoundedCache<string | null>;

  constructor(
    private readonly dns: CheckDns,
    clock: Clock = systemClock,
  ) {
    this.cache = new BoundedCache(MAX_CACHED_ADDRESSES, clock);
  }

  /** Asks every zone at once; the first listing in `zones` order wins. */
  async check(ip: string, zones: readonly string[]): Promise<DnsblVerdict> {
    const client = plainAddress(ip);
    const answers = await Promise.all(zones.map((zone) => this.lookup(client, zone)));
    const failures: DnsblVerdict['failures'] = [];
    let listing: DnsblListing | null = null;
    answers.forEach((answer, i) => {
      const zone = zones[i]!;
      if (typeof answer === 'object' && answer !== null) failures.push({ zone, code: answer.code });
      else if (typeof answer === 'string' && listing === null) listing = { zone, client, answer };
    });
    return { listing, failures };
  }

  /** The listing answer, null when not listed, or the failure. */
  private async lookup(client: string, zone: string): Promise<string | null | { code: string }> {
    const name = dnsblQueryName(client, zone);
    if (name === null) return null;
    const cached = this.cache.get(name);
    if (cached !== undefined) return cached;
    try {
      const records = await this.dns.resolve4(name);
      const listed = records.filter((record) => isListingAnswer(record.address));
      const answer = listed[0]?.address ?? null;
      const ttlMs = Math.min(MAX_LISTED_CACHE_MS, ...records.map((record) => record.ttl * 1000));
      this.cache.set(name, answer, answer === null ? NOT_LISTED_CACHE_MS : ttlMs);
      return answer;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
      if (code === 'ENOTFOUND' || code === 'ENODATA') {
        this.cache.set(name, null, NOT_LISTED_CACHE_MS);
        return null;
      }
      return { code };
    }
  }
}
