// src/auth/limiter.ts: at most N tasks at once, failures free their slot, a full client queue is
// refused at once, and fairness, proven by order: a fresh client's task starts after one task of
// each client already waiting, not after the whole backlog.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FairLimiter, QueueFullError } from '../../src/auth/limiter.js';

/** Tasks the test ends by hand, recording the order they start in. */
function manualTasks() {
  const started: string[] = [];
  const running = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  const task = (name: string) => () =>
    new Promise<string>((resolve, reject) => {
      started.push(name);
      running.set(name, { resolve: () => resolve(name), reject });
    });
  /** Ends the oldest running task (or the named one), then lets the next one start. */
  const finish = async (name = started.find((n) => running.has(n))!, err?: Error) => {
    const settle = running.get(name)!;
    running.delete(name);
    if (err) settle.reject(err);
    else settle.resolve();
    // the limiter hands the slot on after the task's promise settles: a few microtasks
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { started, running, task, finish };
}

test('at most N at once; a failed task frees its slot; a client in turn gets the next one', async () => {
  const limiter = new FairLimiter(2, 10);
  const { started, running, task, finish } = manualTasks();
  const results = ['a1', 'a2', 'a3', 'b1'].map((name) => limiter.run(name[0]!, task(name)));
  assert.deepEqual(started, ['a1', 'a2']);
  await finish('a1', new Error('boom'));
  await assert.rejects(results[0]!, /boom/);
  assert.deepEqual(started, ['a1', 'a2', 'a3'], 'a3 waited first');
  await finish('a2');
  assert.deepEqual(started, ['a1', 'a2', 'a3', 'b1']);
  assert.equal(running.size, 2);
  await finish();
  await finish();
  assert.deepEqual(await Promise.all(results.slice(1)), ['a2', 'a3', 'b1']);
  assert.equal(await limiter.run('c', async () => 'again'), 'again', 'every slot came back');
});

test("400 checks from 40 addresses: a fresh address's starts after one of each, not after all", async () => {
  const limiter = new FairLimiter(2, 16);
  const { started, running, task, finish } = manualTasks();
  const all: Promise<string>[] = [];
  for (let address = 0; address < 40; address++) {
    for (let n = 0; n < 10; n++) all.push(limiter.run(`10.0.0.${address}`, task(`10.0.0.${address}#${n}`)));
  }
  all.push(limiter.run('192.0.2.7', task('fresh')));
  // two run at once: the first two of 10.0.0.0; then one of each address in turn, the fresh one in its place
  while (!started.includes('fresh')) await finish();
  const position = started.indexOf('fresh');
  assert.equal(position, 2 + 40, `the fresh check started ${position + 1}th of ${all.length}`);
  assert.deepEqual(started.slice(2, 6), ['10.0.0.0#2', '10.0.0.1#0', '10.0.0.2#0', '10.0.0.3#0'], 'round robin');
  assert.ok(all.length - started.length > 350, 'most of the backlog still waits');
  while (running.size > 0) await finish();
  assert.equal((await Promise.all(all)).length, 401);
});

test('a full queue refuses at once, only for that client, and without taking a slot', async () => {
  const limiter = new FairLimiter(1, 2);
  const { started, task, finish } = manualTasks();
  const queued = ['x1', 'x2', 'x3'].map((name) => limiter.run('x', task(name)));
  const refused = limiter.run('x', task('x4'));
  await assert.rejects(refused, (err: unknown) => err instanceof QueueFullError && err.key === 'x');
  const other = limiter.run('y', task('y1'));
  assert.deepEqual(started, ['x1']);
  for (let i = 0; i < 4; i++) await finish();
  assert.deepEqual(started, ['x1', 'x2', 'y1', 'x3']);
  assert.deepEqual(await Promise.all([...queued, other]), ['x1', 'x2', 'x3', 'y1']);
});
