// Server-side TLS over an accepted POP3 connection: STLS (RFC 2595) turns a plaintext session
// into a TLS one, an implicit-TLS listener (pop3s, RFC 8314) does it as soon as a client
// connects. Both go through acceptTls, with the certificate the caller passes (the one loaded
// now, so a SIGHUP'd certificate applies to the next handshake) and a handshake deadline.
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { handshakeDeadline } from '../net/tls-handshake.js';

export interface TlsAcceptance {
  /** the TLS stream over the connection; the caller listens for its errors at once */
  socket: TLSSocket;
  /**
   * resolves when the handshake is done; rejects when it fails, times out or the peer goes (the
   * connection is then destroyed)
   */
  handshake: Promise<void>;
}

/**
 * Starts a server-side TLS handshake on `connection`, to be done `timeoutMs` after `startedAt`.
 * Bytes the connection has received and not handed out yet are taken as the start of the
 * handshake: a caller that must not trust them (STLS) reads them away first.
 */
export function acceptTls(
  connection: Socket,
  context: SecureContext,
  timeoutMs: number,
  startedAt = Date.now(),
): TlsAcceptance {
  const socket = new TLSSocket(connection, { isServer: true, secureContext: context });
  // a renegotiation is a handshake the client can force at will: nothing POP3 needs
  socket.disableRenegotiation();
  handshakeDeadline(socket, timeoutMs, startedAt);
  const handshake = new Promise<void>((resolve, reject) => {
    const onSecure = () => {
      cleanup();
      resolve();
    };
    const fail = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    // the listeners are half-open (allowHalfOpen): a client that hangs up only ends its side
    const onClose = () => fail(new Error('connection closed during the TLS handshake'));
    const cleanup = () => {
      socket.off('secure', onSecure);
      socket.off('error', fail);
      socket.off('close', onClose);
      socket.off('end', onClose);
      connection.off('end', onClose);
    };
    socket.on('secure', onSecure);
    socket.on('error', fail);
    socket.on('close', onClose);
    socket.on('end', onClose);
    connection.on('end', onClose);
  });
  return { socket, handshake };
}

/** What a log line says about an established TLS session. */
export function describeTls(socket: TLSSocket): { protocol: string | null; cipher: string } {
  return { protocol: socket.getProtocol(), cipher: socket.getCipher().name };
}
