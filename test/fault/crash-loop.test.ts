// A few rounds of the crash loop (test/fault/crash-loop.ts), relaying to its test MX too, in every
// test run; the README names the command for a long one. The same with two daemons sharing one
// spool (README, "More than one node").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crashLoop } from './crash-loop.js';

test('kill -9 at random moments while receiving, relaying, in POP3: nothing acknowledged lost or torn', async (t) => {
  const seed = Date.now() % 100_000;
  t.diagnostic(`seed ${seed} (replay: node --import tsx test/fault/crash-loop.ts --rounds 5 --seed ${seed})`);
  const report = await crashLoop(5, seed, (line) => t.diagnostic(line));
  assert.equal(report.rounds, 5);
  assert.ok(report.acknowledged > 0, 'some mail was acknowledged before the kills');
  assert.ok(report.relayed > 0, 'some mail reached the test MX');
  t.diagnostic(JSON.stringify(report));
});

test('two nodes on one spool, one killed while the other goes on: nothing lost, doubled or torn', async (t) => {
  const seed = Date.now() % 100_000;
  t.diagnostic(`seed ${seed} (replay: node --import tsx test/fault/crash-loop.ts --rounds 3 --nodes 2 --seed ${seed})`);
  const report = await crashLoop(3, seed, (line) => t.diagnostic(line), 2);
  assert.equal(report.rounds, 3);
  assert.ok(report.acknowledged > 0, 'some mail was acknowledged before the kills');
  t.diagnostic(JSON.stringify(report));
});
