// Group commit for mailbox appends: messages for one mailbox that arrive while a batch is being
// written wait and then go in together as the next batch (one fsync for all of them); each
// caller learns its own message's outcome once the fsync that covers it is done. Different
// mailboxes are written side by side. A mailbox stays locked and open for a moment after its
// last batch (LINGER_MS), so a steady stream of mail pays the lock and the open once, not per
// message; anyone else in this process who wants the lock meanwhile gets it at once.
import { MailboxSession, prepareAll, type AppendResult, type MailboxTarget, type MessageToAppend } from './append.js';
import { isWanted, lendWhileIdle, whenUnwanted } from './lock.js';

/** Most messages one batch (one fsync) takes. */
const MAX_BATCH = 64;
/**
 * How long an idle mailbox stays locked and open, waiting for more mail: a stream whose messages
 * come less than this apart pays the lock and the open once (a busy mailbox's gaps are shorter),
 * and a mail reader on the box does not wait long for the lock of a delivery already done.
 */
const LINGER_MS = 10;

interface Waiting {
  target: MailboxTarget;
  message: MessageToAppend;
  settle: (outcome: AppendResult | Error) => void;
}

/** One mailbox: what waits for it, and its open session while batches run or it lingers. */
interface MailboxState {
  queue: Waiting[];
  draining: boolean;
  session: MailboxSession | null;
  /** set while the session lingers: takes the lock back from lendWhileIdle */
  reclaim: (() => void) | null;
  /** when the last batch ended (performance.now(): a clock the system time's steps do not move) */
  idleSince: number;
  /** ends the linger once the session has been idle LINGER_MS; armed while a session is open */
  lingerTimer: NodeJS.Timeout | null;
}

export class GroupAppender {
  private readonly mailboxes = new Map<string, MailboxState>();

  constructor(
    /**
     * Whether a batch of one message held in memory may be written on the event loop's own
     * thread (MailboxSession.append's `inPlace`): asked for each batch.
     */
    private readonly writeInPlace: () => boolean = () => false,
  ) {}

  /**
   * Appends the messages to the target mailbox, in order, in the next batch for it. Never
   * rejects: each message gets an AppendResult or the error appendMessages gave it. Opening the
   * mailbox waits for the lock as long as the most impatient message of the batch allows.
   */
  append(target: MailboxTarget, messages: MessageToAppend[]): Promise<(AppendResult | Error)[]> {
    return Promise.all(this.enqueue(target, messages));
  }

  /** append() of one message: its outcome. */
  appendOne(target: MailboxTarget, message: MessageToAppend): Promise<AppendResult | Error> {
    return this.enqueue(target, [message])[0]!;
  }

  /** Queues the messages for the target mailbox, all before its drain starts; their outcomes, in order. */
  private enqueue(target: MailboxTarget, messages: MessageToAppend[]): Promise<AppendResult | Error>[] {
    const path = target.mailboxPath;
    let state = this.mailboxes.get(path);
    if (state === undefined) {
      state = { queue: [], draining: false, session: null, reclaim: null, idleSince: 0, lingerTimer: null };
      this.mailboxes.set(path, state);
    }
    const queue = state.queue;
    const outcomes = messages.map(
      (message) => new Promise<AppendResult | Error>((settle) => queue.push({ target, message, settle })),
    );
    if (!state.draining) void this.drain(path, state);
    return outcomes;
  }

  /** The size of a mailbox this appender holds open (no need to stat it); null if not open. */
  knownSize(mailboxPath: string): number | null {
    return this.mailboxes.get(mailboxPath)?.session?.knownSize ?? null;
  }

  /** Closes every lingering mailbox (daemon stop). */
  async close(): Promise<void> {
    await Promise.all([...this.mailboxes.keys()].map((path) => this.closeIdle(path)));
  }

  private async drain(path: string, state: MailboxState): Promise<void> {
    state.draining = true;
    this.stopLingering(state);
    try {
      while (state.queue.length > 0) {
        // someone else in this process waits for the lock (a POP3 update): let them have a turn,
        // and take it again only once they have had it
        if (state.session !== null && isWanted(state.session.lock.path)) {
          const lockPath = state.session.lock.path;
          await this.closeSession(state);
          await whenUnwanted(lockPath);
        }
        const batch = state.queue.splice(0, MAX_BATCH);
        const outcomes = await this.appendBatch(state, batch);
        batch.forEach((w, i) => {
          w.settle(outcomes[i] ?? new Error('no outcome'));
        });
      }
    } finally {
      state.draining = false;
    }
    if (state.session === null) {
      this.mailboxes.delete(path);
      return;
    }
    state.reclaim = lendWhileIdle(state.session.lock, () => this.closeIdle(path));
    state.idleSince = performance.now();
    // one timer for the whole linger, not one per batch: when it fires early (more batches came
    // meanwhile), it waits out the rest of LINGER_MS from the last one
    state.lingerTimer ??= setTimeout(() => this.lingerOver(path, state), LINGER_MS);
  }

  private lingerOver(path: string, state: MailboxState): void {
    state.lingerTimer = null;
    if (state.draining || state.session === null) return; // the drain's end arms it again
    const idleFor = performance.now() - state.idleSince;
    if (idleFor < LINGER_MS) state.lingerTimer = setTimeout(() => this.lingerOver(path, state), LINGER_MS - idleFor);
    else void this.closeIdle(path);
  }

  private async appendBatch(state: MailboxState, batch: Waiting[]): Promise<(AppendResult | Error)[]> {
    const messages = batch.map((w) => w.message);
    const prepared = prepareAll(messages);
    if (prepared.every((p) => p instanceof Error)) return prepared as Error[];
    if (state.session === null) {
      const target = { ...batch[0]!.target, lockTimeoutMs: Math.min(...batch.map((w) => w.target.lockTimeoutMs)) };
      const opened = await MailboxSession.openFor(target, messages);
      if (!(opened instanceof MailboxSession)) return opened;
      state.session = opened;
    }
    const session = state.session;
    const outcomes = await session
      .append(messages, prepared, batch[batch.length - 1]!.target, this.writeInPlace())
      .catch((err: unknown) => batch.map(() => (err instanceof Error ? err : new Error(String(err)))));
    if (session.broken) await this.closeSession(state);
    return outcomes;
  }

  /** The lock is in use again: nobody else in the process may take it from the lingering session. */
  private stopLingering(state: MailboxState): void {
    if (state.reclaim === null) return;
    state.reclaim();
    state.reclaim = null;
  }

  /** Ends an idle mailbox's session (linger over, someone else wants the lock, or stop). */
  private async closeIdle(path: string): Promise<void> {
    const state = this.mailboxes.get(path);
    if (state === undefined || state.draining || state.session === null) return;
    this.mailboxes.delete(path);
    await this.closeSession(state);
  }

  private async closeSession(state: MailboxState): Promise<void> {
    this.stopLingering(state);
    if (state.lingerTimer !== null) clearTimeout(state.lingerTimer);
    state.lingerTimer = null;
    const session = state.session;
    state.session = null;
    await session?.close();
  }
}
