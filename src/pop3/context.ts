// What every POP3 session shares, made once by server.ts: the settings SIGHUP may change, the
// certificate as loaded now, the password checks, the mailboxes, and which of them are in use.
import type { Authenticator } from '../auth/authenticator.js';
import type { NetworkMatcher } from '../config/networks.js';
import type { Logger } from '../log.js';
import type { TlsCredentials } from '../tls/credentials.js';
import type { Maildrop } from './maildrop.js';

/** What SIGHUP may change for running and new sessions. */
export interface Pop3Settings {
  /** autologout: idle time allowed between commands */
  timeoutMs: number;
  /** how long opening a mailbox and the QUIT update wait for its dotlock */
  lockTimeoutMs: number;
  /** clients that may log in with a plaintext password without TLS */
  plaintextAuth: NetworkMatcher;
}

export interface SessionContext {
  settings(): Pop3Settings;
  /** the certificate as loaded now, for STLS and implicit TLS; null: TLS is off */
  tls(): TlsCredentials | null;
  /** checks passwords for every protocol (penalties, fair hashing, equal timing) */
  authenticator: Authenticator;
  maildrop: Maildrop;
  /** one session per mailbox */
  claims: MailboxClaims;
  logger: Logger;
}

/** Which session holds which user's mailbox: one at a time per user (RFC 1939's exclusive access). */
export class MailboxClaims {
  private readonly holders = new Map<string, object>();

  /** Takes `user`'s mailbox for `holder`; false when another session holds it. */
  claim(user: string, holder: object): boolean {
    if (this.holders.has(user)) return false;
    this.holders.set(user, holder);
    return true;
  }

  /** Lets go of `user`'s mailbox, if `holder` has it. */
  release(user: string, holder: object): void {
    if (this.holders.get(user) === holder) this.holders.delete(user);
  }

  holderOf(user: string): object | undefined {
    return this.holders.get(user);
  }

  /** how many mailboxes are held */
  get size(): number {
    return this.holders.size;
  }
}
