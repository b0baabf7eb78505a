// The limiter runs at most N tasks at once, in arrival order, and frees its slot on failure.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Limiter } from '../../src/auth/limiter.js';

test('at most N at once, in order, failures free their slot', async () => {
  const limiter = new Limiter(2);
  let active = 0;
  let peak = 0;
  const order: number[] = [];
  const task = (n: number) => async () => {
    active += 1;
    peak = Math.max(peak, active);
    order.push(n);
    await new Promise((r) => setTimeout(r, 10));
    active -= 1;
    if (n === 1) throw new Error('boom');
    return n;
  };
  const results = await Promise.allSettled([1, 2, 3, 4, 5].map((n) => limiter.run(task(n))));
  assert.equal(peak, 2);
  assert.deepEqual(order, [1, 2, 3, 4, 5]);
  assert.equal(results[0]!.status, 'rejected');
  assert.deepEqual(
    results.slice(1).map((r) => (r.status === 'fulfilled' ? r.value : null)),
    [2, 3, 4, 5],
  );
  assert.equal(await limiter.run(async () => 'again'), 'again');
});
