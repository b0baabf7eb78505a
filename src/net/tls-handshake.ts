// The deadline of a server-side TLS handshake, SMTP and POP3 alike: implicit TLS counts from
// accept, STARTTLS and STLS from the command. It is a deadline, not an idle time: a client
// trickling handshake bytes cannot hold its connection (and its max_clients slot) any longer.
import type { TLSSocket } from 'node:tls';

/** The longest a TLS handshake may take. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Destroys `socket` with an ERR_TLS_HANDSHAKE_TIMEOUT error ("no TLS handshake within
 * `limitMs` ms") unless its handshake is done `limitMs` after `startedAt`.
 */
export function handshakeDeadline(socket: TLSSocket, limitMs: number, startedAt = Date.now()): void {
  const timer = setTimeout(
    () => {
      const err: NodeJS.ErrnoException = new Error(`no TLS handshake within ${limitMs} ms`);
      err.code = 'ERR_TLS_HANDSHAKE_TIMEOUT';
      socket.destroy(err);
    },
    Math.max(0, startedAt + limitMs - Date.now()),
  );
  const cancel = () => clearTimeout(timer);
  socket.once('secure', cancel);
  socket.once('close', cancel);
}
