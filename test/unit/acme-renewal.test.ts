// The ACME renewal schedule on a fake clock: an order at once without a certificate, renewal
// 30 days before expiry (waits longer than a timer can hold included), retries after 1, 2, 4
// ... minutes up to 1 hour, the count starting again after a success, nothing after stop().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIRST_RETRY_MS, MAX_RETRY_MS, RENEW_BEFORE_MS, RenewalSchedule } from '../../src/acme/renewal.js';
import { FakeClock } from '../support/fake-clock.js';

const DAY = 86_400_000;

/** Records what the schedule does; each order's outcome is settled by the test. */
class ScriptedOrders {
  orders: number[] = [];
  failures: { at: number; retryAt: number }[] = [];
  scheduled: number[] = [];
  private settle: ((outcome: Date | Error) => void) | null = null;
  private waiting: (() => void) | null = null;

  constructor(private readonly clock: FakeClock) {}

  events = {
    order: () => {
      this.orders.push(this.clock.now());
      const done = new Promise<Date>((resolve, reject) => {
        this.settle = (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome));
      });
      this.waiting?.();
      return done;
    },
    failed: (_err: Error, retryAt: Date) => this.failures.push({ at: this.clock.now(), retryAt: retryAt.getTime() }),
    scheduled: (renewAt: Date) => this.scheduled.push(renewAt.getTime()),
  };

  /** Resolves once the schedule has asked for order number `n` (1-based). */
  async ordered(n: number): Promise<void> {
    while (this.orders.length < n) await new Promise<void>((resolve) => (this.waiting = resolve));
  }

  /** Ends the order in progress; resolves once the schedule has reacted (set a timer). */
  async finish(outcome: Date | Error): Promise<void> {
    const settle = this.settle!;
    this.settle = null;
    settle(outcome);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('no certificate: an order at once; then renewal 30 days before expiry, across waits of months', async () => {
  const clock = new FakeClock();
  const script = new ScriptedOrders(clock);
  const schedule = new RenewalSchedule(clock, script.events);
  const start = clock.now();
  schedule.start(null);
  await script.ordered(1);
  assert.equal(script.orders[0], start);

  const validTo = start + 90 * DAY;
  await script.finish(new Date(validTo));
  assert.deepEqual(script.scheduled, [validTo - RENEW_BEFORE_MS]);
  // 60 days: more than a Node timer holds; the schedule wakes on the way and orders on time
  while (script.orders.length < 2) await clock.runTimer('renewal step');
  assert.equal(script.orders[1], validTo - RENEW_BEFORE_MS);
  schedule.stop();
});

test('a certificate already within 30 days of expiry is renewed at once', async () => {
  const clock = new FakeClock();
  const script = new ScriptedOrders(clock);
  const schedule = new RenewalSchedule(clock, script.events);
  schedule.start(new Date(clock.now() + 10 * DAY));
  await script.ordered(1);
  assert.equal(script.orders[0], clock.now());
  schedule.stop();
});

test('failures are retried after 1, 2, 4 ... minutes, at most 1 h apart; a success starts again at 1', async () => {
  const clock = new FakeClock();
  const script = new ScriptedOrders(clock);
  const schedule = new RenewalSchedule(clock, script.events);
  schedule.start(null);
  const waits: number[] = [];
  for (let n = 1; n <= 9; n++) {
    await script.ordered(n);
    await script.finish(new Error('ACME server down'));
    const failure = script.failures.at(-1)!;
    waits.push(failure.retryAt - failure.at);
    await clock.runTimer('retry');
  }
  const minute = FIRST_RETRY_MS;
  assert.deepEqual(
    waits,
    [1, 2, 4, 8, 16, 32, 60, 60, 60].map((m) => m * minute),
  );
  assert.equal(MAX_RETRY_MS, 60 * minute);

  await script.ordered(10);
  const validTo = clock.now() + 90 * DAY;
  await script.finish(new Date(validTo));
  while (script.orders.length < 11) await clock.runTimer('renewal step');
  await script.finish(new Error('down again'));
  const failure = script.failures.at(-1)!;
  assert.equal(failure.retryAt - failure.at, minute, 'the first retry after a success is 1 minute again');
  schedule.stop();
});

test('after stop(): no timer left, and an order in progress that ends changes nothing', async () => {
  const clock = new FakeClock();
  const script = new ScriptedOrders(clock);
  const schedule = new RenewalSchedule(clock, script.events);
  schedule.start(null);
  await script.ordered(1);
  schedule.stop();
  await script.finish(new Error('too late'));
  assert.equal(script.failures.length, 0);
  assert.equal(clock.pending, 0);

  const idle = new RenewalSchedule(clock, script.events);
  idle.start(new Date(clock.now() + 90 * DAY));
  assert.equal(clock.pending, 1);
  idle.stop();
  assert.equal(clock.pending, 0);
});
