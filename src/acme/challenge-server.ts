// The HTTP-01 responder (RFC 8555 8.3) on `acme.http_listen`: GET or HEAD of
// /.well-known/acme-challenge/TOKEN answers the key authorization of a challenge in progress,
// anything else 404 (405 for other methods). Bounded: 8 KiB of headers, 10 s per request, one
// request per connection, a fixed number of connections; a request body is never read.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOptions, type ListenAddress } from '../config/units.js';

const CHALLENGE_PATH = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/;
const MAX_HEADER_BYTES = 8192;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 256;

/** The challenges in progress: token → key authorization. */
export type ChallengeResponses = Map<string, string>;

export class ChallengeServer {
  readonly responses: ChallengeResponses = new Map();
  private readonly servers: Server[] = [];

  /** Binds one more listener (at start, before the privilege drop). */
  listen(address: ListenAddress): Promise<void> {
    const server = createServer(
      {
        maxHeaderSize: MAX_HEADER_BYTES,
        requestTimeout: REQUEST_TIMEOUT_MS,
        headersTimeout: REQUEST_TIMEOUT_MS,
        connectionsCheckingInterval: 1000,
      },
      (request, response) => this.answer(request, response),
    );
    server.maxConnections = MAX_CONNECTIONS;
    server.maxRequestsPerSocket = 1;
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenOptions(address), () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
  }

  private answer(request: IncomingMessage, response: ServerResponse): void {
    response.setHeader('Connection', 'close');
    const token = CHALLENGE_PATH.exec(request.url ?? '')?.[1];
    const keyAuthorization = token === undefined ? undefined : this.responses.get(token);
    if (request.method !== 'GET' && request.method !== 'HEAD') reply(response, 405, 'method not allowed\n');
    else if (keyAuthorization === undefined) reply(response, 404, 'not found\n');
    else reply(response, 200, keyAuthorization);
  }
}

function reply(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  response.end(body);
}
