// Password checks for accounts = "system" (README, "Using the box's Unix accounts"): the root
// helper runs PAM for a valid login whose account is a mail user. Whatever PAM costs (yescrypt
// takes tens of milliseconds) must not tell a client whether the name exists: a malformed name
// (never sent), an unknown account and one below system_min_uid (refused by the helper before PAM)
// take as long as the recent real checks took, as the decoy hash does for the users file. The
// authenticator's failure delay, counted from the start, then hides the rest.
import { setTimeout as sleep } from 'node:timers/promises';
import type { HelperVerdict } from './helper-client.js';

/** the durations the decoy follows: the last few real checks */
const SAMPLES = 16;
/** until a real check has run: about what pam_unix with yescrypt costs */
const FIRST_GUESS_MS = 50;

export interface PasswordHelper {
  authenticate(user: string, password: string, rhost: string): Promise<HelperVerdict>;
}

export class SystemPasswords {
  private readonly durations: number[] = [];

  constructor(
    private readonly helper: PasswordHelper,
    private readonly now: () => number = Date.now,
    private readonly wait: (ms: number) => Promise<unknown> = sleep,
  ) {}

  /** Whether `password` is `user`'s (null: a name that cannot be a login); rejects when the check failed. */
  async verify(user: string | null, password: string, client: string): Promise<boolean> {
    const started = this.now();
    if (user === null) {
      await this.wait(this.decoyMs());
      return false;
    }
    const verdict = await this.helper.authenticate(user, password, client);
    if (verdict.ok || verdict.checked) {
      this.record(this.now() - started);
      return verdict.ok;
    }
    await this.wait(Math.max(0, started + this.decoyMs() - this.now()));
    return false;
  }

  /** How long a real check takes now: the median of the recent ones. */
  decoyMs(): number {
    if (this.durations.length === 0) return FIRST_GUESS_MS;
    const sorted = [...this.durations].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)]!;
  }

  private record(ms: number): void {
    this.durations.push(ms);
    if (this.durations.length > SAMPLES) this.durations.shift();
  }
}
