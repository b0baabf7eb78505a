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
  /** sessions letting go of a mailbox (removing its session lock): done when the claim is free */
  private readonly leaving = new Map<string, Promise<void>>();

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

  /**
   * Lets go of `user`'s mailbox once `done` settles (the session lock removed), so a client that
   * hangs up and logs in again at once is not told the mailbox is in use by its own old session.
   */
  releaseAfter(user: string, holder: object, done: Promise<void>): void {
    if (this.holders.get(user) !== holder) return;
    // settles either way: how the removal went is the session's to log
    const freed = done
      .catch(() => undefined)
      .then(() => {
        this.release(user, holder);
        if (this.leaving.get(user) === freed) this.leaving.delete(user);
      });
    this.leaving.set(user, freed);
  }

  /** Resolves once a session letting go of `user`'s mailbox has done so (at once when none is). */
  async settled(user: string): Promise<void> {
    await this.leaving.get(user);
  }

  holderOf(user: string): object | undefined {
    return this.holders.get(user);
  }

  /** how many mailboxes are held */
  get size(): number {
    return this.holders.size;
  }
}
