// One named step of the daemon's start-up: a failure says which step it was, so "cannot start"
// names the phase as well as the cause.

/** A start-up phase failed; `cause` is what it threw. */
export class StartupError extends Error {
  constructor(
    readonly phase: string,
    cause: unknown,
  ) {
    super(`start-up failed in phase "${phase}": ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'StartupError';
  }
}

/** Runs the start-up phase `name`; what it throws becomes a StartupError naming it. */
export async function phase<T>(name: string, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw new StartupError(name, err);
  }
}
