// The durable queue: one file per accepted message, `state_dir/queue/<id>`, holding a JSON
// envelope line and then the raw message. A message is accepted only once its file and the
// directory entry are fsynced. Per-recipient progress lives beside it in `<id>.progress`,
// replaced atomically (write + rename), so a crash never leaves a half-written record.
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { GroupedDirSync } from '../fsutil.js';
import type { Envelope, ResolvedRecipient } from '../message/envelope.js';
import { statusFromLegacyText, type DeliveryStatus } from '../message/status.js';
import { statePaths } from '../paths.js';
import { isQueueId, newQueueId } from './id.js';
import { MemoryBudget, PendingEntry as Pending } from './pending.js';

/** A message being received into the queue (or delivered without it). */
export type PendingEntry = Pending<QueueEntry>;

export type RecipientState = 'pending' | 'delivered' | 'failed';

export interface RecipientProgress {
  state: RecipientState;
  attempts: number;
  nextAttemptAt: number;
  /** what the last attempt came to */
  lastStatus?: DeliveryStatus;
  /** set just before a mailbox append, so a restart can tell whether it completed */
  appendingAt?: { mailbox: string; offset: number };
  lastAttemptAt?: number;
  /** the remote server ("host:port") of the last outbound attempt */
  relay?: string;
  /** a failure was reported to the sender (bounce) */
  notified?: boolean;
  /** the sender was warned that this recipient is delayed */
  warned?: boolean;
}

export interface QueueEntry {
  envelope: Envelope;
  progress: RecipientProgress[];
  /** where the message starts in the queue file (after the envelope line) */
  dataOffset: number;
  /** size of the message in bytes */
  size: number;
}

/** A message up to this size is received into memory (see PendingEntry). */
const IN_MEMORY_MESSAGE_LIMIT = 256 * 1024;
/** Bytes of messages being received held in memory at once, all sessions together. */
const IN_MEMORY_BUDGET = 32 * 1024 * 1024;

export class QueueStore {
  readonly dir: string;
  /** the progress save of each entry in flight (see saveProgress) */
  private readonly saving = new Map<string, Promise<void>>();
  private readonly memory = new MemoryBudget(IN_MEMORY_BUDGET);
  /** one directory fsync serves every entry renamed into place before it started */
  private readonly dirSync: GroupedDirSync;

  constructor(stateDir: string) {
    this.dir = statePaths(stateDir).queueDir;
    this.dirSync = new GroupedDirSync(this.dir);
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Starts a new entry whose envelope is known; the message follows via write(). A small message
   * stays in memory until commit() (or until it is delivered without the queue and discarded).
   */
  begin(envelope: Omit<Envelope, 'id' | 'recipients'> & { recipients: ResolvedRecipient[] }): PendingEntry {
    const id = newQueueId();
    // built field by field, not spread: the spreads here were ~8 us a message in a CPU profile
    const full: Envelope = {
      sender: envelope.sender,
      receivedAt: envelope.receivedAt,
      client: envelope.client,
      recipients: envelope.recipients.map((r, index) => ({
        address: r.address,
        target: r.target,
        deliveryId: `${id}.${index}`,
      })),
      id,
    };
    if (envelope.addedHeaders !== undefined) full.addedHeaders = envelope.addedHeaders;
    if (envelope.noticeOf !== undefined) full.noticeOf = envelope.noticeOf;
    return new Pending({
      dir: this.dir,
      envelope: full,
      memoryLimit: IN_MEMORY_MESSAGE_LIMIT,
      budget: this.memory,
      dirSync: this.dirSync,
      toEntry: ({ dataOffset, size }) => ({
        envelope: full,
        progress: full.recipients.map(() => freshProgress(full.receivedAt)),
        dataOffset,
        size,
      }),
    });
  }

  /**
   * Every entry on disk (for the manager at start); removes leftovers of interrupted receipts
   * and moves entries that cannot be read to `queue/corrupt/`.
   */
  async loadAll(onCorrupt: (id: string, err: Error) => void): Promise<QueueEntry[]> {
    const entries: QueueEntry[] = [];
    const names = await readdir(this.dir);
    const ids = new Set(names.filter(isQueueId));
    for (const name of names) {
      // a receipt cut short, or the progress of an entry whose removal a crash interrupted
      const orphanProgress = name.endsWith('.progress') && !ids.has(name.slice(0, -'.progress'.length));
      if (name.endsWith('.tmp') || name.endsWith('.progress.new') || orphanProgress) {
        await rm(join(this.dir, name), { force: true });
        continue;
      }
      if (!isQueueId(name)) continue;
      try {
        entries.push(await this.load(name));
      } catch (err) {
        // one unreadable entry must not keep the daemon from starting: set it aside for a human
        await mkdir(join(this.dir, 'corrupt'), { recursive: true, mode: 0o700 });
        await rename(join(this.dir, name), join(this.dir, 'corrupt', name));
        onCorrupt(name, err as Error);
      }
    }
    return entries.sort((a, b) => a.envelope.receivedAt - b.envelope.receivedAt);
  }

  /**
   * Every entry on disk, oldest first, without changing anything (for `mailsrv queue`, beside a
   * running daemon): an entry removed while it is read is left out, one that cannot be read is
   * reported to `onUnreadable`.
   */
  async listEntries(onUnreadable: (id: string, err: Error) => void): Promise<QueueEntry[]> {
    const entries: QueueEntry[] = [];
    for (const name of await readdir(this.dir)) {
      if (!isQueueId(name)) continue;
      try {
        entries.push(await this.load(name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') onUnreadable(name, err as Error);
      }
    }
    return entries.sort((a, b) => a.envelope.receivedAt - b.envelope.receivedAt);
  }

  async load(id: string): Promise<QueueEntry> {
    const path = join(this.dir, id);
    const { envelope, dataOffset } = await readEnvelope(path);
    const size = (await stat(path)).size - dataOffset;
    let progress: RecipientProgress[];
    try {
      progress = (JSON.parse(await readFile(`${path}.progress`, 'utf8')) as StoredProgress[]).map(upgradeProgress);
    } catch {
      progress = envelope.recipients.map(() => freshProgress(envelope.receivedAt));
    }
    return { envelope, progress, dataOffset, size };
  }

  /** Whether the entry's file is still there (`mailsrv queue delete` removes it under the daemon). */
  async exists(id: string): Promise<boolean> {
    return stat(join(this.dir, id)).then(
      () => true,
      () => false,
    );
  }

  /** The raw message of an entry, streamed from disk. */
  openMessage(entry: QueueEntry): Readable {
    return createReadStream(join(this.dir, entry.envelope.id), { start: entry.dataOffset });
  }

  /**
   * Replaces the progress record atomically (no fsync: a lost update only risks a duplicate).
   * Saves of one entry run one after the other: deliveries to two mailboxes finish at the same
   * moment, and two writers of `<id>.progress.new` would rename each other's file away.
   */
  saveProgress(id: string, progress: RecipientProgress[]): Promise<void> {
    const save = (this.saving.get(id) ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.writeProgress(id, progress));
    this.saving.set(id, save);
    const forget = () => {
      if (this.saving.get(id) === save) this.saving.delete(id);
    };
    save.then(forget, forget);
    return save;
  }

  private async writeProgress(id: string, progress: RecipientProgress[]): Promise<void> {
    const path = join(this.dir, `${id}.progress`);
    await writeFile(`${path}.new`, JSON.stringify(progress), { mode: 0o600 });
    await rename(`${path}.new`, path);
  }

  async remove(id: string): Promise<void> {
    // a save still running would leave a progress file without its message
    await this.saving.get(id)?.catch(() => undefined);
    // the entry first: a crash in between leaves a progress file alone (loadAll removes it), never
    // an entry without its progress, which would be delivered to every recipient again
    await unlink(join(this.dir, id));
    await rm(join(this.dir, `${id}.progress`), { force: true });
  }
}

/** A progress record as any version wrote it: before DeliveryStatus, the last outcome was error text. */
type StoredProgress = RecipientProgress & { lastError?: string };

function upgradeProgress({ lastError, ...progress }: StoredProgress): RecipientProgress {
  if (lastError === undefined || progress.lastStatus !== undefined) return progress;
  return { ...progress, lastStatus: statusFromLegacyText(lastError, progress.state === 'failed') };
}

function freshProgress(now: number): RecipientProgress {
  return { state: 'pending', attempts: 0, nextAttemptAt: now };
}

/** Reads just the first line of a queue file: the JSON envelope (bounded to 1 MiB). */
async function readEnvelope(path: string): Promise<{ envelope: Envelope; dataOffset: number }> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(1024 * 1024);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const end = buffer.subarray(0, bytesRead).indexOf(10);
    if (end < 0) throw new Error(`${path}: queue file has no envelope line`);
    return { envelope: JSON.parse(buffer.subarray(0, end).toString('utf8')) as Envelope, dataOffset: end + 1 };
  } finally {
    await handle.close();
  }
}
