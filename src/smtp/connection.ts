// mailsrv's extensions of smtp-server, in one place:
// - no fixed 100 ms pause before the greeting (smtp-server's early-talker check caps a
//   one-message-per-connection client at ~10 msg/s); mailsrv's own `smtp.greet_pause`
//   replaces it where the config asks for one;
// - replies whose text starts with an enhanced status code (RFC 3463, "5.7.1 ...") are sent
//   with that code instead of the one smtp-server would derive from the reply number;
// - VRFY answers from mailsrv's recipient policy when `smtp.vrfy` is on;
// - shutdown(): 421 to every session that is not inside DATA.
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';

const OWN_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

export interface VrfyReply {
  code: number;
  message: string;
}

export interface MailsrvServerOptions extends SMTPServerOptions {
  /** answers VRFY; when it (or its result) is undefined: 252 without disclosure */
  vrfy?: (address: string, session: SMTPServerSession) => Promise<VrfyReply> | undefined;
}

class MailsrvConnection extends SMTPConnection {
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

  handler_VRFY(command: Buffer, callback: () => void): void {
    const argument = command.toString().trim().split(/\s+/).slice(1).join(' ');
    if (!argument) {
      this.send(501, '5.5.4 Syntax: VRFY address');
      callback();
      return;
    }
    const lookup = (this._server as MailsrvSMTPServer).vrfy(argument.replace(/^<(.*)>$/, '$1'), this.session);
    if (!lookup) {
      this.send(252, '2.0.0 Send some mail, I will try my best');
      callback();
      return;
    }
    lookup.then(
      (reply) => this.send(reply.code, reply.message),
      () => this.send(451, '4.3.0 Temporary lookup failure'),
    ).finally(callback);
  }

  /** 421 and close, unless a message is being received (its reply comes first). */
  shutdown(): boolean {
    if (this._dataStream) return false;
    this.send(421, '4.3.2 Server shutting down, try again later');
    this.close();
    return true;
  }
}

export class MailsrvSMTPServer extends SMTPServer {
  private readonly vrfyPolicy: MailsrvServerOptions['vrfy'];

  constructor(options: MailsrvServerOptions) {
    super(options);
    this.vrfyPolicy = options.vrfy;
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

  /** Sends 421 to every idle session; returns how many are still receiving a message. */
  shutdownIdleSessions(): number {
    let busy = 0;
    for (const connection of this.connections) {
      if (!(connection as MailsrvConnection).shutdown()) busy += 1;
    }
    return busy;
  }
}
