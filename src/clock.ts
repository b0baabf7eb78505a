// Time as the parts that wait long see it: the queue's retries and lifetimes, the maildrop's
// rescan, the age of mailbox locks and of failed logins. The daemon uses the system clock;
// a test hands these parts a fake one and moves it on by minutes or days without waiting.

/** A scheduled callback. */
export interface Timer {
  /** the callback is not called (again) */
  cancel(): void;
  /** the timer alone does not keep the process alive */
  unref(): Timer;
}

export interface Clock {
  /** milliseconds since the epoch, as Date.now() */
  now(): number;
  /** calls `callback` once, `ms` from now */
  setTimeout(callback: () => void, ms: number): Timer;
  /** calls `callback` every `ms` until cancelled */
  setInterval(callback: () => void, ms: number): Timer;
}

/** Node's own timers and Date.now(). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => nodeTimer(setTimeout(callback, ms)),
  setInterval: (callback, ms) => nodeTimer(setInterval(callback, ms)),
};

function nodeTimer(timeout: NodeJS.Timeout): Timer {
  const timer: Timer = {
    cancel: () => clearTimeout(timeout),
    unref: () => {
      timeout.unref();
      return timer;
    },
  };
  return timer;
}

/** Resolves `ms` from now on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}
