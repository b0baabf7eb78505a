// The POP3 service: its listeners (plaintext with STLS, and implicit TLS), the sessions they
// accept (within POP3's connection limits, all listeners together), which mailboxes are in use
// (one session per mailbox), SIGHUP reconfiguration and the graceful stop. The protocol is in
// protocol.ts, its socket side in connection.ts, the TLS handshake in tls.ts.
import { createServer, type Server, type Socket } from 'node:net';
import type { Authenticator } from '../auth/authenticator.js';
import { listenOptions, type ListenAddress } from '../config/units.js';
import type { Logger } from '../log.js';
import type { NetworkMatcher } from '../config/networks.js';
import type { ConnectionLimits, Refusal } from '../net/connection-limits.js';
import { clientBehind } from '../net/proxied-client.js';
import type { TlsCredentials } from '../tls/credentials.js';
import type { MailboxOwner } from '../mbox/trust.js';
import { Maildrop } from './maildrop.js';
import { Pop3Connection } from './connection.js';
import { MailboxClaims, type Pop3Settings, type SessionContext } from './context.js';

export type { Pop3Settings } from './context.js';

export interface Pop3ServerOptions {
  settings: Pop3Settings;
  /** the certificate as loaded now (SIGHUP replaces it): STLS and implicit TLS; null: no TLS */
  tls: () => TlsCredentials | null;
  /** sessions are greeted once this resolves (the daemon is ready to touch mailboxes) */
  ready: Promise<void>;
  /** max_clients, max_connections_per_ip and stress mode, for POP3 */
  limits: ConnectionLimits;
  /** peers that must send a PROXY header first (proxy_protocol_networks, as loaded now) */
  proxyNetworks: () => NetworkMatcher;
  spoolDir: string;
  /** who each user's mailbox must belong to (default: the daemon's account) */
  mailboxOwner?: (user: string) => Promise<MailboxOwner>;
  /** state_dir/index */
  indexDir: string;
  /** state_dir/journal */
  journalDir: string;
  /** password checks, shared with SMTP AUTH */
  authenticator: Authenticator;
  logger: Logger;
}

export interface Pop3Service {
  /** accepts connections; the first listen() binds it */
  server: Server;
  /**
   * opens a listener: `server` the first time, then further servers feeding the same sessions;
   * implicitTls: pop3s (TLS from the first byte, RFC 8314)
   */
  listen(address: ListenAddress, options: { implicitTls: boolean }): Promise<void>;
  /** sessions open now */
  readonly connections: number;
  reconfigure(settings: Pop3Settings): void;
  /** stops accepting; sessions get `-ERR [SYS/TEMP] server shutting down` once any QUIT update in progress is done */
  shutdown(): Promise<void>;
}

/** What a plaintext client over a connection limit reads before it is closed. */
const REFUSALS: Record<Refusal, string> = {
  'max-clients': '-ERR [SYS/TEMP] too many connections\r\n',
  'per-address': '-ERR [SYS/TEMP] too many connections from your address\r\n',
};

export function createPop3Server(options: Pop3ServerOptions): Pop3Service {
  const { logger, limits } = options;
  let settings = options.settings;
  const sessions = new Set<Pop3Connection>();
  const maildrop = new Maildrop({
    spoolDir: options.spoolDir,
    ...(options.mailboxOwner === undefined ? {} : { mailboxOwner: options.mailboxOwner }),
    indexDir: options.indexDir,
    journalDir: options.journalDir,
    lockTimeoutMs: () => settings.lockTimeoutMs,
    onStaleBroken: (info) => logger.warn({ lock: info.path, reason: info.reason }, 'stale mailbox lock removed'),
  });
  const context: SessionContext = {
    settings: () => settings,
    tls: options.tls,
    authenticator: options.authenticator,
    maildrop,
    claims: new MailboxClaims(),
    logger,
  };

  // stress mode begins or ends: the autologout of clients not logged in follows at once
  limits.onStressChange(() => {
    for (const session of sessions) session.followIdleTimeout();
  });

  let accepting = true;
  const onConnection = async (socket: Socket, implicitTls: boolean) => {
    socket.on('error', (err) => logger.debug({ err: err.message }, 'pop3 socket error'));
    if (!accepting) {
      socket.destroy();
      return;
    }
    const listener = implicitTls ? 'pop3s' : 'pop3';
    // a PROXY header comes before everything, the TLS handshake of pop3s included
    const client = await clientBehind(socket, options.proxyNetworks(), logger, listener);
    if (client === null) return;
    if (!accepting) {
      socket.destroy();
      return;
    }
    const refusal = limits.admit(socket, listener, client.address);
    if (refusal !== null) {
      // a pop3s client could only read the refusal after a whole handshake: it is just closed
      if (implicitTls) {
        socket.destroy();
        return;
      }
      socket.end(REFUSALS[refusal]);
      setTimeout(() => socket.destroy(), 5000).unref();
      return;
    }
    const session = new Pop3Connection(socket, context, { implicitTls, limits, client: client.address });
    sessions.add(session);
    void session.closed.then(() => sessions.delete(session));
    void session.start(options.ready);
  };

  // half-open: a client that sends its commands and then shuts down its side (`printf ... | nc`)
  // still gets every reply; the session ends the connection once its input is answered. A
  // session's corked replies go out when they reach the write high-water mark: 256 KiB makes
  // that a few large writes for a run of pipelined RETRs (nothing is allocated for it up front)
  const socketOptions = { allowHalfOpen: true, highWaterMark: 256 * 1024 };
  const server = createServer(socketOptions);
  const servers: Server[] = [];
  const listen = ({ host, port }: ListenAddress, { implicitTls }: { implicitTls: boolean }) => {
    const target = servers.length === 0 ? server : createServer(socketOptions);
    return new Promise<void>((resolve, reject) => {
      target.once('error', reject);
      target.listen(listenOptions({ host, port }), () => {
        target.off('error', reject);
        target.on('connection', (socket: Socket) => void onConnection(socket, implicitTls));
        target.on('error', (err) => logger.error({ err: err.message, host, port }, 'pop3 listener error'));
        servers.push(target);
        resolve();
      });
    });
  };

  return {
    server,
    listen,
    get connections() {
      return sessions.size;
    },
    reconfigure(fresh) {
      settings = fresh;
    },
    async shutdown() {
      accepting = false;
      const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      await Promise.all([...sessions].map((session) => session.shutdown()));
      await closed;
    },
  };
}
