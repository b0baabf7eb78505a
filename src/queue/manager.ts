// The queue manager (Postfix's qmgr): decides which recipient of which queue entry is
// delivered when. Local recipients go to the local delivery agent, one delivery per
// mailbox at a time; failures are deferred along a retry schedule, never dropped; an entry
// leaves the queue once every recipient is delivered or has failed for good.
import type { Logger } from '../log.js';
import type { QueueEntry, QueueStore, RecipientProgress } from './store.js';

/** A delivery attempt's outcome that is final: the recipient will never succeed. */
export class PermanentDeliveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentDeliveryError';
  }
}

export interface DeliveryAgent {
  /**
   * Delivers recipient `index` of `entry`. Calls `recordAppend` once it holds the mailbox
   * lock and knows where the message will start, before writing anything.
   */
  deliver(entry: QueueEntry, index: number, recordAppend: (mailbox: string, offset: number) => Promise<void>): Promise<void>;
  /** After a crash: did the append recorded for this recipient complete? */
  wasAppended(entry: QueueEntry, index: number, mailbox: string, offset: number): Promise<boolean>;
}

export interface QueueManagerOptions {
  store: QueueStore;
  local: DeliveryAgent;
  logger: Logger;
  concurrency: number;
  /** waits between attempts for local recipients / remote recipients, in ms; the last repeats */
  localRetryMs: number[];
  remoteRetryMs: number[];
  maxLifetimeMs: number;
}

interface Job {
  entry: QueueEntry;
  index: number;
}

export class QueueManager {
  private readonly entries = new Map<string, QueueEntry>();
  private readonly ready: Job[] = [];
  private readonly deferred = new Set<Job>();
  private readonly busyMailboxes = new Set<string>();
  private readonly waitingForMailbox = new Map<string, Job[]>();
  private readonly inFlight = new Set<Promise<void>>();
  private deferTimer: NodeJS.Timeout | undefined;
  private deferTimerAt = Infinity;
  private stopping = false;

  constructor(private readonly options: QueueManagerOptions) {}

  /** Applies changed settings (SIGHUP); the next decision uses them. */
  reconfigure(settings: Partial<QueueManagerOptions>): void {
    Object.assign(this.options, settings);
  }

  /** Loads every entry left on disk, settles interrupted appends, and starts delivering. */
  async start(): Promise<void> {
    for (const entry of await this.options.store.loadAll()) {
      await this.recover(entry);
      this.add(entry);
    }
  }

  /** Hands a newly committed entry to the scheduler. */
  add(entry: QueueEntry): void {
    this.entries.set(entry.envelope.id, entry);
    entry.progress.forEach((progress, index) => {
      if (progress.state === 'pending') this.schedule({ entry, index });
    });
    if (entry.progress.every((p) => p.state !== 'pending')) void this.finish(entry);
    this.dispatch();
  }

  get size(): number {
    return this.entries.size;
  }

  /** Stops starting deliveries and waits for those in progress. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.deferTimer);
    await Promise.allSettled([...this.inFlight]);
  }

  private schedule(job: Job): void {
    const due = job.entry.progress[job.index]!.nextAttemptAt;
    if (due <= Date.now()) {
      this.ready.push(job);
      return;
    }
    this.deferred.add(job);
    if (due < this.deferTimerAt) this.armDeferTimer();
  }

  private dispatch(): void {
    while (!this.stopping && this.inFlight.size < this.options.concurrency && this.ready.length > 0) {
      const job = this.ready.shift()!;
      const mailbox = mailboxKey(job);
      if (mailbox !== undefined && this.busyMailboxes.has(mailbox)) {
        const waiting = this.waitingForMailbox.get(mailbox) ?? [];
        waiting.push(job);
        this.waitingForMailbox.set(mailbox, waiting);
        continue;
      }
      if (mailbox !== undefined) this.busyMailboxes.add(mailbox);
      const run = this.attempt(job).finally(() => {
        this.inFlight.delete(run);
        if (mailbox !== undefined) this.releaseMailbox(mailbox);
        this.dispatch();
      });
      this.inFlight.add(run);
    }
  }

  private releaseMailbox(mailbox: string): void {
    this.busyMailboxes.delete(mailbox);
    const waiting = this.waitingForMailbox.get(mailbox);
    if (!waiting) return;
    this.waitingForMailbox.delete(mailbox);
    this.ready.unshift(...waiting);
  }

  private async attempt(job: Job): Promise<void> {
    const { entry, index } = job;
    const { envelope } = entry;
    const recipient = envelope.recipients[index]!;
    const progress = entry.progress[index]!;
    const log = this.options.logger.child({ queueId: envelope.id, to: recipient.address });
    progress.attempts += 1;
    const started = Date.now();
    try {
      if (recipient.target.kind === 'remote') {
        throw new Error('4.4.0 relay to remote domains is not available yet');
      }
      await this.options.local.deliver(entry, index, async (mailbox, offset) => {
        progress.appendingAt = { mailbox, offset };
        await this.options.store.saveProgress(envelope.id, entry.progress);
      });
      progress.state = 'delivered';
      delete progress.appendingAt;
      delete progress.lastError;
      log.info({ user: recipient.target.kind === 'local' ? recipient.target.user : undefined, delay: ms(started, envelope.receivedAt), status: 'sent' }, 'delivered');
    } catch (err) {
      delete progress.appendingAt;
      progress.lastError = (err as Error).message;
      if (err instanceof PermanentDeliveryError) {
        progress.state = 'failed';
        log.warn({ status: 'bounced', reason: progress.lastError }, 'bounced');
      } else if (Date.now() - envelope.receivedAt >= this.options.maxLifetimeMs) {
        progress.state = 'failed';
        log.warn({ status: 'expired', reason: progress.lastError }, 'expired');
      } else {
        progress.nextAttemptAt = Date.now() + this.retryDelay(job, progress);
        log.info({ status: 'deferred', reason: progress.lastError, attempts: progress.attempts, nextAttemptAt: new Date(progress.nextAttemptAt).toISOString() }, 'deferred');
      }
    }
    await this.settle(job);
  }

  private retryDelay(job: Job, progress: RecipientProgress): number {
    const steps = job.entry.envelope.recipients[job.index]!.target.kind === 'remote' ? this.options.remoteRetryMs : this.options.localRetryMs;
    return steps[Math.min(progress.attempts, steps.length) - 1]!;
  }

  /** Persists the outcome and reschedules, or removes the entry once nobody is pending. */
  private async settle(job: Job): Promise<void> {
    const { entry } = job;
    if (entry.progress.every((p) => p.state !== 'pending')) {
      await this.finish(entry);
      return;
    }
    try {
      await this.options.store.saveProgress(entry.envelope.id, entry.progress);
    } catch (err) {
      this.options.logger.error({ queueId: entry.envelope.id, err }, 'cannot save queue progress');
    }
    if (entry.progress[job.index]!.state === 'pending') this.schedule(job);
  }

  private async finish(entry: QueueEntry): Promise<void> {
    this.entries.delete(entry.envelope.id);
    try {
      await this.options.store.remove(entry.envelope.id);
      this.options.logger.info({ queueId: entry.envelope.id }, 'removed');
    } catch (err) {
      this.options.logger.error({ queueId: entry.envelope.id, err }, 'cannot remove queue entry');
    }
  }

  /** An append that was in progress when the process died either completed or is redone. */
  private async recover(entry: QueueEntry): Promise<void> {
    for (const [index, progress] of entry.progress.entries()) {
      const appending = progress.appendingAt;
      if (progress.state !== 'pending' || !appending) continue;
      if (await this.options.local.wasAppended(entry, index, appending.mailbox, appending.offset)) {
        progress.state = 'delivered';
        this.options.logger.info({ queueId: entry.envelope.id, to: entry.envelope.recipients[index]!.address }, 'delivery found complete after restart');
      }
      delete progress.appendingAt;
    }
  }

  /** One timer for the earliest deferred job; rescanned only when it fires. */
  private armDeferTimer(): void {
    clearTimeout(this.deferTimer);
    this.deferTimerAt = Infinity;
    if (this.stopping || this.deferred.size === 0) return;
    for (const job of this.deferred) this.deferTimerAt = Math.min(this.deferTimerAt, job.entry.progress[job.index]!.nextAttemptAt);
    this.deferTimer = setTimeout(() => this.wakeDeferred(), Math.max(0, this.deferTimerAt - Date.now()));
  }

  private wakeDeferred(): void {
    const now = Date.now();
    for (const job of this.deferred) {
      if (job.entry.progress[job.index]!.nextAttemptAt <= now) {
        this.deferred.delete(job);
        this.ready.push(job);
      }
    }
    this.armDeferTimer();
    this.dispatch();
  }
}

function mailboxKey(job: Job): string | undefined {
  const target = job.entry.envelope.recipients[job.index]!.target;
  return target.kind === 'local' ? target.user : undefined;
}

function ms(started: number, receivedAt: number): { total: number; attempt: number } {
  const now = Date.now();
  return { total: now - receivedAt, attempt: now - started };
}
