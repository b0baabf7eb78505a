// The mailbox index files in their directory (`indexDir/<mailbox name>.idx`, mode 0600): reading
// one (through an in-memory cache of decoded files), writing one atomically (temporary file,
// rename), fingerprinting the mailbox part an index describes, and saving the index of a
// mailbox a caller has just rewritten. index-format.ts has the bytes; scan.ts decides when an
// index may be reused. Contract: docs/formats.md, "Mailbox index".
import { createHash, randomBytes } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { isErrno, readAt } from '../fsutil.js';
import { decodeIndex, encodeIndex, type Fingerprints, type IndexData, isConsistent } from './index-format.js';
import { MailboxChangedError, type MailboxSnapshot } from './mailbox.js';

const FINGERPRINT_BYTES = 4096;

/** The index file of the mailbox at `path`. */
export function indexPathOf(path: string, indexDir: string): string {
  return join(indexDir, `${basename(path)}.idx`);
}

async function sha1Of(
  handle: FileHandle,
  start: number,
  length: number,
  counter: { bytesRead: number } | null,
): Promise<string> {
  const buffer = Buffer.alloc(length);
  const n = await readAt(handle, buffer, 0, length, start);
  if (counter) counter.bytesRead += n;
  return createHash('sha1').update(buffer.subarray(0, n)).update(`:${n}`).digest('hex');
}

/** sha1 of the first and of the last FINGERPRINT_BYTES of [0, size) of the file; `counter` counts the bytes read. */
export async function fingerprints(
  handle: FileHandle,
  size: number,
  counter: { bytesRead: number } | null,
): Promise<Fingerprints> {
  const length = Math.min(FINGERPRINT_BYTES, size);
  return { head: await sha1Of(handle, 0, length, counter), tail: await sha1Of(handle, size - length, length, counter) };
}

/** Decoded index files, kept so that reopening an unchanged mailbox reads and builds nothing. */
interface CachedIndex {
  ino: number;
  size: number;
  mtimeMs: number;
  data: IndexData | null;
  messages: number;
}
/**
 * Index path → its decoded content, valid while the file keeps its inode, size and mtime (every
 * write renames a new file in). Least recently used first; at most MAX_CACHED_MESSAGES messages in
 * all (~150 bytes each). The MessageInfo objects are shared by every snapshot made from an entry:
 * nothing may modify them.
 */
const decodedIndexes = new Map<string, CachedIndex>();
const MAX_CACHED_MESSAGES = 300_000;
let cachedMessages = 0;

function forgetDecoded(indexPath: string): void {
  const old = decodedIndexes.get(indexPath);
  if (old === undefined) return;
  decodedIndexes.delete(indexPath);
  cachedMessages -= old.messages;
}

function rememberDecoded(
  indexPath: string,
  st: { ino: number; size: number; mtimeMs: number },
  data: IndexData | null,
): void {
  forgetDecoded(indexPath);
  const messages = data?.messages.length ?? 0;
  if (messages > MAX_CACHED_MESSAGES) return;
  decodedIndexes.set(indexPath, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, data, messages });
  cachedMessages += messages;
  for (const oldest of decodedIndexes.keys()) {
    if (cachedMessages <= MAX_CACHED_MESSAGES) break;
    forgetDecoded(oldest);
  }
}

/**
 * The index of the mailbox at `path`: null when there is none, or it is corrupt or another
 * mailbox's. Throws when it cannot be read.
 */
export async function readIndex(path: string, indexDir: string): Promise<IndexData | null> {
  const indexPath = indexPathOf(path, indexDir);
  let handle: FileHandle;
  try {
    handle = await fs.open(indexPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
  try {
    const st = await handle.stat();
    const hit = decodedIndexes.get(indexPath);
    if (hit !== undefined && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs) {
      decodedIndexes.delete(indexPath);
      decodedIndexes.set(indexPath, hit);
      return hit.data?.path === path ? hit.data : null;
    }
    const data = decodeIndex(await handle.readFile(), path);
    rememberDecoded(indexPath, st, data);
    return data;
  } finally {
    await handle.close();
  }
}

/** Writes `data` as its mailbox's index (indexDir is created 0700 if missing). */
export async function writeIndex(data: IndexData, indexDir: string): Promise<void> {
  await fs.mkdir(indexDir, { recursive: true, mode: 0o700 });
  const target = indexPathOf(data.path, indexDir);
  const temporary = `${target}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  let written: Stats;
  try {
    const handle = await fs.open(temporary, 'wx', 0o600);
    try {
      await handle.writev(encodeIndex(data));
      written = await handle.stat();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, target);
  } catch (err) {
    await fs.rm(temporary, { force: true });
    forgetDecoded(target);
    throw err;
  }
  // what was just written is what the next open would decode (a rename keeps inode and mtime)
  rememberDecoded(target, written, isConsistent(data.messages, data.scannedSize) ? data : null);
}

/**
 * Saves `snapshot` as the index of its mailbox, fingerprinting the file as it is now: for a
 * caller that rewrote the mailbox (under its lock) and knows the new messages, so that the next
 * open needs no rescan. Throws MailboxChangedError if the file is not the one the snapshot
 * describes (other dev/ino, or shorter than scannedSize).
 */
export async function saveIndex(snapshot: MailboxSnapshot, indexDir: string): Promise<void> {
  const handle = await fs.open(snapshot.path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = await handle.stat();
    if (st.dev !== snapshot.dev || st.ino !== snapshot.ino)
      throw new MailboxChangedError(snapshot.path, 'the file was replaced');
    if (st.size < snapshot.scannedSize)
      throw new MailboxChangedError(snapshot.path, `it is shorter than ${snapshot.scannedSize} bytes`);
    const prints = await fingerprints(handle, snapshot.scannedSize, null);
    await writeIndex({ ...snapshot, mtimeMs: st.mtimeMs, ...prints }, indexDir);
  } finally {
    await handle.close();
  }
}
