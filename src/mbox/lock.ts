// Classic mailbox dotlock (`<mailbox>.lock`), interoperable with liblockfile/dotlockfile,
// Postfix local, procmail and Dovecot: link(2)-based creation, liblockfile staleness rules.
// While mailsrv appends, the lock also notes the mailbox's committed size, so an append cut
// short by a crash is rolled back by whoever breaks the stale lock; and a lock this process
// keeps while idle is handed over at once to another part of the process that wants it.
// Contract: the lock file's names, content (the pid line, the append note) and staleness rules
// are specified in docs/formats.md, "Mailbox dotlock"; other programs read them, so they change
// only together with that page.
import { randomBytes } from 'node:crypto';
import { constants, promises as fs, readFileSync, type Stats, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { type Clock, systemClock, type Timer } from '../clock.js';
import { isErrno, readAt } from '../fsutil.js';
import { shortHostname, thisNode } from './node.js';
import { noteCrashedNode } from './unsettled.js';
import { updatingNode } from './update-marker.js';

/** A lock without a live holder pid is stale once its mtime is this old (liblockfile: 300 s). */
const STALE_AGE_MS = 5 * 60 * 1000;
/** While held, the lock's mtime is refreshed this often so others never judge it stale. */
const TOUCH_INTERVAL_MS = 60 * 1000;
const FIRST_RETRY_MS = 50;
const MAX_RETRY_MS = 1000;
/** liblockfile reads at most this much of a lock file for the pid. */
const PID_READ_BYTES = 16;
/** A lock file of ours is the pid line and at most one append note. */
const LOCK_READ_BYTES = 256;
const MAX_PID = 2 ** 31 - 1;

export interface StaleLockInfo {
  path: string;
  reason: string;
}

export type StaleLockHandler = (info: StaleLockInfo) => void;

export interface DotlockOptions {
  /** give up (MailboxLockedError) after waiting this long */
  timeoutMs: number;
  /** told about every stale lock that was broken */
  onStaleBroken?: StaleLockHandler;
  /** times the waits, the lock's age and its refresh (default: the system clock) */
  clock?: Clock;
}

export interface Dotlock {
  /** the lock file path */
  readonly path: string;
  /**
   * Notes in the lock file how large the mailbox is with everything committed (fsynced) so far:
   * should this process die while it holds the lock, whoever breaks the stale lock on this host
   * in this boot cuts the mailbox back to that size, so an append under way leaves nothing (see
   * rollBackInterruptedAppend). Noted before the first append and again after each fsync. No
   * fsync of its own: it guards against a crashed process, whose writes the page cache keeps.
   * A synchronous pwrite of one short line over the same bytes: it never waits for the disk,
   * and a thread-pool round trip per fsynced batch would cost more than the write (README
   * "Performance").
   */
  noteCommittedSize(size: number): void;
  /** stops the mtime refresh and removes the lock (if it is still ours) */
  release(): Promise<void>;
}

/** The mailbox stayed locked by someone else for the whole timeout: retry later. */
export class MailboxLockedError extends Error {
  readonly path: string;
  /** `updatingNode`: the lock was free, but that node's update of the mailbox is unfinished */
  constructor(path: string, timeoutMs: number, updatingNode: string | null = null) {
    super(
      updatingNode === null
        ? `mailbox is locked: ${path} (waited ${timeoutMs} ms)`
        : `mailbox is locked: ${path}: an update by node ${updatingNode} was cut short; it finishes it when it starts`,
    );
    this.name = 'MailboxLockedError';
    this.path = path;
  }
}

/** The dotlock file name of a mailbox. */
export function lockPathOf(mailboxPath: string): string {
  return `${mailboxPath}.lock`;
}

/** true if a process with this pid exists on this host (EPERM: exists, owned by someone else). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return !isErrno(err, 'ESRCH');
  }
}

/** This boot of the machine: an append note from an earlier boot is never rolled back. */
let bootIdCache: string | undefined;
function bootId(): string {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
    } catch {
      bootIdCache = '';
    }
  }
  return bootIdCache;
}

/** What follows the size in an append note: this host and boot (made once). */
let appendNoteEnd: string | undefined;

/** The append note (docs/formats.md, "Mailbox dotlock"): zero-padded, each overwrites the last exactly. */
function appendNote(size: number): string {
  appendNoteEnd ??= ` ${shortHostname()} ${bootId()}\n`;
  return `append ${String(size).padStart(16, '0')}${appendNoteEnd}`;
}

interface LockContent {
  /** the holder's pid as liblockfile's atoi() reads it; 0 if none */
  pid: number;
  /**
   * the host a mailsrv holder names, when it is not this one: its pid means nothing here (nodes
   * sharing the spool over NFS); null for this host and for locks of other programs
   */
  otherHost: string | null;
  /** the mailbox's committed size while its holder appended, when noted on this host in this boot */
  appendFrom: number | null;
  /** the mailsrv node holding it (its node line), null for other programs' locks */
  node: string | null;
  /** whether its holder noted an append (on any host, in any boot) */
  appending: boolean;
}

const NO_CONTENT: LockContent = { pid: 0, otherHost: null, appendFrom: null, node: null, appending: false };

/** What a lock file says (an unreadable one says nothing). */
async function readLock(path: string): Promise<LockContent> {
  let handle;
  try {
    handle = await fs.open(path, 'r');
  } catch {
    return NO_CONTENT;
  }
  try {
    const buf = Buffer.alloc(LOCK_READ_BYTES);
    const bytesRead = await readAt(handle, buf, 0, LOCK_READ_BYTES, 0);
    const text = buf.toString('latin1', 0, bytesRead);
    const match = /^\s*(\d+)/.exec(text.slice(0, PID_READ_BYTES));
    const pid = match ? Number.parseInt(match[1], 10) : 0;
    const note = /\nappend (\d+) (\S+) (\S+)\n/.exec(text);
    const ours = note !== null && note[2] === shortHostname() && note[3] === bootId() && bootId() !== '';
    const host = /^\s*\d+\nhost (\S+)\n/.exec(text)?.[1];
    const otherHost = host === undefined || host === shortHostname() ? null : host;
    const node = /\nnode (\S+)\n/.exec(text)?.[1] ?? null;
    // no process can have a pid beyond MAX_PID; such content counts as no pid
    const appendFrom = ours ? Number(note[1]) : null;
    return { pid: pid <= MAX_PID ? pid : 0, otherHost, appendFrom, node, appending: note !== null };
  } catch {
    return NO_CONTENT;
  } finally {
    await handle.close();
  }
}

/**
 * A stale lock is about to be broken. If its holder was a mailsrv node appending, that node is
 * noted in the mailbox's unsettled deliveries before anyone can delete what it appended
 * (unsettled.ts), and an append it left unfinished is cut back (rollBackInterruptedAppend).
 */
async function settleStaleHolder(
  lockPath: string,
  ownPidIsStale: boolean,
  onStaleBroken: StaleLockHandler | undefined,
  now: number,
): Promise<void> {
  const { node, appending } = await readLock(lockPath);
  if (node !== null && appending) await noteCrashedNode(lockPath.slice(0, -'.lock'.length), node, now);
  await rollBackInterruptedAppend(lockPath, ownPidIsStale, onStaleBroken);
}

/**
 * A stale lock of a process of ours that died while appending: the mailbox is cut back to its
 * size before the append (nothing of it was acknowledged), while the stale lock still keeps
 * everyone else out.
 */
async function rollBackInterruptedAppend(
  lockPath: string,
  ownPidIsStale: boolean,
  onStaleBroken: StaleLockHandler | undefined,
): Promise<void> {
  const { pid, appendFrom } = await readLock(lockPath);
  // read again just now: a live holder (one that took the lock after it was judged) keeps its append
  if (appendFrom === null || pid === 0 || (pidAlive(pid) && !(ownPidIsStale && pid === process.pid))) return;
  const mailboxPath = lockPath.slice(0, -'.lock'.length);
  let handle;
  try {
    handle = await fs.open(mailboxPath, constants.O_WRONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size <= appendFrom) return;
    await handle.truncate(appendFrom);
    await handle.sync();
    onStaleBroken?.({
      path: mailboxPath,
      reason: `unfinished append of a crashed process cut off (${size - appendFrom} bytes)`,
    });
  } finally {
    await handle.close();
  }
}

/**
 * Why an existing lock is stale, or null if it is valid: a pid of a process that is gone →
 * stale at once; otherwise stale when older than 5 minutes, whoever it names (liblockfile's
 * rule for locks without a pid, applied to all as the README says: a holder that is alive
 * refreshes its lock, so an old one belongs to a hung program or a pid used again by another).
 * A directory (proper-lockfile) only goes stale by age. `ownPidIsStale` treats our own pid as
 * dead (at daemon start no lock of ours can be held).
 */
async function staleReason(path: string, st: Stats, ownPidIsStale: boolean, now: number): Promise<string | null> {
  const ageMs = now - st.mtimeMs;
  const oldReason = `older than ${STALE_AGE_MS / 1000} s (mtime ${st.mtime.toISOString()})`;
  if (st.isDirectory()) {
    return ageMs >= STALE_AGE_MS ? `directory lock ${oldReason}` : null;
  }
  const { pid, otherHost } = await readLock(path);
  if (otherHost !== null) return ageMs < STALE_AGE_MS ? null : `${oldReason}, held on host ${otherHost}`;
  if (pid > 0) {
    if (ownPidIsStale && pid === process.pid) return `holder pid ${pid} is this process from an earlier run`;
    if (!pidAlive(pid)) return `holder pid ${pid} is not running`;
  }
  if (ageMs < STALE_AGE_MS) return null;
  return pid > 0 ? `${oldReason} though pid ${pid} runs: never refreshed, so not its lock any more` : oldReason;
}

/** Removes a lock judged stale, unless it was replaced meanwhile. Returns true if removed. */
async function breakLock(path: string, judged: Stats): Promise<boolean> {
  let now: Stats;
  try {
    now = await fs.lstat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
  if (now.ino !== judged.ino || now.dev !== judged.dev || now.mtimeMs !== judged.mtimeMs) return false;
  try {
    if (now.isDirectory()) await fs.rmdir(path);
    else await fs.unlink(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/**
 * A lock we hold. The open handle pins the lock's inode: no other file can get its number
 * while we hold it, so comparing inode numbers tells reliably whether the lock at the path
 * is still ours. Touching goes through the handle, so it never refreshes someone else's lock.
 */
class HeldDotlock implements Dotlock {
  private readonly timer: Timer;
  private released = false;

  constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    /** length of the pid and host lines the lock starts with */
    private readonly pidLineLength: number,
    clock: Clock,
  ) {
    this.timer = clock
      .setInterval(() => {
        const now = new Date(clock.now());
        // a failed touch is not fatal: the next one may succeed, and release() still cleans up
        this.handle.utimes(now, now).catch(() => undefined);
      }, TOUCH_INTERVAL_MS)
      .unref();
  }

  noteCommittedSize(size: number): void {
    writeSync(this.handle.fd, appendNote(size), this.pidLineLength, 'latin1');
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.timer.cancel();
    try {
      const ours = await this.handle.stat();
      let st: Stats;
      try {
        st = await fs.lstat(this.path);
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return;
        throw err;
      }
      // never remove a lock someone else took after breaking ours
      if (st.ino !== ours.ino || st.dev !== ours.dev) return;
      try {
        await fs.unlink(this.path);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    } finally {
      await this.handle.close();
      wakeWaitersHere(this.path);
    }
  }
}

/** Tries once to link the temp file to the lock name. Returns true if we got the lock. */
async function tryLink(tempPath: string, lockPath: string): Promise<boolean> {
  let linkError: unknown = null;
  try {
    await fs.link(tempPath, lockPath);
  } catch (err) {
    linkError = err;
  }
  if (linkError === null) return true;
  // link() may report failure over NFS although it worked: nlink 2 says it did
  if ((await fs.lstat(tempPath)).nlink === 2) return true;
  if (!isErrno(linkError, 'EEXIST')) throw linkError;
  return false;
}

/** Locks this process keeps while idle, by lock path, with what lets one go (see lendWhileIdle). */
const idleLocks = new Map<string, () => Promise<void>>();
/** A lock some part of this process waits for (in acquireDotlock): kept from its first waiter to its last. */
interface Wanted {
  /** callers in acquireDotlock for it */
  waiters: number;
  /** how often this process has let go of it meanwhile (a waiter between two tries then tries again at once) */
  releases: number;
  /** its waiters asleep between two tries: woken when this process lets go of it */
  sleepers: Set<() => void>;
  /** who waits for its last waiter to be gone (whenUnwanted) */
  unwantedListeners: (() => void)[];
}

/** The locks this process waits for, by lock path. */
const wanted = new Map<string, Wanted>();

/**
 * Sleeps `ms`, or less: until this process lets go of the lock (a waiter in the same process
 * need not sleep on after, say, a POP3 update that took a second ends).
 */
function pause(clock: Clock, lock: Wanted, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const wake = (): void => {
      timer.cancel();
      lock.sleepers.delete(wake);
      resolve();
    };
    const timer = clock.setTimeout(wake, ms);
    lock.sleepers.add(wake);
  });
}

function wakeWaitersHere(lockPath: string): void {
  const lock = wanted.get(lockPath);
  if (lock === undefined) return;
  lock.releases += 1;
  for (const wake of [...lock.sleepers]) wake();
}

/** Whether another part of this process waits for this lock (its holder should let go soon). */
export function isWanted(lockPath: string): boolean {
  return wanted.has(lockPath);
}

/**
 * Resolves once nobody in this process waits for this lock: the holder that let go of it for
 * them calls this before it takes the lock again, or it would win every time (its own attempt
 * comes at once, theirs only once their sleep ends or this process wakes them) and keep them off.
 */
export function whenUnwanted(lockPath: string): Promise<void> {
  const lock = wanted.get(lockPath);
  if (lock === undefined) return Promise.resolve();
  return new Promise((resolve) => lock.unwantedListeners.push(resolve));
}

/**
 * Marks a lock this process holds as idle: another part of the process that wants it (a POP3
 * update, say) calls `letGo` first instead of waiting for it. The holder calls the returned
 * function when it uses the lock again (and letGo must then no longer release it).
 */
export function lendWhileIdle(lock: Dotlock, letGo: () => Promise<void>): () => void {
  idleLocks.set(lock.path, letGo);
  return () => {
    if (idleLocks.get(lock.path) === letGo) idleLocks.delete(lock.path);
  };
}

/**
 * Takes `<mailboxPath>.lock`, waiting with a growing delay (50 ms → 1 s) while someone else
 * holds it (a holder in this process wakes it when it lets go), breaking it if stale. Throws
 * MailboxLockedError after `timeoutMs`. A lock this process only keeps while idle is let go of
 * first.
 */
export async function acquireDotlock(mailboxPath: string, options: DotlockOptions): Promise<Dotlock> {
  const lockPath = lockPathOf(mailboxPath);
  const tempPath = `${lockPath}.${shortHostname()}.${process.pid}.${randomBytes(6).toString('hex')}`;
  const clock = options.clock ?? systemClock;
  const deadline = clock.now() + options.timeoutMs;
  /** the node whose interrupted update keeps everyone else off the mailbox (update-marker.ts) */
  let updater: string | null = null;
  // the handle stays open: it becomes the held lock's handle (see HeldDotlock)
  const handle = await fs.open(tempPath, 'wx', 0o644);
  let held = false;
  let wantedHere = wanted.get(lockPath);
  if (wantedHere === undefined) {
    wantedHere = { waiters: 0, releases: 0, sleepers: new Set(), unwantedListeners: [] };
    wanted.set(lockPath, wantedHere);
  }
  wantedHere.waiters += 1;
  try {
    // the host and node lines tell nodes sharing the spool whose pid this is (docs/formats.md)
    const pidLine = `${process.pid}\nhost ${shortHostname()}\nnode ${thisNode()}\n`;
    await handle.write(pidLine, 0, 'latin1');
    let delay = FIRST_RETRY_MS;
    for (;;) {
      const releasesBefore = wantedHere.releases;
      const idle = idleLocks.get(lockPath);
      if (idle !== undefined) {
        idleLocks.delete(lockPath);
        await idle();
      }
      if (await tryLink(tempPath, lockPath)) {
        updater = await updatingNode(mailboxPath);
        if (updater === null || updater === thisNode()) {
          held = true;
          return new HeldDotlock(lockPath, handle, pidLine.length, clock);
        }
        // another node's update of this mailbox was cut short: only that node can finish it
        await fs.unlink(lockPath);
      } else {
        let existing: Stats | null = null;
        try {
          existing = await fs.lstat(lockPath);
        } catch (err) {
          if (!isErrno(err, 'ENOENT')) throw err;
        }
        if (existing === null) continue; // released meanwhile: try again at once
        const reason = await staleReason(lockPath, existing, false, clock.now());
        if (reason !== null) await settleStaleHolder(lockPath, false, options.onStaleBroken, clock.now());
        if (reason !== null && (await breakLock(lockPath, existing))) {
          options.onStaleBroken?.({ path: lockPath, reason });
          continue;
        }
      }

      const remaining = deadline - clock.now();
      if (remaining <= 0) throw new MailboxLockedError(lockPath, options.timeoutMs, updater);
      if (wantedHere.releases !== releasesBefore) continue; // let go of here meanwhile
      await pause(clock, wantedHere, Math.min(delay, remaining));
      delay = Math.min(Math.round(delay * 1.5), MAX_RETRY_MS);
    }
  } finally {
    wantedHere.waiters -= 1;
    if (wantedHere.waiters === 0) {
      wanted.delete(lockPath);
      for (const listener of wantedHere.unwantedListeners) listener();
    }
    if (!held) await handle.close();
    await fs.unlink(tempPath).catch(() => undefined);
  }
}

/**
 * Daemon start: removes stale `*.lock` files and directories in spoolDir (dead holder pid, our
 * own pid from an earlier run, or old without a pid) and leftover temp lock files
 * (`*.lock.<host>.<pid>.<random>`) of this host whose pid is dead or our own.
 */
export async function clearStaleLocks(spoolDir: string, onBroken: StaleLockHandler): Promise<void> {
  const host = shortHostname();
  const names = await fs.readdir(spoolDir);
  for (const name of names) {
    const path = join(spoolDir, name);
    if (name.endsWith('.lock')) {
      let st: Stats;
      try {
        st = await fs.lstat(path);
      } catch (err) {
        if (isErrno(err, 'ENOENT')) continue;
        throw err;
      }
      if (!st.isFile() && !st.isDirectory()) continue;
      const reason = await staleReason(path, st, true, Date.now());
      if (reason !== null && st.isFile()) await settleStaleHolder(path, true, onBroken, Date.now());
      if (reason !== null && (await breakLock(path, st))) onBroken({ path, reason });
      continue;
    }
    const temp = /\.lock\.([^.]+)\.(\d+)\.[0-9a-f]+$/.exec(name);
    if (temp === null || temp[1] !== host) continue;
    const pid = Number.parseInt(temp[2], 10);
    if (pid > MAX_PID || (pid !== process.pid && pidAlive(pid))) continue;
    try {
      await fs.unlink(path);
      const why = pid === process.pid ? 'this process from an earlier run' : 'not running';
      onBroken({ path, reason: `temporary lock file of pid ${pid}, ${why}` });
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
}
