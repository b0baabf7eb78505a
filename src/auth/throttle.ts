// Failed logins per client address, for SMTP AUTH and POP3 alike. A failed login waits before
// its error reply: `auth.failure_delay` for the first failure from an address, doubled for each
// further one (up to a cap), so a password guesser slows down whatever connection and protocol it
// uses, while a user who mistypes once waits only the base delay. After `auth.max_failures`
// the address is refused outright, without a password check, for `auth.lockout`. Checks in
// progress count as failures until they end, so a guesser cannot run a hundred checks in
// parallel past the limit. A success forgives only the failures for that user name (someone
// with one account cannot reset the count while guessing others); failures are forgotten after
// a quiet while. The table is bounded: past maxEntries the address idle longest is dropped.
//
// IPv6 clients are counted per /64 (one host usually holds a whole /64), IPv4 per address.
import { isIPv4, isIPv6 } from 'node:net';
import { type Clock, systemClock } from '../clock.js';

export interface ThrottleOptions {
  baseDelayMs: number;
  /** failures from one address before it is locked out (default: never) */
  maxFailures?: number;
  /** how long a locked-out address is refused (default 15 min) */
  lockoutMs?: number;
  /** the delay never grows past this (default 30 s, below any sane client timeout) */
  maxDelayMs?: number;
  /** an address with no failure for this long starts over (default 15 min) */
  forgetAfterMs?: number;
  /** addresses remembered at most (default 10,000) */
  maxEntries?: number;
  /** times failures and lockouts (default: the system clock) */
  clock?: Pick<Clock, 'now'>;
}

interface Entry {
  failures: number;
  last: number;
  /** failures per user name tried (at most MAX_NAMES names; the rest are not forgiven by a success) */
  byUser: Map<string, number>;
}

const MAX_NAMES = 32;

export class AuthThrottle {
  private readonly entries = new Map<string, Entry>();
  /** password checks in progress per address (begin → recordSuccess/recordFailure/abandon) */
  private readonly checking = new Map<string, number>();
  private baseDelayMs: number;
  private maxFailures: number;
  private lockoutMs: number;
  private readonly maxDelayMs: number;
  private readonly forgetAfterMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: ThrottleOptions) {
    this.baseDelayMs = options.baseDelayMs;
    this.maxFailures = options.maxFailures ?? Infinity;
    this.lockoutMs = options.lockoutMs ?? 15 * 60_000;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.forgetAfterMs = options.forgetAfterMs ?? 15 * 60_000;
    this.maxEntries = options.maxEntries ?? 10_000;
    const clock = options.clock ?? systemClock;
    this.now = () => clock.now();
  }

  /** Applies changed settings (SIGHUP); recorded failures are kept. */
  reconfigure(settings: { baseDelayMs: number; maxFailures: number; lockoutMs: number }): void {
    this.baseDelayMs = settings.baseDelayMs;
    this.maxFailures = settings.maxFailures;
    this.lockoutMs = settings.lockoutMs;
  }

  /**
   * How long `address` is still refused without a password check (0: it may try). Checks in
   * progress count: with as many running as failures are left, the next one waits.
   */
  lockedOutFor(address: string): number {
    const key = throttleKey(address);
    const entry = this.live(key, this.now());
    const failures = entry?.failures ?? 0;
    if (failures + (this.checking.get(key) ?? 0) < this.maxFailures) return 0;
    if (entry === undefined || failures < this.maxFailures) return this.lockoutMs;
    const left = entry.last + this.lockoutMs - this.now();
    if (left > 0) return left;
    // the lockout is over: the address starts over
    this.entries.delete(key);
    return 0;
  }

  /** A password check from `address` starts; it must end with recordSuccess, recordFailure or abandon. */
  begin(address: string): void {
    const key = throttleKey(address);
    this.checking.set(key, (this.checking.get(key) ?? 0) + 1);
  }

  /** A check that could not be made (server fault): neither failure nor success. */
  abandon(address: string): void {
    const key = throttleKey(address);
    const left = (this.checking.get(key) ?? 1) - 1;
    if (left > 0) this.checking.set(key, left);
    else this.checking.delete(key);
  }

  /** Records a failed login from `address` for `user`; returns how long to wait before answering it. */
  recordFailure(address: string, user = ''): number {
    this.abandon(address);
    const key = throttleKey(address);
    const now = this.now();
    const old = this.live(key, now);
    const byUser = old?.byUser ?? new Map<string, number>();
    if (byUser.has(user) || byUser.size < MAX_NAMES) byUser.set(user, (byUser.get(user) ?? 0) + 1);
    const entry = { failures: (old?.failures ?? 0) + 1, last: now, byUser };
    // re-insert so the Map's order stays "idle longest first"
    this.entries.delete(key);
    this.entries.set(key, entry);
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    // cap the exponent too: 2 ** 1000 is Infinity, and Infinity * 0 is NaN
    const factor = 2 ** Math.min(entry.failures - 1, 30);
    return Math.min(this.baseDelayMs * factor, Math.max(this.maxDelayMs, this.baseDelayMs));
  }

  /** A login of `user` from `address` succeeded: its own failures are forgiven, others' stay. */
  recordSuccess(address: string, user = ''): void {
    this.abandon(address);
    const key = throttleKey(address);
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    entry.failures -= entry.byUser.get(user) ?? 0;
    entry.byUser.delete(user);
    if (entry.failures <= 0) this.entries.delete(key);
  }

  /** Recent failures of an address (0 when none or forgotten). */
  failures(address: string): number {
    return this.live(throttleKey(address), this.now())?.failures ?? 0;
  }

  get size(): number {
    return this.entries.size;
  }

  private live(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    // a locked-out address is remembered at least as long as its lockout lasts
    const keep = entry.failures >= this.maxFailures ? Math.max(this.forgetAfterMs, this.lockoutMs) : this.forgetAfterMs;
    if (now - entry.last < keep) return entry;
    this.entries.delete(key);
    return undefined;
  }
}

/** The part of a client address that is throttled as one: IPv4 (also IPv4-mapped) whole, IPv6 by /64. */
export function throttleKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address) || !isIPv6(address)) return address;
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, as lowercase hex without leading zeros. */
function expandIPv6(address: string): string[] {
  const [head, tail] = address.toLowerCase().split('%')[0]!.split('::') as [string, string | undefined];
  const part = (text: string) => (text === '' ? [] : text.split(':').flatMap(group));
  const left = part(head);
  const right = tail === undefined ? [] : part(tail);
  const middle = Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0');
  return [...left, ...middle, ...right];
}

/** One group, or the two groups an embedded IPv4 tail (`::1.2.3.4`) stands for. */
function group(text: string): string[] {
  if (!text.includes('.')) return [Number.parseInt(text, 16).toString(16)];
  const [a, b, c, d] = text.split('.').map(Number) as [number, number, number, number];
  return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
}
