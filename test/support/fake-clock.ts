// A clock for tests of the parts that take one (src/clock.ts): time stands still until the test
// moves it, and then the timers due by the new time fire in the order they fall due. A test
// waits for the code under test to set a timer (an event, not a pause), then moves time to it.
import type { Clock, Timer } from '../../src/clock.js';

interface Scheduled {
  at: number;
  /** repeats every this many ms; null: once */
  every: number | null;
  callback: () => void;
}

/** How long `waitForTimer` waits (real time) before it gives up: a test failure, not a schedule. */
const WAIT_LIMIT_MS = 10_000;

export class FakeClock implements Clock {
  private current: number;
  private readonly timers = new Set<Scheduled>();
  private readonly listeners = new Set<() => void>();

  constructor(start = Date.UTC(2026, 0, 5, 9, 0, 0)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, ms: number): Timer {
    return this.add({ at: this.current + Math.max(0, ms), every: null, callback });
  }

  setInterval(callback: () => void, ms: number): Timer {
    return this.add({ at: this.current + ms, every: Math.max(1, ms), callback });
  }

  /** Timers set and not yet fired or cancelled. */
  get pending(): number {
    return this.timers.size;
  }

  /** When the earliest pending timer falls due (undefined: none). */
  get nextDue(): number | undefined {
    return this.earliest()?.at;
  }

  /** Moves time on by `ms`, firing every timer due by then (a repeating one as often as it falls due). */
  advance(ms: number): void {
    const target = this.current + ms;
    for (let next = this.earliest(); next !== undefined && next.at <= target; next = this.earliest()) {
      this.current = next.at;
      if (next.every === null) this.timers.delete(next);
      else next.at += next.every;
      next.callback();
    }
    this.current = target;
  }

  /**
   * Resolves once a timer that `matches` is pending (at once if one is), e.g. `(at) => at > t`
   * for a timer set after time t. Rejects after a while of real time, with `what` in the error.
   */
  async waitForTimer(what: string, matches: (at: number) => boolean = () => true): Promise<number> {
    return (await this.nextTimer(what, (timer) => matches(timer.at), null))!.at;
  }

  /** Waits for a timer as waitForTimer does, then moves time to it (firing it and any due before it). */
  async runTimer(what: string, matches?: (at: number) => boolean): Promise<number> {
    const at = await this.waitForTimer(what, matches);
    this.advance(at - this.current);
    return at;
  }

  /**
   * Moves time to each one-off timer (setTimeout) as it is set, until `promise` settles; then
   * settles as it did. Repeating timers are background work, not a wait: they fire only if due
   * on the way.
   */
  async runUntilSettled<T>(promise: Promise<T>, what: string): Promise<T> {
    let settled = false;
    const markSettled = () => {
      settled = true;
    };
    const done = promise.then(markSettled, markSettled);
    for (;;) {
      const next = await this.nextTimer(what, (timer) => timer.every === null, done);
      if (settled || next === undefined) return promise;
      this.advance(next.at - this.current);
    }
  }

  /** The earliest pending timer that matches, once there is one; undefined if `until` settles first. */
  private nextTimer(
    what: string,
    matches: (timer: Scheduled) => boolean,
    until: Promise<void> | null,
  ): Promise<Scheduled | undefined> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.earliest(matches);
        if (found === undefined) return;
        done();
        resolve(found);
      };
      const limit = setTimeout(() => {
        done();
        reject(new Error(`no timer for ${what} within ${WAIT_LIMIT_MS} ms`));
      }, WAIT_LIMIT_MS);
      const done = () => {
        clearTimeout(limit);
        this.listeners.delete(check);
      };
      void until?.then(() => {
        done();
        resolve(undefined);
      });
      this.listeners.add(check);
      check();
    });
  }

  private add(scheduled: Scheduled): Timer {
    this.timers.add(scheduled);
    for (const listener of [...this.listeners]) listener();
    const timer: Timer = {
      cancel: () => void this.timers.delete(scheduled),
      unref: () => timer,
    };
    return timer;
  }

  private earliest(matches: (timer: Scheduled) => boolean = () => true): Scheduled | undefined {
    let first: Scheduled | undefined;
    for (const timer of this.timers) if (matches(timer) && (first === undefined || timer.at < first.at)) first = timer;
    return first;
  }
}
