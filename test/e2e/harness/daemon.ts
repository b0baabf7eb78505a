// Runs the built mailsrv: the daemon (`bin/mailsrv start`), followed through its JSON log and
// killed when the test process exits whatever happens, and one-shot CLI commands.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { withTimeout } from '../../support/wait.js';
import { MAILSRV_BIN, REPO_ROOT, requireBuild } from './constants.js';
import { type EnvOptions, makeEnv, type TestEnv } from './env.js';
import { connectSocket } from './net.js';

export interface LogEntry {
  msg: string;
  level?: number;
  queueId?: string;
  sessionId?: string;
  to?: string;
  user?: string;
  reason?: string;
  [key: string]: unknown;
}

const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export class Daemon {
  readonly logs: LogEntry[] = [];
  stdout = '';
  stderr = '';
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;
  private listeners = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    liveChildren.add(child);
    let partial = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.stdout += chunk;
      partial += chunk;
      for (let nl = partial.indexOf('\n'); nl !== -1; nl = partial.indexOf('\n')) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.trim() === '') continue;
        try {
          this.logs.push(JSON.parse(line) as LogEntry);
        } catch {
          this.logs.push({ msg: '(not json)', line });
        }
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    // 'close', not 'exit': by then all the daemon wrote is read, so its logs are complete
    this.exited = new Promise((resolveExit) => {
      child.once('close', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        liveChildren.delete(child);
        resolveExit();
        this.notify();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** stdout + stderr, for failure messages */
  output(): string {
    return `--- stdout ---\n${this.stdout.slice(-6000)}\n--- stderr ---\n${this.stderr.slice(-4000)}`;
  }

  find(predicate: (entry: LogEntry) => boolean): LogEntry[] {
    return this.logs.filter(predicate);
  }

  /** Resolves with the first log entry (already seen or future) matching, or rejects after timeoutMs. */
  waitForLog(predicate: (entry: LogEntry) => boolean, timeoutMs = 10_000, what = 'log line'): Promise<LogEntry> {
    return this.waitForLogs(predicate, 1, timeoutMs, what).then((entries) => entries[0]!);
  }

  /** Resolves once `count` entries match. */
  waitForLogs(
    predicate: (entry: LogEntry) => boolean,
    count: number,
    timeoutMs = 10_000,
    what = 'log lines',
  ): Promise<LogEntry[]> {
    return new Promise((resolveWait, reject) => {
      const check = () => {
        const found = this.logs.filter(predicate);
        if (found.length >= count) {
          done();
          resolveWait(found);
          return true;
        }
        if (!this.running) {
          done();
          reject(
            new Error(
              `daemon exited (code ${this.exitCode}, signal ${this.exitSignal}) while waiting for ` +
                `${count} ${what} (have ${found.length})\n${this.output()}`,
            ),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        const found = this.logs.filter(predicate).length;
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${count} ${what} (have ${found})\n${this.output()}`),
        );
      }, timeoutMs);
      const listener = () => void check();
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
      check();
    });
  }

  /** SIGTERM, then the exit code (rejects if it does not exit within timeoutMs). */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    await withTimeout(
      this.exited,
      timeoutMs,
      `daemon did not exit within ${timeoutMs} ms of SIGTERM\n${this.output()}`,
    );
    return this.exitCode;
  }

  /** SIGKILL, waits for the exit. */
  async kill9(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  waitExit(): Promise<void> {
    return this.exited;
  }

  /** Bytes the daemon has read and written so far: files, sockets and its log alike (from /proc). */
  io(): { read: number; written: number } {
    const io = readFileSync(`/proc/${this.child.pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)![1]);
    return { read: field('rchar'), written: field('wchar') };
  }
}

/** The test process's environment without MAILSRV_CONFIG (every call passes -c). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.MAILSRV_CONFIG;
  return env;
}

/** An env for one test: every daemon started with `start()` is killed, and the env removed, when the test ends. */
export async function envForTest(
  t: { after: (fn: () => Promise<void> | void) => void },
  options: EnvOptions = {},
): Promise<{ env: TestEnv; start: () => Promise<Daemon> }> {
  const env = await makeEnv(options);
  const daemons: Daemon[] = [];
  t.after(async () => {
    for (const d of daemons) await d.kill9();
    await env.cleanup();
  });
  const start = async () => {
    const daemon = await startDaemon(env);
    daemons.push(daemon);
    return daemon;
  };
  return { env, start };
}

/** The source address of the connections logsSoFar makes (in no test's mynetworks). */
const MARKER_CLIENT = '127.0.0.99';

/**
 * Resolves once every line `daemon` logged before the call has been read here. The daemon logs
 * in order, so the 'connect' line of a connection made now comes after all of them: e.g. a
 * transaction's 'queued' line, logged before its last reply went out.
 */
export async function logsSoFar(daemon: Daemon, smtpPort: number): Promise<void> {
  const isMarker = (e: LogEntry) => e.msg === 'connect' && e.client === MARKER_CLIENT;
  const seen = daemon.find(isMarker).length;
  const socket = await connectSocket(smtpPort, { localAddress: MARKER_CLIENT }, 10_000);
  try {
    await daemon.waitForLogs(isMarker, seen + 1, 10_000, 'the "connect" line of a marker connection');
  } finally {
    socket.destroy();
  }
}

/**
 * Spawns `node bin/mailsrv start -c <config>` (or `program start -c <config>`, e.g. an installed
 * mailsrv) and resolves once it logs `ready`.
 */
export async function startDaemon(
  env: TestEnv | string,
  timeoutMs = 30_000,
  program: string[] = [process.execPath, MAILSRV_BIN],
): Promise<Daemon> {
  requireBuild();
  const configPath = typeof env === 'string' ? env : env.configPath;
  const [command, ...args] = program as [string, ...string[]];
  const child = spawn(command, [...args, 'start', '-c', configPath], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv(),
  });
  const daemon = new Daemon(child);
  try {
    await daemon.waitForLog((e) => e.msg === 'ready', timeoutMs, '"ready"');
  } catch (err) {
    await daemon.kill9();
    throw new Error(`daemon did not become ready: ${(err as Error).message}`);
  }
  return daemon;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/mailsrv ARGS...` to completion. */
export function runCli(args: string[], options: { input?: string; env?: Record<string, string> } = {}): CliResult {
  requireBuild();
  const result = spawnSync(process.execPath, [MAILSRV_BIN, ...args], {
    cwd: REPO_ROOT,
    input: options.input,
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...cleanEnv(), ...options.env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}
