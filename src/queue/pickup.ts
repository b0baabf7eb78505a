// The daemon's side of the drop directory (drop-dir.ts; Postfix's pickup): notices new files
// (fs.watch, plus a rescan every few seconds in case an event is missed or watching fails),
// checks each one (openDropFile), hands it to `inject`, which puts it into the queue, and
// removes the file only once `inject` has resolved: a crash in between queues the message twice,
// never loses it. A file that can never be queued is removed with a log line naming its owner;
// stale temp files of interrupted `mailsrv sendmail` runs are removed after a day (a cron job may
// write its mail slowly, with hours between lines). Such debris costs a bounded amount of work:
// at most DEBRIS_CHECKS_PER_SCAN are looked at per scan, and one found young is not looked at
// again before it can be a day old, so a local user's flood of junk files cannot keep the
// daemon busy.
import { execFile } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { lstat, opendir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { type Clock, systemClock, type Timer } from '../clock.js';
import { isErrno } from '../fsutil.js';
import type { Logger } from '../log.js';
import { countReceived } from '../metrics/metrics.js';
import { localClient } from '../message/envelope.js';
import { type Injector, NoRecipientsError } from './inject.js';
import { isDropFileName, DropFileFormatError, openDropFile, type DropFile } from './drop-dir.js';

/** Files picked up at once. */
const DEFAULT_CONCURRENCY = 4;
/** The safety net behind fs.watch. */
const DEFAULT_RESCAN_MS = 10_000;
/** Events of one burst (a temp file created, written, renamed) make one scan. */
const DEBOUNCE_MS = 50;
/** A temp file this old belongs to a `mailsrv sendmail` that died. */
const STALE_TEMP_MS = 24 * 3_600_000;
/** uid → login names remembered. */
const MAX_NAMES = 1000;
/** Debris (files that are not drop files) looked at in one scan, at most. */
const DEFAULT_DEBRIS_CHECKS_PER_SCAN = 1000;
/** Debris names remembered with the time they may be stale; beyond it the memory starts over. */
const MAX_DEBRIS_REMEMBERED = 100_000;

/** One message to put into the queue. */
export interface PickedUpMessage {
  /** the drop file's name, for logs */
  file: string;
  /** '' is the null sender */
  sender: string;
  recipients: string[];
  /** owner of the file, i.e. who ran `mailsrv sendmail` (from the file system, not the file) */
  uid: number;
  /** that uid's login name, or "uid N" when it has none */
  submittedBy: string;
  /** bytes of the message in the file (at most message_size_limit) */
  size: number;
  /** the message with CRLF line ends; readable until inject() settles */
  openMessage(): Readable;
}

/** Thrown by inject() for a message that can never be queued: the file is removed, not retried. */
export class DropFileRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DropFileRejectedError';
  }
}

export interface DropDirPickupOptions {
  /** the drop directory (statePaths(state_dir).dropDir) */
  dir: string;
  messageSizeLimit: number;
  /** queues the message (committed and fsynced) before it resolves */
  inject: (message: PickedUpMessage) => Promise<void>;
  logger: Logger;
  concurrency?: number;
  rescanMs?: number;
  /** login name of a uid; default: `getent passwd UID` */
  userName?: (uid: number) => Promise<string>;
  /** times the rescans and the age of temp files (default: the system clock) */
  clock?: Clock;
  /** debris looked at per scan (default DEFAULT_DEBRIS_CHECKS_PER_SCAN) */
  debrisChecksPerScan?: number;
}

export class DropDirPickup {
  /** files already queued that could not be removed: never queued twice (bounded by what the disk holds) */
  private readonly queuedButKept = new Set<string>();
  private watcher: FSWatcher | null = null;
  private rescanTimer: Timer | undefined;
  private debounceTimer: Timer | undefined;
  private scanning: Promise<void> | null = null;
  private scanAgain = false;
  private stopped = false;
  private readonly names = new Map<number, string>();
  /** debris found young: name → when it may be stale */
  private readonly debrisStaleAt = new Map<string, number>();
  private readonly clock: Clock;

  constructor(private readonly options: DropDirPickupOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Applies changed settings (SIGHUP); the next file checked uses them. */
  reconfigure(settings: Partial<Pick<DropDirPickupOptions, 'messageSizeLimit'>>): void {
    Object.assign(this.options, settings);
  }

  /** Starts watching and picks up what is there now (in the background); call once the queue takes entries. */
  start(): void {
    try {
      this.watcher = watch(this.options.dir, { persistent: false }, () => this.scanSoon());
      this.watcher.on('error', (err) => this.watchFailed(err));
    } catch (err) {
      this.watchFailed(err as Error);
    }
    this.rescanTimer = this.clock
      .setInterval(() => void this.scan(), this.options.rescanMs ?? DEFAULT_RESCAN_MS)
      .unref();
    void this.scan();
  }

  /**
   * Picks up every complete file in the drop directory now; resolves once they are all handled. A call
   * during a scan makes that scan run once more (a file may have arrived behind its listing).
   */
  scan(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.scanning !== null) {
      this.scanAgain = true;
      return this.scanning;
    }
    const run = async () => {
      do {
        this.scanAgain = false;
        await this.scanOnce();
      } while (this.scanAgain && !this.stopped);
    };
    this.scanning = run()
      .catch((err: Error) =>
        this.options.logger.error({ dir: this.options.dir, err: err.message }, 'cannot read the maildrop'),
      )
      .finally(() => {
        this.scanning = null;
      });
    return this.scanning;
  }

  /** Stops watching and waits for the files being picked up. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.rescanTimer?.cancel();
    this.debounceTimer?.cancel();
    await this.scanning;
  }

  private scanSoon(): void {
    if (this.debounceTimer !== undefined || this.stopped) return;
    this.debounceTimer = this.clock.setTimeout(() => {
      this.debounceTimer = undefined;
      void this.scan();
    }, DEBOUNCE_MS);
  }

  private watchFailed(err: Error): void {
    this.watcher?.close();
    this.watcher = null;
    this.options.logger.warn(
      { dir: this.options.dir, err: err.message },
      'cannot watch the maildrop; rescanning it periodically',
    );
  }

  /**
   * Lists the directory as a stream (it may hold any number of files) and handles `concurrency`
   * files at a time. Directories (a user's junk, which nothing here could remove safely) are passed over.
   */
  private async scanOnce(): Promise<void> {
    const concurrency = this.options.concurrency ?? DEFAULT_CONCURRENCY;
    const running = new Set<Promise<void>>();
    // a listing may name a file twice when the directory changes under it
    const seen = new Set<string>();
    let debrisChecks = this.options.debrisChecksPerScan ?? DEFAULT_DEBRIS_CHECKS_PER_SCAN;
    for await (const entry of await opendir(this.options.dir)) {
      if (this.stopped) break;
      if (entry.isDirectory()) continue;
      if (!isDropFileName(entry.name)) {
        const staleAt = this.debrisStaleAt.get(entry.name);
        if ((staleAt === undefined || this.clock.now() >= staleAt) && debrisChecks-- > 0)
          await this.removeIfStale(entry.name);
        continue;
      }
      if (seen.has(entry.name) || this.queuedButKept.has(entry.name)) continue;
      seen.add(entry.name);
      while (running.size >= concurrency) await Promise.race(running);
      const job: Promise<void> = this.pickUp(entry.name).finally(() => running.delete(job));
      running.add(job);
    }
    await Promise.all(running);
  }

  /** One file: check, inject, remove. Never rejects. */
  private async pickUp(name: string): Promise<void> {
    const path = join(this.options.dir, name);
    let file: DropFile;
    try {
      file = await openDropFile(path, this.options.messageSizeLimit);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return; // removed meanwhile
      if (err instanceof DropFileFormatError) return this.reject(name, err.uid ?? (await ownerOf(path)), err.message);
      this.options.logger.error({ file: name, err: (err as Error).message }, 'cannot read maildrop file; will retry');
      return;
    }
    try {
      await this.options.inject({
        file: name,
        sender: file.sender,
        recipients: file.recipients,
        uid: file.uid,
        submittedBy: await this.userName(file.uid),
        size: file.size,
        openMessage: () => file.openMessage(),
      });
    } catch (err) {
      if (err instanceof DropFileRejectedError) await this.reject(name, file.uid, err.message);
      else
        this.options.logger.error(
          { file: name, uid: file.uid, err: (err as Error).message },
          'cannot queue maildrop file; will retry',
        );
      await file.close();
      return;
    }
    try {
      await unlink(path);
    } catch (err) {
      // it is queued: whatever happens to the file, it must not be queued again
      if (!isErrno(err, 'ENOENT')) {
        this.queuedButKept.add(name);
        this.options.logger.error(
          { file: name, err: (err as Error).message },
          'queued, but cannot remove the maildrop file; ignoring it from now on',
        );
      }
    } finally {
      await file.close();
    }
  }

  private async reject(name: string, uid: number | undefined, reason: string): Promise<void> {
    try {
      await unlink(join(this.options.dir, name));
    } catch (err) {
      if (!isErrno(err, 'ENOENT'))
        this.options.logger.error(
          { file: name, uid, reason, err: (err as Error).message },
          'cannot remove rejected maildrop file',
        );
      return;
    }
    this.options.logger.warn({ file: name, uid, reason }, 'maildrop file rejected and removed');
  }

  /** Temp files of a `mailsrv sendmail` that died, and any other debris, once they are a day old. */
  private async removeIfStale(name: string): Promise<void> {
    const path = join(this.options.dir, name);
    this.debrisStaleAt.delete(name);
    try {
      const info = await lstat(path);
      if (this.clock.now() - info.mtimeMs < STALE_TEMP_MS) {
        if (this.debrisStaleAt.size >= MAX_DEBRIS_REMEMBERED) this.debrisStaleAt.clear();
        this.debrisStaleAt.set(name, info.mtimeMs + STALE_TEMP_MS);
        return;
      }
      await unlink(path);
      this.options.logger.info({ file: name, uid: info.uid }, 'stale maildrop temp file removed');
    } catch (err) {
      if (!isErrno(err, 'ENOENT'))
        this.options.logger.warn({ file: name, err: (err as Error).message }, 'cannot remove stale maildrop temp file');
    }
  }

  private async userName(uid: number): Promise<string> {
    const known = this.names.get(uid);
    if (known !== undefined) return known;
    const name = await (this.options.userName ?? loginOf)(uid);
    if (this.names.size >= MAX_NAMES) this.names.clear();
    this.names.set(uid, name);
    return name;
  }
}

/**
 * The inject() the daemon gives the pickup: routes the message and queues it through `injector`,
 * as mail submitted by the file's owner, and logs it as `queued`. A message whose recipients lead
 * nowhere can never get better: it is rejected (the file goes, with a log line).
 */
export function queueThrough(injector: Injector, logger: Logger): (message: PickedUpMessage) => Promise<void> {
  return async (message) => {
    const entry = await injector
      .inject({
        sender: message.sender,
        recipients: message.recipients,
        client: localClient(message.uid),
        source: message.openMessage(),
      })
      .catch((err: Error) => {
        throw err instanceof NoRecipientsError ? new DropFileRejectedError(err.message) : err;
      });
    logger.info(
      {
        queueId: entry.envelope.id,
        from: message.sender,
        nrcpt: entry.envelope.recipients.length,
        size: entry.size,
        uid: message.uid,
        submittedBy: message.submittedBy,
      },
      'queued',
    );
    countReceived();
  };
}

async function ownerOf(path: string): Promise<number | undefined> {
  return (await lstat(path).catch(() => null))?.uid;
}

/** The login name of `uid` through the system's name service, or "uid N". */
async function loginOf(uid: number): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)('getent', ['passwd', String(uid)], {
      timeout: 5000,
      encoding: 'utf8',
    });
    const name = stdout.split(':')[0]!;
    if (/^[a-z_][a-z0-9_.-]*\$?$/i.test(name)) return name;
  } catch {
    // no such user: the number will do
  }
  return `uid ${uid}`;
}
