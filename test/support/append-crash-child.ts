// Child process of the append crash test: appends a batch of messages to a mailbox through the
// GroupAppender and SIGKILLs itself at a chosen file operation (crash-hooks.ts) of the mailbox or
// of its lock (whose writes are its pid, then the committed size before and after each batch).
// Usage: APPEND_CHILD='<json ChildArgs>' node --import tsx append-crash-child.ts
import { Readable } from 'node:stream';
import { GroupAppender } from '../../src/mbox/group-append.js';
import { installCrashHooks, type CrashPoint as CrashPointOf } from './crash-hooks.js';

export type Target = 'mailbox' | 'lock';
export type CrashPoint = CrashPointOf<Target>;

export interface ChildArgs {
  mailbox: string;
  /** the messages to append, raw (CRLF); odd ones are streamed, even ones held in memory */
  messages: string[];
  crash: CrashPoint | null;
}

const args = JSON.parse(process.env.APPEND_CHILD ?? '') as ChildArgs;

/** The mailbox, or its lock (the temporary file that becomes it, or the lock path itself). */
function targetOf(path: string): Target | null {
  if (path === args.mailbox) return 'mailbox';
  return path.startsWith(`${args.mailbox}.lock`) ? 'lock' : null;
}

await installCrashHooks({ crash: args.crash, targetOf, sampleFile: args.mailbox });

const appender = new GroupAppender();
const outcomes = await appender.append(
  { mailboxPath: args.mailbox, sizeLimit: 0, lockTimeoutMs: 5000 },
  args.messages.map((raw, i) => {
    const bytes = Buffer.from(raw, 'latin1');
    const pieces = [bytes.subarray(0, 7), bytes.subarray(7)];
    return {
      source: i % 2 === 0 ? pieces : Readable.from(pieces),
      sender: 'crash@example.org',
      date: new Date('2026-12-06T10:00:00Z'),
      addHeaders: [`X-Test: ${i}`],
    };
  }),
);
process.stdout.write(`${JSON.stringify(outcomes.map((o) => (o instanceof Error ? o.message : o)))}\n`);
