// The monitoring HTTP listeners (`[metrics] listen`, README "Monitoring"): GET /metrics in the
// Prometheus text format and GET /healthz ("ok" while serving, 503 while stopping). Nothing
// else: any other method gets 405, a request with a body 400, any other path 404. Every
// request is small and short-lived (headers bounded in size and time, a few connections at
// most), so a stray client cannot hold memory or sockets.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOptions, parseListen } from '../config/units.js';
import type { Logger } from '../log.js';

/** Connections open at once on each listener; Prometheus needs one. */
const MAX_CONNECTIONS = 16;
const MAX_HEADER_BYTES = 8 * 1024;
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
/** An idle keep-alive connection is closed after this long. */
const KEEP_ALIVE_MS = 5_000;
/** A scrape slower than this (say, a stalled process metric) is answered 503. */
const SCRAPE_TIMEOUT_MS = 10_000;

export interface MonitoringEndpoints {
  /** the exposition and its Content-Type */
  metrics(): Promise<{ text: string; contentType: string }>;
  /** false once the daemon is stopping: /healthz answers 503 */
  serving(): boolean;
}

export interface MetricsListeners {
  close(): void;
}

/** Binds every `[metrics] listen` address (as root, with the other listeners). */
export async function listenForMetrics(
  addresses: string[],
  endpoints: MonitoringEndpoints,
  logger: Logger,
): Promise<MetricsListeners> {
  const servers: Server[] = [];
  try {
    for (const address of addresses) servers.push(await bind(address, endpoints, logger));
  } catch (err) {
    for (const server of servers) server.close();
    throw err;
  }
  return {
    close() {
      for (const server of servers) server.close();
    },
  };
}

function bind(address: string, endpoints: MonitoringEndpoints, logger: Logger): Promise<Server> {
  const server = createServer(
    {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_MS,
    },
    (request, response) => answer(request, response, endpoints, logger),
  );
  server.maxConnections = MAX_CONNECTIONS;
  server.maxRequestsPerSocket = 100;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenOptions(parseListen(address)!), () => {
      server.off('error', reject);
      server.on('error', (err) => logger.error({ err: err.message, address }, 'metrics listener error'));
      resolve(server);
    });
  });
}

function answer(request: IncomingMessage, response: ServerResponse, endpoints: MonitoringEndpoints, logger: Logger) {
  if (request.method !== 'GET') {
    reply(response, 405, 'only GET is served\n', { Allow: 'GET', Connection: 'close' });
    return;
  }
  if (request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined) {
    reply(response, 400, 'a GET request has no body\n', { Connection: 'close' });
    return;
  }
  const path = (request.url ?? '').split('?')[0];
  if (path === '/healthz') {
    if (endpoints.serving()) reply(response, 200, 'ok\n');
    else reply(response, 503, 'stopping\n');
  } else if (path === '/metrics') {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('scrape took too long')), SCRAPE_TIMEOUT_MS);
    });
    Promise.race([endpoints.metrics(), late])
      .then(({ text, contentType }) => reply(response, 200, text, { 'Content-Type': contentType }))
      .catch((err: Error) => {
        logger.error({ err: err.message }, 'cannot collect metrics');
        reply(response, 503, 'metrics unavailable\n');
      })
      .finally(() => clearTimeout(timer));
  } else {
    reply(response, 404, 'not found: try /metrics or /healthz\n');
  }
}

function reply(response: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  response.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  response.end(body);
}
