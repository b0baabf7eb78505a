// The queue manager (Postfix's qmgr): decides which recipient of which queue entry is
// delivered when. Local recipients go to the local delivery agent, one delivery per
// mailbox at a time (what queued up for a busy mailbox goes in next as one batch: one lock,
// one fsync). Remote recipients go to the outbound agent, all recipients of a message at one
// destination in one attempt, with a cap on attempts in progress in all and per destination
// (so a dead domain holds up only its own share). Failures are deferred along a retry
// schedule, never dropped; a recipient that fails for good or outlives max_queue_lifetime is
// reported to the sender in a bounce, one that waits past delay_warning in a warning (once);
// a message that went round too many hops is bounced as a loop. An entry leaves the queue
// once every recipient is delivered or has failed and been reported.
import { type Clock, systemClock, type Timer } from '../clock.js';
import type { Logger } from '../log.js';
import { countBounced, countDeferred, countDelivered } from '../metrics/metrics.js';
import { MAX_HOPS } from '../message/hops.js';
import { describeStatus, isDelivered, permanent, temporary } from '../message/status.js';
import type { AttemptOutcome, DeliveryAgent, DeliveryJob, Notifier, RemoteAgent, RemoteAttempt } from './agents.js';
import { Fifo, MinHeap } from './collections.js';
import type { QueueEntry, QueueStore, RecipientProgress } from './store.js';

export interface QueueManagerOptions {
  store: QueueStore;
  local: DeliveryAgent;
  remote: RemoteAgent;
  notifier: Notifier;
  /** Received headers of an entry's message (a loop shows as too many); asked before mail leaves for another server */
  hops: (entry: QueueEntry) => Promise<number>;
  logger: Logger;
  /** local deliveries in progress at once */
  concurrency: number;
  /** outbound attempts in progress at once, in all and per destination */
  remoteConcurrency: number;
  destinationConcurrency: number;
  /** waits between attempts for local recipients / remote recipients, in ms; the last repeats */
  localRetryMs: number[];
  remoteRetryMs: number[];
  maxLifetimeMs: number;
  delayWarningMs: number;
  /** retries, lifetimes and warnings are timed by it (default: the system clock) */
  clock?: Clock;
}

type Job = DeliveryJob;

/** Longest setTimeout Node takes (2^31-1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;
/** How long a stop waits for deliveries in progress. */
const STOP_WAIT_MS = 20_000;
/** Recipients of one outbound transaction at most (Postfix's smtp_destination_recipient_limit). */
const MAX_RECIPIENTS_PER_TRANSACTION = 50;
/** A bounce that could not be queued is tried again after this long. */
const REPORT_RETRY_MS = 60_000;

/** Most messages one mailbox lock covers. */
const MAX_BATCH = 20;

export class QueueManager {
  private readonly entries = new Map<string, QueueEntry>();
  private readonly ready = new Fifo<Job>();
  /** remote jobs ready to go, by destination, then by entry id (in the order they became ready) */
  private readonly readyRemote = new Map<string, Map<string, Job[]>>();
  private readonly deferred = new MinHeap<Job>();
  private readonly busyMailboxes = new Set<string>();
  private readonly waitingForMailbox = new Map<string, Job[]>();
  /** outbound attempts in progress per destination */
  private readonly busyDestinations = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private localInFlight = 0;
  /** batches in flight per entry id: its failures are reported once they are all done */
  private readonly busyEntries = new Map<string, number>();
  /** the settle in progress per entry id (see settleEntry) */
  private readonly settling = new Map<string, Promise<void>>();
  private remoteInFlight = 0;
  /** entries found to be looping (too many hops), checked once per entry */
  private readonly hopChecks = new Map<string, Promise<boolean>>();
  private deferTimer: Timer | undefined;
  private deferTimerAt = Infinity;
  private stopping = false;
  private readonly clock: Clock;

  constructor(private readonly options: QueueManagerOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Applies changed settings (SIGHUP); the next decision uses them. */
  reconfigure(settings: Partial<QueueManagerOptions>): void {
    Object.assign(this.options, settings);
  }

  /** Loads every entry left on disk, settles interrupted appends, and starts delivering. */
  async start(): Promise<void> {
    const corrupt = (queueId: string, err: Error) =>
      this.options.logger.error({ queueId, err: err.message }, 'unreadable queue entry moved to queue/corrupt');
    const entries = await this.options.store.loadAll(corrupt);
    await this.settleQueuedNotices(entries);
    // every interrupted append is settled before any delivery starts: a new append could
    // otherwise land where a recovery then looks for (and cuts off) an interrupted one
    for (const entry of entries) await this.recover(entry);
    for (const entry of entries) this.add(entry);
  }

  /**
   * After a crash between queueing a notice and saving the progress of the entry it reports on:
   * the notice on disk names its entry and recipients, which count as told (no second bounce);
   * and a bounce's recipients count as failed, as it told the sender (not delivered after all
   * when an attempt the saved progress never saw is made again).
   */
  private async settleQueuedNotices(entries: QueueEntry[]): Promise<void> {
    const byId = new Map(entries.map((entry) => [entry.envelope.id, entry]));
    for (const notice of entries) {
      const origin = notice.envelope.noticeOf;
      const reported = origin === undefined ? undefined : byId.get(origin.queueId);
      if (origin === undefined || reported === undefined) continue;
      const failure = origin.kind === 'failure';
      const flag = failure ? 'notified' : 'warned';
      const unsaved = origin.indexes.filter((i) => {
        const progress = reported.progress[i];
        return progress !== undefined && (!progress[flag] || (failure && progress.state === 'pending'));
      });
      if (unsaved.length === 0) continue;
      for (const i of unsaved) {
        reported.progress[i]![flag] = true;
        if (failure) reported.progress[i]!.state = 'failed';
      }
      await this.options.store.saveProgress(origin.queueId, reported.progress);
      this.options.logger.info(
        { queueId: origin.queueId, notice: notice.envelope.id, kind: origin.kind },
        'delivery status notice was already queued',
      );
    }
  }

  /** Hands a newly committed entry to the scheduler. */
  add(entry: QueueEntry): void {
    this.entries.set(entry.envelope.id, entry);
    entry.progress.forEach((progress, index) => {
      if (progress.state === 'pending') this.schedule({ entry, index });
    });
    // nothing left to deliver (a restart after the last attempt): report what is unreported, then remove
    if (entry.progress.every((p) => p.state !== 'pending')) void this.settleEntry(entry, []);
    this.dispatch();
  }

  get size(): number {
    return this.entries.size;
  }

  /** When the oldest entry was received (ms since the epoch); null when the queue is empty. */
  oldestReceivedAt(): number | null {
    let oldest: number | null = null;
    for (const { envelope } of this.entries.values()) {
      if (oldest === null || envelope.receivedAt < oldest) oldest = envelope.receivedAt;
    }
    return oldest;
  }

  /**
   * `mailsrv queue delete` (it signals the daemon): entries whose file is gone are forgotten,
   * without a bounce. Returns how many.
   */
  async forgetDeleted(): Promise<number> {
    let forgotten = 0;
    for (const [id, entry] of this.entries) {
      if (await this.options.store.exists(id)) continue;
      if (this.entries.get(id) === entry && this.entries.delete(id)) {
        forgotten += 1;
        this.options.logger.info({ queueId: id }, 'removed by queue delete');
      }
    }
    if (forgotten > 0) {
      this.deferred.retain((job) => this.entries.get(job.entry.envelope.id) === job.entry);
      this.armDeferTimer();
    }
    return forgotten;
  }

  /** `mailsrv queue flush`: every deferred recipient is tried again now. Returns how many. */
  retryDeferredNow(): number {
    const now = this.clock.now();
    let retried = 0;
    for (const job of this.deferred.drain()) {
      job.entry.progress[job.index]!.nextAttemptAt = now;
      this.makeReady(job);
      retried += 1;
    }
    this.armDeferTimer();
    this.dispatch();
    return retried;
  }

  /**
   * Stops starting deliveries and waits for those in progress, at most `STOP_WAIT_MS`: an
   * outbound session to a slow server may take many minutes, and the queue keeps its recipient
   * for the next start (a message the server had already taken may then be sent twice, as with
   * any MTA that is stopped mid-transaction). Local appends survive a cut-off too (see recover).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.deferTimer?.cancel();
    let timer: Timer | undefined;
    const cutOff = new Promise<void>((resolve) => {
      timer = this.clock.setTimeout(resolve, STOP_WAIT_MS);
    });
    await Promise.race([Promise.allSettled([...this.inFlight]), cutOff]);
    timer?.cancel();
  }

  private schedule(job: Job): void {
    const due = job.entry.progress[job.index]!.nextAttemptAt;
    if (due <= this.clock.now()) {
      this.makeReady(job);
      return;
    }
    this.deferred.push(due, job);
    if (due < this.deferTimerAt) this.armDeferTimer();
  }

  private makeReady(job: Job): void {
    if (!isRemote(job)) {
      this.ready.push(job);
      return;
    }
    const destination = this.options.remote.destinationOf(recipientOf(job).address);
    const byEntry = this.readyRemote.get(destination) ?? new Map<string, Job[]>();
    this.readyRemote.set(destination, byEntry);
    const id = job.entry.envelope.id;
    const jobs = byEntry.get(id) ?? [];
    byEntry.set(id, jobs);
    jobs.push(job);
  }

  private dispatch(): void {
    if (this.stopping) return;
    while (this.localInFlight < this.options.concurrency && this.ready.length > 0) {
      const job = this.ready.shift()!;
      const mailbox = mailboxKey(job);
      if (this.busyMailboxes.has(mailbox)) {
        const waiting = this.waitingForMailbox.get(mailbox) ?? [];
        waiting.push(job);
        this.waitingForMailbox.set(mailbox, waiting);
      } else {
        this.runLocal(mailbox, [job]);
      }
    }
    this.dispatchRemote();
  }

  /**
   * Starts outbound attempts while there is room: for each destination with a free slot, the
   * entry that became ready first there goes, with up to MAX_RECIPIENTS_PER_TRANSACTION of its
   * recipients at that destination. A destination at its limit is skipped, not scanned.
   */
  private dispatchRemote(): void {
    for (const [destination, byEntry] of this.readyRemote) {
      while (
        this.remoteInFlight < this.options.remoteConcurrency &&
        (this.busyDestinations.get(destination) ?? 0) < this.options.destinationConcurrency &&
        byEntry.size > 0
      ) {
        const [id, jobs] = byEntry.entries().next().value!;
        const batch = jobs.splice(0, MAX_RECIPIENTS_PER_TRANSACTION);
        if (jobs.length === 0) byEntry.delete(id);
        this.runRemote(destination, batch);
      }
      if (byEntry.size === 0) this.readyRemote.delete(destination);
      if (this.remoteInFlight >= this.options.remoteConcurrency) return;
    }
  }

  private runLocal(mailbox: string, jobs: Job[]): void {
    this.busyMailboxes.add(mailbox);
    this.localInFlight += 1;
    this.run(jobs, () => {
      // the mailbox is free once the appends are done; recording the outcome can overlap the next batch
      this.localInFlight -= 1;
      this.releaseMailbox(mailbox);
    });
  }

  private runRemote(destination: string, jobs: Job[]): void {
    this.busyDestinations.set(destination, (this.busyDestinations.get(destination) ?? 0) + 1);
    this.remoteInFlight += 1;
    // the connection counts until it is closed, which may be after the outcome is recorded
    const release = () => {
      this.remoteInFlight -= 1;
      const left = this.busyDestinations.get(destination)! - 1;
      if (left === 0) this.busyDestinations.delete(destination);
      else this.busyDestinations.set(destination, left);
      this.dispatch();
    };
    this.run(jobs, (sessionEnded) => void sessionEnded.then(release, release));
  }

  /**
   * Delivers a batch (one mailbox, or one entry's recipients at one destination), then records the
   * outcomes; `release` is told when the attempt is over, with the end of its outbound session.
   */
  private run(jobs: Job[], release: (sessionEnded: Promise<void>) => void): void {
    const entries = [...new Set(jobs.map((job) => job.entry.envelope.id))];
    for (const id of entries) this.busyEntries.set(id, (this.busyEntries.get(id) ?? 0) + 1);
    const run = (async () => {
      let sessionEnded = Promise.resolve();
      try {
        ({ sessionEnded } = await this.attempt(jobs));
      } finally {
        release(sessionEnded);
        for (const id of entries) {
          const left = this.busyEntries.get(id)! - 1;
          if (left === 0) this.busyEntries.delete(id);
          else this.busyEntries.set(id, left);
        }
      }
      await this.settle(jobs);
    })()
      .catch((err: Error) => {
        // a fault in the manager itself: keep the jobs, try again later
        this.options.logger.error({ err: err.message }, 'delivery attempt failed unexpectedly');
        for (const job of jobs) {
          const progress = job.entry.progress[job.index]!;
          if (progress.state !== 'pending' || !this.entries.has(job.entry.envelope.id)) continue;
          progress.nextAttemptAt = this.clock.now() + this.retryDelay(job, progress);
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
    this.runLocal(mailbox, batch);
  }

  /**
   * One attempt for `jobs`, its outcomes recorded; an outbound session may still be saying QUIT
   * (`sessionEnded`): what the server took is saved meanwhile, so a crash then sends nothing twice.
   */
  private async attempt(jobs: Job[]): Promise<{ sessionEnded: Promise<void> }> {
    const started = this.clock.now();
    for (const { entry, index } of jobs) {
      entry.progress[index]!.attempts += 1;
      entry.progress[index]!.lastAttemptAt = started;
    }
    const outcomes = new Map<Job, AttemptOutcome>();
    const deliverable: Job[] = [];
    for (const entry of new Set(jobs.map((job) => job.entry))) {
      const own = jobs.filter((job) => job.entry === entry);
      if (!this.entries.has(entry.envelope.id)) {
        // `mailsrv queue delete` removed it (see forgetDeleted): no attempt, no bounce
      } else if (isRemote(own[0]!) && (await this.looping(entry))) {
        const loop = permanent('5.4.6', `Too many hops (more than ${MAX_HOPS} Received headers): mail forwarding loop`);
        for (const job of own) outcomes.set(job, { status: loop });
      } else {
        deliverable.push(...own);
      }
    }
    let sessionEnded = Promise.resolve();
    if (deliverable.length > 0) {
      const results = isRemote(deliverable[0]!)
        ? await this.deliverRemote(deliverable)
        : { outcomes: await this.deliverLocal(deliverable), ended: sessionEnded };
      deliverable.forEach((job, i) => {
        outcomes.set(job, results.outcomes[i] ?? { status: temporary('4.3.0', 'no outcome') });
      });
      sessionEnded = results.ended;
    }
    for (const [job, outcome] of outcomes) this.record(job, outcome, started);
    return { sessionEnded };
  }

  private deliverRemote(jobs: Job[]): Promise<RemoteAttempt> {
    return this.options.remote.deliver(jobs).catch((err: Error) => ({
      outcomes: jobs.map(() => ({ status: temporary('4.3.0', err.message) })),
      ended: Promise.resolve(),
    }));
  }

  private async deliverLocal(jobs: Job[]): Promise<AttemptOutcome[]> {
    const statuses = await this.options.local
      .deliver(jobs, {
        appending: async ({ entry, index }, mailbox, offset) => {
          entry.progress[index]!.appendingAt = { mailbox, offset };
          await this.options.store.saveProgress(entry.envelope.id, entry.progress);
        },
        // durable before the lock can go to a POP3 update that would move the message: after a
        // crash from here on, the recipient is done, and recovery never probes a stale offset
        appended: async ({ entry, index }) => {
          const progress = entry.progress[index]!;
          progress.state = 'delivered';
          delete progress.appendingAt;
          await this.options.store.saveProgress(entry.envelope.id, entry.progress);
        },
      })
      .catch((err: Error) => jobs.map(() => temporary('4.3.0', err.message)));
    return statuses.map((status) => ({ status }));
  }

  private looping(entry: QueueEntry): Promise<boolean> {
    const id = entry.envelope.id;
    let check = this.hopChecks.get(id);
    if (check === undefined) {
      check = this.options.hops(entry).then(
        (hops) => hops > MAX_HOPS,
        () => false, // an unreadable message fails in the delivery itself, with its own error
      );
      this.hopChecks.set(id, check);
    }
    return check;
  }

  /** Notes one job's outcome: delivered, failed for good, expired, or deferred to a later attempt. */
  private record(job: Job, outcome: AttemptOutcome, started: number): void {
    const { entry, index } = job;
    const { envelope } = entry;
    const recipient = envelope.recipients[index]!;
    const progress = entry.progress[index]!;
    const { status, relay } = outcome;
    const log = this.options.logger.child({ queueId: envelope.id, to: recipient.address });
    const where = {
      user: recipient.target.kind === 'local' ? recipient.target.user : undefined,
      relay,
      reply: status.remote?.reply,
      delay: ms(this.clock.now(), started, envelope.receivedAt),
    };
    delete progress.appendingAt;
    if (relay !== undefined) progress.relay = relay;
    progress.lastStatus = status;
    if (isDelivered(status)) {
      progress.state = 'delivered';
      log.info({ ...where, status: 'sent' }, 'delivered');
      countDelivered(recipient.target.kind, this.clock.now() - envelope.receivedAt);
      return;
    }
    const reason = describeStatus(status);
    if (status.permanent) {
      progress.state = 'failed';
      log.warn({ ...where, status: 'bounced', reason }, 'bounced');
      countBounced();
    } else if (this.clock.now() - envelope.receivedAt >= this.options.maxLifetimeMs) {
      progress.state = 'failed';
      log.warn({ ...where, status: 'expired', reason }, 'expired');
      countBounced();
    } else {
      progress.nextAttemptAt = this.clock.now() + this.retryDelay(job, progress);
      log.info(
        {
          ...where,
          status: 'deferred',
          reason,
          attempts: progress.attempts,
          nextAttemptAt: new Date(progress.nextAttemptAt).toISOString(),
        },
        'deferred',
      );
      countDeferred();
    }
  }

  private retryDelay(job: Job, progress: RecipientProgress): number {
    const steps =
      job.entry.envelope.recipients[job.index]!.target.kind === 'remote'
        ? this.options.remoteRetryMs
        : this.options.localRetryMs;
    return steps[Math.min(progress.attempts, steps.length) - 1]!;
  }

  /**
   * Reports what needs reporting (bounces, delay warnings), then persists the outcome and
   * reschedules, or removes the entry once nobody is pending and every failure is reported.
   */
  private async settle(jobs: Job[]): Promise<void> {
    await Promise.all(
      [...new Set(jobs.map((job) => job.entry))].map((entry) =>
        this.settleEntry(
          entry,
          jobs.filter((job) => job.entry === entry),
        ),
      ),
    );
  }

  /** Settles of one entry run one after the other, so a bounce is queued before the entry can go. */
  private settleEntry(entry: QueueEntry, jobs: Job[]): Promise<void> {
    const id = entry.envelope.id;
    const settled = (this.settling.get(id) ?? Promise.resolve()).then(() => this.settleNow(entry, jobs));
    this.settling.set(id, settled);
    const forget = () => {
      if (this.settling.get(id) === settled) this.settling.delete(id);
    };
    settled.then(forget, forget);
    return settled;
  }

  private async settleNow(entry: QueueEntry, jobs: Job[]): Promise<void> {
    if (!this.entries.has(entry.envelope.id)) return; // deleted meanwhile
    const notices = await this.report(entry);
    const unreported = this.unreported(entry);
    if (entry.progress.every((p) => p.state !== 'pending') && !unreported) {
      await this.finish(entry);
      for (const notice of notices) this.add(notice);
      return;
    }
    try {
      await this.options.store.saveProgress(entry.envelope.id, entry.progress);
    } catch (err) {
      this.options.logger.error({ queueId: entry.envelope.id, err }, 'cannot save queue progress');
    }
    // delivered only now: a crash before the save above finds them on disk (settleQueuedNotices)
    for (const notice of notices) this.add(notice);
    for (const job of jobs) if (entry.progress[job.index]!.state === 'pending') this.schedule(job);
    // a bounce that could not be queued (disk full...) is tried again; the entry waits for it
    if (unreported && !this.busyEntries.has(entry.envelope.id))
      this.clock.setTimeout(() => void this.settleEntry(entry, []), REPORT_RETRY_MS).unref();
  }

  /** Failed recipients the sender has not been told about yet (never for mail from the null sender). */
  private unreported(entry: QueueEntry): boolean {
    return entry.envelope.sender !== '' && entry.progress.some((p) => p.state === 'failed' && !p.notified);
  }

  /**
   * Sends the sender one bounce for the recipients that failed since the last report, and one
   * warning for recipients still waiting past delay_warning. While other attempts for the entry
   * are under way, failures wait for them, so one message makes one bounce, not one per
   * destination. A bounce is never bounced: mail from the null sender only logs. A notice that
   * cannot be queued is marked unsent again and retried (settleNow). Returns the notices queued,
   * for the caller to hand to the scheduler once this entry's progress is saved.
   */
  private async report(entry: QueueEntry): Promise<QueueEntry[]> {
    const notices: QueueEntry[] = [];
    if (this.busyEntries.has(entry.envelope.id)) return notices;
    const failed = entry.progress.flatMap((p, i) => (p.state === 'failed' && !p.notified ? [i] : []));
    const age = this.clock.now() - entry.envelope.receivedAt;
    const late =
      age >= this.options.delayWarningMs
        ? entry.progress.flatMap((p, i) => (p.state === 'pending' && p.attempts > 0 && !p.warned ? [i] : []))
        : [];
    const log = this.options.logger.child({ queueId: entry.envelope.id });
    for (const [indexes, kind] of [
      [failed, 'failure'],
      [late, 'delay'],
    ] as const) {
      if (indexes.length === 0) continue;
      const mark = (done: boolean) => {
        for (const i of indexes) entry.progress[i]![kind === 'failure' ? 'notified' : 'warned'] = done;
      };
      mark(true);
      if (entry.envelope.sender === '') {
        log.info({ kind, recipients: indexes.length }, 'no notice for mail from the null sender');
        continue;
      }
      try {
        notices.push(await this.options.notifier.notify(entry, indexes, kind));
      } catch (err) {
        mark(false);
        log.error({ kind, err: (err as Error).message }, 'cannot queue the delivery status notice; will try again');
      }
    }
    return notices;
  }

  private async finish(entry: QueueEntry): Promise<void> {
    if (!this.entries.delete(entry.envelope.id)) return; // another recipient's settle got here first
    this.hopChecks.delete(entry.envelope.id);
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
      const log = this.options.logger.child({
        queueId: entry.envelope.id,
        to: entry.envelope.recipients[index]!.address,
      });
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

  /** One timer, for the earliest deferred job. */
  private armDeferTimer(): void {
    this.deferTimer?.cancel();
    this.deferTimerAt = Infinity;
    if (this.stopping || this.deferred.size === 0) return;
    this.deferTimerAt = this.deferred.peekKey();
    // setTimeout takes at most 2^31-1 ms; a later due time just wakes the timer once more
    this.deferTimer = this.clock.setTimeout(
      () => this.wakeDeferred(),
      Math.min(MAX_TIMER_MS, Math.max(0, this.deferTimerAt - this.clock.now())),
    );
  }

  private wakeDeferred(): void {
    const now = this.clock.now();
    while (this.deferred.peekKey() <= now) this.makeReady(this.deferred.pop()!);
    this.armDeferTimer();
    this.dispatch();
  }
}

function recipientOf(job: Job) {
  return job.entry.envelope.recipients[job.index]!;
}

function isRemote(job: Job): boolean {
  return recipientOf(job).target.kind === 'remote';
}

function mailboxKey(job: Job): string {
  const target = recipientOf(job).target;
  return target.kind === 'local' ? target.user : '';
}

function ms(now: number, started: number, receivedAt: number): { total: number; attempt: number } {
  return { total: now - receivedAt, attempt: now - started };
}
