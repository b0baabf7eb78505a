// The box's Unix accounts as mail users (README, "Using the box's Unix accounts"): getpwnam
// through the system's name service (files, LDAP, sssd: whatever nsswitch.conf says), by running
// `getent passwd -- NAME` (Node has no getpwnam). Only valid mail user names are looked up, and
// only the entry whose login is exactly that name counts (getent also answers a number with the
// account of that uid). Accounts with a uid below `system_min_uid` do not exist for mail.
//
// RCPT TO is on the hot path, so answers are kept for a short while (found and not found alike),
// a name asked for while its lookup runs shares that lookup, and at most a few getent processes
// run at once: a dictionary attack of unknown names waits its turn instead of forking without
// bound. A lookup that fails (getent missing, NSS timing out) is an error, never "no such user".
import { execFile } from 'node:child_process';
import { normalizeUsername } from '../auth/username.js';

export interface SystemAccount {
  login: string;
  uid: number;
  gid: number;
}

export interface AccountLookupOptions {
  minUid: number;
  /** how long an answer is reused */
  ttlMs?: number;
  /** the clock, for tests */
  now?: () => number;
}

const DEFAULT_TTL_MS = 30_000;
const MAX_CACHED = 10_000;
const MAX_RUNNING = 4;
const GETENT_TIMEOUT_MS = 10_000;
/** a passwd line is far shorter; more is not an answer we trust */
const MAX_OUTPUT = 4096;

/** nothing of the caller's environment reaches getent (the root helper runs it too) */
const GETENT_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

/** getent exits 2 for "no such key" (0 found, 1 bad arguments, 3 no enumeration). */
const GETENT_NOT_FOUND = 2;

/** The passwd entry of `login` through NSS, or null when there is none. Rejects when the lookup itself fails. */
export function getpwnam(login: string): Promise<SystemAccount | null> {
  return new Promise((resolve, reject) => {
    execFile(
      'getent',
      ['passwd', '--', login],
      { timeout: GETENT_TIMEOUT_MS, maxBuffer: MAX_OUTPUT, encoding: 'utf8', env: GETENT_ENV },
      (err, stdout) => {
        if (err !== null) {
          if (err.code === GETENT_NOT_FOUND) resolve(null);
          else reject(new Error(`getent passwd ${login} failed: ${err.message}`));
          return;
        }
        resolve(parsePasswdLine(stdout, login));
      },
    );
  });
}

/** The account in a `name:x:uid:gid:gecos:home:shell` line, if it is `login`'s. */
export function parsePasswdLine(text: string, login: string): SystemAccount | null {
  const fields = text.split('\n')[0]!.split(':');
  if (fields.length < 7 || fields[0] !== login) return null;
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  if (!/^\d+$/.test(fields[2]!) || !/^\d+$/.test(fields[3]!) || !Number.isSafeInteger(uid)) return null;
  return { login, uid, gid };
}

export class SystemAccounts {
  /** normalized name → when the answer expires and the account (null: none) */
  private readonly cache = new Map<string, { expires: number; account: SystemAccount | null }>();
  private readonly inflight = new Map<string, Promise<SystemAccount | null>>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly options: AccountLookupOptions,
    private readonly lookup: (login: string) => Promise<SystemAccount | null> = getpwnam,
  ) {
    this.ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.now = options.now ?? Date.now;
  }

  get minUid(): number {
    return this.options.minUid;
  }

  /** The cached answer for a name: the account, null (none), or undefined (not known now). */
  known(name: string): SystemAccount | null | undefined {
    const user = normalizeUsername(name);
    if (user === null) return null;
    const hit = this.cache.get(user);
    if (hit === undefined) return undefined;
    if (hit.expires > this.now()) return hit.account;
    this.cache.delete(user);
    return undefined;
  }

  /** The mail account of `name` (uid >= system_min_uid), or null. Rejects when the system cannot say. */
  async find(name: string): Promise<SystemAccount | null> {
    const known = this.known(name);
    if (known !== undefined) return known;
    const user = normalizeUsername(name)!;
    let pending = this.inflight.get(user);
    if (pending === undefined) {
      pending = this.fetch(user).finally(() => this.inflight.delete(user));
      this.inflight.set(user, pending);
    }
    return pending;
  }

  private async fetch(user: string): Promise<SystemAccount | null> {
    await this.turn();
    let found: SystemAccount | null;
    try {
      found = await this.lookup(user);
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
    const account = found !== null && found.uid >= this.options.minUid ? found : null;
    this.cache.set(user, { expires: this.now() + this.ttlMs, account });
    while (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
    return account;
  }

  /** Waits until fewer than MAX_RUNNING lookups run, and takes a place. */
  private async turn(): Promise<void> {
    while (this.running >= MAX_RUNNING) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
  }
}
