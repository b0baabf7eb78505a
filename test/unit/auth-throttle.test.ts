// Unit tests for src/auth/throttle.ts: doubling per failure, the cap, success and time forget,
// the bounded table, IPv6 /64 grouping.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthThrottle, throttleKey } from '../../src/auth/throttle.js';

describe('AuthThrottle', () => {
  it('doubles the delay per failure from one address, up to the cap', () => {
    const t = new AuthThrottle({ baseDelayMs: 1000, maxDelayMs: 5000 });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => t.recordFailure('192.0.2.1')),
      [1000, 2000, 4000, 5000, 5000],
    );
    assert.equal(t.recordFailure('192.0.2.2'), 1000, 'another address starts at the base');
  });

  it('a success clears the address; failures are forgotten after a while', () => {
    let now = 0;
    const t = new AuthThrottle({ baseDelayMs: 100, forgetAfterMs: 1000, clock: { now: () => now } });
    t.recordFailure('a');
    t.recordFailure('a');
    t.recordSuccess('a');
    assert.equal(t.recordFailure('a'), 100);
    now = 999;
    assert.equal(t.recordFailure('a'), 200);
    now = 2000;
    assert.equal(t.recordFailure('a'), 100);
  });

  it('remembers at most maxEntries addresses, dropping the idle longest', () => {
    let now = 0;
    const t = new AuthThrottle({ baseDelayMs: 10, maxEntries: 3, clock: { now: () => now++ } });
    for (const a of ['1.1.1.1', '2.2.2.2', '3.3.3.3']) t.recordFailure(a);
    t.recordFailure('1.1.1.1'); // now the most recent
    t.recordFailure('4.4.4.4');
    assert.equal(t.size, 3);
    assert.equal(t.failures('2.2.2.2'), 0);
    assert.equal(t.failures('1.1.1.1'), 2);
  });

  it('a zero base delay stays zero (no NaN), even after many failures', () => {
    const t = new AuthThrottle({ baseDelayMs: 0 });
    for (let i = 0; i < 2000; i++) assert.equal(t.recordFailure('x'), 0);
  });

  it('groups IPv6 by /64 and reads IPv4-mapped addresses as IPv4', () => {
    assert.equal(throttleKey('2001:db8:1:2:3:4:5:6'), throttleKey('2001:db8:1:2::99'));
    assert.notEqual(throttleKey('2001:db8:1:2::1'), throttleKey('2001:db8:1:3::1'));
    assert.equal(throttleKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(throttleKey('::1'), '0:0:0:0::/64');
    assert.equal(throttleKey('192.0.2.7'), '192.0.2.7');
  });
});

describe('AuthThrottle lockout', () => {
  it('refuses an address for the lockout window after maxFailures, then lets it start over', () => {
    let now = 0;
    const t = new AuthThrottle({
      baseDelayMs: 10,
      maxFailures: 3,
      lockoutMs: 60_000,
      forgetAfterMs: 1000,
      clock: { now: () => now },
    });
    t.recordFailure('192.0.2.1');
    t.recordFailure('192.0.2.1');
    assert.equal(t.lockedOutFor('192.0.2.1'), 0, 'two failures: not yet');
    t.recordFailure('192.0.2.1');
    assert.equal(t.lockedOutFor('192.0.2.1'), 60_000);
    assert.equal(t.lockedOutFor('192.0.2.2'), 0, 'other addresses are not affected');
    now = 30_000; // longer than forgetAfterMs: a locked-out address is still remembered
    assert.equal(t.lockedOutFor('192.0.2.1'), 30_000);
    now = 60_000;
    assert.equal(t.lockedOutFor('192.0.2.1'), 0);
    assert.equal(t.failures('192.0.2.1'), 0, 'after the lockout the count starts over');
  });

  it('reconfigure changes the limits for addresses already counted', () => {
    const t = new AuthThrottle({ baseDelayMs: 10 });
    for (let i = 0; i < 5; i++) t.recordFailure('a');
    assert.equal(t.lockedOutFor('a'), 0, 'no lockout by default');
    t.reconfigure({ baseDelayMs: 10, maxFailures: 5, lockoutMs: 1000 });
    assert.ok(t.lockedOutFor('a') > 0);
  });
});

describe('AuthThrottle against parallel and shared-account guessing', () => {
  it('checks in progress count: no more can start than failures are left', () => {
    const t = new AuthThrottle({ baseDelayMs: 10, maxFailures: 3, lockoutMs: 60_000 });
    let started = 0;
    for (let i = 0; i < 20; i++) {
      if (t.lockedOutFor('192.0.2.1') > 0) continue;
      t.begin('192.0.2.1');
      started += 1;
    }
    assert.equal(started, 3);
    t.recordSuccess('192.0.2.1', 'alice');
    assert.equal(t.lockedOutFor('192.0.2.1'), 0, 'a finished check frees its place');
    t.abandon('192.0.2.1');
    t.recordFailure('192.0.2.1', 'bob');
    assert.equal(t.failures('192.0.2.1'), 1);
  });

  it("a success forgives that user's failures only", () => {
    const t = new AuthThrottle({ baseDelayMs: 10, maxFailures: 5, lockoutMs: 60_000 });
    for (let round = 0; round < 2; round++) {
      t.recordFailure('192.0.2.1', 'alice');
      t.recordFailure('192.0.2.1', 'alice');
      t.recordSuccess('192.0.2.1', 'bob');
    }
    assert.equal(t.failures('192.0.2.1'), 4, "bob's login does not wipe the guesses at alice");
    t.recordFailure('192.0.2.1', 'alice');
    assert.ok(t.lockedOutFor('192.0.2.1') > 0);
    const u = new AuthThrottle({ baseDelayMs: 10, maxFailures: 5, lockoutMs: 60_000 });
    u.recordFailure('192.0.2.2', 'carol');
    u.recordSuccess('192.0.2.2', 'carol');
    assert.equal(u.failures('192.0.2.2'), 0, 'a user who mistyped once starts clean');
  });
});
