// The POP3 update (README, "POP3"): removes the messages a session deleted from its mbox file, in
// place (same inode, mode and owner), under the dotlock, keeping mail delivered meanwhile, and
// safe against `kill -9` at any moment; then refreshes the mailbox's index. This file takes the
// locks and runs the steps, in this order: finish a journal an earlier update left
// (expunge-recovery.ts), check that the mailbox is still the one the session read
// (expunge-check.ts), write the redo journal with the plan (expunge-journal.ts), copy the kept
// bytes forward over the deleted ones and truncate (expunge-copy.ts), remove the journal. Once
// the journal is written the update is committed: a long copy goes on after the caller has its
// answer. At daemon start, recoverInterruptedExpunges finishes every update a crash
// interrupted. The journal's format and why each crash point ends in the old or the new
// content: docs/formats.md, "Expunge journal".
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fsyncDir } from '../fsutil.js';
import { verifyUnchanged } from './expunge-check.js';
import { type CopyTuning, copyForward } from './expunge-copy.js';
import {
  createJournal,
  isJournalName,
  isRebuildName,
  type Journal,
  type JournalHeader,
  journalPathOf,
  mailboxOfJournal,
  PROBE_MAX_BYTES,
  type Progress,
  probeOf,
  removeJournal,
} from './expunge-journal.js';
import { type RecoveryInfo, redoJournal, settleLeftover } from './expunge-recovery.js';
import { saveIndex } from './index-store.js';
import { acquireDotlock, type Dotlock, type StaleLockHandler } from './lock.js';
import type { MailboxSnapshot, MessageInfo } from './mailbox.js';
import { thisNode } from './node.js';
import { recordDeletions } from './unsettled.js';
import { clearUpdate, markUpdate, updatingNode } from './update-marker.js';

/** the largest chunk copied at once; two are in memory (one written, the next read): the most of a mailbox ever held */
const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/** an fdatasync of the mailbox starts in the background after every this many bytes copied (one at a time) */
const DEFAULT_FLUSH_BYTES = 32 * 1024 * 1024;
const DEFAULT_RECOVERY_LOCK_TIMEOUT_MS = 60_000;
/**
 * an update whose copy moves at most this many bytes returns once it is done; a longer copy goes
 * on after the update is committed and returned (a client is not kept waiting for a disk-bound
 * rewrite of a big mailbox; until the copy ends, the mailbox's dotlock stays taken)
 */
const DEFAULT_WAIT_FOR_COPY_BYTES = 16 * 1024 * 1024;
/** copies going on after their update answered, in this process at once (each holds two chunks) */
const MAX_BACKGROUND_COPIES = 4;

/**
 * The places for copies that go on after their update has answered. When they are all taken, an
 * update waits for its copy, as a short one does: the copies a process runs at once stay bounded
 * by its POP3 sessions (max_clients) plus these places.
 */
export class BackgroundCopies {
  private running = 0;

  constructor(private readonly places: number) {}

  /** Takes a place if one is free. */
  tryTake(): boolean {
    if (this.running >= this.places) return false;
    this.running += 1;
    return true;
  }

  give(): void {
    this.running -= 1;
  }
}

const backgroundCopies = new BackgroundCopies(MAX_BACKGROUND_COPIES);

export interface ExpungeOptions {
  /** where the journal is kept during the update (created 0700 if missing) */
  journalDir: string;
  lockTimeoutMs: number;
  onStaleBroken?: StaleLockHandler;
  /** the index directory: the compacted mailbox's index is saved there during the final fsync (errors ignored) */
  indexDir?: string;
  /** largest chunk of the copy (default 4 MiB; crash tests make it small to get many steps) */
  chunkBytes?: number;
  /** bytes copied between background fdatasyncs (default 32 MiB; crash tests make it small) */
  flushBytes?: number;
  /** the longest copy that is finished before the update returns (default 16 MiB; 0: none is) */
  waitForCopyBytes?: number;
  /** the places for copies after the answer (default: the process's, 4; tests bring their own) */
  backgroundCopies?: BackgroundCopies;
}

export interface ExpungeResult {
  removed: number;
  bytesFreed: number;
  /**
   * settles once the mailbox holds its new content and its dotlock is let go: already settled
   * when the copy was short enough to be waited for. It rejects when the copy and its redo
   * failed; the update is committed all the same, and the next reader of the mailbox finishes it.
   */
  completion: Promise<void>;
}

export interface RecoveryOptions {
  /** how long to wait for each mailbox's dotlock; default 60 s */
  lockTimeoutMs?: number;
  onStaleBroken?: StaleLockHandler;
  chunkBytes?: number;
  flushBytes?: number;
}

function tuningOf(options: { chunkBytes?: number; flushBytes?: number }): CopyTuning {
  return {
    chunkBytes: options.chunkBytes ?? DEFAULT_CHUNK_BYTES,
    flushBytes: options.flushBytes ?? DEFAULT_FLUSH_BYTES,
  };
}

/** mkdir -p (0700), making every created directory's entry durable. */
async function ensureDir(path: string): Promise<void> {
  const first = await fs.mkdir(path, { recursive: true, mode: 0o700 });
  if (first === undefined) return;
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    await fsyncDir(dirname(dir));
    if (dir === resolve(first)) return;
  }
}

/**
 * The update as the journal's header: from the first deleted span on, what stays (the gaps
 * between deleted spans, then the rest of the `size` bytes), where the file will end, and the
 * probe of the old bytes there.
 */
async function planOf(
  snapshot: MailboxSnapshot,
  spans: readonly MessageInfo[],
  size: number,
  mailbox: FileHandle,
): Promise<JournalHeader> {
  const start = spans[0]!.offset;
  const kept: [number, number][] = [];
  let cursor = start;
  let bytesFreed = 0;
  for (const span of spans) {
    if (span.offset > cursor) kept.push([cursor, span.offset - cursor]);
    cursor = span.offset + span.spanLength;
    bytesFreed += span.spanLength;
  }
  if (size > cursor) kept.push([cursor, size - cursor]);
  const end = size - bytesFreed;
  const probeLength = Math.min(PROBE_MAX_BYTES, bytesFreed);
  return {
    mailbox: resolve(snapshot.path),
    dev: snapshot.dev,
    ino: snapshot.ino,
    start,
    end,
    oldSize: size,
    probe: await probeOf(mailbox, end, probeLength),
    probeLength,
    kept,
  };
}

/** The compacted mailbox as a snapshot: offsets shifted, deleted messages gone, appended mail not indexed. */
function compactedSnapshot(
  snapshot: MailboxSnapshot,
  deleted: ReadonlySet<number>,
  bytesFreed: number,
): MailboxSnapshot {
  let shift = 0;
  const messages: MessageInfo[] = [];
  for (const [i, message] of snapshot.messages.entries()) {
    if (deleted.has(i)) shift += message.spanLength;
    else messages.push({ ...message, offset: message.offset - shift, contentOffset: message.contentOffset - shift });
  }
  return { ...snapshot, scannedSize: snapshot.scannedSize - bytesFreed, messages };
}

/**
 * The update for one POP3 QUIT: removes the messages at the `deleted` indices of `snapshot`
 * from the mailbox file, keeping everything else, including mail appended after the scan.
 * Returns once the update is committed (its journal written: a crash of this process from then
 * on ends in the new content) and, if its copy moves at most `waitForCopyBytes` or no place for
 * a copy after the answer is free (BackgroundCopies), done; a longer copy goes on under the
 * dotlock until `completion` settles. An error of the copy rejects `completion`, not this call.
 * Throws, before the commit, MailboxLockedError (lock not had in time), MailboxChangedError
 * (another program changed the part the session read) or an I/O error; then nothing was
 * deleted. A RangeError for bad indices is thrown before anything is locked.
 */
export async function expungeMessages(
  snapshot: MailboxSnapshot,
  deleted: ReadonlySet<number>,
  options: ExpungeOptions,
): Promise<ExpungeResult> {
  const spans = [...deleted]
    .map((i) => {
      const message = snapshot.messages[i];
      if (!Number.isInteger(i) || message === undefined) throw new RangeError(`no message with index ${i}`);
      return message;
    })
    .sort((a, b) => a.offset - b.offset);
  if (spans.length === 0) return { removed: 0, bytesFreed: 0, completion: Promise.resolve() };
  const last = spans[spans.length - 1]!;
  if (last.offset + last.spanLength > snapshot.scannedSize)
    throw new RangeError('message span beyond the scanned part');

  const tuning = tuningOf(options);
  await ensureDir(options.journalDir);
  const journalPath = journalPathOf(options.journalDir, snapshot.path);
  const lock = await acquireDotlock(snapshot.path, {
    timeoutMs: options.lockTimeoutMs,
    onStaleBroken: options.onStaleBroken,
  });
  let mailbox: FileHandle | null = null;
  let committed: CommittedUpdate;
  const places = options.backgroundCopies ?? backgroundCopies;
  /** the copy goes on after the return, in a place taken for it */
  let answerFirst = false;
  try {
    await settleOwnLeftover(snapshot.path, journalPath, tuning);
    mailbox = await fs.open(snapshot.path, constants.O_RDWR | constants.O_NOFOLLOW);
    const size = await verifyUnchanged(mailbox, snapshot);
    const header = await planOf(snapshot, spans, size, mailbox);
    // a node that crashed while appending may look for what is deleted here (unsettled.ts)
    await recordDeletions(snapshot.path, mailbox, spans, Date.now());
    // other nodes keep off the mailbox until the update is finished (update-marker.ts)
    await markUpdate(snapshot.path, thisNode());
    answerFirst =
      header.end - header.start > (options.waitForCopyBytes ?? DEFAULT_WAIT_FOR_COPY_BYTES) && places.tryTake();
    let created: { journal: Journal; handle: FileHandle } | null = null;
    try {
      created = await createJournal(journalPath, header, firstProgress(header));
      if (answerFirst) {
        // answered before the copy: a power loss before the copy has written anything must still
        // end in the new content (one during the copy can tear the mailbox: README)
        await created.handle.sync();
        await fsyncDir(options.journalDir);
      }
      committed = { mailboxPath: snapshot.path, mailbox, journalPath, ...created };
    } catch (err) {
      // the mailbox is untouched: a journal left here would delete what the client was told is kept
      await created?.handle.close().catch(() => undefined);
      await fs.unlink(journalPath).catch(() => undefined);
      await clearUpdate(snapshot.path).catch(() => undefined);
      throw err;
    }
  } catch (err) {
    if (answerFirst) places.give();
    await letGo(mailbox, lock);
    throw err;
  }
  // committed: from here on a crash ends in the new content (the journal is redone at start)
  const { header } = committed.journal;
  const bytesFreed = header.oldSize - header.end;
  const saveNewIndex = async (): Promise<void> => {
    if (options.indexDir === undefined) return;
    await saveIndex(compactedSnapshot(snapshot, deleted, bytesFreed), options.indexDir).catch(() => undefined);
  };
  const completion = (async () => {
    try {
      await applyCommitted(committed, tuning, saveNewIndex);
    } finally {
      if (answerFirst) places.give();
      await letGo(committed.mailbox, lock);
    }
  })();
  // a failed copy is the caller's to log (completion): the update is committed all the same
  if (!answerFirst) await completion.catch(() => undefined);
  return { removed: spans.length, bytesFreed, completion };
}

/** Closes the mailbox and lets go of its dotlock, also when the close fails (NFS reports write-back errors there). */
async function letGo(mailbox: FileHandle | null, lock: Dotlock): Promise<void> {
  try {
    await mailbox?.close();
  } finally {
    await lock.release().catch(() => undefined);
  }
}

/** An update whose journal is written: the mailbox (open, its dotlock held) and the journal (open). */
interface CommittedUpdate {
  mailboxPath: string;
  mailbox: FileHandle;
  journalPath: string;
  journal: Journal;
  handle: FileHandle;
}

function firstProgress(header: JournalHeader): Progress {
  return { seq: 0, done: header.start, chunk: null };
}

/**
 * The committed update's copy (its journal just written), then the journal and the marker
 * removed. The index of the new content is written while the copy's last fsync runs. An I/O error
 * part way leaves the mailbox torn: the update is redone from its journal at once, while the lock
 * is held; if that fails too, the journal and the marker stay and the next reader repairs it
 * first (finishLeftoverExpunge) or refuses to serve the mailbox.
 */
async function applyCommitted(
  update: CommittedUpdate,
  tuning: CopyTuning,
  saveNewIndex: () => Promise<void>,
): Promise<void> {
  const { mailboxPath, mailbox, journalPath, journal, handle } = update;
  let copyFailure: unknown = null;
  try {
    await copyForward(mailbox, handle, journal, firstProgress(journal.header), tuning, saveNewIndex);
  } catch (err) {
    copyFailure = err;
  } finally {
    await handle.close();
  }
  if (copyFailure === null) {
    await removeJournal(journalPath);
    await clearUpdate(mailboxPath);
  } else await settleOwnLeftover(mailboxPath, journalPath, tuning).catch(() => Promise.reject(copyFailure));
}

/**
 * Before a mailbox is read, its dotlock held: finishes an update of it that an I/O error (or a
 * crash) left part way, so nobody is served a torn mailbox. Throws when it cannot.
 */
export async function finishLeftoverExpunge(mailboxPath: string, journalDir: string): Promise<void> {
  await settleOwnLeftover(mailboxPath, journalPathOf(journalDir, mailboxPath), tuningOf({}));
}

/**
 * Finishes this node's update of the mailbox that a crash or an I/O error left (its lock held),
 * then takes away the marker that kept other nodes off it.
 */
async function settleOwnLeftover(mailboxPath: string, journalPath: string, tuning: CopyTuning): Promise<void> {
  await settleLeftover(journalPath, tuning);
  if ((await updatingNode(mailboxPath)) === thisNode()) await clearUpdate(mailboxPath);
}

/**
 * Daemon start, before any delivery or POP3 session: finishes every update a crash
 * interrupted. A journal with progress is redone under its mailbox's dotlock ('redone'), or
 * dropped if that mailbox is gone or was replaced ('discarded'); one without (cut short before
 * the mailbox was written) is deleted ('discarded').
 */
export async function recoverInterruptedExpunges(
  journalDir: string,
  log: (info: RecoveryInfo) => void,
  options: RecoveryOptions = {},
): Promise<void> {
  await ensureDir(journalDir);
  for (const name of (await fs.readdir(journalDir)).sort()) {
    const path = join(journalDir, name);
    if (isRebuildName(name)) {
      // a rebuild a crash cut short: the journal it was to replace is still there
      await removeJournal(path);
      continue;
    }
    if (!isJournalName(name)) continue;
    const mailbox = await mailboxOfJournal(path);
    if (mailbox === null) {
      await removeJournal(path);
      log({ mailbox: path, action: 'discarded' });
      continue;
    }
    const lock = await acquireDotlock(mailbox, {
      timeoutMs: options.lockTimeoutMs ?? DEFAULT_RECOVERY_LOCK_TIMEOUT_MS,
      onStaleBroken: options.onStaleBroken,
    });
    try {
      log(await redoJournal(path, tuningOf(options)));
      if ((await updatingNode(mailbox)) === thisNode()) await clearUpdate(mailbox);
    } finally {
      await lock.release().catch(() => undefined);
    }
  }
}
