// The root helper's keeper: started by the daemon while it is still root, it stays root so that it
// can start the worker (helper-worker.ts) again whenever the worker dies; the daemon, no longer
// root by then, could not. It passes whole frames between the daemon (its stdin/stdout) and the
// current worker, remembers which requests the worker has not answered, and answers those with
// a failure when the worker dies, so nothing waits forever. It exits when the daemon goes away
// (stdin ends) or sends something that is not a request frame.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  encodeFrame,
  MAX_REQUEST_FRAME,
  readFrames,
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
    readFrames(
      child.stdout!,
      MAX_ANSWER_FRAME,
      (value) => {
        const id = requestId(value);
        if (id !== null && !inFlight.delete(id)) return; // not a request we passed on
        send(value as HelperResponse | HelperEvent);
        if ((value as HelperEvent).event === 'fatal') stopping = true;
      },
      () => child.kill('SIGKILL'),
    );
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

  // a bad request ends the keeper: nothing after it is passed on
  let refusing = false;
  const refuse = () => {
    refusing = true;
    shutDown(2);
  };
  readFrames(
    process.stdin,
    MAX_REQUEST_FRAME,
    (value) => {
      if (refusing) return;
      const id = requestId(value);
      if (id === null || inFlight.has(id)) return refuse();
      if (worker === null || inFlight.size >= MAX_IN_FLIGHT) {
        fail(id, worker === null ? 'the helper is restarting; try again' : 'the helper is busy');
        return;
      }
      inFlight.add(id);
      worker.stdin!.write(encodeFrame(value));
    },
    refuse,
  );

  process.stdin.on('end', () => shutDown(0));

  const shutDown = (code: number) => {
    stopping = true;
    exitCode = code;
    worker?.kill('SIGTERM');
    if (worker === null) process.exit(code);
  };

  startWorker();
}
