// One POP3 connection: the RFC 1939 state machine AUTHORIZATION → TRANSACTION → UPDATE, with
// CAPA and RESP-CODES (RFC 2449), AUTH-RESP-CODE (RFC 3206), AUTH PLAIN (RFC 5034, 4616) and
// STLS (RFC 2595); on an implicit-TLS listener (RFC 8314) the session starts over TLS. A
// plaintext password is taken only over TLS or from plaintext_auth_networks.
//
// Commands are taken from the line reader one at a time, in order, each answered before the
// next is looked at (pipelining, RFC 2449 §6.6). Memory per session is bounded: the reader
// holds at most one line, the socket is paused while too many pipelined bytes wait, every reply
// waits for the socket to drain before the next command runs, and a message is streamed from
// the file, dot-stuffed, at the pace the client reads (one chunk at a time; a small message in
// one piece, retr-reply.ts).
// Replies are corked while pipelined commands are waiting, so a run of small RETRs goes out in
// a few large writes; the socket is flushed whenever it holds a buffer's worth or the client
// has nothing more queued.
//
// Nothing here touches the mailbox file: Maildrop does (open, read, update); the session only
// keeps the file window Maildrop opened for its reads, and closes it. Nothing here
// logs a password or an AUTH payload.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Authenticator } from '../auth/authenticator.js';
import type { NetworkMatcher } from '../config/networks.js';
import type { Logger } from '../log.js';
import { MailboxLockedError } from '../mbox/lock.js';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from '../mbox/mailbox.js';
import type { FileWindow } from '../mbox/retrieve.js';
import type { TlsCredentials } from '../tls/credentials.js';
import { LineReader, MAX_COMMAND_LENGTH } from './lines.js';
import { NotAMailboxError, type Maildrop } from './maildrop.js';
import { TERMINATOR, WHOLE_REPLY_MAX, WholeReplies } from './retr-reply.js';
import { acceptTls, describeTls } from './tls.js';

/** What SIGHUP may change for running and new sessions. */
export interface Pop3Settings {
  maxClients: number;
  /** autologout: idle time allowed between commands */
  timeoutMs: number;
  /** how long opening a mailbox and the QUIT update wait for its dotlock */
  lockTimeoutMs: number;
  /** clients that may log in with a plaintext password without TLS */
  plaintextAuth: NetworkMatcher;
}

/** What every session shares (server.ts makes it). */
export interface SessionContext {
  settings(): Pop3Settings;
  /** the certificate as loaded now, for STLS and implicit TLS; null: TLS is off */
  tls(): TlsCredentials | null;
  /** checks passwords for every protocol (throttle, lockout, equal timing) */
  authenticator: Authenticator;
  maildrop: Maildrop;
  /** one session per mailbox: false when another session holds it */
  claim(user: string, session: Pop3Session): boolean;
  release(user: string, session: Pop3Session): void;
  logger: Logger;
}

type State = 'authorization' | 'transaction' | 'update';

export const GREETING = '+OK mailsrv ready';
/** pipelined bytes a busy session holds before it stops reading the socket */
const MAX_BUFFERED = 16 * 1024;
/** longest AUTH PLAIN continuation line (base64 of authzid, authcid and password) */
const MAX_SASL_LINE = 2048;
/** protocol errors (unknown command, wrong state, bad arguments, long lines) before the session is closed */
const MAX_BAD_COMMANDS = 20;
/** failed logins on one connection before it is closed */
const MAX_AUTH_FAILURES = 5;
/** multi-line listings (LIST, UIDL) are written in pieces of about this size */
const LISTING_CHUNK = 16 * 1024;
/** after our last reply, how long a client may take to close before the socket is destroyed */
const LINGER_MS = 10_000;
const SHUTDOWN_LINGER_MS = 2_000;
/** the longest a TLS handshake may take (never longer than pop3.timeout) */
const HANDSHAKE_TIMEOUT_MS = 30_000;

const PLAINTEXT_REFUSED = '-ERR [AUTH] Plaintext authentication disallowed on non-secured connection';
const AUTH_FAILED = '-ERR [AUTH] Invalid user name or password';
const STLS_UNAVAILABLE = '-ERR STLS not available: TLS is not configured';
const ALREADY_TLS = '-ERR Already in TLS';

const COMMANDS = {
  authorization: new Set(['USER', 'PASS', 'AUTH', 'CAPA', 'STLS', 'QUIT']),
  transaction: new Set(['STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'TOP', 'UIDL', 'QUIT', 'CAPA']),
};
const KNOWN = new Set([...COMMANDS.authorization, ...COMMANDS.transaction]);

function messagesText(count: number): string {
  return `${count} message${count === 1 ? '' : 's'}`;
}

/** A protocol error: the -ERR line it turns into; counts towards MAX_BAD_COMMANDS. */
class BadCommand extends Error {}

/** The client went away (or the server is stopping) while a reply was being written. */
class ConnectionGone extends Error {}

export class Pop3Session {
  readonly id = randomBytes(6).toString('hex').toUpperCase();
  /** resolves once the socket is closed and the session has let go of its mailbox */
  readonly closed: Promise<void>;

  private readonly log: Logger;
  private readonly reader = new LineReader(MAX_COMMAND_LENGTH);
  private readonly client: string;
  private state: State = 'authorization';
  /** the stream commands come from and replies go to: the connection, or TLS over it */
  private socket: Socket;
  /** the session runs over TLS (implicit, or after STLS) */
  private secure = false;
  /** the greeting went out and no TLS handshake is under way: replies may be written on `socket` */
  private talking = false;
  /** the socket is closed or closing: no more commands, no more replies */
  private ended = false;
  /** the client shut down its side: answer what it sent, then end the connection */
  private inputEnded = false;
  private pumping = false;
  /** a multi-line reply is being written: an out-of-band -ERR would corrupt it */
  private streaming = false;
  /** AUTH PLAIN sent "+ " and waits for the client's response line */
  private saslPending = false;
  /** the USER argument, until PASS */
  private userArg: string | null = null;
  /** the mailbox this session holds (claimed), from a successful login until the end */
  private mailboxUser: string | null = null;
  private snapshot: MailboxSnapshot | null = null;
  /** the mailbox file and its read buffer, opened at the first RETR or TOP, closed with the mailbox */
  private window: Promise<FileWindow> | null = null;
  /** where small RETR replies are built, made at the first RETR, dropped with the window */
  private wholeReplies: WholeReplies | null = null;
  /** indexes into snapshot.messages marked by DELE */
  private readonly deleted = new Set<number>();
  private badCommands = 0;
  private authFailures = 0;
  /** the QUIT update, while it runs: shutdown waits for it */
  private updating: Promise<void> | null = null;
  private resolveClosed!: () => void;

  constructor(
    /** the TCP connection: its close ends the session, whatever runs over it */
    private readonly connection: Socket,
    private readonly ctx: SessionContext,
    /** accepted by an implicit-TLS (pop3s) listener: the handshake comes before the greeting */
    private readonly implicitTls: boolean,
  ) {
    this.socket = connection;
    this.client = connection.remoteAddress ?? 'unknown';
    this.log = ctx.logger.child({ sessionId: this.id });
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  /**
   * Greets the client and reads its commands once the daemon is ready to touch mailboxes
   * (`ready`) and, on an implicit-TLS listener, the TLS handshake is done. Until then nothing is
   * read as a command and nothing is answered.
   */
  async start(ready: Promise<void>): Promise<void> {
    const { connection } = this;
    this.log.info(
      {
        client: this.client,
        port: connection.localPort,
        listener: this.implicitTls ? 'pop3s' : 'pop3',
        tls: this.implicitTls,
      },
      'connect',
    );
    connection.setNoDelay(true);
    connection.on('error', this.onSocketError);
    connection.on('close', () => this.onClose());
    await ready;
    if (this.ended) return;
    if (!this.implicitTls) {
      this.attach(connection);
    } else {
      const credentials = this.ctx.tls();
      if (credentials === null) {
        this.log.warn({ client: this.client }, 'pop3s connection closed: TLS is not configured');
        connection.destroy();
        return;
      }
      if (!(await this.startTls(credentials, 'tls'))) return;
    }
    this.talking = true;
    this.send(GREETING);
  }

  /**
   * Graceful stop: a session inside its QUIT update finishes it (and answers it) first; every
   * other one gets `-ERR [SYS/TEMP] server shutting down` (unless a multi-line reply is under
   * way, which cannot be interrupted cleanly) and is closed. Nothing is deleted.
   */
  async shutdown(): Promise<void> {
    if (this.updating !== null) {
      await this.updating;
    } else if (!this.ended) {
      if (this.streaming || !this.talking) this.socket.destroy();
      else this.finish('-ERR [SYS/TEMP] server shutting down', SHUTDOWN_LINGER_MS);
    }
    await this.closed;
  }

  // ---------------------------------------------------------------- input

  /** Makes `stream` the one the session reads commands from and answers on. */
  private attach(stream: Socket): void {
    this.socket = stream;
    stream.setTimeout(this.ctx.settings().timeoutMs);
    stream.on('timeout', this.onTimeout);
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
  }

  private detach(stream: Socket): void {
    stream.setTimeout(0);
    stream.off('timeout', this.onTimeout);
    stream.off('data', this.onData);
    stream.off('end', this.onEnd);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.ended) return;
    this.reader.push(chunk);
    if (this.reader.buffered > MAX_BUFFERED) this.socket.pause();
    void this.pump();
  };

  private readonly onEnd = (): void => {
    this.inputEnded = true;
    void this.pump();
  };

  private readonly onSocketError = (err: NodeJS.ErrnoException): void => {
    this.log.debug({ err: err.message, code: err.code }, 'socket error');
  };

  /** Handles the queued lines one at a time, each fully answered before the next. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.ended) {
        const event = this.reader.next();
        if (event === null) break;
        // autologout counts from the last command (the socket restarts its idle timer on every
        // read and write); a SIGHUP'd pop3.timeout applies from the next one
        const { timeoutMs } = this.ctx.settings();
        if (this.socket.timeout !== timeoutMs) this.socket.setTimeout(timeoutMs);
        // replies wait in the socket while more pipelined commands follow (flushed below or by drained())
        if (this.socket.writableCorked === 0) this.socket.cork();
        if (event.kind === 'too-long') await this.onLongLine();
        else await this.onLine(event.line.toString('utf8'));
        if (this.socket.writableNeedDrain) await this.drained();
        if (this.socket.isPaused() && this.reader.buffered <= MAX_BUFFERED && !this.ended) this.socket.resume();
      }
      this.flush();
    } catch (err) {
      if (!(err instanceof ConnectionGone)) {
        this.log.error({ err: (err as Error).message }, 'session failed');
        this.socket.destroy();
      }
    } finally {
      this.pumping = false;
    }
    // like a dropped connection: nothing is deleted unless a QUIT came
    if (this.inputEnded && !this.ended) this.socket.end();
    if (!this.ended && this.socket.isPaused()) this.socket.resume();
  }

  private async onLongLine(): Promise<void> {
    if (this.saslPending) this.endSasl();
    await this.bad('-ERR line too long');
  }

  private async onLine(line: string): Promise<void> {
    if (this.saslPending) {
      this.endSasl();
      await this.saslResponse(line);
      return;
    }
    const space = line.indexOf(' ');
    const keyword = (space < 0 ? line : line.slice(0, space)).toUpperCase();
    // PASS takes the rest of the line as is: a password may contain spaces
    const rest = space < 0 ? '' : line.slice(space + 1);
    const args = rest.split(' ').filter((arg) => arg !== '');
    this.log.debug({ command: /^[A-Z]{1,8}$/.test(keyword) ? keyword : '(bad)' }, 'command');
    try {
      if (!KNOWN.has(keyword)) throw new BadCommand('-ERR Unknown command');
      if (this.state === 'update' || !COMMANDS[this.state].has(keyword)) {
        throw new BadCommand(`-ERR ${keyword} not allowed in the ${this.state.toUpperCase()} state`);
      }
      await this.dispatch(keyword, args, rest);
      this.badCommands = 0;
    } catch (err) {
      if (!(err instanceof BadCommand)) throw err;
      await this.bad(err.message);
    }
  }

  private async bad(reply: string): Promise<void> {
    this.badCommands += 1;
    if (this.badCommands >= MAX_BAD_COMMANDS) {
      this.log.info({ client: this.client }, 'too many bad commands');
      this.finish('-ERR Too many bad commands, closing the connection');
      return;
    }
    this.send(reply);
  }

  private async dispatch(keyword: string, args: string[], rest: string): Promise<void> {
    switch (keyword) {
      case 'CAPA':
        return this.capa();
      case 'QUIT':
        return this.quit();
      case 'USER':
        return this.userCommand(args);
      case 'PASS':
        return this.passCommand(rest);
      case 'AUTH':
        return this.authCommand(args);
      case 'STLS':
        return this.stls(args);
      case 'STAT': {
        this.arity(args, 0, 0);
        const { count, size } = this.stat();
        return this.send(`+OK ${count} ${size}`);
      }
      case 'LIST':
        return this.list(args);
      case 'UIDL':
        return this.uidl(args);
      case 'RETR': {
        this.arity(args, 1, 1);
        const { info } = this.message(args[0]!);
        if (info === null) return;
        return this.sendMessage(`+OK ${info.size} octets`, info);
      }
      case 'TOP': {
        this.arity(args, 2, 2);
        if (!/^\d{1,15}$/.test(args[1]!)) throw new BadCommand('-ERR Invalid number of lines');
        const { info } = this.message(args[0]!);
        if (info === null) return;
        return this.sendMessage('+OK top of message follows', info, Number(args[1]));
      }
      case 'DELE': {
        this.arity(args, 1, 1);
        const { index } = this.message(args[0]!);
        if (index === null) return;
        this.deleted.add(index);
        return this.send(`+OK message ${index + 1} deleted`);
      }
      case 'RSET': {
        this.arity(args, 0, 0);
        this.deleted.clear();
        const { count, size } = this.stat();
        return this.send(`+OK maildrop has ${messagesText(count)} (${size} octets)`);
      }
      case 'NOOP':
        this.arity(args, 0, 0);
        return this.send('+OK');
    }
  }

  private arity(args: string[], min: number, max: number): void {
    if (args.length < min) throw new BadCommand('-ERR Missing argument');
    if (args.length > max) throw new BadCommand('-ERR Too many arguments');
  }

  // ---------------------------------------------------------------- AUTHORIZATION

  private plaintextAllowed(): boolean {
    return this.secure || this.ctx.settings().plaintextAuth(this.client);
  }

  /** What this session may do now: USER, SASL and STLS only before login, STLS only while not under TLS. */
  private capa(): Promise<void> {
    const caps = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
    if (this.state === 'authorization') {
      if (this.plaintextAllowed()) caps.push('USER', 'SASL PLAIN');
      if (!this.secure && this.ctx.tls() !== null) caps.push('STLS');
    }
    caps.push('IMPLEMENTATION mailsrv');
    return this.sendMultiline('+OK Capability list follows', caps);
  }

  private userCommand(args: string[]): void {
    if (!this.plaintextAllowed()) {
      this.send(PLAINTEXT_REFUSED);
      return;
    }
    this.arity(args, 1, 1);
    this.userArg = args[0]!;
    // the same answer for every name: whether it exists is told by nothing before PASS
    this.send('+OK send PASS');
  }

  private async passCommand(password: string): Promise<void> {
    if (!this.plaintextAllowed()) return this.send(PLAINTEXT_REFUSED);
    const name = this.userArg;
    this.userArg = null;
    if (name === null) throw new BadCommand('-ERR USER first');
    await this.login(name, password);
  }

  private async authCommand(args: string[]): Promise<void> {
    this.userArg = null;
    if (args.length === 0) {
      // the mechanism list some older clients ask for (RFC 1734 era), as Dovecot answers it
      return this.sendMultiline('+OK', this.plaintextAllowed() ? ['PLAIN'] : []);
    }
    this.arity(args, 1, 2);
    if (args[0]!.toUpperCase() !== 'PLAIN') return this.send('-ERR Unsupported authentication mechanism');
    if (!this.plaintextAllowed()) return this.send(PLAINTEXT_REFUSED);
    if (args.length === 2) return this.saslPlain(args[1]!);
    this.saslPending = true;
    this.reader.maxLength = MAX_SASL_LINE;
    this.send('+ ');
  }

  private endSasl(): void {
    this.saslPending = false;
    this.reader.maxLength = MAX_COMMAND_LENGTH;
  }

  private async saslResponse(line: string): Promise<void> {
    if (line === '*') return this.send('-ERR Authentication cancelled');
    await this.saslPlain(line);
  }

  /** RFC 2595 §4: STLS, then the TLS handshake over the same connection. */
  private async stls(args: string[]): Promise<void> {
    this.arity(args, 0, 0);
    if (this.secure) return this.send(ALREADY_TLS);
    const credentials = this.ctx.tls();
    if (credentials === null) return this.send(STLS_UNAVAILABLE);
    // the +OK must be out on the wire before the TLS layer takes the connection over
    await this.sendAndFlush('+OK Begin TLS negotiation');
    // whatever the client sent after STLS it sent before it saw this +OK, in plaintext: it is
    // thrown away, never run as commands over TLS (the command injection of CVE-2011-0411)
    this.userArg = null;
    this.reader.clear();
    this.detach(this.connection);
    this.connection.pause();
    while (this.connection.read() !== null);
    await this.startTls(credentials, 'starttls');
  }

  /**
   * The TLS handshake on the connection; once it is done the session goes on over TLS. False when
   * it failed (logged; the connection is destroyed and the session ends).
   */
  private async startTls(credentials: TlsCredentials, event: 'starttls' | 'tls'): Promise<boolean> {
    this.talking = false;
    const timeoutMs = Math.min(HANDSHAKE_TIMEOUT_MS, this.ctx.settings().timeoutMs);
    const { socket, handshake } = acceptTls(this.connection, credentials.context, timeoutMs);
    socket.on('error', this.onSocketError);
    try {
      await handshake;
    } catch (err) {
      this.ended = true;
      this.log.info({ client: this.client, err: (err as Error).message }, 'TLS handshake failed');
      return false;
    }
    this.secure = true;
    this.log.info({ client: this.client, ...describeTls(socket) }, event);
    this.attach(socket);
    this.talking = true;
    return true;
  }

  /** RFC 4616: base64 of `authzid NUL authcid NUL password`; "=" is an empty initial response. */
  private async saslPlain(encoded: string): Promise<void> {
    const text = encoded === '=' ? '' : encoded;
    if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      return this.send('-ERR [AUTH] Invalid base64 in the AUTH PLAIN response');
    }
    const parts = Buffer.from(text, 'base64').toString('utf8').split('\0');
    if (parts.length !== 3) return this.send('-ERR [AUTH] Malformed AUTH PLAIN response');
    const [authzid, authcid, password] = parts as [string, string, string];
    await this.login(authcid, password, authzid);
  }

  /** Checks a name and password (authenticator.ts: throttle, lockout, equal timing); on success opens the mailbox. */
  private async login(name: string, password: string, authzid?: string): Promise<void> {
    const result = await this.ctx.authenticator.login({ name, password, client: this.client, authzid });
    if (this.ended) return;
    if (result.ok) return this.openMailbox(result.user);
    switch (result.reason) {
      case 'unavailable':
        this.log.error({ err: result.error.message }, 'password check failed');
        return this.send('-ERR [SYS/TEMP] Authentication is temporarily unavailable, try again later');
      case 'locked-out':
        this.log.info(
          { client: this.client, retryInS: Math.ceil(result.retryInMs / 1000) },
          'login refused: too many failures from this address',
        );
        return this.finish('-ERR [SYS/TEMP] Too many failed logins from your address, try again later');
      case 'invalid':
        this.authFailures += 1;
        this.log.info(
          { user: result.user ?? '(invalid name)', client: this.client, delayMs: result.delayMs },
          'login failed',
        );
        if (this.authFailures >= MAX_AUTH_FAILURES)
          return this.finish(`${AUTH_FAILED}; too many failures, closing the connection`);
        return this.send(AUTH_FAILED);
    }
  }

  private async openMailbox(user: string): Promise<void> {
    if (!this.ctx.claim(user, this)) {
      this.log.info({ user, client: this.client }, 'mailbox in use');
      return this.send('-ERR [IN-USE] Mailbox is in use by another POP3 session');
    }
    this.mailboxUser = user;
    let snapshot: MailboxSnapshot;
    try {
      snapshot = await this.ctx.maildrop.open(user);
    } catch (err) {
      this.releaseMailbox();
      if (err instanceof MailboxLockedError) {
        this.log.warn({ user, lock: err.path }, 'mailbox locked by another program');
        return this.send('-ERR [IN-USE] Mailbox is locked by another program, try again later');
      }
      this.log.error({ user, err: (err as Error).message }, 'cannot open mailbox');
      if (err instanceof NotAMailboxError) return this.send('-ERR [SYS/PERM] Mailbox is not a regular file');
      return this.send('-ERR [SYS/TEMP] Cannot open the mailbox, try again later');
    }
    if (this.ended) return;
    this.snapshot = snapshot;
    this.state = 'transaction';
    const { count, size } = this.stat();
    this.log.info({ user, client: this.client, tls: this.secure, messages: count, size }, 'login');
    this.send(`+OK ${user} has ${messagesText(count)} (${size} octets)`);
  }

  private releaseMailbox(): void {
    const window = this.window;
    this.window = null;
    this.wholeReplies = null;
    // a read still running keeps the handle until it is done (FileHandle.close waits for it)
    if (window !== null) void window.then((opened) => opened.close()).catch(() => undefined);
    if (this.mailboxUser === null) return;
    this.ctx.release(this.mailboxUser, this);
    this.mailboxUser = null;
  }

  // ---------------------------------------------------------------- TRANSACTION

  private messages(): MessageInfo[] {
    return this.snapshot?.messages ?? [];
  }

  /** Messages not marked deleted: their count and total octets. */
  private stat(): { count: number; size: number } {
    let count = 0;
    let size = 0;
    this.messages().forEach((message, index) => {
      if (this.deleted.has(index)) return;
      count += 1;
      size += message.size;
    });
    return { count, size };
  }

  /**
   * The message a number argument names. A malformed number is a BadCommand; a number that names
   * no message, or a deleted one, is answered here with -ERR and gives nulls.
   */
  private message(arg: string): { index: number; info: MessageInfo } | { index: null; info: null } {
    if (!/^\d{1,15}$/.test(arg)) throw new BadCommand('-ERR Invalid message number');
    const number = Number(arg);
    const info = this.messages()[number - 1];
    if (number < 1 || info === undefined) {
      this.send(`-ERR No such message (the maildrop has ${this.messages().length})`);
      return { index: null, info: null };
    }
    if (this.deleted.has(number - 1)) {
      this.send(`-ERR Message ${number} is deleted`);
      return { index: null, info: null };
    }
    return { index: number - 1, info };
  }

  private list(args: string[]): Promise<void> | void {
    this.arity(args, 0, 1);
    if (args.length === 1) {
      const { index, info } = this.message(args[0]!);
      if (info !== null) this.send(`+OK ${index + 1} ${info.size}`);
      return;
    }
    const { count, size } = this.stat();
    return this.sendMultiline(
      `+OK ${messagesText(count)} (${size} octets)`,
      this.listing((m) => String(m.size)),
    );
  }

  private uidl(args: string[]): Promise<void> | void {
    this.arity(args, 0, 1);
    if (args.length === 1) {
      const { index, info } = this.message(args[0]!);
      if (info !== null) this.send(`+OK ${index + 1} ${info.uidl}`);
      return;
    }
    return this.sendMultiline(
      '+OK unique-id listing follows',
      this.listing((m) => m.uidl),
    );
  }

  /** `n value` for every message not marked deleted, generated as it is written. */
  private *listing(value: (message: MessageInfo) => string): Generator<string> {
    const messages = this.messages();
    for (let index = 0; index < messages.length; index++) {
      if (!this.deleted.has(index)) yield `${index + 1} ${value(messages[index]!)}`;
    }
  }

  /**
   * Sends the status line, then streams a message (RETR) or its headers and first bodyLines
   * lines (TOP) from the file, dot-stuffed, then the terminating ".". For RETR the octets must be
   * exactly the size LIST gave: if the file no longer holds them (another program changed it),
   * the connection is cut before the terminator, so the client sees a failure instead of a
   * wrong message.
   */
  private async sendMessage(status: string, info: MessageInfo, bodyLines?: number): Promise<void> {
    const { socket } = this;
    this.streaming = true;
    try {
      const snapshot = this.snapshot!;
      this.window ??= this.ctx.maildrop.openWindow(snapshot);
      const window = await this.window;
      if (bodyLines === undefined && info.contentLength <= WHOLE_REPLY_MAX) {
        // a small message: status, body and terminator in one buffer, one write
        this.wholeReplies ??= new WholeReplies();
        const reply = await this.wholeReplies.retr(window, snapshot.path, info, status);
        if (this.ended || socket.destroyed) throw new ConnectionGone();
        socket.write(reply);
        return;
      }
      this.send(status);
      const reader = this.ctx.maildrop.retrieve(snapshot, window, info, bodyLines);
      for (let chunk = await reader.next(); chunk !== null; chunk = await reader.next()) {
        // a client that went away stops the file read
        if (this.ended || socket.destroyed) throw new ConnectionGone();
        socket.write(chunk);
        if (socket.writableNeedDrain) await this.drained();
      }
      if (this.ended || socket.destroyed) throw new ConnectionGone();
      const octets = reader.encoder.wireBytes;
      if (bodyLines === undefined && octets !== info.size)
        throw new Error(`message has ${octets} octets, ${info.size} expected`);
      socket.write(TERMINATOR);
    } catch (err) {
      if (this.ended || err instanceof ConnectionGone) throw new ConnectionGone();
      this.log.error(
        { user: this.mailboxUser, offset: info.offset, err: (err as Error).message },
        'cannot send message; closing the connection',
      );
      socket.destroy();
      throw new ConnectionGone();
    } finally {
      this.streaming = false;
    }
  }

  // ---------------------------------------------------------------- QUIT and UPDATE

  private async quit(): Promise<void> {
    if (this.state === 'authorization') return this.finish('+OK mailsrv signing off');
    this.state = 'update';
    if (this.deleted.size === 0) {
      this.releaseMailbox();
      return this.finish('+OK mailsrv signing off');
    }
    this.updating = this.update();
    await this.updating;
  }

  /** Removes the messages marked deleted; on any error nothing is deleted and the client is told. */
  private async update(): Promise<void> {
    const snapshot = this.snapshot!;
    const user = this.mailboxUser;
    let reply: string;
    try {
      const { removed, bytesFreed } = await this.ctx.maildrop.expunge(snapshot, this.deleted);
      this.log.info({ user, removed, bytesFreed }, 'mailbox updated');
      reply = `+OK mailsrv signing off (${messagesText(removed)} deleted)`;
    } catch (err) {
      if (err instanceof MailboxChangedError) {
        this.log.warn({ user, err: err.message }, 'update refused: mailbox changed by another program');
        reply = '-ERR [SYS/TEMP] Mailbox was changed by another program; nothing deleted';
      } else if (err instanceof MailboxLockedError) {
        this.log.warn({ user, lock: err.path }, 'update refused: mailbox locked');
        reply = '-ERR [SYS/TEMP] Mailbox is locked by another program; nothing deleted, try again later';
      } else {
        this.log.error({ user, err: (err as Error).message }, 'update failed');
        reply = '-ERR [SYS/TEMP] Cannot update the mailbox; nothing deleted';
      }
    } finally {
      this.releaseMailbox();
    }
    this.finish(reply);
  }

  // ---------------------------------------------------------------- output and end

  private send(line: string): void {
    if (this.ended) return;
    this.socket.write(`${line}\r\n`);
  }

  /** First line, then the lines (dot-stuffed), then "."; written in pieces, waiting for the socket to drain. */
  private async sendMultiline(first: string, lines: Iterable<string>): Promise<void> {
    this.streaming = true;
    try {
      let piece = `${first}\r\n`;
      for (const line of lines) {
        piece += `${line.startsWith('.') ? '.' : ''}${line}\r\n`;
        if (piece.length >= LISTING_CHUNK) {
          this.send(piece.slice(0, -2));
          piece = '';
          if (this.socket.writableNeedDrain) await this.drained();
        }
      }
      this.send(`${piece}.`);
    } finally {
      this.streaming = false;
    }
  }

  /** Sends a line and resolves once it, and every reply before it, has been handed to the kernel. */
  private sendAndFlush(line: string): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.write(`${line}\r\n`, () => resolve());
      this.flush();
    });
  }

  /** Writes out what corked replies hold (see pump). */
  private flush(): void {
    while (this.socket.writableCorked > 0) this.socket.uncork();
  }

  /** Flushes, then resolves when the socket wants more data; rejects with ConnectionGone if it closes first. */
  private drained(): Promise<void> {
    this.flush();
    if (this.ended || this.socket.destroyed) return Promise.reject(new ConnectionGone());
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(new ConnectionGone());
      };
      const cleanup = () => {
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
      };
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
  }

  /** Sends a last line and closes; a client that does not close in time is cut off. */
  private finish(line: string, lingerMs = LINGER_MS): void {
    if (this.ended) return;
    this.send(line);
    this.ended = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), lingerMs).unref();
  }

  private readonly onTimeout = (): void => {
    if (this.updating !== null) return;
    this.log.info({ client: this.client, user: this.mailboxUser }, 'autologout');
    if (this.streaming) this.socket.destroy();
    else this.finish('-ERR Autologout; idle for too long');
  };

  private onClose(): void {
    const dropped = !this.ended;
    this.ended = true;
    if (dropped && this.state === 'transaction') {
      this.log.info(
        { user: this.mailboxUser, marked: this.deleted.size },
        'connection dropped without QUIT: nothing deleted',
      );
    }
    // a QUIT update keeps the mailbox until it is done, whatever the client does meanwhile
    if (this.updating === null) this.releaseMailbox();
    this.log.info('disconnect');
    const done = this.updating ?? Promise.resolve();
    void done.finally(() => this.resolveClosed());
  }
}
