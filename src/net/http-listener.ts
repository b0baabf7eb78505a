// The bounded HTTP listeners the daemon's small web services share (ACME HTTP-01, metrics,
// autoconfig): headers limited in size and time, a request in time, a fixed number of
// connections per listener, optionally a deadline on each connection from its accept (TLS
// handshake included), "https://" addresses over the certificate loaded now, a listener error
// logged rather than fatal, and a close that cuts every connection. Bound at start, before the
// privilege drop. What each service answers stays in its own module (the `handle` function);
// `reply` writes a whole answer.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import { type ListenAddress, listenOptions } from '../config/units.js';
import type { Logger } from '../log.js';
import { acceptTls } from '../pop3/tls.js';

/** How often Node checks the header and request timeouts of open connections. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

export interface HttpLimits {
  maxHeaderBytes: number;
  /** the request headers arrive within this after the request began */
  headersTimeoutMs: number;
  /** the whole request arrives within this */
  requestTimeoutMs: number;
  /** requests on one connection; 1: each answer says "Connection: close" and the connection closes */
  maxRequestsPerConnection: number;
  /** an idle kept-alive connection is closed after this long (Node's default when absent) */
  keepAliveMs?: number;
  /** connections open at once on each listener; Node closes any more at once */
  maxConnections: number;
  /** a connection is cut this long after its accept, whatever it is doing (TLS handshake included) */
  connectionDeadlineMs?: number;
}

export interface HttpListenerOptions {
  /** names the service in log lines ("NAME listener error") */
  name: string;
  limits: HttpLimits;
  handle(request: IncomingMessage, response: ServerResponse): void;
  logger: Logger;
  /** the certificate for "https://" addresses as loaded now; null: such connections are closed */
  tls?: () => SecureContext | null;
}

/** A listen address; `https` (only with options.tls) puts TLS under HTTP. */
export type HttpBindAddress = ListenAddress & { https?: boolean };

/** The listeners of one service, all answered by the same `handle`. */
export class HttpListeners {
  private readonly listeners: NetServer[] = [];
  private readonly connections = new Set<Socket>();

  constructor(private readonly options: HttpListenerOptions) {}

  /** Binds one more listener (at start, before the privilege drop). */
  listen(address: HttpBindAddress): Promise<void> {
    const parser = this.httpServer();
    const https = address.https === true;
    // plain HTTP: the HTTP server listens itself, so that Node checks its header and request
    // timeouts; HTTPS: a TCP listener hands each connection to it once the handshake is done
    const server = https ? createNetServer((socket) => this.acceptTls(socket, parser)) : parser;
    if (!https)
      server.on('connection', (socket: Socket) => this.track(socket, this.options.limits.connectionDeadlineMs));
    server.maxConnections = this.options.limits.maxConnections;
    this.listeners.push(server);
    const { name, logger } = this.options;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenOptions(address), () => {
        server.off('error', reject);
        server.on('error', (err) =>
          logger.error({ err: err.message, host: address.host, port: address.port }, `${name} listener error`),
        );
        resolve();
      });
    });
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    const closed = this.listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const socket of this.connections) socket.destroy();
    await Promise.all(closed);
  }

  private httpServer(): Server {
    const { limits, handle } = this.options;
    const server = createHttpServer(
      {
        maxHeaderSize: limits.maxHeaderBytes,
        headersTimeout: limits.headersTimeoutMs,
        requestTimeout: limits.requestTimeoutMs,
        connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
        ...(limits.keepAliveMs === undefined ? {} : { keepAliveTimeout: limits.keepAliveMs }),
      },
      (request, response) => {
        // Node announces the close after the last request but keeps the socket until the
        // keep-alive timeout unless the answer itself says "Connection: close"
        if (limits.maxRequestsPerConnection === 1) response.setHeader('Connection', 'close');
        handle(request, response);
      },
    );
    server.maxRequestsPerSocket = limits.maxRequestsPerConnection;
    return server;
  }

  /** Counts the connection until it closes and cuts it `deadlineMs` after now, if given. */
  private track(socket: Socket, deadlineMs: number | undefined): void {
    const { name, logger } = this.options;
    // the HTTP parser or the TLS socket over it reports what matters; a reset just closes it
    socket.on('error', (err) => logger.debug({ err: err.message }, `${name} socket error`));
    this.connections.add(socket);
    const deadline = deadlineMs === undefined ? undefined : setTimeout(() => socket.destroy(), deadlineMs);
    socket.once('close', () => {
      clearTimeout(deadline);
      this.connections.delete(socket);
    });
  }

  /**
   * Hands the connection to the HTTP server once its TLS handshake is done. The HTTP server
   * does not listen here, so it never checks its own timeouts: a TLS connection always has a
   * deadline, the request timeout when none is set.
   */
  private acceptTls(socket: Socket, parser: Server): void {
    const { limits, name, logger } = this.options;
    const deadlineMs = limits.connectionDeadlineMs ?? limits.requestTimeoutMs;
    this.track(socket, deadlineMs);
    const context = this.options.tls?.() ?? null;
    if (context === null) {
      socket.destroy();
      return;
    }
    const { socket: secure, handshake } = acceptTls(socket, context, deadlineMs);
    socket.once('close', () => secure.destroy());
    handshake.then(
      () => parser.emit('connection', secure),
      (err: Error) => logger.info({ client: socket.remoteAddress, err: err.message }, `${name} TLS handshake failed`),
    );
  }
}

/** Answers `body` (plain text unless `headers` name another Content-Type) with its length. */
export function reply(
  response: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  response.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  response.end(body);
}
