// E2E: what `mailsrv sendmail` and `mailq` load (README "Performance": cron runs them often).
// A module hook lists every file Node loads; they must load their own bundled command file and
// its chunk, commander and the launcher, and nothing of the daemon (no pino, no smtp-server).
// No timing is asserted: bench/cli-start.ts measures the time.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeEnv, MAILSRV_BIN, REPO_ROOT, requireBuild } from './harness.js';

// written with writeSync: the hooks run on a thread of their own, and a process.stderr.write
// there may still be on its way when a short command exits (the last file loaded went missing)
const HOOKS = `import { writeSync } from 'node:fs';
export async function load(url, context, next) {
  if (url.startsWith('file:')) writeSync(2, 'LOADED ' + url + '\\n');
  return next(url, context);
}`;
const REGISTER = `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}));`;

/** The files (relative to the checkout) a run of bin/mailsrv with `args` loads. */
function loadedFiles(args: string[], input = ''): string[] {
  requireBuild();
  const result = spawnSync(
    process.execPath,
    ['--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`, MAILSRV_BIN, ...args],
    { input, encoding: 'utf8' },
  );
  assert.equal(result.status, 0, result.stderr);
  return [...result.stderr.matchAll(/^LOADED file:\/\/(.*)$/gm)].map((m) => m[1]!.replace(`${REPO_ROOT}/`, ''));
}

function assertOnlyTheCommand(files: string[], command: string): void {
  const packages = files.filter((f) => f.includes('node_modules/')).map((f) => f.split('node_modules/')[1]!);
  assert.deepEqual(
    [...new Set(packages.map((f) => f.split('/')[0]))],
    ['commander'],
    `only commander from node_modules (built with \`npm run build\`?): ${packages.join(', ')}`,
  );
  const own = files.filter((f) => !f.includes('node_modules/')).sort();
  const expected = [
    'bin/mailsrv',
    'dist/cli/commands.js',
    'dist/cli/main.js',
    'dist/cli/program.js',
    `dist/cli/${command}.js`,
  ].sort();
  const chunks = own.filter((f) => /^dist\/cli\/chunk-\w+\.js$/.test(f));
  assert.deepEqual(
    own.filter((f) => !chunks.includes(f) && f !== 'dist/version.js'),
    expected,
    `the launcher, main, the program, the commands table and the bundled ${command}.js only ` +
      `(built with \`npm run build\`, which bundles them?): ${own.join(', ')}`,
  );
  assert.equal(chunks.length, 1, 'one shared chunk');
}

test('mailsrv sendmail and mailq load their own bundled command file and nothing of the daemon', async (t) => {
  const env = await makeEnv();
  t.after(() => env.cleanup());
  mkdirSync(join(env.stateDir, 'maildrop'), { mode: 0o1733 });
  const message = 'Subject: cron\n\nThe nightly job ran.\n';
  assertOnlyTheCommand(loadedFiles(['sendmail', '-c', env.configPath, 'alice'], message), 'sendmail');
  assertOnlyTheCommand(loadedFiles(['queue', '-c', env.configPath]), 'queue');
});
