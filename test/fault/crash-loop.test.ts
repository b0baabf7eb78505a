// A few rounds of the crash loop (test/fault/crash-loop.ts) in every test run; the README names
// the command for a long one. The same with two daemons sharing one spool (README, "More than one node").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crashLoop } from './crash-loop.js';

test('kill -9 at random moments under SMTP and POP3 load: nothing acknowledged lost, doubled or torn', async (t) => {
  const seed = Date.now() % 100_000;
  t.diagnostic(`seed ${seed} (replay: node --import tsx test/fault/crash-loop.ts --rounds 5 --seed ${seed})`);
  const report = await crashLoop(5, seed, (line) => t.diagnostic(line));
  assert.equal(report.rounds, 5);
  assert.ok(report.acknowledged > 0, 'some mail was acknowledged before the kills');
  t.diagnostic(JSON.stringify(report));
});

// todo (it runs and reports, a failure does not fail the suite): a node killed in the middle of
// a POP3 update while the other breaks its lock and appends can leave a message twice; the
// interrupted update's journal lives in the killed node's state_dir, so the other node cannot
// finish it first (README, "More than one node").
test('two nodes on one spool, one killed while the other goes on: nothing lost, doubled or torn', {
  todo: 'a node killed mid POP3 update: the other node appends before the update is finished',
}, async (t) => {
  const seed = Date.now() % 100_000;
  t.diagnostic(`seed ${seed} (replay: node --import tsx test/fault/crash-loop.ts --rounds 3 --nodes 2 --seed ${seed})`);
  const report = await crashLoop(3, seed, (line) => t.diagnostic(line), 2);
  assert.equal(report.rounds, 3);
  assert.ok(report.acknowledged > 0, 'some mail was acknowledged before the kills');
  t.diagnostic(JSON.stringify(report));
});
