// The client behind an accepted connection, SMTP and POP3 alike: its peer, or, when the peer is
// in `proxy_protocol_networks`, the client the PROXY header it must send first names (see
// proxy-protocol.ts). The header is read off the raw connection before anything else sees it
// (an implicit-TLS handshake included) and within a deadline; the bytes after it stay unread for
// the session. README, "More than one node".
import type { Socket } from 'node:net';
import type { NetworkMatcher } from '../config/networks.js';
import type { Logger } from '../log.js';
import { parseProxyHeader, type ProxiedSource, V2_MAX_LENGTH } from './proxy-protocol.js';

/** How long a peer in proxy_protocol_networks may take to send its whole header. */
export const PROXY_HEADER_TIMEOUT_MS = 5000;

/** A connection's client as every check and log line sees it. */
export interface ClientAddress {
  address: string;
  port: number;
  /** the balancer's address, when a PROXY header named the client */
  proxy?: string;
}

/** No valid header arrived: the connection is to be closed. */
export class ProxyHeaderError extends Error {}

/**
 * Reads the PROXY header at the start of `socket`: the client it names, or null when it says to
 * keep the peer (v2 LOCAL, v1 UNKNOWN). Rejects with ProxyHeaderError when the bytes are not a
 * valid header, when the header is not whole within `timeoutMs`, or when the peer goes first.
 * Reads at most the longest header allowed, and puts back what follows it.
 */
export function readProxyHeader(socket: Socket, timeoutMs = PROXY_HEADER_TIMEOUT_MS): Promise<ProxiedSource | null> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => fail(`no whole PROXY header within ${timeoutMs} ms`), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    const fail = (reason: string) => {
      cleanup();
      reject(new ProxyHeaderError(reason));
    };
    const onError = (err: Error) => fail(err.message);
    const onEnd = () => fail('connection closed before a whole PROXY header');
    const onReadable = () => {
      // never more than the longest header: the rest stays in the socket for the session
      for (;;) {
        const chunk: Buffer | null = socket.read(Math.min(socket.readableLength, V2_MAX_LENGTH));
        if (chunk === null) return;
        received = Buffer.concat([received, chunk]);
        const parsed = parseProxyHeader(received);
        if (parsed.kind === 'incomplete') continue;
        if (parsed.kind === 'invalid') return fail(parsed.reason);
        cleanup();
        if (parsed.length < received.length) socket.unshift(received.subarray(parsed.length));
        return resolve(parsed.source);
      }
    };
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  });
}

/**
 * The client of a freshly accepted connection (see the top of this file), or null when a peer
 * that owes a PROXY header sent none that is valid (logged), or the peer is gone already (a
 * balancer's health check may reset at once): the connection is destroyed.
 */
export async function clientBehind(
  socket: Socket,
  proxyNetworks: NetworkMatcher,
  logger: Logger,
  listener: string,
): Promise<ClientAddress | null> {
  if (socket.remoteAddress === undefined) {
    socket.destroy();
    return null;
  }
  const peer = { address: socket.remoteAddress, port: socket.remotePort ?? 0 };
  if (!proxyNetworks(peer.address)) return peer;
  try {
    const source = await readProxyHeader(socket);
    if (source === null) return peer;
    logger.debug({ client: source.address, proxy: peer.address, listener }, 'PROXY header');
    return { ...source, proxy: peer.address };
  } catch (err) {
    if (!(err instanceof ProxyHeaderError)) throw err;
    logger.warn(
      { proxy: peer.address, listener, reason: err.message },
      'connection without a valid PROXY header closed',
    );
    socket.on('error', () => undefined);
    socket.destroy();
    return null;
  }
}
