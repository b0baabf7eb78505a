// mailsrv's extensions of smtp-server, in one place:
// - no fixed 100 ms pause before the greeting (smtp-server's early-talker check caps a
//   one-message-per-connection client at ~10 msg/s); mailsrv's own `smtp.greet_pause`
//   replaces it where the config asks for one;
// - replies whose text starts with an enhanced status code (RFC 3463, "5.7.1 ...") are sent
//   with that code instead of the one smtp-server would derive from the reply number;
// - TLS only with mailsrv's certificate: STARTTLS is offered while one is loaded (SIGHUP may
//   add, replace or remove it; running sessions keep theirs), never with smtp-server's own;
// - AUTH (RFC 4954) is advertised and accepted only over TLS or from plaintext_auth_networks
//   (smtp-server would allow it in plaintext whenever STARTTLS is off), and never inside a
//   mail transaction;
// - VRFY answers from mailsrv's recipient policy when `smtp.vrfy` is on;
// - shutdown(): 421 to every session that is not inside DATA, or whose client stalled in it;
// - connection limits (ConnectionLimits, shared by every SMTP listener) instead of smtp-server's
//   per-listener maxClients: a socket is counted from accept, TLS handshake included; one over a
//   limit gets 421 4.7.0 (an implicit-TLS one is just closed);
// - TLS handshakes (implicit TLS and STARTTLS) have a deadline, not only an idle timeout;
// - so do command lines and messages (InputDeadline): a client trickling bytes gets
//   421 4.4.2 and is closed;
// - stress mode: a client not yet past MAIL FROM gets a shorter idle timeout, timers already
//   running included;
// - each session counts its commands and its duration for the `disconnect` log line;
// - QUIT: the connection is closed right after the 221 (plaintext), not half-closed;
// - session ids from a pooled random buffer, and no loop turn between accept and the session;
// - the message part of the input parser is data-feed.ts's (no copy of every chunk, no byte loop);
// - the commands every message takes are dispatched without smtp-server's per-line string work
//   where none of its checks applies (dispatchMessageCommand);
// - PROXY protocol v1 and v2 (clientBehind, before the limits and any TLS handshake): the client
//   a header names is the session's remoteAddress (smtp-server's useProxy only knows v1).
// smtp-server has no public hook for these, so MailsrvConnection overrides members of its
// internal SMTPConnection (and MailsrvSMTPServer of SMTPServer). package.json pins smtp-server's
// exact version, and test/unit/smtp-server-internals.test.ts fails by name when a member used
// here changes.
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerEnvelope, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection, socketTimeout } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { ConnectionLimits, Refusal } from '../net/connection-limits.js';
import { type DeadlineExpiry, InputDeadline } from '../net/input-deadline.js';
import type { ClientAddress } from '../net/proxied-client.js';
import { handshakeDeadline, TLS_HANDSHAKE_TIMEOUT_MS } from '../net/tls-handshake.js';
import { SessionActivity } from '../net/session-activity.js';
import { TLS_SERVER_OPTIONS, type TlsCredentials } from '../tls/credentials.js';
import { smtpCommandName } from './command-name.js';
import { feedData } from './data-feed.js';
import { randomByte } from '../random-pool.js';
import { ObjectSlot } from '../object-slot.js';

const OWN_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;
const DOT = 0x2e;

/** smtpCommandName's name → the verb, for the commands MailsrvConnection dispatches itself */
const MESSAGE_COMMANDS: ReadonlyMap<string, string> = new Map(
  ['HELO', 'EHLO', 'MAIL', 'RCPT', 'DATA', 'QUIT'].map((verb) => [verb.toLowerCase(), verb]),
);
/** smtp-server refuses these with 503 before HELO/EHLO */
const REQUIRES_HELO: ReadonlySet<string> = new Set(['MAIL', 'RCPT', 'DATA']);

/** command verb → the name of its handler method (smtp-server's `handler_<VERB>`), for the verbs that have one */
const HANDLER_NAMES = new Map<string, string>();

const SESSION_ID_ALPHABET = '0123456789abcdefghijklmnopqrstuv';

/** A session id as smtp-server makes them: 16 base-32 digits, 80 random bits. */
function newSessionId(): string {
  let id = '';
  for (let i = 0; i < 16; i++) id += SESSION_ID_ALPHABET[randomByte() & 31];
  return id;
}

/** The reply to a plaintext connection over a limit. */
const REFUSALS: Record<Refusal, string> = {
  'max-clients': '4.7.0 Too many connections, try again later',
  'per-address': '4.7.0 Too many connections from your address, try again later',
};

export interface VrfyReply {
  code: number;
  message: string;
}

export interface MailsrvServerOptions
  extends Omit<SMTPServerOptions, 'key' | 'cert' | 'allowInsecureAuth' | 'hideSTARTTLS' | 'maxClients'> {
  /** max_clients, max_connections_per_ip and stress mode, shared by every SMTP listener */
  limits: ConnectionLimits;
  /** names this listener in log lines (mx, submission, smtps) */
  listenerName: string;
  /** the certificate for STARTTLS (and implicit TLS with `secure`); null: no TLS */
  tls: TlsCredentials | null;
  /** may a client AUTH without TLS (asked per command: SIGHUP changes it) */
  plaintextAuth: (clientIp: string) => boolean;
  /** answers VRFY; when it (or its result) is undefined: 252 without disclosure */
  vrfy?: (address: string, session: SMTPServerSession) => Promise<VrfyReply> | undefined;
  /** whether the protocol log (options.logger) is wanted now; asked per log call (SIGHUP changes the level) */
  protocolLogEnabled: () => boolean;
  /** a command line or a message was cut by its deadline (the client gets 421 4.4.2): for the log */
  deadlineExceeded: (session: SMTPServerSession, expiry: DeadlineExpiry) => void;
  /** the client behind an accepted socket (its PROXY header read); null: the socket was closed */
  clientBehind: (socket: Socket) => Promise<ClientAddress | null>;
}

/** smtp-server's logger while the protocol log is off: formatting its lines costs per command. */
const SILENT_LOGGER = Object.fromEntries(
  ['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map((level) => [level, () => false]),
);

/** smtp-server's TLS options for a certificate (it builds its secure context from them). */
function certificateOptions(tls: TlsCredentials) {
  return { ...TLS_SERVER_OPTIONS, cert: tls.cert, key: tls.key };
}

class MailsrvConnection extends SMTPConnection {
  /** the commands and the duration of the session, for its `disconnect` log line */
  readonly activity = new SessionActivity();
  /** set while EHLO lists the extensions: AUTH is listed only where it is accepted */
  private listingExtensions = false;
  /** the deadlines of command lines and messages; fed by the parser (see _createParser) */
  private readonly deadline = new InputDeadline({
    limitMs: () => this.idleTimeoutMs(),
    serverBusy: () => this.waitingForServer(),
    expired: (expiry) => this.onDeadline(expiry),
  });

  private get mailsrv(): MailsrvSMTPServer {
    return this._server as MailsrvSMTPServer;
  }

  override init(): void {
    this._setListeners(() => {
      const refusal = this.mailsrv.refusalOf(this._socket);
      if (refusal !== undefined) {
        this.send(421, REFUSALS[refusal], false);
        this.close();
        return;
      }
      this.connectionReady();
    });
  }

  /** smtp.timeout, or at most 10 s while SMTP is under stress and the client has not given MAIL FROM. */
  private idleTimeoutMs(): number {
    const timeoutMs = socketTimeout(this._server.options);
    // the envelope is there once the session is ready (smtp-server's _resetSession)
    const envelope = this.session.envelope as SMTPServerEnvelope | undefined;
    return envelope?.mailFrom ? timeoutMs : this.mailsrv.limits.idleTimeoutMs(timeoutMs);
  }

  override _armTimeout(socket: Socket = this._socket): void {
    socket.setTimeout(this.idleTimeoutMs(), () => this._onTimeout());
    // STARTTLS: smtp-server arms the TLS socket it upgrades to before that becomes _socket
    if (this._upgrading && socket !== this._socket && socket instanceof TLSSocket) {
      handshakeDeadline(socket, TLS_HANDSHAKE_TIMEOUT_MS);
      // a line begun in plaintext after STARTTLS is thrown away with the parser that held it
      this.deadline.settle();
    }
  }

  /** Applies the idle timeout that holds now to the timer running (stress mode, MAIL FROM given or not). */
  followIdleTimeout(): void {
    if (this._closing || this._upgrading || this._socket.destroyed) return;
    const timeoutMs = this.idleTimeoutMs();
    if (this._socket.timeout !== timeoutMs) this._socket.setTimeout(timeoutMs);
    this.deadline.follow();
  }

  /**
   * smtp-server pipes every byte the client sends (plaintext, then over TLS) into its parser:
   * the deadlines see them as they arrive. A parser is made per session and per STARTTLS.
   */
  override _createParser(): ReturnType<SMTPConnection['_createParser']> {
    const parser = super._createParser();
    parser._feedDataStream = feedData;
    const write = parser.write;
    parser.write = ((chunk: Buffer, ...rest: unknown[]) => {
      // the parser is made in smtp-server's constructor, before this class's fields
      this.deadline?.received(chunk);
      return (write as (...args: unknown[]) => boolean).call(parser, chunk, ...rest);
    }) as typeof parser.write;
    return parser;
  }

  /** The client waits for us: a command being answered, a message being stored or decided on, TLS. */
  private waitingForServer(): boolean {
    if (this._upgrading || this._handlerPending) return true;
    const parser = this._parser;
    const message = this._dataStream;
    if (!parser || !message) return false;
    return !parser._dataMode || message.writableNeedDrain;
  }

  private onDeadline(expiry: DeadlineExpiry): void {
    if (this._closing || this._closed) return;
    this.mailsrv.deadlineExceeded(this.session, expiry);
    this.send(421, `4.4.2 ${this.name} Error: timeout exceeded`);
  }

  override handler_DATA(command: Buffer, callback: () => void): void {
    super.handler_DATA(command, callback);
    // the 354 is out: the message's deadline starts
    if (this._dataStream) this.deadline.dataStarted();
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    // AUTH's continuation lines, and plaintext a client sent before its TLS handshake, are not commands
    if (this._nextHandler || this._upgrading) {
      super._onCommand(command, callback);
      return;
    }
    const name = smtpCommandName(command);
    this.activity.count(name);
    if (!this.dispatchMessageCommand(name, command, callback)) super._onCommand(command, callback);
  }

  /**
   * smtp-server's _onCommand for the commands every message takes (HELO or EHLO, MAIL, RCPT,
   * DATA, QUIT; `name` as smtpCommandName reads it) where none of the checks it makes before
   * dispatching applies: the session greeted, the server not stopping, the protocol log off, no
   * login required, HELO/EHLO given before MAIL, RCPT and DATA. Its own way turns each line into
   * a string four times, splits and upper-cases it, matches it against an HTTP request pattern
   * and builds a log record with the log off: ~5% of the time a one-message connection takes.
   * false: the command is smtp-server's to take, with its replies to whatever applies.
   */
  private dispatchMessageCommand(name: string, command: Buffer, callback?: () => void): boolean {
    const verb = MESSAGE_COMMANDS.get(name);
    if (verb === undefined || !this._ready || this._server._closeTimeout) return false;
    const options = this._server.options;
    if (this.mailsrv.protocolLogEnabled() || !options.authOptional || options.lmtp) return false;
    if (REQUIRES_HELO.has(verb) && !this.hostNameAppearsAs) return false;
    // smtp-server's _isSupported, without making the verb a string again and looking it up twice
    const handler = this._getHandler(verb);
    if (typeof handler !== 'function' || this._isDisabled(verb)) return false;
    if (verb === 'HELO' || verb === 'EHLO') this.openingCommand = verb;
    let handled = false;
    const finished = () => {
      handled = true;
      this._handlerPending = false;
      this._whenWritable(callback ?? (() => undefined));
    };
    this._handlerPending = true;
    try {
      handler.call(this, command, finished);
    } catch {
      // as smtp-server: a handler's bug is answered, never thrown into the socket's data pipe
      if (!handled) {
        this.send(451, 'Error: internal server error');
        finished();
      }
    }
    return true;
  }

  /**
   * After the 221 the connection is closed at once, as Postfix does, once the reply is with the
   * kernel (plaintext only: TLS may still hold bytes of it): smtp-server would half-close and
   * wait for the client's FIN, and a client that is gone already (most send QUIT and close)
   * makes Node build a reset error, stack trace and all, for every such connection.
   */
  override handler_QUIT(command: Buffer, callback: () => void): void {
    super.handler_QUIT(command, callback);
    const socket = this._socket;
    if (!(socket instanceof TLSSocket) && socket.writableLength === 0) socket.destroy();
  }

  override _onClose(): void {
    this.deadline.settle();
    super._onClose();
  }

  override handler_MAIL(command: Buffer, callback: () => void): void {
    super.handler_MAIL(command, () => {
      this.followIdleTimeout();
      callback();
    });
  }

  /** A new transaction (after a message, RSET, EHLO) or session (greeting, TLS): no message is owed. */
  override _resetSession(): void {
    super._resetSession();
    this.deadline.messageEnded();
    this.followIdleTimeout();
  }

  override send(code: number, data?: string | string[], context?: string | false): void {
    // "2.0.0 ...": the second character is a dot (most replies are told apart without the pattern)
    if (typeof data === 'string' && data.charCodeAt(1) === DOT && OWN_ENHANCED_CODE.test(data)) context = false;
    super.send(code, data, context);
  }

  /**
   * smtp-server's, with the method names made once: it looked up `'handler_' + command`, a new
   * string for every command line.
   */
  override _getHandler(command: string): ReturnType<SMTPConnection['_getHandler']> {
    let name = HANDLER_NAMES.get(command);
    if (name === undefined) {
      name = `handler_${command}`;
      // the names of commands that exist only: a client's made-up verbs are not kept
      if (typeof (this as unknown as Record<string, unknown>)[name] === 'function') HANDLER_NAMES.set(command, name);
    }
    return (this as unknown as Record<string, ReturnType<SMTPConnection['_getHandler']>>)[name];
  }

  /** STARTTLS follows the loaded certificate; AUTH is hidden from EHLO where it is refused. */
  override _isDisabled(command: string): boolean {
    if (command === 'STARTTLS') return !this.mailsrv.offersStartTls;
    if (command === 'AUTH' && this.listingExtensions && !this.authAllowed()) return true;
    return super._isDisabled(command);
  }

  override handler_EHLO(command: Buffer, callback: () => void): void {
    this.listingExtensions = true;
    try {
      super.handler_EHLO(command, callback);
    } finally {
      this.listingExtensions = false;
    }
  }

  override handler_AUTH(command: Buffer, callback: () => void): void {
    if (this.session.envelope.mailFrom) {
      this.send(503, '5.5.1 Error: MAIL transaction in progress');
    } else if (!this.authAllowed()) {
      if (this.mailsrv.offersStartTls)
        this.send(538, '5.7.11 Encryption required for requested authentication mechanism');
      else this.send(503, '5.5.1 Error: authentication not enabled');
    } else {
      super.handler_AUTH(command, callback);
      return;
    }
    callback();
  }

  private authAllowed(): boolean {
    return this.secure || this.mailsrv.plaintextAuth(this.remoteAddress);
  }

  handler_VRFY(command: Buffer, callback: () => void): void {
    const argument = command.toString().trim().split(/\s+/).slice(1).join(' ');
    if (!argument) {
      this.send(501, '5.5.4 Syntax: VRFY address');
      callback();
      return;
    }
    const lookup = this.mailsrv.vrfy(argument.replace(/^<(.*)>$/, '$1'), this.session);
    if (!lookup) {
      this.send(252, '2.0.0 Send some mail, I will try my best');
      callback();
      return;
    }
    lookup
      .then(
        (reply) => this.send(reply.code, reply.message),
        () => this.send(451, '4.3.0 Temporary lookup failure'),
      )
      .finally(callback);
  }

  /**
   * 421 and close, unless a message is being received (its reply comes first) and `cutReceiving`
   * does not say its client has stalled.
   */
  shutdown(cutReceiving: (session: SMTPServerSession) => boolean): boolean {
    if (this._dataStream && !cutReceiving(this.session)) return false;
    this.send(421, '4.3.2 Server shutting down, try again later');
    this.close();
    return true;
  }
}

export class MailsrvSMTPServer extends SMTPServer {
  private readonly vrfyPolicy: MailsrvServerOptions['vrfy'];
  readonly plaintextAuth: MailsrvServerOptions['plaintextAuth'];
  readonly limits: ConnectionLimits;
  readonly deadlineExceeded: MailsrvServerOptions['deadlineExceeded'];
  readonly protocolLogEnabled: MailsrvServerOptions['protocolLogEnabled'];
  private hasCertificate: boolean;
  /** plaintext sockets over a limit, until their connection has answered 421 */
  private readonly refusals = new ObjectSlot<Socket, Refusal>('refusal');
  /** what each open session has done (see MailsrvConnection.activity) */
  private readonly activities = new Map<SMTPServerSession, SessionActivity>();
  /** the socket being handed to smtp-server now, and its client as clientBehind found it */
  private admitting: { socket: Socket; client: ClientAddress } | null = null;
  private readonly clientBehind: MailsrvServerOptions['clientBehind'];

  constructor({
    tls,
    plaintextAuth,
    vrfy,
    protocolLogEnabled,
    limits,
    listenerName,
    deadlineExceeded,
    clientBehind,
    ...options
  }: MailsrvServerOptions) {
    if (options.secure && tls === null) throw new Error('implicit TLS needs a certificate');
    super({
      ...options,
      ...(tls === null ? {} : certificateOptions(tls)),
      // mailsrv decides both per session (MailsrvConnection): smtp-server's list always names
      // STARTTLS, so it never warns about, let alone presents, its built-in certificate
      disabledCommands: [...(options.disabledCommands ?? []), 'STARTTLS'],
      allowInsecureAuth: true,
    });
    // a session's activity is kept until onClose has run (a loop turn after the connection closed)
    const onClose = this.onClose;
    this.onClose = (session, callback) => {
      try {
        onClose.call(this, session, callback);
      } finally {
        this.activities.delete(session);
      }
    };
    this.hasCertificate = tls !== null;
    this.plaintextAuth = plaintextAuth;
    this.vrfyPolicy = vrfy;
    this.deadlineExceeded = deadlineExceeded;
    this.protocolLogEnabled = protocolLogEnabled;
    // smtp-server and its connections read `logger` at every log call
    const protocolLogger = this.logger;
    Object.defineProperty(this, 'logger', { get: () => (protocolLogEnabled() ? protocolLogger : SILENT_LOGGER) });
    this.limits = limits;
    this.clientBehind = clientBehind;
    this.admitThroughLimits(listenerName, options.secure === true);
    limits.onStressChange(() => {
      for (const connection of this.connections) (connection as MailsrvConnection).followIdleTimeout();
    });
  }

  /**
   * Puts the PROXY header and the connection limits in front of smtp-server's own 'connection'
   * listener, which then sees only admitted sockets and plaintext ones to refuse (see
   * MailsrvConnection.init): a refused implicit-TLS socket is closed before a handshake starts.
   */
  private admitThroughLimits(listenerName: string, implicitTls: boolean): void {
    const accepting = this.server.listeners('connection') as ((socket: Socket) => void)[];
    if (accepting.length !== 1) throw new Error(`smtp-server has ${accepting.length} connection listeners, not 1`);
    const accept = accepting[0]!;
    this.server.removeListener('connection', accept);
    this.server.on('connection', (socket: Socket) => void this.admit(socket, listenerName, implicitTls, accept));
  }

  private async admit(socket: Socket, listenerName: string, implicitTls: boolean, accept: (socket: Socket) => void) {
    const client = await this.clientBehind(socket);
    // no header, or the peer is gone already (a balancer's health check may close at once)
    if (client === null || socket.destroyed) return;
    const refusal = this.limits.admit(socket, listenerName, client.address);
    if (refusal !== null && implicitTls) {
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    if (refusal !== null) this.refusals.set(socket, refusal);
    // smtp-server's listener calls _handleProxy at once, which takes the client from here
    this.admitting = { socket, client };
    try {
      accept(socket);
    } finally {
      this.admitting = null;
    }
  }

  /**
   * The session's id, and its client as clientBehind found it (the one a PROXY header named), as
   * read at accept: a socket closed meanwhile no longer knows its peer. mailsrv reads PROXY
   * headers itself (smtp-server's useProxy is never set), so smtp-server's version has nothing
   * to add but its costs: a crypto call and a BigInt for the id, a loop turn before the session.
   */
  override _handleProxy(socket: Socket, callback: Parameters<SMTPServer['_handleProxy']>[1]): void {
    const client = this.admitting?.socket === socket ? this.admitting.client : undefined;
    const peer = client === undefined ? {} : { remoteAddress: client.address, remotePort: client.port };
    callback(null, { id: newSessionId(), ...peer });
  }

  /** Why this accepted socket is refused, if it is. */
  refusalOf(socket: Socket): Refusal | undefined {
    return this.refusals.get(socket);
  }

  /** Implicit TLS: the handshake smtp-server starts right after accept gets a deadline. */
  override _upgrade(socket: Socket, callback: Parameters<SMTPServer['_upgrade']>[1]): void {
    super._upgrade(socket, callback);
    // smtp-server keeps the TLS socket of a handshake in progress here until the session starts
    const tlsSocket = this._pendingSockets.get(socket);
    if (tlsSocket instanceof TLSSocket) handshakeDeadline(tlsSocket, TLS_HANDSHAKE_TIMEOUT_MS);
  }

  get offersStartTls(): boolean {
    return this.hasCertificate;
  }

  /**
   * SIGHUP: new TLS sessions use this certificate, running ones keep theirs. null turns
   * STARTTLS off for new sessions; an implicit-TLS listener keeps its last certificate.
   */
  useCertificate(tls: TlsCredentials | null): void {
    this.hasCertificate = tls !== null;
    if (tls !== null) this.updateSecureContext(certificateOptions(tls));
  }

  /** The commands and the duration of a session so far (for its `disconnect` log line, in onClose). */
  activityOf(session: SMTPServerSession): SessionActivity | undefined {
    return this.activities.get(session);
  }

  vrfy(address: string, session: SMTPServerSession): Promise<VrfyReply> | undefined {
    return this.vrfyPolicy?.(address, session);
  }

  override connect(socket: Socket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new MailsrvConnection(this, socket, socketOptions);
    this.connections.add(connection);
    // the session object lives as long as the connection (smtp-server resets its fields only)
    this.activities.set(connection.session, connection.activity);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    connection.init();
  }

  /**
   * Sends 421 to every idle session, and to receiving ones `cutReceiving` picks; returns how
   * many are still receiving a message.
   */
  shutdownSessions(cutReceiving: (session: SMTPServerSession) => boolean): number {
    let busy = 0;
    for (const connection of this.connections) {
      if (!(connection as MailsrvConnection).shutdown(cutReceiving)) busy += 1;
    }
    return busy;
  }
}
