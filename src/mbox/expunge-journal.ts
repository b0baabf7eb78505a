// The redo journal of a POP3 update (expunge.ts): its file name, its layout (a header with the
// plan, two progress slots written in turn, a data area holding one chunk's new bytes), and
// writing and reading its parts. No decisions here: expunge-copy.ts writes the progress,
// expunge-recovery.ts acts on what a journal left by a crash says. Contract: the layout and the
// order of writes that makes it crash-safe are specified in docs/formats.md, "Expunge journal";
// a change to the layout must bump the version in MAGIC.
import { createHash } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { fsyncDir, readAt, writeAt } from '../fsutil.js';

const MAGIC = 'MAILSRV-EXPUNGE-JOURNAL 2 ';
const SLOT_BYTES = 256;
const SLOT_ALIGN = 4096;
const JOURNAL_SUFFIX = '.journal';
/** a journal being rebuilt by recovery; only renamed over the journal once complete */
const REBUILD_SUFFIX = '.journal.new';
/** the most bytes the probe covers */
export const PROBE_MAX_BYTES = 4096;
const LF = 0x0a;

const count = z.number().int().nonnegative();
const headerSchema = z.object({
  mailbox: z.string().min(1),
  // stat numbers, compared as Node gives them: inode numbers above 2^53 are not exact integers
  dev: z.number().nonnegative(),
  ino: z.number().nonnegative(),
  /** A: the offset of the first deleted message, where the new bytes start */
  start: count,
  /** N: the new end of the mailbox */
  end: count,
  /** S: the mailbox size when the update began */
  oldSize: count,
  /** sha256 (hex) of the old bytes [N, N + probeLength) */
  probe: z.string().regex(/^[0-9a-f]{64}$/),
  probeLength: z.number().int().positive(),
  /** the kept ranges after A, [position, length] in the old file: their bytes, in order, are [A, N) */
  kept: z.array(z.tuple([count, count])),
});
export type JournalHeader = z.infer<typeof headerSchema>;

const slotSchema = z.object({
  seq: count,
  /** [A, done) of the mailbox holds new content */
  done: count,
  /** [done, done + chunk) is being written from the data area, which holds its new bytes */
  chunk: z.number().int().positive().nullable(),
});
export type Progress = z.infer<typeof slotSchema>;

export interface Journal {
  path: string;
  header: JournalHeader;
  /** where the progress slots start; the data area follows them */
  slotsAt: number;
  /** the kept ranges' start offsets in the new file */
  destinations: number[];
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** sha256 (hex) of the file's bytes [position, position + length) (fewer at its end): the journal's probe. */
export async function probeOf(handle: FileHandle, position: number, length: number): Promise<string> {
  const buffer = Buffer.alloc(length);
  const n = await readAt(handle, buffer, 0, length, position);
  return sha256(buffer.subarray(0, n));
}

/** The journal file of a mailbox in `journalDir`. */
export function journalPathOf(journalDir: string, mailboxPath: string): string {
  const full = resolve(mailboxPath);
  const tag = createHash('sha256').update(full).digest('hex').slice(0, 12);
  return join(journalDir, `${basename(full)}.${tag}${JOURNAL_SUFFIX}`);
}

/** Where a journal is rebuilt before it is renamed over the one at `journalPath`. */
export function rebuildPathOf(journalPath: string): string {
  return journalPath.slice(0, -JOURNAL_SUFFIX.length) + REBUILD_SUFFIX;
}

/** Whether a file name in the journal directory is a journal. */
export function isJournalName(name: string): boolean {
  return name.endsWith(JOURNAL_SUFFIX);
}

/** Whether a file name in the journal directory is a rebuild (a crash cut it short if it is still there). */
export function isRebuildName(name: string): boolean {
  return name.endsWith(REBUILD_SUFFIX);
}

function journalOf(path: string, header: JournalHeader, headerBytes: number): Journal {
  const destinations: number[] = [];
  let at = header.start;
  for (const [, length] of header.kept) {
    destinations.push(at);
    at += length;
  }
  return { path, header, slotsAt: Math.ceil(headerBytes / SLOT_ALIGN) * SLOT_ALIGN, destinations };
}

/** Writes a new journal: the header, then the first progress slot. The caller decides about fsyncs. */
export async function createJournal(
  path: string,
  header: JournalHeader,
  progress: Progress,
): Promise<{ journal: Journal; handle: FileHandle }> {
  const flags = constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  const handle = await fs.open(path, flags, 0o600);
  try {
    const head = Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`, 'utf8');
    await writeAt(handle, head, 0, head.length, 0);
    const journal = journalOf(path, header, head.length);
    await writeSlot(handle, journal, progress);
    return { journal, handle };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Writes `progress` into its slot (the one its seq's parity names). */
export async function writeSlot(handle: FileHandle, journal: Journal, progress: Progress): Promise<void> {
  const json = JSON.stringify(progress);
  const slot = Buffer.alloc(SLOT_BYTES, 0x20);
  slot.write(`${json}\n${sha256(json)}\n`, 'latin1');
  await writeAt(handle, slot, 0, SLOT_BYTES, journal.slotsAt + (progress.seq % 2) * SLOT_BYTES);
}

/** The newest intact progress slot, or null. */
export async function readProgress(handle: FileHandle, journal: Journal): Promise<Progress | null> {
  const slots = Buffer.alloc(2 * SLOT_BYTES);
  await readAt(handle, slots, 0, slots.length, journal.slotsAt);
  let newest: Progress | null = null;
  for (let i = 0; i < 2; i++) {
    const m = /^([^\n]*)\n([0-9a-f]{64})\n/.exec(slots.toString('latin1', i * SLOT_BYTES, (i + 1) * SLOT_BYTES));
    if (m === null || sha256(m[1]!) !== m[2]) continue;
    let parsed;
    try {
      parsed = slotSchema.safeParse(JSON.parse(m[1]!));
    } catch {
      continue;
    }
    if (parsed.success && parsed.data.seq % 2 === i && (newest === null || parsed.data.seq > newest.seq))
      newest = parsed.data;
  }
  return newest;
}

/** Writes the first `length` bytes of `chunk` into the data area. */
export async function writeChunkData(
  handle: FileHandle,
  journal: Journal,
  chunk: Buffer,
  length: number,
): Promise<void> {
  await writeAt(handle, chunk, 0, length, journal.slotsAt + 2 * SLOT_BYTES);
}

/** Reads `length` bytes of the data area into `into`; returns the count read (fewer: the journal is cut short). */
export function readChunkData(handle: FileHandle, journal: Journal, into: Buffer, length: number): Promise<number> {
  return readAt(handle, into, 0, length, journal.slotsAt + 2 * SLOT_BYTES);
}

/** Reads a journal's header: `journal` is null unless it is intact; `mailbox` is the mailbox it names, if readable. */
export async function readJournal(
  path: string,
  handle: FileHandle,
): Promise<{ journal: Journal | null; mailbox: string | null }> {
  const size = (await handle.stat()).size;
  const buffer = Buffer.alloc(Math.min(size, 64 * 1024 * 1024));
  const head = buffer.subarray(0, await readAt(handle, buffer, 0, buffer.length, 0));
  const newline = head.indexOf(LF);
  if (newline < MAGIC.length || head.toString('latin1', 0, MAGIC.length) !== MAGIC)
    return { journal: null, mailbox: null };
  let parsed;
  try {
    parsed = headerSchema.safeParse(JSON.parse(head.toString('utf8', MAGIC.length, newline)));
  } catch {
    return { journal: null, mailbox: null };
  }
  if (!parsed.success) return { journal: null, mailbox: null };
  return { journal: journalOf(path, parsed.data, newline + 1), mailbox: parsed.data.mailbox };
}

/** The mailbox the journal at `path` names, or null if its header is unreadable. */
export async function mailboxOfJournal(path: string): Promise<string | null> {
  const handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return (await readJournal(path, handle)).mailbox;
  } finally {
    await handle.close();
  }
}

/** Removes a journal (or a rebuild), making the removal durable. */
export async function removeJournal(path: string): Promise<void> {
  await fs.unlink(path);
  await fsyncDir(dirname(path));
}
