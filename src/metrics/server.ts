// The monitoring HTTP listeners (`[metrics] listen`, README "Monitoring"): GET /metrics in the
// Prometheus text format and GET /healthz ("ok" while serving, 503 while stopping). Nothing
// else: any other method gets 405, a request with a body 400, any other path 404. Every
// request is small and short-lived (headers bounded in size and time, a few connections at
// most), so a stray client cannot hold memory or sockets.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseListen } from '../config/units.js';
import type { Logger } from '../log.js';
import { HttpListeners, reply } from '../net/http-listener.js';

const LIMITS = {
  maxHeaderBytes: 8 * 1024,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  maxRequestsPerConnection: 100,
  /** an idle keep-alive connection is closed after this long */
  keepAliveMs: 5_000,
  /** connections open at once on each listener; Prometheus needs one */
  maxConnections: 16,
};
/** A scrape slower than this (say, a stalled process metric) is answered 503. */
const SCRAPE_TIMEOUT_MS = 10_000;

export interface MonitoringEndpoints {
  /** the exposition and its Content-Type */
  metrics(): Promise<{ text: string; contentType: string }>;
  /** false once the daemon is stopping: /healthz answers 503 */
  serving(): boolean;
}

export interface MetricsListeners {
  /** stops accepting and closes every connection */
  close(): Promise<void>;
}

/** Binds every `[metrics] listen` address (as root, with the other listeners). */
export async function listenForMetrics(
  addresses: string[],
  endpoints: MonitoringEndpoints,
  logger: Logger,
): Promise<MetricsListeners> {
  const listeners = new HttpListeners({
    name: 'metrics',
    limits: LIMITS,
    handle: (request, response) => answer(request, response, endpoints, logger),
    logger,
  });
  try {
    for (const address of addresses) await listeners.listen(parseListen(address)!);
  } catch (err) {
    await listeners.close();
    throw err;
  }
  return listeners;
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
