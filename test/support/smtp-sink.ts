// A receiving SMTP server for outbound tests (smtp-server on a chosen loopback address and
// port): records every message it accepts (envelope, bytes, TLS) and lets the test decide each
// RCPT's reply, e.g. 451 then 250, or 550, and optionally the reply to a whole message (a message
// refused there is not recorded). It plays the remote MX or the smarthost.
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

export interface SinkMessage {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  /** the EHLO name the client gave */
  helo: string;
}

/** What to answer a RCPT: undefined accepts it; otherwise [code, text]. */
export type RcptDecision = (address: string, attempt: number) => [number, string] | undefined;

/** What to answer a message received in full: undefined accepts (and records) it; otherwise [code, text]. */
export type DataDecision = (message: SinkMessage) => [number, string] | undefined;

export interface SmtpSink {
  host: string;
  port: number;
  messages: SinkMessage[];
  /** RCPT attempts per recipient address (lowercased) */
  rcptAttempts: Map<string, number>;
  connections: number;
  /** connections open now (a closed one has had all its data read) */
  openConnections: number;
  close(): Promise<void>;
}

export async function startSmtpSink(
  options: {
    host?: string;
    port?: number;
    rcpt?: RcptDecision;
    data?: DataDecision;
    server?: Partial<SMTPServerOptions>;
  } = {},
): Promise<SmtpSink> {
  const host = options.host ?? '127.0.0.1';
  const sink: SmtpSink = {
    host,
    port: 0,
    messages: [],
    rcptAttempts: new Map(),
    connections: 0,
    openConnections: 0,
    close: async () => undefined,
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    ...options.server,
    onConnect(_session, callback) {
      sink.connections += 1;
      sink.openConnections += 1;
      callback();
    },
    onClose() {
      sink.openConnections -= 1;
    },
    onRcptTo(address, _session, callback) {
      const key = address.address.toLowerCase();
      const attempt = (sink.rcptAttempts.get(key) ?? 0) + 1;
      sink.rcptAttempts.set(key, attempt);
      const decision = options.rcpt?.(address.address, attempt);
      if (decision === undefined) return callback();
      callback(Object.assign(new Error(decision[1]), { responseCode: decision[0] }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const message: SinkMessage = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          secure: session.secure,
          helo: session.hostNameAppearsAs ?? '',
        };
        const decision = options.data?.(message);
        if (decision !== undefined) {
          callback(Object.assign(new Error(decision[1]), { responseCode: decision[0] }));
          return;
        }
        sink.messages.push(message);
        callback(null, 'queued on the sink');
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  sink.port = (server.server.address() as AddressInfo).port;
  sink.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return sink;
}
