// Child process of the expunge crash test: runs expungeMessages (or the recovery) on a mailbox
// and SIGKILLs itself at a chosen file operation; it prints `answered` when the update returns
// (is committed), and a line of figures when its copy is done. The hook wraps node:fs calls from outside
// the product code: it counts write/sync/truncate/rename/unlink per kind of file and kills
// the process before the chosen call, or halfway through it for a torn write.
// Usage: EXPUNGE_CHILD='<json ChildArgs>' node --import tsx expunge-crash-child.ts
import { expungeMessages, recoverInterruptedExpunges } from '../../src/mbox/expunge.js';
import type { RecoveryInfo } from '../../src/mbox/expunge-recovery.js';
import { setThisNode } from '../../src/mbox/node.js';
import { installCrashHooks, type CrashPoint as CrashPointOf } from './crash-hooks.js';
import { snapshotOf } from './mbox-expunge-fixtures.js';

export type Target = 'journal' | 'rebuild' | 'mailbox' | 'dir';
export type CrashPoint = CrashPointOf<Target>;

export interface ChildArgs {
  mode: 'expunge' | 'recover';
  mailbox: string;
  journalDir: string;
  /** the test's node (setThisNode): the recovery in the test process is the same node */
  nodeStateDir: string;
  deleted: number[];
  crash: CrashPoint | null;
  /** the copy's chunk size: small, so that the copy takes many steps */
  chunkBytes: number;
  /** bytes copied between background fdatasyncs (default: the product's); small: several run during the copy */
  flushBytes?: number;
  /** the longest copy done before the update returns (default: the product's); 0: the copy goes on after */
  waitForCopyBytes?: number;
}

const args = JSON.parse(process.env.EXPUNGE_CHILD ?? '') as ChildArgs;
setThisNode(args.nodeStateDir);

function targetOf(path: string): Target {
  if (path.endsWith('.journal')) return 'journal';
  if (path.endsWith('.journal.new')) return 'rebuild';
  return path === args.mailbox ? 'mailbox' : 'dir';
}

await installCrashHooks({ crash: args.crash, targetOf, sampleFile: args.mailbox });

if (args.mode === 'expunge') {
  const snapshot = await snapshotOf(args.mailbox);
  process.stdout.write('ready\n');
  const started = Date.now();
  const result = await expungeMessages(snapshot, new Set(args.deleted), {
    journalDir: args.journalDir,
    lockTimeoutMs: 5000,
    chunkBytes: args.chunkBytes,
    flushBytes: args.flushBytes,
    waitForCopyBytes: args.waitForCopyBytes,
  });
  // the update is committed: what a POP3 client is answered now
  process.stdout.write('answered\n');
  await result.completion;
  const { removed, bytesFreed } = result;
  process.stdout.write(`${JSON.stringify({ removed, bytesFreed, ms: Date.now() - started })}\n`);
} else {
  const log: RecoveryInfo[] = [];
  process.stdout.write('ready\n');
  const started = Date.now();
  await recoverInterruptedExpunges(args.journalDir, (info) => log.push(info), {
    chunkBytes: args.chunkBytes,
    flushBytes: args.flushBytes,
  });
  process.stdout.write(`${JSON.stringify({ log, ms: Date.now() - started })}\n`);
}
