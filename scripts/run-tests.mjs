// Runs every test file under test/ with node:test through tsx.
// Node 20's `node --test` takes no glob patterns, so the file list is built here.
// Two files per core run at once (eight at most): most tests wait on daemons, sockets and
// child processes rather than compute, and none of them depends on how fast the machine is.
// A test still running after 10 minutes has hung: it fails, with its name, instead of holding
// the whole run (a guard, not a speed limit: the slowest test takes about 3 minutes on a busy box).
// Usage: node scripts/run-tests.mjs [unit|e2e|path-substring...]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

function findTests(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return findTests(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const filters = process.argv.slice(2);
const files = findTests('test')
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = Math.min(8, 2 * availableParallelism());
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=600000', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
