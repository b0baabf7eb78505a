// Failed logins and the penalties they bring, for SMTP AUTH and POP3 alike (README, "Logins:
// SMTP AUTH and POP3"). Penalties delay checks; they never refuse the right password. Two counts:
// - per client address and user name: the reply to a failed login waits `baseDelay`, doubled for
//   each earlier failure of that user from that address (up to maxDelay). From `maxFailures`
//   failures on, every check for that user from that address first waits a penalty, and the
//   checks start one at a time, each at least a penalty after the one before: a guesser gets a
//   few tries a minute however many connections it opens, while the right password still logs
//   in once its wait is over. The penalty is baseDelay, doubled for each failure beyond the
//   limit (up to maxDelay).
// - per client address, all user names together, each counting at most maxFailures (one user's
//   failures never weigh on the others' logins): from ADDRESS_FACTOR × maxFailures on, every check
//   from the address waits in the same way (a password sprayer). Addresses the caller exempts
//   (mynetworks: a webmail, a NAT of one's own) have no address count; their users' counts stay.
// Checks in progress count as failures until they end, so parallel connections cannot get more
// checks past the limit. A check whose turn is more than maxWait away is refused at once (a
// temporary error, not a failure). A success forgives that user's failures from that address;
// a count is forgotten `forgetAfter` after its last failure. IPv6 clients are counted per /64.
import { isIPv4, isIPv6 } from 'node:net';
import { type Clock, systemClock } from '../clock.js';

/** The address count's limit is this many times maxFailures. */
export const ADDRESS_FACTOR = 5;

export interface ThrottleSettings {
  /** the first failure's reply delay, and the first penalty */
  baseDelayMs: number;
  /** failures of one user from one address before its checks wait a penalty (default: never) */
  maxFailures: number;
  /** a count with no failure for this long starts over */
  forgetAfterMs: number;
}

export interface ThrottleOptions extends Partial<ThrottleSettings> {
  baseDelayMs: number;
  /** reply delays and penalties never grow past this (default 30 s, below any sane client timeout) */
  maxDelayMs?: number;
  /** a check whose turn is further away than this is refused (default 60 s) */
  maxWaitMs?: number;
  /** counts remembered at most, addresses and users together (default 20,000) */
  maxEntries?: number;
  /** times failures and penalties (default: the system clock) */
  clock?: Pick<Clock, 'now'>;
}

interface Count {
  failures: number;
  /** when the last failure was recorded */
  last: number;
  /** when the last penalized check may start (0: none yet); the next one starts a penalty after it */
  turn: number;
}

/** The check may start in `waitMs`; it must end with one call on `check`. */
export type Admission =
  | { admitted: true; waitMs: number; check: PasswordCheck }
  | { admitted: false; retryInMs: number };

/** One admitted password check: ends with exactly one of succeeded, failed, abandoned. */
export interface PasswordCheck {
  succeeded(): void;
  /** Records the failure; returns how long after the check's start the reply is due (the reply delay). */
  failed(): number;
  /** The check could not be made (server fault, connection gone): neither failure nor success. */
  abandoned(): void;
}

export class AuthThrottle {
  private readonly counts = new Map<string, Count>();
  /** password checks admitted and not yet ended, per count key */
  private readonly checking = new Map<string, number>();
  private baseDelayMs: number;
  private maxFailures: number;
  private forgetAfterMs: number;
  private readonly maxDelayMs: number;
  private readonly maxWaitMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: ThrottleOptions) {
    this.baseDelayMs = options.baseDelayMs;
    this.maxFailures = options.maxFailures ?? Infinity;
    this.forgetAfterMs = options.forgetAfterMs ?? 15 * 60_000;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.maxWaitMs = options.maxWaitMs ?? 60_000;
    this.maxEntries = options.maxEntries ?? 20_000;
    const clock = options.clock ?? systemClock;
    this.now = () => clock.now();
  }

  /** Applies changed settings (SIGHUP); recorded failures are kept. */
  reconfigure(settings: ThrottleSettings): void {
    this.baseDelayMs = settings.baseDelayMs;
    this.maxFailures = settings.maxFailures;
    this.forgetAfterMs = settings.forgetAfterMs;
  }

  /**
   * A password check for `user` from `address` asks to start: it may after `waitMs` (0 unless
   * a count is at its limit), or is refused when its turn is too far away. `exempt`: no
   * address count (mynetworks).
   */
  admit(address: string, user: string, exempt = false): Admission {
    const now = this.now();
    const keys = countKeys(address, user, exempt);
    const limits = [this.maxFailures, ADDRESS_FACTOR * this.maxFailures];
    let start = now;
    const penalized: string[] = [];
    keys.forEach((key, i) => {
      const excess = (this.live(key, now)?.failures ?? 0) + (this.checking.get(key) ?? 0) - limits[i]!;
      if (excess < 0) return;
      penalized.push(key);
      start = Math.max(start, Math.max(now, this.counts.get(key)?.turn ?? 0) + this.doubled(excess));
    });
    if (start - now > this.maxWaitMs) return { admitted: false, retryInMs: start - now };
    for (const key of penalized) this.touch(key, now).turn = start;
    for (const key of keys) this.checking.set(key, (this.checking.get(key) ?? 0) + 1);
    return { admitted: true, waitMs: start - now, check: this.checkOf(keys) };
  }

  /** Recent failures of `user` from `address`, or of all users from it when `user` is undefined. */
  failures(address: string, user?: string): number {
    const [pair, whole] = countKeys(address, user ?? '', false);
    return this.live(user === undefined ? whole! : pair!, this.now())?.failures ?? 0;
  }

  /** Counts remembered, addresses and users together. */
  get size(): number {
    return this.counts.size;
  }

  private checkOf(keys: string[]): PasswordCheck {
    let ended = false;
    const end = () => {
      if (ended) throw new Error('a password check ended twice');
      ended = true;
      for (const key of keys) {
        const left = (this.checking.get(key) ?? 1) - 1;
        if (left > 0) this.checking.set(key, left);
        else this.checking.delete(key);
      }
    };
    return {
      abandoned: end,
      succeeded: () => {
        end();
        this.forgive(keys);
      },
      failed: () => {
        end();
        return this.recordFailure(keys);
      },
    };
  }

  /** The user's failures from the address go, and so does their weight in the address count. */
  private forgive([pair, whole]: string[]): void {
    const forgiven = Math.min(this.counts.get(pair!)?.failures ?? 0, this.maxFailures);
    this.counts.delete(pair!);
    const count = whole === undefined ? undefined : this.counts.get(whole);
    if (count === undefined) return;
    count.failures -= forgiven;
    if (count.failures <= 0 && count.turn <= this.now()) this.counts.delete(whole!);
  }

  private recordFailure([pair, whole]: string[]): number {
    const now = this.now();
    const count = this.touch(pair!, now);
    // a user's failures weigh on the address count up to the limit only
    const weighs = count.failures < this.maxFailures;
    count.failures += 1;
    count.last = now;
    if (whole !== undefined) {
      const address = this.touch(whole, now);
      if (weighs) address.failures += 1;
      address.last = now;
    }
    return this.doubled(count.failures - 1);
  }

  /** The count under `key`, made if missing, moved to the end of the Map's "idle longest first" order. */
  private touch(key: string, now: number): Count {
    const count = this.live(key, now) ?? { failures: 0, last: now, turn: 0 };
    this.counts.delete(key);
    this.counts.set(key, count);
    while (this.counts.size > this.maxEntries) this.counts.delete(this.counts.keys().next().value!);
    return count;
  }

  private live(key: string, now: number): Count | undefined {
    const count = this.counts.get(key);
    if (count === undefined) return undefined;
    if (now - count.last < this.forgetAfterMs || count.turn > now) return count;
    this.counts.delete(key);
    return undefined;
  }

  /** baseDelay × 2^exponent, at most maxDelay (and no NaN: 2 ** 1000 is Infinity, and Infinity × 0 is NaN) */
  private doubled(exponent: number): number {
    return Math.min(this.baseDelayMs * 2 ** Math.min(exponent, 30), Math.max(this.maxDelayMs, this.baseDelayMs));
  }
}

/** The keys a check counts under: the user from the address, then the address itself (unless exempt). */
function countKeys(address: string, user: string, exempt: boolean): string[] {
  const key = throttleKey(address);
  return exempt ? [`${key} ${user}`] : [`${key} ${user}`, key];
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
