// Child process of the expunge crash test: runs expungeMessages (or the recovery) on a mailbox
// and SIGKILLs itself at a chosen file operation. The hook wraps node:fs calls from outside
// the product code: it counts write/sync/truncate/rename/unlink per kind of file and kills
// the process before the chosen call, or halfway through it for a torn write.
// Usage: EXPUNGE_CHILD='<json ChildArgs>' node --import tsx expunge-crash-child.ts
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { expungeMessages, recoverInterruptedExpunges, type RecoveryInfo } from '../../src/mbox/expunge.js';
import { snapshotOf } from './mbox-expunge-fixtures.js';

export type Target = 'journal' | 'rebuild' | 'mailbox' | 'dir';
export type Operation = 'write' | 'sync' | 'truncate' | 'rename' | 'unlink';

export interface CrashPoint {
  op: Operation;
  target: Target;
  /** the nth such call (1-based) */
  nth: number;
  /** write only: write the first half of the buffer, then die */
  torn?: boolean;
}

export interface ChildArgs {
  mode: 'expunge' | 'recover';
  mailbox: string;
  journalDir: string;
  deleted: number[];
  crash: CrashPoint | null;
}

const args = JSON.parse(process.env.EXPUNGE_CHILD ?? '') as ChildArgs;

function targetOf(path: string): Target {
  if (path.endsWith('.journal')) return 'journal';
  if (path.endsWith('.journal.new')) return 'rebuild';
  return path === args.mailbox ? 'mailbox' : 'dir';
}

const counts = new Map<string, number>();
/** true if this call is the one to crash at */
function hits(op: Operation, target: Target): boolean {
  const key = `${op}:${target}`;
  const n = (counts.get(key) ?? 0) + 1;
  counts.set(key, n);
  const crash = args.crash;
  return crash !== null && crash.op === op && crash.target === target && crash.nth === n;
}

function die(): never {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

type Method = (this: FileHandle, ...rest: unknown[]) => Promise<unknown>;
const handlePaths = new WeakMap<FileHandle, string>();
const realOpen = fs.open;
fs.open = async (...openArgs: Parameters<typeof fs.open>) => {
  const handle = await realOpen(...openArgs);
  handlePaths.set(handle, String(openArgs[0]));
  return handle;
};
const sample = await realOpen(args.mailbox, 'r');
const proto = Object.getPrototypeOf(sample) as Record<Operation, Method>;
await sample.close();
for (const op of ['write', 'sync', 'truncate'] as const) {
  const real = proto[op];
  proto[op] = async function (this: FileHandle, ...rest: unknown[]) {
    const path = handlePaths.get(this);
    if (path !== undefined && hits(op, targetOf(path))) {
      if (op === 'write' && args.crash?.torn) {
        const [buffer, offset, length, position] = rest as [Buffer, number, number, number];
        await real.call(this, buffer, offset, Math.max(1, Math.floor(length / 2)), position);
      }
      die();
    }
    return real.apply(this, rest);
  };
}
for (const op of ['rename', 'unlink'] as const) {
  const real = fs[op] as (...rest: unknown[]) => Promise<void>;
  (fs as unknown as Record<Operation, (...rest: unknown[]) => Promise<void>>)[op] = async (...rest: unknown[]) => {
    if (hits(op, targetOf(String(rest[0])))) die();
    return real(...rest);
  };
}

if (args.mode === 'expunge') {
  const snapshot = await snapshotOf(args.mailbox);
  process.stdout.write('ready\n');
  const started = Date.now();
  const result = await expungeMessages(snapshot, new Set(args.deleted), { journalDir: args.journalDir, lockTimeoutMs: 5000 });
  process.stdout.write(`${JSON.stringify({ ...result, ms: Date.now() - started })}\n`);
} else {
  const log: RecoveryInfo[] = [];
  process.stdout.write('ready\n');
  const started = Date.now();
  await recoverInterruptedExpunges(args.journalDir, (info) => log.push(info));
  process.stdout.write(`${JSON.stringify({ log, ms: Date.now() - started })}\n`);
}
