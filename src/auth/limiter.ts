// At most N tasks at once, shared fairly between clients. Each client (a key: its address) has
// a queue of its own, and a slot that comes free goes to the next queue in turn (round robin),
// not to the oldest task: a crowd of tasks from a few clients cannot make another client wait
// behind all of them, only behind one task of each. A queue holds at most `maxQueuedPerKey`
// waiting tasks; more are refused at once with QueueFullError. Password checks go through one,
// so a crowd of logins cannot take every libuv thread that mail delivery's fsyncs need.

/** The client's queue is full: the task was not run. */
export class QueueFullError extends Error {
  constructor(readonly key: string) {
    super(`too many tasks waiting for ${key}`);
  }
}

export class FairLimiter {
  private running = 0;
  /** the starts of waiting tasks, per key; the Map's order is the round's order (a served key goes last) */
  private readonly queues = new Map<string, (() => void)[]>();

  constructor(
    private readonly max: number,
    private readonly maxQueuedPerKey: number,
  ) {}

  /** Runs `task` for the client `key` once a slot is its turn; rejects with QueueFullError if its queue is full. */
  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    if (this.running < this.max) this.running += 1;
    else await this.wait(key);
    try {
      return await task();
    } finally {
      this.next();
    }
  }

  private wait(key: string): Promise<void> {
    const queue = this.queues.get(key) ?? [];
    if (queue.length >= this.maxQueuedPerKey) return Promise.reject(new QueueFullError(key));
    if (queue.length === 0) this.queues.set(key, queue);
    return new Promise<void>((resolve) => queue.push(resolve));
  }

  /** A slot came free: it goes to the first queue of the round, which then goes last; none waiting: it is free. */
  private next(): void {
    const first = this.queues.entries().next();
    if (first.done) {
      this.running -= 1;
      return;
    }
    const [key, queue] = first.value;
    const start = queue.shift()!;
    this.queues.delete(key);
    if (queue.length > 0) this.queues.set(key, queue);
    start();
  }
}
