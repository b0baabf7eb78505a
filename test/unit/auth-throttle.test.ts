// Unit tests for src/auth/throttle.ts, on a fake clock: the reply delay per user and address,
// penalties that delay (never refuse) the right password, one user's failures never weighing on
// another's logins from the same address (NAT), the address count against sprayers, the
// mynetworks exemption, checks in progress, forgiving and forgetting, the bounded table, IPv6 /64.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ADDRESS_FACTOR,
  type Admission,
  AuthThrottle,
  type PasswordCheck,
  throttleKey,
} from '../../src/auth/throttle.js';
import { FakeClock } from '../support/fake-clock.js';

const NAT = '192.0.2.1';

function admitted(admission: Admission): { waitMs: number; check: PasswordCheck } {
  assert.ok(admission.admitted, `refused: ${JSON.stringify(admission)}`);
  return admission;
}

/** A check for `user` from `address` that fails at once; returns its reply delay. */
function fail(throttle: AuthThrottle, address: string, user: string, exempt = false): number {
  return admitted(throttle.admit(address, user, exempt)).check.failed();
}

function throttle(options: Partial<ConstructorParameters<typeof AuthThrottle>[0]> = {}) {
  const clock = new FakeClock();
  const t = new AuthThrottle({ baseDelayMs: 1000, maxFailures: 3, forgetAfterMs: 60 * 60_000, clock, ...options });
  return { t, clock };
}

describe('AuthThrottle reply delays', () => {
  it('doubles per failure of one user from one address, up to the cap; other users and addresses start over', () => {
    const { t } = throttle({ maxFailures: Infinity, maxDelayMs: 5000 });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => fail(t, NAT, 'alice')),
      [1000, 2000, 4000, 5000, 5000],
    );
    assert.equal(fail(t, NAT, 'bob'), 1000, 'another user from the same address starts at the base');
    assert.equal(fail(t, '192.0.2.2', 'alice'), 1000, 'the same user from another address too');
  });

  it('a zero base delay stays zero (no NaN), even after many failures', () => {
    const { t } = throttle({ baseDelayMs: 0, maxFailures: Infinity });
    for (let i = 0; i < 2000; i++) assert.equal(fail(t, NAT, 'x'), 0);
  });
});

describe('AuthThrottle penalties: per user and address', () => {
  it("past max_failures a user's checks wait, the right password too; others behind the address do not", () => {
    const { t } = throttle();
    for (let i = 0; i < 3; i++) assert.equal(admitted(t.admit(NAT, 'alice')).waitMs, 0, 'below the limit: no wait');
    // the three checks above are still in progress: they count, so the next one waits already
    const fourth = admitted(t.admit(NAT, 'alice'));
    assert.equal(fourth.waitMs, 1000, 'at the limit: the base penalty');
    const bob = admitted(t.admit(NAT, 'bob'));
    assert.equal(bob.waitMs, 0, "alice's failures do not delay bob behind the same address (NAT)");
    bob.check.succeeded();
    fourth.check.succeeded(); // the right password, after its penalty
    assert.equal(t.failures(NAT, 'alice'), 0);
  });

  it('penalized checks start one at a time, a growing penalty apart; too far away is refused, and not counted', () => {
    const { t, clock } = throttle({ maxDelayMs: 30_000, maxWaitMs: 60_000 });
    for (let i = 0; i < 3; i++) fail(t, NAT, 'alice');
    // a flood of parallel checks: each starts a penalty after the one before, the penalty doubling
    const waits: number[] = [];
    let refusal: Admission | undefined;
    for (let i = 0; i < 10 && refusal === undefined; i++) {
      const admission = t.admit(NAT, 'alice');
      if (admission.admitted) waits.push(admission.waitMs);
      else refusal = admission;
    }
    assert.deepEqual(waits, [1000, 3000, 7000, 15_000, 31_000]);
    assert.ok(refusal !== undefined && !refusal.admitted);
    assert.equal(refusal.retryInMs, 61_000, 'its turn would come after the penalties ahead of it');
    assert.equal(t.failures(NAT, 'alice'), 3, 'a refusal is not a failure');
    // the queue moves on with time
    clock.advance(31_000);
    assert.ok(t.admit(NAT, 'alice').admitted);
  });

  it('a sprayer: each user weighs at most max_failures on the address; past 5x the limit every user waits', () => {
    const { t } = throttle();
    const limit = ADDRESS_FACTOR * 3;
    for (let i = 0; i < 7; i++) fail(t, NAT, 'alice');
    assert.equal(t.failures(NAT, 'alice'), 7);
    assert.equal(t.failures(NAT), 3, 'seven failures for alice weigh three on the address');
    const before = admitted(t.admit(NAT, 'fresh'));
    assert.equal(before.waitMs, 0);
    before.check.abandoned();
    for (let i = 3; i < limit; i++) fail(t, NAT, `user-${i}`);
    assert.equal(t.failures(NAT), limit);
    const fresh = admitted(t.admit(NAT, 'carol'));
    assert.ok(fresh.waitMs >= 1000, `a fresh user from a spraying address waits (${fresh.waitMs} ms)`);
    fresh.check.succeeded();
    assert.equal(admitted(t.admit('192.0.2.99', 'carol')).waitMs, 0, 'other addresses do not');
  });

  it('mynetworks (exempt): no address count, but each user still has theirs', () => {
    const { t } = throttle();
    for (let i = 0; i < 40; i++) fail(t, '127.0.0.1', `user-${i}`, true);
    assert.equal(t.failures('127.0.0.1'), 0, 'no address count');
    assert.equal(admitted(t.admit('127.0.0.1', 'carol', true)).waitMs, 0, 'a webmail user logs in at once');
    for (let i = 0; i < 3; i++) fail(t, '127.0.0.1', 'alice', true);
    assert.equal(admitted(t.admit('127.0.0.1', 'alice', true)).waitMs, 1000, 'guessing alice through it is slowed');
  });

  it("a success forgives that user's failures and their weight on the address, no one else's", () => {
    const { t } = throttle();
    for (let i = 0; i < 2; i++) {
      fail(t, NAT, 'alice');
      fail(t, NAT, 'bob');
    }
    admitted(t.admit(NAT, 'bob')).check.succeeded();
    assert.equal(t.failures(NAT, 'bob'), 0);
    assert.equal(t.failures(NAT, 'alice'), 2, "bob's login does not wipe the guesses at alice");
    assert.equal(t.failures(NAT), 2);
    assert.equal(fail(t, NAT, 'bob'), 1000, 'bob starts clean');
  });

  it('an abandoned check ends its place in progress without counting', () => {
    const { t } = throttle({ maxFailures: 1 });
    admitted(t.admit(NAT, 'alice')).check.abandoned();
    assert.equal(admitted(t.admit(NAT, 'alice')).waitMs, 0);
    assert.equal(t.failures(NAT, 'alice'), 0);
  });
});

describe('AuthThrottle memory', () => {
  it('counts are forgotten forget_after the last failure, a pending turn keeps one until it has come', () => {
    const { t, clock } = throttle({ forgetAfterMs: 10_000 });
    for (let i = 0; i < 3; i++) fail(t, NAT, 'alice');
    clock.advance(9_999);
    assert.equal(t.failures(NAT, 'alice'), 3);
    const waiting = admitted(t.admit(NAT, 'alice'));
    assert.equal(waiting.waitMs, 1000);
    clock.advance(1);
    assert.equal(t.failures(NAT, 'alice'), 3, 'its turn is still ahead');
    clock.advance(1000);
    waiting.check.abandoned();
    assert.equal(t.failures(NAT, 'alice'), 0);
    assert.equal(fail(t, NAT, 'alice'), 1000, 'and starts over');
  });

  it('reconfigure changes the limits for counts already kept', () => {
    const { t } = throttle({ maxFailures: Infinity });
    for (let i = 0; i < 5; i++) fail(t, NAT, 'alice');
    assert.equal(admitted(t.admit(NAT, 'bob')).waitMs, 0);
    t.reconfigure({ baseDelayMs: 10, maxFailures: 5, forgetAfterMs: 60_000 });
    assert.equal(admitted(t.admit(NAT, 'alice')).waitMs, 10);
  });

  it('remembers at most maxEntries counts, dropping the idle longest', () => {
    const { t } = throttle({ maxFailures: Infinity, maxEntries: 4 });
    for (const a of ['1.1.1.1', '2.2.2.2']) fail(t, a, 'u'); // two counts each: the user and the address
    fail(t, '1.1.1.1', 'u'); // now the most recent
    fail(t, '3.3.3.3', 'u');
    assert.equal(t.size, 4);
    assert.equal(t.failures('2.2.2.2', 'u'), 0);
    assert.equal(t.failures('1.1.1.1', 'u'), 2);
  });

  it('groups IPv6 by /64 and reads IPv4-mapped addresses as IPv4', () => {
    assert.equal(throttleKey('2001:db8:1:2:3:4:5:6'), throttleKey('2001:db8:1:2::99'));
    assert.notEqual(throttleKey('2001:db8:1:2::1'), throttleKey('2001:db8:1:3::1'));
    assert.equal(throttleKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(throttleKey('::1'), '0:0:0:0::/64');
    assert.equal(throttleKey('192.0.2.7'), '192.0.2.7');
    const { t } = throttle();
    for (let i = 0; i < 3; i++) fail(t, '2001:db8:1:2::1', 'alice');
    assert.equal(admitted(t.admit('2001:db8:1:2::ff', 'alice')).waitMs, 1000, 'the same /64');
  });
});
