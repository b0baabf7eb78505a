// The HTTP-01 responder (RFC 8555 8.3) on `acme.http_listen`: GET or HEAD of
// /.well-known/acme-challenge/TOKEN answers the key authorization of a challenge in progress,
// anything else 404 (405 for other methods). Bounded: 8 KiB of headers, 10 s per request, one
// request per connection, a fixed number of connections; a request body is never read.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListenAddress } from '../config/units.js';
import type { Logger } from '../log.js';
import { HttpListeners, reply } from '../net/http-listener.js';

const CHALLENGE_PATH = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/;
const LIMITS = {
  maxHeaderBytes: 8192,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  maxRequestsPerConnection: 1,
  maxConnections: 256,
};

/** The challenges in progress: token → key authorization. */
export type ChallengeResponses = Map<string, string>;

export class ChallengeServer {
  readonly responses: ChallengeResponses = new Map();
  private readonly listeners: HttpListeners;

  constructor(logger: Logger) {
    this.listeners = new HttpListeners({
      name: 'acme challenge',
      limits: LIMITS,
      handle: (request, response) => this.answer(request, response),
      logger,
    });
  }

  /** Binds one more listener (at start, before the privilege drop). */
  listen(address: ListenAddress): Promise<void> {
    return this.listeners.listen(address);
  }

  /** Stops accepting and closes every connection. */
  close(): Promise<void> {
    return this.listeners.close();
  }

  private answer(request: IncomingMessage, response: ServerResponse): void {
    const token = CHALLENGE_PATH.exec(request.url ?? '')?.[1];
    const keyAuthorization = token === undefined ? undefined : this.responses.get(token);
    if (request.method !== 'GET' && request.method !== 'HEAD') reply(response, 405, 'method not allowed\n');
    else if (keyAuthorization === undefined) reply(response, 404, 'not found\n');
    else reply(response, 200, keyAuthorization);
  }
}
