// TCP for tests: a port nobody listens on, and a connection to a loopback port from a chosen
// source address (127.0.0.2 is inside the test mynetworks, 127.0.0.1 outside).
import { createServer, Socket } from 'node:net';
import { withTimeout } from '../../support/wait.js';

/** A TCP port nobody listens on right now (listen on 0, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export interface ConnectOptions {
  host?: string;
  /** source address, e.g. 127.0.0.2 to be inside mynetworks */
  localAddress?: string;
  timeoutMs?: number;
}

/** A TCP connection to a loopback port, from `options.localAddress` when given. */
export async function connectSocket(port: number, options: ConnectOptions, timeoutMs: number): Promise<Socket> {
  const socket = new Socket();
  await withTimeout(
    new Promise<void>((resolveConnect, reject) => {
      socket.once('error', reject);
      socket.connect(
        {
          port,
          host: options.host ?? '127.0.0.1',
          ...(options.localAddress ? { localAddress: options.localAddress } : {}),
        },
        () => {
          socket.off('error', reject);
          resolveConnect();
        },
      );
    }),
    timeoutMs,
    `cannot connect to port ${port}`,
  );
  return socket;
}
