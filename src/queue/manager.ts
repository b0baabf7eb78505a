// The queue manager (Postfix's qmgr): decides which recipient of which queue entry is
// delivered when. Local recipients go to the local delivery agent, one delivery per
// mailbox at a time (what queued up for a busy mailbox goes in next as one batch: one lock,
// one fsync); failures are deferred along a retry schedule, never dropped; an entry leaves
// the queue once every recipient is delivered or has failed for good.
import type { Logger } from '../log.js';
import type { QueueEntry, QueueStore, RecipientProgress } from './store.js';

/** A delivery attempt's outcome that is final: the recipient will never succeed. */
export class PermanentDeliveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentDeliveryError';
  }
}

/** One recipient of one queue entry. */
export interface DeliveryJob {
  entry: QueueEntry;
  index: number;
}

export interface DeliveryAgent {
  /**
   * Delivers jobs that all go to one mailbox, in order; returns one outcome per job (null:
   * delivered). Calls `recordAppend` for a job once it holds the mailbox lock and knows
   * where the message will start, before writing it.
   */
  deliver(jobs: DeliveryJob[], recordAppend: (job: DeliveryJob, mailbox: string, offset: number) => Promise<void>): Promise<(Error | null)[]>;
  /**
   * After a crash: did the append recorded for this recipient complete? (A torn one is cut
   * off, so the redelivery leaves no partial message.)
   */
  settleInterruptedAppend(entry: QueueEntry, index: number, mailbox: string, offset: number): Promise<boolean>;
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

type Job = DeliveryJob;

/** Most messages one mailbox lock covers. */
const MAX_BATCH = 20;

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
    const corrupt = (queueId: string, err: Error) => this.options.logger.error({ queueId, err: err.message }, 'unreadable queue entry moved to queue/corrupt');
    for (const entry of await this.options.store.loadAll(corrupt)) {
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
      if (mailbox === undefined) {
        this.run(undefined, [job]);
      } else if (this.busyMailboxes.has(mailbox)) {
        const waiting = this.waitingForMailbox.get(mailbox) ?? [];
        waiting.push(job);
        this.waitingForMailbox.set(mailbox, waiting);
      } else {
        this.run(mailbox, [job]);
      }
    }
  }

  /** Delivers a batch (one mailbox, or one remote job), then records the outcomes. */
  private run(mailbox: string | undefined, jobs: Job[]): void {
    if (mailbox !== undefined) this.busyMailboxes.add(mailbox);
    const run = (async () => {
      try {
        await this.attempt(jobs);
      } finally {
        // the mailbox is free once the appends are done; recording the outcome can overlap the next batch
        if (mailbox !== undefined) this.releaseMailbox(mailbox);
      }
      await Promise.all(jobs.map((job) => this.settle(job)));
    })()
      .catch((err: Error) => {
        // a fault in the manager itself: keep the jobs, try again later
        this.options.logger.error({ err: err.message }, 'delivery attempt failed unexpectedly');
        for (const job of jobs) {
          const progress = job.entry.progress[job.index]!;
          if (progress.state !== 'pending') continue;
          progress.nextAttemptAt = Date.now() + this.retryDelay(job, progress);
          this.schedule(job);
        }
      })
      .finally(() => {
      this.inFlight.delete(run);
      this.dispatch();
    });
    this.inFlight.add(run);
  }

  /**
   * Frees a mailbox; what waited for it goes in at once as the next batch (so at most one
   * batch per mailbox runs beyond `concurrency`).
   */
  private releaseMailbox(mailbox: string): void {
    this.busyMailboxes.delete(mailbox);
    const waiting = this.waitingForMailbox.get(mailbox);
    if (!waiting || this.stopping) return;
    const batch = waiting.splice(0, MAX_BATCH);
    if (waiting.length === 0) this.waitingForMailbox.delete(mailbox);
    this.run(mailbox, batch);
  }

  private async attempt(jobs: Job[]): Promise<void> {
    const started = Date.now();
    for (const { entry, index } of jobs) entry.progress[index]!.attempts += 1;
    let outcomes: (Error | null)[];
    if (jobs.length === 1 && jobs[0]!.entry.envelope.recipients[jobs[0]!.index]!.target.kind === 'remote') {
      outcomes = [new Error('4.4.0 relay to remote domains is not available yet')];
    } else {
      outcomes = await this.options.local
        .deliver(jobs, async ({ entry, index }, mailbox, offset) => {
          entry.progress[index]!.appendingAt = { mailbox, offset };
          await this.options.store.saveProgress(entry.envelope.id, entry.progress);
        })
        .catch((err: Error) => jobs.map(() => err));
    }
    jobs.forEach((job, i) => this.record(job, outcomes[i] ?? null, started));
  }

  /** Notes one job's outcome: delivered, failed for good, expired, or deferred to a later attempt. */
  private record(job: Job, error: Error | null, started: number): void {
    const { entry, index } = job;
    const { envelope } = entry;
    const recipient = envelope.recipients[index]!;
    const progress = entry.progress[index]!;
    const log = this.options.logger.child({ queueId: envelope.id, to: recipient.address });
    delete progress.appendingAt;
    if (error === null) {
      progress.state = 'delivered';
      delete progress.lastError;
      log.info({ user: recipient.target.kind === 'local' ? recipient.target.user : undefined, delay: ms(started, envelope.receivedAt), status: 'sent' }, 'delivered');
      return;
    }
    progress.lastError = error.message;
    if (error instanceof PermanentDeliveryError) {
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
    if (!this.entries.delete(entry.envelope.id)) return; // another recipient's settle got here first
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
      const log = this.options.logger.child({ queueId: entry.envelope.id, to: entry.envelope.recipients[index]!.address });
      try {
        if (await this.options.local.settleInterruptedAppend(entry, index, appending.mailbox, appending.offset)) {
          progress.state = 'delivered';
          log.info('delivery found complete after restart');
        }
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'cannot check an interrupted delivery; delivering again');
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
