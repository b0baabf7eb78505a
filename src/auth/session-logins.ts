// The logins of one client connection, the same for SMTP AUTH and POP3: each attempt is checked
// by the shared Authenticator (lockout, throttle delay, decoy hash, cached credentials), a
// refusal is logged alike whatever the protocol (never the password), and the connection's
// refused attempts are counted against one limit, after which the protocol closes it. The
// replies are each protocol's own: this only says what happened.
import type { Logger } from '../log.js';
import type { Authenticator, LoginResult } from './authenticator.js';

/** refused logins on one connection before it is closed */
export const MAX_LOGIN_FAILURES_PER_SESSION = 5;

/** A wrong name or password, or a locked-out address; `closeConnection`: the limit is reached. */
export type RefusedLogin = { ok: false; reason: 'invalid' | 'locked-out'; closeConnection: boolean };

export type LoginOutcome =
  | { ok: true; user: string }
  | RefusedLogin
  /** the check itself failed (a server fault, logged): not counted */
  | { ok: false; reason: 'unavailable' }
  /** the connection ended while the check ran: nothing logged, nothing counted */
  | { ok: false; reason: 'gone' };

export interface LoginAttempt {
  name: string;
  password: string;
  /** SASL authorization identity */
  authzid?: string;
  /** fields the protocol adds to its 'login failed' line (SMTP: the AUTH method) */
  logFields?: Record<string, unknown>;
}

export class SessionLogins {
  private refused = 0;

  constructor(
    private readonly authenticator: Authenticator,
    /** the session's logger */
    private readonly log: Logger,
    /** client IP address */
    private readonly client: string,
    /** false once the connection has ended (default: always open) */
    private readonly connectionOpen: () => boolean = () => true,
  ) {}

  async attempt({ name, password, authzid, logFields }: LoginAttempt): Promise<LoginOutcome> {
    const { client } = this;
    const result = await this.authenticator
      .login({ name, password, client, authzid })
      .catch((error: Error): LoginResult => ({ ok: false, reason: 'unavailable', error }));
    if (!this.connectionOpen()) return { ok: false, reason: 'gone' };
    if (result.ok) return result;
    switch (result.reason) {
      case 'unavailable':
        this.log.error({ err: result.error.message }, 'password check failed');
        return { ok: false, reason: 'unavailable' };
      case 'locked-out':
        this.log.info(
          { client, retryInS: Math.ceil(result.retryInMs / 1000) },
          'login refused: too many failures from this address',
        );
        break;
      case 'invalid':
        this.log.info(
          { user: result.user ?? '(invalid name)', client, delayMs: result.delayMs, ...logFields },
          'login failed',
        );
        break;
    }
    this.refused += 1;
    return {
      ok: false,
      reason: result.reason,
      closeConnection: this.refused >= MAX_LOGIN_FAILURES_PER_SESSION,
    };
  }
}
