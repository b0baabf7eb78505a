// The POP3 protocol of one session, without its socket: the RFC 1939 state machine
// AUTHORIZATION → TRANSACTION → UPDATE, with CAPA and RESP-CODES (RFC 2449), AUTH-RESP-CODE
// (RFC 3206), AUTH PLAIN (RFC 5034, 4616) and STLS (RFC 2595). It takes one command line at a
// time and answers it with one Pop3Response: a status line (the last one, if it ends the
// session), a multi-line reply, a message for the connection to stream from the mailbox (RETR,
// TOP), or STLS's go-ahead, after which the connection does the handshake and calls
// tlsStarted(). connection.ts reads the lines and writes the answers.
//
// A plaintext password is taken only over TLS or from plaintext_auth_networks; logins go through
// SessionLogins, shared with SMTP. The mailbox is read and updated through MailboxView. Nothing
// here logs a password or an AUTH payload.
import { type RefusedLogin, SessionLogins } from '../auth/session-logins.js';
import type { Logger } from '../log.js';
import { countLogin, countRetrieved } from '../metrics/metrics.js';
import { SessionActivity } from '../net/session-activity.js';
import { type Dotlock, MailboxLockedError } from '../mbox/lock.js';
import { UntrustedMailboxError } from '../mbox/trust.js';
import { MailboxChangedError, type MessageInfo, type MailboxSnapshot } from '../mbox/mailbox.js';
import type { TlsCredentials } from '../tls/credentials.js';
import type { SessionContext } from './context.js';
import { MAX_COMMAND_LENGTH } from './lines.js';
import { NotAMailboxError } from './maildrop.js';
import { MailboxView } from './mailbox-view.js';

export const GREETING = '+OK mailsrv ready';

/**
 * Where a session is: RFC 1939's states, with AUTHORIZATION split by what the next line is (a
 * command; the PASS a USER asked for; AUTH PLAIN's response after "+ "), and `closed` once it
 * takes no more commands.
 */
export type Pop3Phase = 'authorization' | 'awaiting-pass' | 'awaiting-sasl' | 'transaction' | 'update' | 'closed';

/** RETR and TOP: the status line, then the message (TOP: its headers and first bodyLines lines) from the mailbox. */
export interface MessageResponse {
  kind: 'message';
  status: string;
  mailbox: MailboxView;
  info: MessageInfo;
  bodyLines?: number;
}

/** The answer to one command line. */
export type Pop3Response =
  /** one status line; with `close`, the session's last: the connection ends after it */
  | { kind: 'line'; line: string; close?: true }
  /** the status line, then `lines` (dot-stuffed on the wire), then "." */
  | { kind: 'lines'; first: string; lines: Iterable<string> }
  | MessageResponse
  /** STLS: the line, out on the wire, then the TLS handshake with these credentials */
  | { kind: 'start-tls'; line: string; credentials: TlsCredentials };

type State =
  | { phase: 'authorization' | 'awaiting-sasl' | 'closed' }
  /** the name USER gave */
  | { phase: 'awaiting-pass'; name: string }
  | { phase: 'transaction' | 'update'; mailbox: MailboxView };

/** longest AUTH PLAIN continuation line (base64 of authzid, authcid and password) */
const MAX_SASL_LINE = 2048;
/** protocol errors (unknown command, wrong state, bad arguments, long lines) before the session is closed */
const MAX_BAD_COMMANDS = 20;

const PLAINTEXT_REFUSED = '-ERR [AUTH] Plaintext authentication disallowed on non-secured connection';
const AUTH_FAILED = '-ERR [AUTH] Invalid user name or password';
const STLS_UNAVAILABLE = '-ERR STLS not available: TLS is not configured';
const ALREADY_TLS = '-ERR Already in TLS';
const SIGN_OFF = '+OK mailsrv signing off';

const AUTHORIZATION_COMMANDS = ['USER', 'PASS', 'AUTH', 'CAPA', 'STLS', 'QUIT'] as const;
const TRANSACTION_COMMANDS = ['STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'TOP', 'UIDL', 'QUIT', 'CAPA'] as const;
/** the name each command is counted under in the `disconnect` log line; others are "unknown" */
const COMMAND_NAMES = new Map(
  [...AUTHORIZATION_COMMANDS, ...TRANSACTION_COMMANDS].map((keyword) => [keyword as string, keyword.toLowerCase()]),
);

const AUTHORIZATION_SET: ReadonlySet<string> = new Set(AUTHORIZATION_COMMANDS);
const TRANSACTION_SET: ReadonlySet<string> = new Set(TRANSACTION_COMMANDS);

function isAuthorizationCommand(word: string): word is (typeof AUTHORIZATION_COMMANDS)[number] {
  return AUTHORIZATION_SET.has(word);
}

function isTransactionCommand(word: string): word is (typeof TRANSACTION_COMMANDS)[number] {
  return TRANSACTION_SET.has(word);
}

function messagesText(count: number): string {
  return `${count} message${count === 1 ? '' : 's'}`;
}

function line(text: string): Pop3Response {
  return { kind: 'line', line: text };
}

function arity(args: string[], min: number, max: number): void {
  if (args.length < min) throw new BadCommand('-ERR Missing argument');
  if (args.length > max) throw new BadCommand('-ERR Too many arguments');
}

/** A protocol error: the -ERR line it turns into; counts towards MAX_BAD_COMMANDS. */
class BadCommand extends Error {}

export class Pop3Protocol {
  private state: State = { phase: 'authorization' };
  /** the session runs over TLS (implicit, or after STLS) */
  private secure = false;
  /**
   * the mailbox this session has claimed, from login until the connection is gone or QUIT's
   * update is done (a session closed for too many errors keeps it that long); its session lock
   * (every node sharing the spool) once taken; its view once opened
   */
  private held: { user: string; sessionLock: Dotlock | null; mailbox: MailboxView | null } | null = null;
  private badCommands = 0;
  private readonly logins: SessionLogins;
  private quitUpdate: Promise<void> | null = null;
  /** the commands and the duration of the session, for its `disconnect` log line */
  readonly activity = new SessionActivity();
  private loginUser: string | null = null;

  constructor(
    private readonly ctx: SessionContext,
    /** the client's IP address */
    private readonly client: string,
    /** the session's logger */
    private readonly log: Logger,
  ) {
    this.logins = new SessionLogins(ctx.authenticator, log, client, () => this.state.phase !== 'closed');
  }

  get phase(): Pop3Phase {
    return this.state.phase;
  }

  /** The longest line the next one may be (without its line end). */
  get maxLineLength(): number {
    return this.state.phase === 'awaiting-sasl' ? MAX_SASL_LINE : MAX_COMMAND_LENGTH;
  }

  /** The user whose mailbox the session holds (claimed at login, until it lets go), for log lines. */
  get user(): string | null {
    return this.held?.user ?? null;
  }

  /** The user this session logged in as, for its `disconnect` line (named after it lets go of the mailbox). */
  get loggedInAs(): string | null {
    return this.loginUser;
  }

  /** QUIT's update, once it has started (it is never cut short): the connection waits for it. */
  get updating(): Promise<void> | null {
    return this.quitUpdate;
  }

  /**
   * Answers one command line (without its line end); null once the session is closed. Commands
   * that need no I/O (RETR among them: the connection reads the message) answer at once, the
   * others (logins, QUIT) through a promise.
   */
  handle(text: string): Pop3Response | null | Promise<Pop3Response | null> {
    const { state } = this;
    if (state.phase === 'closed') return null;
    if (state.phase === 'awaiting-sasl') {
      this.state = { phase: 'authorization' };
      return this.saslResponse(text);
    }
    const space = text.indexOf(' ');
    const keyword = (space < 0 ? text : text.slice(0, space)).toUpperCase();
    // PASS takes the rest of the line as is: a password may contain spaces
    const rest = space < 0 ? '' : text.slice(space + 1);
    const args = rest.split(' ').filter((arg) => arg !== '');
    this.activity.count(COMMAND_NAMES.get(keyword) ?? 'unknown');
    // checked first: this runs for every command line (a pipelined RETR run is thousands)
    if (this.log.isLevelEnabled('debug'))
      this.log.debug({ command: /^[A-Z]{1,8}$/.test(keyword) ? keyword : '(bad)' }, 'command');
    try {
      const response = this.dispatch(keyword, args, rest);
      this.badCommands = 0;
      return response;
    } catch (err) {
      if (!(err instanceof BadCommand)) throw err;
      return this.bad(err.message);
    }
  }

  /** Answers a line longer than maxLineLength (it was not kept); null once the session is closed. */
  lineTooLong(): Pop3Response | null {
    if (this.state.phase === 'closed') return null;
    // a too long AUTH continuation line is not a command
    if (this.state.phase === 'awaiting-sasl') this.state = { phase: 'authorization' };
    else this.activity.count('unknown');
    return this.bad('-ERR line too long');
  }

  /** The TLS handshake is done (after STLS, or on an implicit-TLS listener before the greeting). */
  tlsStarted(): void {
    this.secure = true;
  }

  /**
   * The connection ends for a reason of its own (autologout, server stop, failed handshake): no
   * more commands, and a login still being checked does not open the mailbox. A QUIT update
   * goes on to its end.
   */
  stop(): void {
    if (this.state.phase !== 'update') this.state = { phase: 'closed' };
  }

  /**
   * The connection is closed. Resolves once the session has let go of its mailbox: at once, or
   * when QUIT's update is done. Nothing is deleted unless a QUIT came.
   */
  disconnected(): Promise<void> {
    const { state } = this;
    if (state.phase === 'transaction') {
      this.log.info(
        { user: state.mailbox.user, marked: state.mailbox.deleted.size },
        'connection dropped without QUIT: nothing deleted',
      );
    }
    this.stop();
    // a QUIT update keeps the mailbox until it is done, whatever the client does meanwhile
    return this.quitUpdate ?? this.release();
  }

  private dispatch(keyword: string, args: string[], rest: string): Pop3Response | Promise<Pop3Response | null> {
    if (!isAuthorizationCommand(keyword) && !isTransactionCommand(keyword)) {
      throw new BadCommand('-ERR Unknown command');
    }
    const { state } = this;
    if ((state.phase === 'authorization' || state.phase === 'awaiting-pass') && isAuthorizationCommand(keyword))
      return this.authorizationCommand(keyword, args, rest);
    if (state.phase === 'transaction' && isTransactionCommand(keyword))
      return this.transactionCommand(state.mailbox, keyword, args);
    const rfcState =
      state.phase === 'transaction' ? 'TRANSACTION' : state.phase === 'update' ? 'UPDATE' : 'AUTHORIZATION';
    throw new BadCommand(`-ERR ${keyword} not allowed in the ${rfcState} state`);
  }

  private bad(reply: string): Pop3Response {
    this.badCommands += 1;
    if (this.badCommands >= MAX_BAD_COMMANDS) {
      this.log.info({ client: this.client }, 'too many bad commands');
      return this.closing('-ERR Too many bad commands, closing the connection');
    }
    return line(reply);
  }

  /** The session's last reply: no command is taken after it. */
  /** A refused login's reply; the connection's last refused login also closes it. */
  private refusal({ closeConnection }: RefusedLogin, text: string): Pop3Response {
    return closeConnection ? this.closing(`${text}; too many failures, closing the connection`) : line(text);
  }

  private closing(text: string): Pop3Response {
    this.state = { phase: 'closed' };
    return { kind: 'line', line: text, close: true };
  }

  /** What this session may do now: USER, SASL and STLS only before login, STLS only while not under TLS. */
  private capa(beforeLogin: boolean): Pop3Response {
    const caps = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
    if (beforeLogin) {
      if (this.plaintextAllowed()) caps.push('USER', 'SASL PLAIN');
      if (!this.secure && this.ctx.tls() !== null) caps.push('STLS');
    }
    caps.push('IMPLEMENTATION mailsrv');
    return { kind: 'lines', first: '+OK Capability list follows', lines: caps };
  }

  // ---------------------------------------------------------------- AUTHORIZATION

  private authorizationCommand(
    keyword: (typeof AUTHORIZATION_COMMANDS)[number],
    args: string[],
    rest: string,
  ): Pop3Response | Promise<Pop3Response | null> {
    switch (keyword) {
      case 'CAPA':
        return this.capa(true);
      case 'QUIT':
        return this.closing(SIGN_OFF);
      case 'USER':
        return this.userCommand(args);
      case 'PASS':
        return this.passCommand(rest);
      case 'AUTH':
        return this.authCommand(args);
      case 'STLS':
        return this.stls(args);
    }
  }

  private plaintextAllowed(): boolean {
    return this.secure || this.ctx.settings().plaintextAuth(this.client);
  }

  private userCommand(args: string[]): Pop3Response {
    if (!this.plaintextAllowed()) return line(PLAINTEXT_REFUSED);
    arity(args, 1, 1);
    this.state = { phase: 'awaiting-pass', name: args[0]! };
    // the same answer for every name: whether it exists is told by nothing before PASS
    return line('+OK send PASS');
  }

  private passCommand(password: string): Pop3Response | Promise<Pop3Response | null> {
    if (!this.plaintextAllowed()) return line(PLAINTEXT_REFUSED);
    const { state } = this;
    this.state = { phase: 'authorization' };
    if (state.phase !== 'awaiting-pass') throw new BadCommand('-ERR USER first');
    return this.login(state.name, password);
  }

  private authCommand(args: string[]): Pop3Response | Promise<Pop3Response | null> {
    this.state = { phase: 'authorization' };
    if (args.length === 0) {
      // the mechanism list some older clients ask for (RFC 1734 era), as Dovecot answers it
      return { kind: 'lines', first: '+OK', lines: this.plaintextAllowed() ? ['PLAIN'] : [] };
    }
    arity(args, 1, 2);
    if (args[0]!.toUpperCase() !== 'PLAIN') return line('-ERR Unsupported authentication mechanism');
    if (!this.plaintextAllowed()) return line(PLAINTEXT_REFUSED);
    if (args.length === 2) return this.saslPlain(args[1]!);
    this.state = { phase: 'awaiting-sasl' };
    return line('+ ');
  }

  private saslResponse(text: string): Pop3Response | Promise<Pop3Response | null> {
    if (text === '*') return line('-ERR Authentication cancelled');
    return this.saslPlain(text);
  }

  /** RFC 4616: base64 of `authzid NUL authcid NUL password`; "=" is an empty initial response. */
  private saslPlain(encoded: string): Pop3Response | Promise<Pop3Response | null> {
    const text = encoded === '=' ? '' : encoded;
    if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      return line('-ERR [AUTH] Invalid base64 in the AUTH PLAIN response');
    }
    const parts = Buffer.from(text, 'base64').toString('utf8').split('\0');
    if (parts.length !== 3) return line('-ERR [AUTH] Malformed AUTH PLAIN response');
    const [authzid, authcid, password] = parts as [string, string, string];
    return this.login(authcid, password, authzid);
  }

  /** RFC 2595 §4: STLS, then the TLS handshake over the same connection (connection.ts). */
  private stls(args: string[]): Pop3Response {
    arity(args, 0, 0);
    if (this.secure) return line(ALREADY_TLS);
    const credentials = this.ctx.tls();
    if (credentials === null) return line(STLS_UNAVAILABLE);
    // a USER given in plaintext does not carry over into TLS
    this.state = { phase: 'authorization' };
    return { kind: 'start-tls', line: '+OK Begin TLS negotiation', credentials };
  }

  /** Checks a name and password (SessionLogins); on success opens the mailbox. */
  private async login(name: string, password: string, authzid?: string): Promise<Pop3Response | null> {
    const result = await this.logins.attempt({ name, password, authzid });
    countLogin('pop3', result);
    if (result.ok) return this.openMailbox(result.user);
    switch (result.reason) {
      case 'gone':
        return null;
      case 'unavailable':
        return line('-ERR [SYS/TEMP] Authentication is temporarily unavailable, try again later');
      case 'throttled':
        return this.refusal(result, '-ERR [SYS/TEMP] Too many failed logins from your address, try again later');
      case 'busy':
        return this.refusal(result, '-ERR [SYS/TEMP] Too many logins in progress from your address, try again later');
      case 'invalid':
        return this.refusal(result, AUTH_FAILED);
    }
  }

  private async openMailbox(user: string): Promise<Pop3Response | null> {
    await this.ctx.claims.settled(user);
    // hung up meanwhile: nothing was claimed, nothing to let go
    if (this.isClosed()) return null;
    if (!this.ctx.claims.claim(user, this)) {
      this.log.info({ user, client: this.client }, 'mailbox in use');
      return line('-ERR [IN-USE] Mailbox is in use by another POP3 session');
    }
    const held: NonNullable<typeof this.held> = { user, sessionLock: null, mailbox: null };
    this.held = held;
    try {
      const sessionLock = await this.ctx.maildrop.lockSession(user);
      held.sessionLock = sessionLock;
      // closed meanwhile: the claim was let go without this lock
      if (this.held !== held) await sessionLock.release();
    } catch (err) {
      await this.release();
      if (err instanceof MailboxLockedError) {
        this.log.info({ user, client: this.client, lock: err.path }, 'mailbox in use by a session on another node');
        return line('-ERR [IN-USE] Mailbox is in use by another POP3 session');
      }
      this.log.error({ user, err: (err as Error).message }, 'cannot take the POP3 session lock');
      return line('-ERR [SYS/TEMP] Cannot open the mailbox, try again later');
    }
    if (this.held !== held) return null;
    let snapshot: MailboxSnapshot;
    try {
      snapshot = await this.ctx.maildrop.open(user);
    } catch (err) {
      await this.release();
      if (err instanceof MailboxLockedError) {
        this.log.warn({ user, lock: err.path, err: err.message }, 'mailbox locked by another program');
        return line('-ERR [IN-USE] Mailbox is locked by another program, try again later');
      }
      this.log.error({ user, err: (err as Error).message }, 'cannot open mailbox');
      if (err instanceof NotAMailboxError) return line('-ERR [SYS/PERM] Mailbox is not a regular file');
      if (err instanceof UntrustedMailboxError)
        return line('-ERR [SYS/PERM] Mailbox file is unsafe, ask the administrator');
      return line('-ERR [SYS/TEMP] Cannot open the mailbox, try again later');
    }
    // closed meanwhile: the claim is let go with the connection
    if (this.state.phase === 'closed') return null;
    const mailbox = new MailboxView(user, snapshot, this.ctx.maildrop);
    held.mailbox = mailbox;
    this.state = { phase: 'transaction', mailbox };
    this.loginUser = user;
    const { count, size } = mailbox.stat();
    this.log.info({ user, client: this.client, tls: this.secure, messages: count, size }, 'login');
    return line(`+OK ${user} has ${messagesText(count)} (${size} octets)`);
  }

  /** A method, not a test of this.state, so the type checker does not take it as fixed across awaits. */
  private isClosed(): boolean {
    return this.state.phase === 'closed';
  }

  /** Lets go of the mailbox: closes its file and removes its session lock; then another session may claim it. */
  private async release(): Promise<void> {
    const { held } = this;
    if (held === null) return;
    this.held = null;
    held.mailbox?.close();
    const removed = (async () => {
      try {
        await held.sessionLock?.release();
      } catch (err) {
        // a lock left behind goes stale: its refresh has stopped
        this.log.warn({ user: held.user, err: (err as Error).message }, 'cannot remove the POP3 session lock');
      }
    })();
    this.ctx.claims.releaseAfter(held.user, this, removed);
    await removed;
  }

  // ---------------------------------------------------------------- TRANSACTION

  private transactionCommand(
    mailbox: MailboxView,
    keyword: (typeof TRANSACTION_COMMANDS)[number],
    args: string[],
  ): Pop3Response | Promise<Pop3Response> {
    switch (keyword) {
      case 'CAPA':
        return this.capa(false);
      case 'QUIT':
        return this.quit(mailbox);
      case 'STAT': {
        arity(args, 0, 0);
        const { count, size } = mailbox.stat();
        return line(`+OK ${count} ${size}`);
      }
      case 'LIST':
        return this.list(mailbox, args);
      case 'UIDL':
        return this.uidl(mailbox, args);
      case 'RETR': {
        arity(args, 1, 1);
        const found = this.find(mailbox, args[0]!);
        if ('refusal' in found) return found.refusal;
        countRetrieved(found.info.size);
        return { kind: 'message', status: `+OK ${found.info.size} octets`, mailbox, info: found.info };
      }
      case 'TOP': {
        arity(args, 2, 2);
        if (!/^\d{1,15}$/.test(args[1]!)) throw new BadCommand('-ERR Invalid number of lines');
        const found = this.find(mailbox, args[0]!);
        if ('refusal' in found) return found.refusal;
        const bodyLines = Number(args[1]);
        return { kind: 'message', status: '+OK top of message follows', mailbox, info: found.info, bodyLines };
      }
      case 'DELE': {
        arity(args, 1, 1);
        const found = this.find(mailbox, args[0]!);
        if ('refusal' in found) return found.refusal;
        mailbox.deleted.add(found.index);
        return line(`+OK message ${found.index + 1} deleted`);
      }
      case 'RSET': {
        arity(args, 0, 0);
        mailbox.deleted.clear();
        const { count, size } = mailbox.stat();
        return line(`+OK maildrop has ${messagesText(count)} (${size} octets)`);
      }
      case 'NOOP':
        arity(args, 0, 0);
        return line('+OK');
    }
  }

  /**
   * The message a number argument names. A malformed number is a BadCommand; a number that names
   * no message, or a deleted one, gives the -ERR reply.
   */
  private find(mailbox: MailboxView, arg: string): { index: number; info: MessageInfo } | { refusal: Pop3Response } {
    if (!/^\d{1,15}$/.test(arg)) throw new BadCommand('-ERR Invalid message number');
    const number = Number(arg);
    const info = mailbox.messages[number - 1];
    if (number < 1 || info === undefined) {
      return { refusal: line(`-ERR No such message (the maildrop has ${mailbox.messages.length})`) };
    }
    if (mailbox.deleted.has(number - 1)) return { refusal: line(`-ERR Message ${number} is deleted`) };
    return { index: number - 1, info };
  }

  private list(mailbox: MailboxView, args: string[]): Pop3Response {
    arity(args, 0, 1);
    if (args.length === 1) {
      const found = this.find(mailbox, args[0]!);
      return 'refusal' in found ? found.refusal : line(`+OK ${found.index + 1} ${found.info.size}`);
    }
    const { count, size } = mailbox.stat();
    return {
      kind: 'lines',
      first: `+OK ${messagesText(count)} (${size} octets)`,
      lines: mailbox.listing((m) => String(m.size)),
    };
  }

  private uidl(mailbox: MailboxView, args: string[]): Pop3Response {
    arity(args, 0, 1);
    if (args.length === 1) {
      const found = this.find(mailbox, args[0]!);
      return 'refusal' in found ? found.refusal : line(`+OK ${found.index + 1} ${found.info.uidl}`);
    }
    return { kind: 'lines', first: '+OK unique-id listing follows', lines: mailbox.listing((m) => m.uidl) };
  }

  // ---------------------------------------------------------------- QUIT and UPDATE

  private async quit(mailbox: MailboxView): Promise<Pop3Response> {
    this.state = { phase: 'update', mailbox };
    if (mailbox.deleted.size === 0) {
      await this.release();
      return this.closing(SIGN_OFF);
    }
    const update = this.update(mailbox);
    this.quitUpdate = update.then(({ completion }) => completion);
    return this.closing((await update).reply);
  }

  /**
   * Removes the messages marked deleted; on an error before the update is committed nothing is
   * deleted (-ERR). Gives the reply to QUIT once it is committed, and what settles when the
   * mailbox holds its new content (a long copy goes on after the reply; the session lets go of
   * the mailbox at the reply; should the copy fail, the journal finishes it at the next open).
   */
  private async update(mailbox: MailboxView): Promise<{ reply: string; completion: Promise<void> }> {
    const { user } = mailbox;
    const failed = (reply: string) => ({ reply, completion: Promise.resolve() });
    try {
      const { removed, bytesFreed, completion } = await mailbox.expunge();
      return {
        reply: `${SIGN_OFF} (${messagesText(removed)} deleted)`,
        completion: completion.then(
          () => this.log.info({ user, removed, bytesFreed }, 'mailbox updated'),
          (err: Error) =>
            this.log.error({ user, err: err.message }, 'update committed but not finished: the next open finishes it'),
        ),
      };
    } catch (err) {
      if (err instanceof MailboxChangedError) {
        this.log.warn({ user, err: err.message }, 'update refused: mailbox changed by another program');
        return failed('-ERR [SYS/TEMP] Mailbox was changed by another program; nothing deleted');
      }
      if (err instanceof MailboxLockedError) {
        this.log.warn({ user, lock: err.path }, 'update refused: mailbox locked');
        return failed('-ERR [SYS/TEMP] Mailbox is locked by another program; nothing deleted, try again later');
      }
      this.log.error({ user, err: (err as Error).message }, 'update failed');
      return failed('-ERR [SYS/TEMP] Cannot update the mailbox; nothing deleted');
    } finally {
      await this.release();
    }
  }
}
