// TCP for tests: a port nobody listens on (and no other test will take), and a connection to a
// loopback port from a chosen source address (127.0.0.2 is inside the test mynetworks, 127.0.0.1
// outside).
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTimeout } from '../../support/wait.js';

/** Ports handed out by freePort: below the kernel's ephemeral range, claimed across test processes. */
const PORTS_FROM = 20_000;
const CLAIMS_DIR = join(tmpdir(), 'mailsrv-test-ports');
/** claims older than this are from runs that are over (a test file may run 10 minutes at most) */
const CLAIM_LIFETIME_MS = 30 * 60 * 1000;

/** The first port of the kernel's ephemeral range (outgoing connections take their local ports there). */
function ephemeralFrom(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/)[0]);
  } catch {
    return 32_768;
  }
}

/** Whether nobody listens on 127.0.0.1:port right now (listen on it, close). */
function listenable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Claims `port` for this run of the tests (a file made with O_EXCL); false if a test claimed it already. */
function claim(port: number): boolean {
  const path = join(CLAIMS_DIR, String(port));
  try {
    if (Date.now() - statSync(path).mtimeMs > CLAIM_LIFETIME_MS) rmSync(path, { force: true });
  } catch {
    // no claim yet
  }
  try {
    writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A TCP port nobody listens on, for a server a test starts later. Picked below the kernel's
 * ephemeral range, so the local end of some test's outgoing connection cannot take it in the
 * meantime (with `listen(0)` and a close, one did: EADDRINUSE under a full test run), and
 * claimed with a file in CLAIMS_DIR, so no other test process gets it too.
 */
export async function freePort(): Promise<number> {
  const below = ephemeralFrom();
  if (below - PORTS_FROM < 1000) return kernelPort();
  mkdirSync(CLAIMS_DIR, { recursive: true, mode: 0o1777 });
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORTS_FROM + Math.floor(Math.random() * (below - PORTS_FROM));
    if (claim(port) && (await listenable(port))) return port;
  }
  return kernelPort();
}

/** A port the kernel gives (listen on 0, close): where no range below the ephemeral one is free. */
function kernelPort(): Promise<number> {
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
