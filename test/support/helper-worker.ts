// The root helper's worker run on its own (dist/accounts/helper-main.js worker SETTINGS), for
// tests that send it requests directly: frames in, one answer per request id out.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { encodeFrame, MAX_ANSWER_FRAME, readFrames } from '../../src/accounts/helper-protocol.js';
import { REPO_ROOT } from '../e2e/harness/constants.js';
import { withTimeout } from './wait.js';

export const HELPER_ENTRY = join(REPO_ROOT, 'dist', 'accounts', 'helper-main.js');

export type HelperAnswer = Record<string, unknown>;

export interface HelperWorker {
  process: ChildProcessWithoutNullStreams;
  /** its exit code, once it exits */
  exited: Promise<number | null>;
  /** Sends the requests (each with its own `id`) and resolves with every answer by id. */
  ask(requests: { id: number }[]): Promise<Map<number, HelperAnswer>>;
}

export function startHelperWorker(settings: object): HelperWorker {
  const worker = spawn(process.execPath, [HELPER_ENTRY, 'worker', JSON.stringify(settings)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  }) as unknown as ChildProcessWithoutNullStreams;
  const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));
  const answers = new Map<number, HelperAnswer>();
  let answered = () => {};
  readFrames(
    worker.stdout,
    MAX_ANSWER_FRAME,
    (value) => {
      answers.set(Number((value as HelperAnswer).id), value as HelperAnswer);
      answered();
    },
    (err) => {
      throw err;
    },
  );
  const ask = async (requests: { id: number }[]) => {
    for (const request of requests) worker.stdin.write(encodeFrame(request));
    await withTimeout(
      new Promise<void>((resolve) => {
        answered = () => requests.every(({ id }) => answers.has(id)) && resolve();
        answered();
      }),
      10_000,
      'the worker did not answer every request',
    );
    return answers;
  };
  return { process: worker, exited, ask };
}
