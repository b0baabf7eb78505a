// Group commit for mailbox appends: messages for one mailbox that arrive while a batch is being
// written wait and then go in together as the next batch (one lock, one open, one fsync for all
// of them); each caller learns its own message's outcome once the fsync that covers it is done.
// Different mailboxes are written side by side.
import { appendMessages, type AppendResult, type MailboxTarget, type MessageToAppend } from './append.js';

/** Most messages one batch (one lock, one fsync) takes. */
const MAX_BATCH = 64;

interface Waiting {
  target: MailboxTarget;
  message: MessageToAppend;
  settle: (outcome: AppendResult | Error) => void;
}

export class GroupAppender {
  /** messages waiting per mailbox path; a path is present while its batches run */
  private readonly waiting = new Map<string, Waiting[]>();

  /**
   * Appends the messages to the target mailbox, in order, in the next batch for it. Never
   * rejects: each message gets an AppendResult or the error appendMessages gave it. A batch
   * waits for the lock as long as the most impatient of its messages' targets allows.
   */
  append(target: MailboxTarget, messages: MessageToAppend[]): Promise<(AppendResult | Error)[]> {
    const path = target.mailboxPath;
    const idle = !this.waiting.has(path);
    const queue = this.waiting.get(path) ?? [];
    this.waiting.set(path, queue);
    const outcomes = messages.map((message) => new Promise<AppendResult | Error>((settle) => queue.push({ target, message, settle })));
    if (idle) void this.drain(path, queue);
    return Promise.all(outcomes);
  }

  private async drain(path: string, queue: Waiting[]): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH);
      const target = { ...batch[0]!.target, lockTimeoutMs: Math.min(...batch.map((w) => w.target.lockTimeoutMs)) };
      const outcomes = await appendMessages(
        target,
        batch.map((w) => w.message),
      ).catch((err: unknown) => batch.map(() => (err instanceof Error ? err : new Error(String(err)))));
      batch.forEach((w, i) => w.settle(outcomes[i] ?? new Error('no outcome')));
    }
    this.waiting.delete(path);
  }
}
