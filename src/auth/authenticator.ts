// Password logins for every protocol (SMTP AUTH, POP3 USER/PASS and AUTH PLAIN), decided in
// one place so both protocols share the brute-force defences (README, "Logins: SMTP AUTH and
// POP3"):
// - failures are counted per client address and user name, and per address (throttle.ts): a
//   failure's reply waits a delay that grows with that user's failures from the address, and
//   past the limits every check waits a penalty before it starts, and then runs as usual: the
//   right password logs in after its wait; only a check whose turn is too far away is refused
//   (a temporary error); mynetworks has no address count;
// - an unknown user, a malformed name and a wrong password cost the same (a hash is always
//   verified: the decoy for names without one) and answer at the same moment: the failure
//   delay counts from the start of the check, so how long the hash took does not show;
// - the hashes are verified at most PASSWORD_CHECK_SLOTS at once, shared fairly between client
//   addresses (limiter.ts; mynetworks per address and user, as a webmail logs in its users),
//   with at most MAX_QUEUED_CHECKS_PER_CLIENT waiting per client: more get a temporary error;
// - a login that verified within `auth.cache_ttl` is let in again without the hash and without
//   a penalty (credential-cache.ts): only the right password can hit it; failures are never cached.
// With accounts = "system" the password goes to PAM through the root helper instead of the hash
// (accounts/system-passwords.ts, which has its own decoy), through the same throttle and slots;
// nothing is cached then, so a changed password or a locked account counts at the next login.
// Nothing here logs; callers log the outcome with their session (never the password).
import type { SystemPasswords } from '../accounts/system-passwords.js';
import { type Clock, sleep, systemClock } from '../clock.js';
import type { NetworkMatcher } from '../config/networks.js';
import { CredentialCache } from './credential-cache.js';
import { DecoyHashes } from './decoy.js';
import { FairLimiter, QueueFullError } from './limiter.js';
import { isSupportedScheme, schemeOf, verifyPassword } from './password.js';
import { AuthThrottle, throttleKey } from './throttle.js';
import { normalizeUsername } from './username.js';
import type { UserDb } from './users.js';

/**
 * Password checks in progress at once: libuv has 4 threads, and delivery and the queue need
 * some of them for their fsyncs while logins pour in.
 */
const PASSWORD_CHECK_SLOTS = 2;
/** checks one client may have waiting for a slot; more are refused with a temporary error */
export const MAX_QUEUED_CHECKS_PER_CLIENT = 16;

export interface AuthSettings {
  /** delay before the first failure's reply, and the first penalty; both double per further failure */
  failureDelayMs: number;
  /** failures of one user from one address before its checks wait a penalty (the address: 5 times this) */
  maxFailures: number;
  /** failures are forgotten this long after the last one (`auth.lockout`) */
  forgetAfterMs: number;
  /** how long a verified login is remembered, so the next one skips the hash (0: never) */
  cacheTtlMs: number;
  /** clients without an address count, whose hashing queue is per address and user (mynetworks) */
  exempt: NetworkMatcher;
}

export type LoginResult =
  /** `penaltyMs`: how long the check waited before it started */
  | { ok: true; user: string; penaltyMs: number }
  /** wrong name or password (the delay has been waited already); `user` is null for a malformed name */
  | { ok: false; reason: 'invalid'; user: string | null; delayMs: number; penaltyMs: number }
  /** too many checks already wait their penalty: try again in `retryInMs` */
  | { ok: false; reason: 'throttled'; retryInMs: number }
  /** too many checks from this client wait for a hashing slot */
  | { ok: false; reason: 'busy' }
  /** the check itself failed (a server fault): the client should try again later */
  | { ok: false; reason: 'unavailable'; error: Error }
  /** `stillWanted` said no before the hash: nothing checked, nothing counted */
  | { ok: false; reason: 'gone' };

export interface LoginRequest {
  name: string;
  password: string;
  /** client IP address (what failures are counted by) */
  client: string;
  /** SASL authorization identity: no proxy logins, so it must be empty or the user itself */
  authzid?: string;
  /** asked before the hash (after any wait): false when the client has gone meanwhile */
  stillWanted?: () => boolean;
}

export class Authenticator {
  private readonly throttle: AuthThrottle;
  private readonly hashing = new FairLimiter(PASSWORD_CHECK_SLOTS, MAX_QUEUED_CHECKS_PER_CLIENT);
  private readonly decoys = new DecoyHashes();
  private readonly recent: CredentialCache;
  private exempt: NetworkMatcher;

  constructor(
    private readonly users: () => UserDb,
    settings: AuthSettings,
    /** times penalties and failure delays (default: the system clock) */
    private readonly clock: Clock = systemClock,
    /** accounts = "system": passwords are checked through PAM, not the users file */
    private readonly system: SystemPasswords | null = null,
  ) {
    this.throttle = new AuthThrottle({ ...throttleSettings(settings), clock });
    this.recent = new CredentialCache({ ttlMs: settings.cacheTtlMs, now: () => clock.now() });
    this.exempt = settings.exempt;
  }

  reconfigure(settings: AuthSettings): void {
    this.throttle.reconfigure(throttleSettings(settings));
    this.recent.setTtl(settings.cacheTtlMs);
    this.exempt = settings.exempt;
  }

  async login(request: LoginRequest): Promise<LoginResult> {
    const users = this.users();
    const user = normalizeUsername(request.name);
    const authzid = request.authzid ?? '';
    const sameUser = authzid === '' || (user !== null && normalizeUsername(authzid) === user);
    const system = this.system;
    const stored = user === null || system !== null ? undefined : users.hashOf(user);
    const scheme = stored === undefined ? null : schemeOf(stored);
    const usable = system !== null || (stored !== undefined && scheme !== null && isSupportedScheme(scheme));
    const valid = usable && sameUser && user !== null;
    if (system === null && valid && this.recent.has(users, user, stored!, request.password))
      return { ok: true, user, penaltyMs: 0 };

    const name = user ?? request.name.slice(0, 64);
    const exempt = this.exempt(request.client);
    const admission = this.throttle.admit(request.client, name, exempt);
    if (!admission.admitted) return { ok: false, reason: 'throttled', retryInMs: admission.retryInMs };
    const { check, waitMs: penaltyMs } = admission;
    if (penaltyMs > 0) await sleep(this.clock, penaltyMs);
    const started = this.clock.now();
    // mynetworks queues per address and user: a webmail's users do not wait behind each other
    const queue = exempt ? `${throttleKey(request.client)} ${name}` : throttleKey(request.client);
    const verify = () =>
      system !== null
        ? system.verify(sameUser ? user : null, request.password, request.client)
        : verifyPassword(usable ? stored! : this.decoys.for(users), request.password);
    let verified: boolean | null;
    try {
      verified = await this.hashing.run(queue, () =>
        request.stillWanted?.() === false ? Promise.resolve(null) : verify(),
      );
    } catch (err) {
      check.abandoned();
      if (err instanceof QueueFullError) return { ok: false, reason: 'busy' };
      return { ok: false, reason: 'unavailable', error: err as Error };
    }
    if (verified === null) {
      check.abandoned();
      return { ok: false, reason: 'gone' };
    }
    if (verified && valid) {
      check.succeeded();
      if (system === null) this.recent.remember(users, user, stored!, request.password);
      return { ok: true, user, penaltyMs };
    }
    const delayMs = check.failed();
    const left = started + delayMs - this.clock.now();
    if (left > 0) await sleep(this.clock, left);
    return { ok: false, reason: 'invalid', user, delayMs, penaltyMs };
  }
}

function throttleSettings(settings: AuthSettings) {
  return {
    baseDelayMs: settings.failureDelayMs,
    maxFailures: settings.maxFailures,
    forgetAfterMs: settings.forgetAfterMs,
  };
}
