// MTA-STS (RFC 8461; README, "MTA-STS"): the policy a domain publishes for mail sent to it. The
// `_mta-sts.DOMAIN` TXT record names the policy's id; the policy itself is fetched from
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt (port 443, the name resolved through dns_servers,
// the certificate checked against the system CAs plus relay.ca_file, no redirects, at most
// 64 KiB, in FETCH_TIMEOUT_MS) and cached for its max_age. A policy fetch that fails keeps the
// cached policy while it is valid (with none, the domain has no policy) and is not tried again
// for FETCH_RETRY_MS. mailauth parses the
// record and the policy and matches MX names; this file fetches and caches.
import { request } from 'node:https';
import { isIP } from 'node:net';
import type { DNSResolver, MTASTSPolicy } from 'mailauth';
import { parsePolicy, resolvePolicy, validateMx } from 'mailauth/lib/mta-sts.js';

export type StsPolicy = Required<Pick<MTASTSPolicy, 'mode' | 'mx' | 'maxAge'>> & { id: string };

export interface StsSettings {
  resolver: DNSResolver;
  /** CAs the policy host's certificate may chain to (undefined: the system's) */
  ca: string[] | undefined;
  now?: () => number;
  /** the policy host's HTTPS port: 443 (RFC 8461 3.3) unless a unit test says otherwise */
  port?: number;
}

const POLICY_PATH = '/.well-known/mta-sts.txt';
const HTTPS_PORT = 443;
/** RFC 8461 3.3 suggests 64 KiB as the most a policy needs. */
export const MAX_POLICY_BYTES = 64 * 1024;
export const FETCH_TIMEOUT_MS = 15_000;
/** Domains whose policy is remembered; beyond that the least recently stored is forgotten. */
const MAX_CACHED = 10_000;

interface Cached {
  policy: StsPolicy;
  expiresAt: number;
}

/** A failed fetch is not tried again for this long (the cached policy, if any, holds meanwhile). */
export const FETCH_RETRY_MS = 5 * 60_000;
/** "No _mta-sts record" is believed this long: most domains have none, and each would cost a lookup. */
export const NO_RECORD_RECHECK_MS = 5 * 60_000;

export class StsPolicies {
  private readonly cache = new Map<string, Cached>();
  /** domain → until when a fetch is not tried again, or its missing record not asked again */
  private readonly quietUntil = new Map<string, number>();
  /** one lookup per domain at a time: the others wait for it */
  private readonly pending = new Map<string, Promise<StsPolicy | null>>();

  constructor(private settings: StsSettings) {}

  reconfigure(settings: StsSettings): void {
    this.settings = settings;
  }

  /** The policy of `domain` (an A-label name), or null when it has none; throws nothing. */
  policyFor(domain: string): Promise<StsPolicy | null> {
    const key = domain.toLowerCase();
    let lookup = this.pending.get(key);
    if (lookup === undefined) {
      lookup = this.lookup(key).finally(() => this.pending.delete(key));
      this.pending.set(key, lookup);
    }
    return lookup;
  }

  private async lookup(domain: string): Promise<StsPolicy | null> {
    const now = (this.settings.now ?? Date.now)();
    const cached = this.cache.get(domain);
    const valid = cached !== undefined && cached.expiresAt > now ? cached.policy : null;
    const quiet = (this.quietUntil.get(domain) ?? 0) > now;
    if (quiet && valid === null) return null;
    let id: string | false;
    try {
      id = await resolvePolicy(domain, { resolver: this.settings.resolver });
    } catch {
      return valid; // a DNS failure: keep what we know
    }
    if (id === false) {
      if (valid === null) remember(this.quietUntil, domain, now + NO_RECORD_RECHECK_MS);
      // no record: a cached policy still holds until it expires (RFC 8461 5.1)
      return valid;
    }
    if ((valid !== null && valid.id === id) || quiet) return valid;
    try {
      const policy = { ...parsePolicy(await this.fetch(domain)), id } as StsPolicy;
      policy.mx ??= [];
      remember(this.cache, domain, { policy, expiresAt: now + policy.maxAge * 1000 });
      this.quietUntil.delete(domain);
      return policy;
    } catch {
      remember(this.quietUntil, domain, now + FETCH_RETRY_MS);
      return valid;
    }
  }

  /** The policy file's text: HTTPS to mta-sts.DOMAIN:443 with a verified certificate; 200 only. */
  private async fetch(domain: string): Promise<string> {
    const host = `mta-sts.${domain}`;
    const address = await this.addressOf(host);
    return new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: address,
          port: this.settings.port ?? HTTPS_PORT,
          servername: host,
          headers: { host },
          path: POLICY_PATH,
          method: 'GET',
          ca: this.settings.ca,
          rejectUnauthorized: true,
          agent: false,
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`${host}: HTTP ${res.statusCode}`));
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_POLICY_BYTES)
              req.destroy(new Error(`${host}: policy larger than ${MAX_POLICY_BYTES} bytes`));
            else chunks.push(chunk);
          });
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          res.on('error', reject);
        },
      );
      const timer = setTimeout(() => req.destroy(new Error(`${host}: timed out`)), FETCH_TIMEOUT_MS);
      req.on('close', () => clearTimeout(timer));
      req.on('error', reject);
      req.end();
    });
  }

  private async addressOf(host: string): Promise<string> {
    for (const type of ['A', 'AAAA']) {
      const found = (await this.settings.resolver(host, type).catch(() => [])) as string[];
      const address = found.find((entry) => isIP(entry) !== 0);
      if (address !== undefined) return address;
    }
    throw new Error(`${host} has no address`);
  }
}

/** Whether the policy lists `host`; "*.example.org" stands for one label only (RFC 8461 4.1). */
export function listedIn(host: string, policy: StsPolicy): boolean {
  const { valid, match } = validateMx(host, policy);
  if (!valid || match === undefined || !match.startsWith('.')) return valid;
  return !host.slice(0, -match.length).includes('.');
}

/** Stores `key` as the newest entry; beyond MAX_CACHED entries the oldest is forgotten. */
function remember<T>(map: Map<string, T>, key: string, value: T): void {
  map.delete(key);
  if (map.size >= MAX_CACHED) map.delete(map.keys().next().value!);
  map.set(key, value);
}
