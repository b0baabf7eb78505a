// DNS for the inbound checks: every lookup goes through `dns_servers` and is bounded by
// `checks.dns_timeout` (a lookup still unanswered then fails with ETIMEOUT, which the checks
// turn into a temperror, never a rejection). Small answers, and "no such name/record", are kept
// for a minute in a bounded cache, so a burst of mail from one domain costs one query.
import type { Resolver } from 'node:dns/promises';
import type { DNSResolver } from 'mailauth';
import { createResolver } from '../net/dns.js';
import { BoundedCache } from './bounded-cache.js';

/** How long an answer is reused (DNS answers seldom live shorter than this). */
const ANSWER_CACHE_MS = 60_000;
const MAX_CACHED_ANSWERS = 10_000;
/** Answers bigger than this (in characters) are not kept: the cache stays small. */
const MAX_CACHED_ANSWER_CHARS = 4096;
/** Errors that are an answer ("no such name", "no such record"), cached like one. */
const NEGATIVE_ANSWERS = new Set(['ENOTFOUND', 'ENODATA']);

/** The error of a lookup that was not answered in time (dns.TIMEOUT's code). */
export function timeoutError(name: string, type: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`DNS lookup of ${name}/${type} timed out`);
  err.code = 'ETIMEOUT';
  return err;
}

type Answer = Awaited<ReturnType<DNSResolver>>;
type Cached = { answer: Answer } | { code: string };

export class CheckDns {
  private readonly resolver: Resolver;
  private readonly answers = new BoundedCache<Cached>(MAX_CACHED_ANSWERS);

  constructor(
    dnsServers: string[],
    private readonly timeoutMs: number,
  ) {
    this.resolver = createResolver(dnsServers, timeoutMs);
  }

  /** dns.promises.resolve(name, type), bounded and cached: the `resolver` mailauth's checks take. */
  readonly resolve: DNSResolver = async (name, type) => {
    const key = `${type} ${name.toLowerCase()}`;
    const cached = this.answers.get(key);
    if (cached !== undefined) {
      if ('answer' in cached) return cached.answer;
      throw lookupError(name, type, cached.code);
    }
    try {
      const answer = (await this.bounded(this.resolver.resolve(name, type), name, type)) as Answer;
      if (JSON.stringify(answer).length <= MAX_CACHED_ANSWER_CHARS) this.answers.set(key, { answer }, ANSWER_CACHE_MS);
      return answer;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== undefined && NEGATIVE_ANSWERS.has(code)) this.answers.set(key, { code }, ANSWER_CACHE_MS);
      throw err;
    }
  };

  /** A records of `name` with their TTLs (for DNSBL answers, which are cached per TTL by the caller). */
  resolve4(name: string): Promise<{ address: string; ttl: number }[]> {
    return this.bounded(this.resolver.resolve4(name, { ttl: true }), name, 'A');
  }

  private bounded<T>(lookup: Promise<T>, name: string, type: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timeoutError(name, type)), this.timeoutMs);
    });
    // the lookup may still settle after the deadline: nothing waits for it then
    lookup.catch(() => undefined);
    return Promise.race([lookup, deadline]).finally(() => clearTimeout(timer));
  }
}

function lookupError(name: string, type: string, code: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code} ${name}/${type}`);
  err.code = code;
  return err;
}
