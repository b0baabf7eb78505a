// The status file (state_dir/status.json, README "Monitoring"): the running daemon's
// DaemonStatus, rewritten every STATUS_INTERVAL_MS and at once on each change (ready, reload,
// stop), for `mailsrv status`. It is replaced by rename, so a reader never sees half a file;
// it is removed when the daemon stops.
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { Logger } from '../log.js';
import type { DaemonState, DaemonStatus } from './status.js';

/** How stale the sessions and queue figures of `mailsrv status` may be. */
export const STATUS_INTERVAL_MS = 5_000;

export class StatusFile {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private failing = false;

  constructor(
    private readonly path: string,
    private readonly state: DaemonState,
    private readonly logger: Logger,
  ) {}

  /** Writes it now and then every STATUS_INTERVAL_MS. */
  async start(): Promise<void> {
    this.timer = setInterval(() => void this.write(), STATUS_INTERVAL_MS);
    this.timer.unref();
    await this.write();
  }

  /** Writes the state as it is now (after the writes already under way). */
  write(): Promise<void> {
    this.writing = this.writing.then(() => this.writeNow());
    return this.writing;
  }

  /** Stops rewriting it and removes it. */
  async remove(): Promise<void> {
    clearInterval(this.timer);
    await this.writing;
    await rm(this.path, { force: true });
  }

  private async writeNow(): Promise<void> {
    const temporary = `${this.path}.tmp`;
    try {
      await writeFile(temporary, `${JSON.stringify(this.state.snapshot())}\n`, { mode: 0o644 });
      await rename(temporary, this.path);
      this.failing = false;
    } catch (err) {
      // logged once per run of failures: a full disk must not fill the log every 5 s
      if (!this.failing) this.logger.warn({ file: this.path, err: (err as Error).message }, 'cannot write status');
      this.failing = true;
    }
  }
}

/** The status a running daemon last wrote; null when there is none or it cannot be read. */
export async function readStatusFile(path: string): Promise<DaemonStatus | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as DaemonStatus;
  } catch {
    return null;
  }
}
