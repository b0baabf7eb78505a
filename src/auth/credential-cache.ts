// A short-lived memory of logins whose password verified, as Dovecot's auth cache: a client that
// polls every few minutes pays for the password hash (~40-60 ms of argon2) once per `ttl`, not at
// every login. Only successes are remembered; a wrong password always goes through the hash.
//
// An entry is an HMAC-SHA256, under a random key made when the process starts, of the user name,
// the stored `{SCHEME}hash` and the password: the plaintext is never kept, and the digests are
// worthless outside this process. Because the stored hash is part of the key, a changed password
// misses at once; a new users file (SIGHUP) empties the whole cache. At most `maxEntries` entries
// (the oldest go first), each for `ttl` from its verification.
import { createHmac, randomBytes } from 'node:crypto';
import type { UserDb } from './users.js';

const DEFAULT_MAX_ENTRIES = 10_000;

export interface CredentialCacheOptions {
  /** how long a verified login is remembered (0: never) */
  ttlMs: number;
  maxEntries?: number;
  /** the clock, for tests */
  now?: () => number;
}

export class CredentialCache {
  private readonly key = randomBytes(32);
  /** digest → when it expires; Map order is insertion order, so the first entry is the oldest */
  private readonly entries = new Map<string, number>();
  /** the users file the entries were verified against */
  private users: UserDb | null = null;
  private ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: CredentialCacheOptions) {
    this.ttlMs = options.ttlMs;
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.now = options.now ?? Date.now;
  }

  /** SIGHUP: a new TTL applies to new entries; 0 also forgets every entry. */
  setTtl(ttlMs: number): void {
    this.ttlMs = ttlMs;
    if (ttlMs <= 0) this.entries.clear();
  }

  /** Whether this user, stored hash and password verified within the TTL, against this users file. */
  has(users: UserDb, user: string, stored: string, password: string): boolean {
    this.follow(users);
    const digest = this.digest(user, stored, password);
    const expires = this.entries.get(digest);
    if (expires === undefined) return false;
    if (expires > this.now()) return true;
    this.entries.delete(digest);
    return false;
  }

  /** Remembers a login that just verified. */
  remember(users: UserDb, user: string, stored: string, password: string): void {
    if (this.ttlMs <= 0) return;
    this.follow(users);
    const digest = this.digest(user, stored, password);
    this.entries.delete(digest);
    this.entries.set(digest, this.now() + this.ttlMs);
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  get size(): number {
    return this.entries.size;
  }

  /** A users file other than the one the entries came from: forget them all. */
  private follow(users: UserDb): void {
    if (users === this.users) return;
    this.users = users;
    this.entries.clear();
  }

  private digest(user: string, stored: string, password: string): string {
    return createHmac('sha256', this.key)
      .update(`${user}\0${stored}\0`, 'utf8')
      .update(password, 'utf8')
      .digest('base64');
  }
}
