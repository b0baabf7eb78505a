// Child process of the append crash test: appends a batch of messages to a mailbox through the
// GroupAppender and SIGKILLs itself at a chosen file operation. The hook wraps node:fs calls
// from outside the product code (as the expunge crash child does): it kills the process before
// the nth write/writev/sync/truncate of the mailbox or of the lock, or halfway through a write.
// Usage: APPEND_CHILD='<json ChildArgs>' node --import tsx append-crash-child.ts
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { GroupAppender } from '../../src/mbox/group-append.js';

export type Target = 'mailbox' | 'lock';
export type Operation = 'write' | 'writev' | 'sync' | 'unlink';

export interface CrashPoint {
  op: Operation;
  target: Target;
  /** the nth such call (1-based) */
  nth: number;
  /** writev only: write half of the bytes, then die */
  torn?: boolean;
}

export interface ChildArgs {
  mailbox: string;
  /** the messages to append, raw (CRLF); odd ones are streamed, even ones held in memory */
  messages: string[];
  crash: CrashPoint | null;
}

const args = JSON.parse(process.env.APPEND_CHILD ?? '') as ChildArgs;

function targetOf(path: string): Target | null {
  if (path === args.mailbox) return 'mailbox';
  return path.startsWith(`${args.mailbox}.lock`) ? 'lock' : null;
}

const counts = new Map<string, number>();
function hits(op: Operation, target: Target | null): boolean {
  if (target === null) return false;
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
for (const op of ['write', 'writev', 'sync'] as const) {
  const real = proto[op];
  proto[op] = async function (this: FileHandle, ...rest: unknown[]) {
    const path = handlePaths.get(this);
    if (path !== undefined && hits(op, targetOf(path))) {
      if (op === 'writev' && args.crash?.torn) {
        const whole = Buffer.concat(rest[0] as Buffer[]);
        await real.call(this, [whole.subarray(0, Math.max(1, Math.floor(whole.length / 2)))]);
      }
      die();
    }
    return real.apply(this, rest);
  };
}
const realUnlink = fs.unlink;
fs.unlink = async (...rest: Parameters<typeof fs.unlink>) => {
  if (hits('unlink', String(rest[0]) === `${args.mailbox}.lock` ? 'lock' : null)) die();
  return realUnlink(...rest);
};

const appender = new GroupAppender();
const outcomes = await appender.append(
  { mailboxPath: args.mailbox, sizeLimit: 0, lockTimeoutMs: 5000 },
  args.messages.map((raw, i) => {
    const bytes = Buffer.from(raw, 'latin1');
    return {
      source: i % 2 === 0 ? bytes : Readable.from([bytes.subarray(0, 7), bytes.subarray(7)]),
      sender: 'crash@example.org',
      date: new Date('2026-12-06T10:00:00Z'),
      addHeaders: [`X-Test: ${i}`],
    };
  }),
);
process.stdout.write(`${JSON.stringify(outcomes.map((o) => (o instanceof Error ? o.message : o)))}\n`);
