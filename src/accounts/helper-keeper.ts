// The root helper's keeper: started by the daemon while it is still root, it stays root so that it
// can start the worker (helper-worker.ts) again whenever the worker dies; the daemon, no longer
// root by then, could not. It passes whole frames between the daemon (its stdin/stdout) and the
// current worker, remembers which requests the worker has not answered, and answers those with
// a failure when the worker dies, so nothing waits forever. It exits when the daemon goes away
// (stdin ends) or sends something that is not a request frame.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  encodeFrame,
  FrameReader,
  type HelperEvent,
  type HelperResponse,
  MAX_ANSWER_FRAME,
  requestId,
} from './helper-protocol.js';
import type { HelperSettings } from './helper-worker.js';

/** requests the worker may have open at once; more are answered at once with a failure */
const MAX_IN_FLIGHT = 1024;
const FIRST_RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 10_000;
/** a worker that lived this long died of something new: restart at once again */
const STABLE_MS = 30_000;

export function runKeeper(entry: string, settings: HelperSettings): void {
  const inFlight = new Set<number>();
  let worker: ChildProcess | null = null;
  let restartDelayMs = FIRST_RESTART_DELAY_MS;
  let stopping = false;
  let exitCode = 1;

  const send = (value: HelperResponse | HelperEvent) => process.stdout.write(encodeFrame(value, MAX_ANSWER_FRAME));
  const fail = (id: number, detail: string) => send({ id, ok: false, error: 'failed', detail });

  const startWorker = () => {
    const child = spawn(process.execPath, [entry, 'worker', JSON.stringify(settings)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const startedAt = Date.now();
    worker = child;
    send({ event: 'started', pid: child.pid ?? 0 });
    const reader = new FrameReader(MAX_ANSWER_FRAME);
    child.stdout!.on('data', (chunk: Buffer) => {
      let values: unknown[];
      try {
        values = reader.push(chunk);
      } catch {
        child.kill('SIGKILL');
        return;
      }
      for (const value of values) {
        const id = requestId(value);
        if (id !== null && !inFlight.delete(id)) continue; // not a request we passed on
        send(value as HelperResponse | HelperEvent);
        if ((value as HelperEvent).event === 'fatal') stopping = true;
      }
    });
    child.stdin!.on('error', () => undefined); // a dead worker: 'exit' handles it
    child.once('exit', (code, signal) => {
      worker = null;
      send({ event: 'exited', pid: child.pid ?? 0, code, signal });
      for (const id of inFlight) fail(id, 'the helper restarted; try again');
      inFlight.clear();
      if (stopping) process.exit(exitCode);
      restartDelayMs = Date.now() - startedAt >= STABLE_MS ? FIRST_RESTART_DELAY_MS : restartDelayMs;
      setTimeout(startWorker, restartDelayMs);
      restartDelayMs = Math.min(restartDelayMs * 2, MAX_RESTART_DELAY_MS);
    });
  };

  const reader = new FrameReader();
  process.stdin.on('data', (chunk: Buffer) => {
    let values: unknown[];
    try {
      values = reader.push(chunk);
    } catch {
      shutDown(2);
      return;
    }
    for (const value of values) {
      const id = requestId(value);
      if (id === null || inFlight.has(id)) {
        shutDown(2);
        return;
      }
      if (worker === null || inFlight.size >= MAX_IN_FLIGHT) {
        fail(id, worker === null ? 'the helper is restarting; try again' : 'the helper is busy');
        continue;
      }
      inFlight.add(id);
      worker.stdin!.write(encodeFrame(value));
    }
  });
  process.stdin.on('end', () => shutDown(0));

  const shutDown = (code: number) => {
    stopping = true;
    exitCode = code;
    worker?.kill('SIGTERM');
    if (worker === null) process.exit(code);
  };

  startWorker();
}
