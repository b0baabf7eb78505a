// Test helpers for src/mbox/expunge.ts: generated mailboxes with checkable bodies, snapshots
// from scan.ts, and Debian Python's mailbox.mbox as an independent reader.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import type { MailboxSnapshot } from '../../src/mbox/mailbox.js';
import { scanMailbox } from '../../src/mbox/scan.js';

const execFileP = promisify(execFile);
const PYTHON = '/usr/bin/python3';

/** How many body lines generated message `n` has. */
export type LinesOf = (n: number) => number;
const defaultLines: LinesOf = (n) => 3 + (n % 7);

/** The body of generated message `n` (LF line ends, no final blank line): unique, of varying length. */
export function bodyOf(n: number, linesOf: LinesOf = defaultLines): string {
  const out: string[] = [];
  for (let k = 0; k < linesOf(n); k++) out.push(`body ${n} line ${k} ${'x'.repeat((n * 31 + k * 17) % 70)}`);
  out.push(`>From quoted line of ${n}`);
  return `${out.join('\n')}\n`;
}

/** Generated message `n` as stored in an mbox: From_ line, headers, body, blank separator line. */
export function messageOf(n: number, linesOf?: LinesOf): Buffer {
  return Buffer.from(
    `From sender${n}@example.org Wed Nov 25 11:54:57 2026\n` +
      `Subject: message ${n}\nMessage-ID: <${n}@example.org>\n\n${bodyOf(n, linesOf)}\n`,
    'latin1',
  );
}

/** Writes messages 0..count-1 to `path` and returns the bytes written. */
export async function writeMailbox(path: string, count: number, linesOf?: LinesOf): Promise<Buffer> {
  const content = Buffer.concat(Array.from({ length: count }, (_, n) => messageOf(n, linesOf)));
  await fs.writeFile(path, content, { mode: 0o600 });
  return content;
}

/** A fresh scan of `path` by scan.ts, with its index next to the mailbox. */
export function snapshotOf(path: string): Promise<MailboxSnapshot> {
  return scanMailbox(path, { indexDir: join(dirname(path), 'index') });
}

/** Subject and body hash of every message, as Python's mailbox.mbox splits the file. */
export async function pythonRead(path: string): Promise<{ subject: string; bodyHash: string }[]> {
  // raw bytes per message: cheaper than building email.Message objects
  const script = `import mailbox, sys, json, hashlib
out = []
box = mailbox.mbox(sys.argv[1])
for key in box.iterkeys():
    head, _, body = box.get_bytes(key).partition(b"\\n\\n")
    subject = [l[9:].decode() for l in head.split(b"\\n") if l.startswith(b"Subject: ")]
    out.append({"subject": subject[0] if subject else None,
                "bodyHash": hashlib.sha256(body.rstrip(b"\\n")).hexdigest()})
print(json.dumps(out))
`;
  const { stdout } = await execFileP(PYTHON, ['-c', script, path], { maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as { subject: string; bodyHash: string }[];
}

/** What pythonRead should return for generated messages `numbers`. */
export function expectedRead(numbers: readonly number[], linesOf?: LinesOf): { subject: string; bodyHash: string }[] {
  return numbers.map((n) => ({
    subject: `message ${n}`,
    bodyHash: createHash('sha256').update(bodyOf(n, linesOf).replace(/\n+$/, '')).digest('hex'),
  }));
}
