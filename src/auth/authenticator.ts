// Password logins for every protocol (SMTP AUTH, POP3 USER/PASS and AUTH PLAIN), decided in
// one place so both protocols share the brute-force defences:
// - a locked-out client address (too many failures, see throttle.ts) is refused without a
//   password check;
// - an unknown user, a malformed name and a wrong password cost the same (a hash is always
//   verified: the decoy for names without one) and answer at the same moment: the failure
//   delay counts from the start of the check, so how long the hash took does not show;
// - the delay grows with each failure from the address, whatever connection or protocol it
//   comes over; checks in progress count against the lockout, and a success forgives only that
//   user's failures;
// - a login that verified within `auth.cache_ttl` is let in again without the hash
//   (credential-cache.ts), after the same lockout check; failures are never cached.
// With accounts = "system" the password goes to PAM through the root helper instead
// (accounts/system-passwords.ts, which has its own decoy); nothing is cached then, so a changed
// password or a locked account counts at the next login. The throttle is the same.
// Nothing here logs; callers log the outcome with their session (never the password).
import { setTimeout as sleep } from 'node:timers/promises';
import type { SystemPasswords } from '../accounts/system-passwords.js';
import { CredentialCache } from './credential-cache.js';
import { DecoyHashes } from './decoy.js';
import { isSupportedScheme, schemeOf, verifyPassword } from './password.js';
import { AuthThrottle } from './throttle.js';
import { normalizeUsername } from './username.js';
import type { UserDb } from './users.js';

export interface AuthSettings {
  /** delay before the first failure's reply; doubles per further failure from the address */
  failureDelayMs: number;
  /** failures from one address before it is locked out */
  maxFailures: number;
  /** how long a locked-out address is refused */
  lockoutMs: number;
  /** how long a verified login is remembered, so the next one skips the hash (0: never) */
  cacheTtlMs: number;
}

export type LoginResult =
  | { ok: true; user: string }
  /** wrong name or password (the delay has been waited already); `user` is null for a malformed name */
  | { ok: false; reason: 'invalid'; user: string | null; delayMs: number }
  /** the address failed too often: refused without a check for `retryInMs` more */
  | { ok: false; reason: 'locked-out'; retryInMs: number }
  /** the check itself failed (a server fault): the client should try again later */
  | { ok: false; reason: 'unavailable'; error: Error };

export interface LoginRequest {
  name: string;
  password: string;
  /** client IP address (the throttle's key) */
  client: string;
  /** SASL authorization identity: no proxy logins, so it must be empty or the user itself */
  authzid?: string;
}

export class Authenticator {
  private readonly throttle: AuthThrottle;
  private readonly decoys = new DecoyHashes();
  private readonly recent: CredentialCache;

  constructor(
    private readonly users: () => UserDb,
    settings: AuthSettings,
    /** accounts = "system": passwords are checked through PAM, not the users file */
    private readonly system: SystemPasswords | null = null,
  ) {
    this.throttle = new AuthThrottle({
      baseDelayMs: settings.failureDelayMs,
      maxFailures: settings.maxFailures,
      lockoutMs: settings.lockoutMs,
    });
    this.recent = new CredentialCache({ ttlMs: settings.cacheTtlMs });
  }

  reconfigure(settings: AuthSettings): void {
    this.throttle.reconfigure({
      baseDelayMs: settings.failureDelayMs,
      maxFailures: settings.maxFailures,
      lockoutMs: settings.lockoutMs,
    });
    this.recent.setTtl(settings.cacheTtlMs);
  }

  /** How long `client` is still refused (0: it may try); lets a protocol refuse before asking for a password. */
  lockedOutFor(client: string): number {
    return this.throttle.lockedOutFor(client);
  }

  async login(request: LoginRequest): Promise<LoginResult> {
    const started = Date.now();
    const retryInMs = this.throttle.lockedOutFor(request.client);
    if (retryInMs > 0) return { ok: false, reason: 'locked-out', retryInMs };
    const user = normalizeUsername(request.name);
    const authzid = request.authzid ?? '';
    const sameUser = authzid === '' || (user !== null && normalizeUsername(authzid) === user);
    if (this.system !== null) return this.loginSystem(request, started, user, sameUser, this.system);
    const users = this.users();
    const stored = user === null ? undefined : users.hashOf(user);
    const scheme = stored === undefined ? null : schemeOf(stored);
    const usable = stored !== undefined && scheme !== null && isSupportedScheme(scheme);
    if (usable && sameUser && user !== null && this.recent.has(users, user, stored, request.password)) {
      // a check that ends at once: begin + recordSuccess keeps the checks-in-progress count even
      this.throttle.begin(request.client);
      this.throttle.recordSuccess(request.client, user);
      return { ok: true, user };
    }
    // counted from here, so parallel checks cannot get past the lockout (no await since lockedOutFor)
    this.throttle.begin(request.client);
    let verified: boolean;
    try {
      verified = await verifyPassword(usable ? stored : this.decoys.for(users), request.password);
    } catch (err) {
      this.throttle.abandon(request.client);
      return { ok: false, reason: 'unavailable', error: err as Error };
    }
    if (usable && verified && sameUser && user !== null) {
      this.throttle.recordSuccess(request.client, user);
      this.recent.remember(users, user, stored, request.password);
      return { ok: true, user };
    }
    return this.refuse(request, started, user);
  }

  /** accounts = "system": PAM through the helper; the throttle as for the users file. */
  private async loginSystem(
    request: LoginRequest,
    started: number,
    user: string | null,
    sameUser: boolean,
    system: SystemPasswords,
  ): Promise<LoginResult> {
    this.throttle.begin(request.client);
    let verified: boolean;
    try {
      verified = await system.verify(sameUser ? user : null, request.password, request.client);
    } catch (err) {
      this.throttle.abandon(request.client);
      return { ok: false, reason: 'unavailable', error: err as Error };
    }
    if (verified && user !== null) {
      this.throttle.recordSuccess(request.client, user);
      return { ok: true, user };
    }
    return this.refuse(request, started, user);
  }

  /** A failed login: counted, and answered once its delay (from the start of the check) is over. */
  private async refuse(request: LoginRequest, started: number, user: string | null): Promise<LoginResult> {
    const delayMs = this.throttle.recordFailure(request.client, user ?? request.name.slice(0, 64));
    await sleep(Math.max(0, started + delayMs - Date.now()));
    return { ok: false, reason: 'invalid', user, delayMs };
  }
}
