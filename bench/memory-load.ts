// The loads of the memory suite: many idle connections held open (each counted once the server
// greeted it), the greeting latency of a fresh client beside them, and the open-file limit
// they need. The 50 MB message goes through smtp-load.ts's sendOne and pop3-load.ts's client.
import { readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';

export interface IdleConnections {
  sockets: Socket[];
  /** how many the server greeted (the others got nothing within the timeout, or were refused) */
  greeted: number;
}

/** Connects and resolves once the server sent anything (its greeting); null if nothing came within timeoutMs. */
function greetedSocket(host: string, port: number, timeoutMs: number): Promise<Socket | null> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const timer = setTimeout(() => done(false), timeoutMs);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      if (!ok) socket.destroy();
      resolve(ok ? socket : null);
    };
    socket.once('data', () => done(true));
    socket.on('error', () => done(false));
  });
}

/**
 * Opens `count` connections, `batch` at a time, each kept once greeted and then left idle (its
 * further input is not read). Stops at the first batch with a connection not greeted within
 * timeoutMs: the server has reached its limit.
 */
export async function openIdle(
  host: string,
  port: number,
  count: number,
  into: IdleConnections,
  timeoutMs = 10_000,
  batch = 100,
): Promise<boolean> {
  while (into.greeted < count) {
    const n = Math.min(batch, count - into.greeted);
    const opened = await Promise.all(Array.from({ length: n }, () => greetedSocket(host, port, timeoutMs)));
    for (const socket of opened) {
      if (socket === null) continue;
      socket.on('error', () => undefined); // a server closing idle sessions is not the bench's failure
      into.sockets.push(socket);
      into.greeted += 1;
    }
    if (opened.includes(null)) return false;
  }
  return true;
}

export function closeAll(idle: IdleConnections): void {
  for (const socket of idle.sockets) socket.destroy();
  idle.sockets.length = 0;
  idle.greeted = 0;
}

/** ms from connect to the greeting for `samples` fresh clients one after another (NaN: none came within 10 s). */
export async function greetingTimes(host: string, port: number, samples: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const started = performance.now();
    const socket = await greetedSocket(host, port, 10_000);
    times.push(socket === null ? NaN : performance.now() - started);
    socket?.destroy();
  }
  return times;
}

/** The soft limit on open files of this process (its children inherit it). */
export function openFileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}
