// When to order a certificate (README "Certificates by ACME"): at once when there is none,
// else 30 days before the current one expires; a failed order is tried again after 1 minute,
// then 2, 4, ... at most 1 hour apart, while the current certificate stays in use. Long waits
// are cut into steps of a day at most (Node's timers cannot wait 30 days; a suspended machine
// catches up), each step looking at the clock again.
import type { Clock, Timer } from '../clock.js';

export const RENEW_BEFORE_MS = 30 * 86_400_000;
export const FIRST_RETRY_MS = 60_000;
export const MAX_RETRY_MS = 3_600_000;
const MAX_STEP_MS = 86_400_000;

export interface RenewalEvents {
  /** orders a certificate; resolves with its expiry once it is in use */
  order(): Promise<Date>;
  /** an order failed; the next attempt is at `retryAt` */
  failed(err: Error, retryAt: Date): void;
  /** the next order is planned for `renewAt` */
  scheduled(renewAt: Date): void;
}

export class RenewalSchedule {
  private timer: Timer | null = null;
  private stopped = false;
  private failures = 0;

  constructor(
    private readonly clock: Clock,
    private readonly events: RenewalEvents,
  ) {}

  /** Starts with a certificate valid until `validTo` (null: none yet, order now). */
  start(validTo: Date | null): void {
    if (validTo === null) this.attempt();
    else this.planRenewal(validTo);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private planRenewal(validTo: Date): void {
    const renewAt = validTo.getTime() - RENEW_BEFORE_MS;
    this.events.scheduled(new Date(Math.max(renewAt, this.clock.now())));
    this.waitUntil(renewAt);
  }

  private waitUntil(at: number): void {
    if (this.stopped) return;
    const wait = at - this.clock.now();
    if (wait <= 0) {
      this.attempt();
      return;
    }
    this.timer = this.clock.setTimeout(() => this.waitUntil(at), Math.min(wait, MAX_STEP_MS)).unref();
  }

  private attempt(): void {
    this.timer = null;
    this.events.order().then(
      (validTo) => {
        if (this.stopped) return;
        this.failures = 0;
        this.planRenewal(validTo);
      },
      (err: Error) => {
        if (this.stopped) return;
        const retryAt = this.clock.now() + Math.min(FIRST_RETRY_MS * 2 ** this.failures, MAX_RETRY_MS);
        this.failures += 1;
        this.events.failed(err, new Date(retryAt));
        this.waitUntil(retryAt);
      },
    );
  }
}
