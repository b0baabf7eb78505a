// The logins of one client connection, the same for SMTP AUTH and POP3: each attempt is checked
// by the shared Authenticator (penalties, throttle delay, decoy hash, cached credentials, fair
// hashing), a refusal is logged alike whatever the protocol (never the password), and the
// connection's refused attempts are counted against one limit, after which the protocol closes
// it. The replies are each protocol's own: this only says what happened.
import type { Logger } from '../log.js';
import type { Authenticator, LoginResult } from './authenticator.js';

/** refused logins on one connection before it is closed */
export const MAX_LOGIN_FAILURES_PER_SESSION = 5;

/**
 * A wrong name or password ('invalid'), or a temporary refusal: too many checks already wait
 * their penalty ('throttled') or a hashing slot ('busy'); `closeConnection`: the limit is reached.
 */
export type RefusedLogin = { ok: false; reason: 'invalid' | 'throttled' | 'busy'; closeConnection: boolean };

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
      .login({ name, password, client, authzid, stillWanted: this.connectionOpen })
      .catch((error: Error): LoginResult => ({ ok: false, reason: 'unavailable', error }));
    if (!this.connectionOpen()) return { ok: false, reason: 'gone' };
    // a penalty is logged before the protocol's own line for the outcome
    const penalty = result.ok || result.reason === 'invalid' ? result.penaltyMs : 0;
    if (result.ok) {
      if (penalty > 0) this.log.info({ user: result.user, client, penaltyMs: penalty }, 'login after a penalty');
      return { ok: true, user: result.user };
    }
    switch (result.reason) {
      case 'gone':
        return result;
      case 'unavailable':
        this.log.error({ err: result.error.message }, 'password check failed');
        return { ok: false, reason: 'unavailable' };
      case 'throttled':
        this.log.info(
          { client, retryInS: Math.ceil(result.retryInMs / 1000) },
          'login refused: too many failed logins waiting for their turn',
        );
        break;
      case 'busy':
        this.log.info({ client }, 'login refused: too many password checks waiting from this address');
        break;
      case 'invalid':
        this.log.info(
          {
            user: result.user ?? '(invalid name)',
            client,
            delayMs: result.delayMs,
            ...(penalty > 0 ? { penaltyMs: penalty } : {}),
            ...logFields,
          },
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
