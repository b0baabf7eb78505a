// For crash tests: wraps node:fs from outside the product code so that a child process SIGKILLs
// itself at a chosen file operation (the nth write/writev/sync/datasync/truncate through a
// FileHandle, a writeSync on such a handle's descriptor counting as a write, or the nth
// rename/unlink of a path, counted per kind of file), or halfway through a write for a torn one;
// and, for the parent, runs such a child and tells whether it was killed.
import { spawn } from 'node:child_process';
import fsSync, { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';

export type HandleOperation = 'write' | 'writev' | 'sync' | 'datasync' | 'truncate';
export type PathOperation = 'rename' | 'unlink';

export interface CrashPoint<Target extends string> {
  op: HandleOperation | PathOperation;
  target: Target;
  /** the nth such call (1-based) */
  nth: number;
  /** write/writev only: write the first half of the bytes, then die */
  torn?: boolean;
}

export interface CrashHooks<Target extends string> {
  crash: CrashPoint<Target> | null;
  /** the kind of file a path is (null: not counted) */
  targetOf: (path: string) => Target | null;
  /** any existing file: its FileHandle prototype gets the hooks */
  sampleFile: string;
}

function die(): never {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

/** Installs the hooks in this process; from now on the chosen call kills it. */
export async function installCrashHooks<Target extends string>({
  crash,
  targetOf,
  sampleFile,
}: CrashHooks<Target>): Promise<void> {
  const counts = new Map<string, number>();
  const hits = (op: CrashPoint<Target>['op'], path: string): boolean => {
    const target = targetOf(path);
    if (target === null) return false;
    const key = `${op}:${target}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    return crash !== null && crash.op === op && crash.target === target && crash.nth === n;
  };

  type Method = (this: FileHandle, ...rest: unknown[]) => Promise<unknown>;
  const handlePaths = new WeakMap<FileHandle, string>();
  /** the descriptors of the handles open now, for writeSync */
  const fdPaths = new Map<number, string>();
  const realOpen = fs.open;
  fs.open = async (...openArgs: Parameters<typeof fs.open>) => {
    const handle = await realOpen(...openArgs);
    handlePaths.set(handle, String(openArgs[0]));
    fdPaths.set(handle.fd, String(openArgs[0]));
    return handle;
  };
  const sample = await realOpen(sampleFile, 'r');
  const proto = Object.getPrototypeOf(sample) as Record<HandleOperation | 'close', Method>;
  await sample.close();
  const realClose = proto.close;
  proto.close = function (this: FileHandle) {
    fdPaths.delete(this.fd);
    return realClose.call(this);
  };
  const realWriteSync = fsSync.writeSync as (fd: number, ...rest: unknown[]) => number;
  (fsSync as { writeSync: unknown }).writeSync = (fd: number, ...rest: unknown[]) => {
    const path = fdPaths.get(fd);
    if (path !== undefined && hits('write', path)) {
      if (crash?.torn && typeof rest[0] === 'string') realWriteSync(fd, rest[0].slice(0, rest[0].length / 2), rest[1]);
      die();
    }
    return realWriteSync(fd, ...rest);
  };
  // the product's `import { writeSync } from 'node:fs'` sees the wrapper from now on
  syncBuiltinESMExports();
  for (const op of ['write', 'writev', 'sync', 'datasync', 'truncate'] as const) {
    const real = proto[op];
    proto[op] = async function (this: FileHandle, ...rest: unknown[]) {
      const path = handlePaths.get(this);
      if (path !== undefined && hits(op, path)) {
        if (op === 'write' && crash?.torn) {
          const [buffer, offset, length, position] = rest as [Buffer, number, number, number];
          await real.call(this, buffer, offset, Math.max(1, Math.floor(length / 2)), position);
        } else if (op === 'writev' && crash?.torn) {
          const whole = Buffer.concat(rest[0] as Buffer[]);
          await real.call(this, [whole.subarray(0, Math.max(1, Math.floor(whole.length / 2)))], rest[1]);
        }
        die();
      }
      return real.apply(this, rest);
    };
  }
  for (const op of ['rename', 'unlink'] as const) {
    const real = fs[op] as (...rest: unknown[]) => Promise<void>;
    (fs as unknown as Record<PathOperation, (...rest: unknown[]) => Promise<void>>)[op] = async (
      ...rest: unknown[]
    ) => {
      if (hits(op, String(rest[0]))) die();
      return real(...rest);
    };
  }
}

export interface ChildOutcome {
  killed: boolean;
  stdout: string;
}

/**
 * Runs a crash-test child script (through tsx) with its arguments as JSON in `envName`; with
 * `killAfterMs`, kills it that long after it printed `ready`.
 */
export function runCrashChild(
  script: string,
  envName: string,
  args: unknown,
  killAfterMs?: number,
): Promise<ChildOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, [envName]: JSON.stringify(args) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const wasReady = stdout.includes('ready\n');
      stdout += chunk;
      if (!wasReady && stdout.includes('ready\n') && killAfterMs !== undefined) {
        setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal === 'SIGKILL') resolve({ killed: true, stdout });
      else if (code === 0) resolve({ killed: false, stdout });
      else reject(new Error(`child exited with ${code}: ${stdout}`));
    });
  });
}
