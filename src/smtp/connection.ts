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
// - shutdown(): 421 to every session that is not inside DATA, or whose client stalled in it.
// smtp-server has no public hook for these, so MailsrvConnection overrides members of its
// internal SMTPConnection. package.json pins smtp-server's exact version, and
// test/unit/smtp-server-internals.test.ts fails by name when a member used here changes.
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import { TLS_SERVER_OPTIONS, type TlsCredentials } from '../tls/credentials.js';

const OWN_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

export interface VrfyReply {
  code: number;
  message: string;
}

export interface MailsrvServerOptions
  extends Omit<SMTPServerOptions, 'key' | 'cert' | 'allowInsecureAuth' | 'hideSTARTTLS'> {
  /** the certificate for STARTTLS (and implicit TLS with `secure`); null: no TLS */
  tls: TlsCredentials | null;
  /** may a client AUTH without TLS (asked per command: SIGHUP changes it) */
  plaintextAuth: (clientIp: string) => boolean;
  /** answers VRFY; when it (or its result) is undefined: 252 without disclosure */
  vrfy?: (address: string, session: SMTPServerSession) => Promise<VrfyReply> | undefined;
  /** whether the protocol log (options.logger) is wanted now; asked per log call (SIGHUP changes the level) */
  protocolLogEnabled: () => boolean;
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
  /** set while EHLO lists the extensions: AUTH is listed only where it is accepted */
  private listingExtensions = false;

  private get mailsrv(): MailsrvSMTPServer {
    return this._server as MailsrvSMTPServer;
  }

  override init(): void {
    this._setListeners(() => {
      const { maxClients } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        this.send(421, '4.7.0 Too many connections, try again later', false);
        this.close();
        return;
      }
      this.connectionReady();
    });
  }

  override send(code: number, data?: string | string[], context?: string | false): void {
    if (typeof data === 'string' && OWN_ENHANCED_CODE.test(data)) context = false;
    super.send(code, data, context);
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
  private hasCertificate: boolean;

  constructor({ tls, plaintextAuth, vrfy, protocolLogEnabled, ...options }: MailsrvServerOptions) {
    if (options.secure && tls === null) throw new Error('implicit TLS needs a certificate');
    super({
      ...options,
      ...(tls === null ? {} : certificateOptions(tls)),
      // mailsrv decides both per session (MailsrvConnection): smtp-server's list always names
      // STARTTLS, so it never warns about, let alone presents, its built-in certificate
      disabledCommands: [...(options.disabledCommands ?? []), 'STARTTLS'],
      allowInsecureAuth: true,
    });
    this.hasCertificate = tls !== null;
    this.plaintextAuth = plaintextAuth;
    this.vrfyPolicy = vrfy;
    // smtp-server and its connections read `logger` at every log call
    const protocolLogger = this.logger;
    Object.defineProperty(this, 'logger', { get: () => (protocolLogEnabled() ? protocolLogger : SILENT_LOGGER) });
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

  vrfy(address: string, session: SMTPServerSession): Promise<VrfyReply> | undefined {
    return this.vrfyPolicy?.(address, session);
  }

  override connect(socket: Socket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new MailsrvConnection(this, socket, socketOptions);
    this.connections.add(connection);
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
