// The autoconfig listeners (README "Client autoconfig"): GET (or HEAD) of /mail/config-v1.1.xml
// and /.well-known/autoconfig/mail/config-v1.1.xml answer Thunderbird's clientConfig, POST of
// /autodiscover/autodiscover.xml answers Outlook; any other path 404, another method 405. Plain
// HTTP, or HTTPS with the mail certificate as loaded now (a SIGHUP or an ACME renewal applies
// from the next handshake on). Bounded: 8 KiB of headers, 16 KiB of body, one request per
// connection, which lives 10 s at most, TLS handshake included; 64 connections per listener.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpListenAddress } from '../config/units.js';
import type { Logger } from '../log.js';
import { HttpListeners, reply } from '../net/http-listener.js';
import type { TlsCredentials } from '../tls/credentials.js';
import { autodiscoverXml, requestedAddress } from './autodiscover.js';
import { clientConfigXml } from './client-config.js';
import { accountQuery, type MailSite } from './site.js';

const CLIENT_CONFIG_PATHS = new Set(['/mail/config-v1.1.xml', '/.well-known/autoconfig/mail/config-v1.1.xml']);
/** matched without regard to case: Outlook spells it /Autodiscover/Autodiscover.xml too */
const AUTODISCOVER_PATH = '/autodiscover/autodiscover.xml';
const MAX_BODY_BYTES = 16_384;
const CONNECTION_DEADLINE_MS = 10_000;
const LIMITS = {
  maxHeaderBytes: 8192,
  headersTimeoutMs: CONNECTION_DEADLINE_MS,
  requestTimeoutMs: CONNECTION_DEADLINE_MS,
  maxRequestsPerConnection: 1,
  maxConnections: 64,
  connectionDeadlineMs: CONNECTION_DEADLINE_MS,
};

export interface AutoconfigOptions {
  /** what to announce, as it is now */
  site: () => MailSite;
  /** the certificate as loaded now (SIGHUP and ACME replace it); null: no TLS */
  tls: () => TlsCredentials | null;
  logger: Logger;
}

interface Answer {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

export class AutoconfigServer {
  private readonly listeners: HttpListeners;

  constructor(private readonly options: AutoconfigOptions) {
    this.listeners = new HttpListeners({
      name: 'autoconfig',
      limits: LIMITS,
      handle: (request, response) => this.serve(request, response),
      logger: options.logger,
      tls: () => options.tls()?.context ?? null,
    });
  }

  /** Binds one more listener (at start, before the privilege drop). */
  listen(address: HttpListenAddress): Promise<void> {
    return this.listeners.listen(address);
  }

  /** Stops accepting and closes every connection. */
  close(): Promise<void> {
    return this.listeners.close();
  }

  private serve(request: IncomingMessage, response: ServerResponse): void {
    const target = targetOf(request.url);
    this.answer(request, target)
      .catch((err: Error): Answer | null => {
        if (request.destroyed) return null; // the client went away mid-body
        this.options.logger.error({ err: err.message }, 'autoconfig answer failed');
        return { status: 500, body: 'internal error\n' };
      })
      .then((answer) => {
        if (answer === null) return;
        const xml: Record<string, string> =
          answer.status === 200 ? { 'Content-Type': 'application/xml; charset=utf-8' } : {};
        reply(response, answer.status, answer.body, { ...xml, ...answer.headers });
        this.options.logger.info(
          {
            client: request.socket.remoteAddress,
            method: request.method,
            path: target?.pathname.slice(0, 100),
            status: answer.status,
          },
          'autoconfig request',
        );
      });
  }

  private async answer(request: IncomingMessage, target: URL | null): Promise<Answer> {
    if (target === null) return { status: 400, body: 'bad request target\n' };
    const { method } = request;
    const path = target.pathname;
    if (CLIENT_CONFIG_PATHS.has(path)) {
      if (method !== 'GET' && method !== 'HEAD') return notAllowed('GET, HEAD');
      return this.clientConfig(target.searchParams.get('emailaddress'));
    }
    if (path.toLowerCase() === AUTODISCOVER_PATH) {
      if (method !== 'POST') return notAllowed('POST');
      const body = await readBody(request);
      if (body === null) return { status: 413, body: `a request body holds ${MAX_BODY_BYTES} bytes at most\n` };
      return this.autodiscover(requestedAddress(body));
    }
    return { status: 404, body: 'not found\n' };
  }

  private clientConfig(address: string | null): Answer {
    const site = this.options.site();
    const query = accountQuery(site, address);
    if (query.kind === 'malformed') return { status: 400, body: 'emailaddress is not an address\n' };
    if (query.kind === 'other domain') return { status: 404, body: 'not a domain of this server\n' };
    return { status: 200, body: clientConfigXml(site, query.domain) };
  }

  private autodiscover(address: string | null): Answer {
    const site = this.options.site();
    const query = accountQuery(site, address);
    if (query.kind === 'other domain') return { status: 404, body: 'not a domain of this server\n' };
    if (query.kind === 'malformed' || query.localPart === null)
      return { status: 400, body: 'the request names no EMailAddress\n' };
    return { status: 200, body: autodiscoverXml(site, query.localPart) };
  }
}

/** A request target in origin form ("/mail/config-v1.1.xml?emailaddress=…") as a URL; null for any other. */
function targetOf(target: string | undefined): URL | null {
  if (target === undefined || !target.startsWith('/')) return null;
  try {
    return new URL(`http://localhost${target}`);
  } catch {
    return null;
  }
}

function notAllowed(allow: string): Answer {
  return { status: 405, body: 'method not allowed\n', headers: { Allow: allow } };
}

/** The request body as text, or null when it is larger than MAX_BODY_BYTES (then no more is read). */
function readBody(request: IncomingMessage): Promise<string | null> {
  if (Number(request.headers['content-length'] ?? 0) > MAX_BODY_BYTES) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        request.off('data', onData);
        request.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    request.on('data', onData);
    request.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.once('close', () => reject(new Error('the client closed the connection mid-request')));
    request.once('error', reject);
  });
}
