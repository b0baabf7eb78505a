// E2E: the package as a sysadmin gets it. `npm pack` of this checkout, `npm install -g` of the
// tarball into a fresh prefix, offline (the package bundles the dependency tree it was tested
// with: a fresh resolution hoists another @peculiar/asn1-schema, which breaks certificates),
// and from there only the installed `mailsrv`: init, user add, check, start, mail in over SMTP
// and through the `sendmail` link `install-links` makes, `mailq`; `man mailsrv` and
// `man mailsrv.toml` show the installed pages.
// (The tarball is packed from what `npm test` built, with --ignore-scripts: its `prepack` build
// would rewrite dist/ under the feet of the other tests; a test below checks prepack builds.)
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { localizeInitConfig, REPO_ROOT, sendRaw, startDaemon } from './harness.js';

const HOST = 'mx.pkg.test';
const packageJson = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  version: string;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  bundleDependencies: string[];
};

/** Runs a program to completion; a failure throws with its output. */
function run(command: string, args: string[], options: SpawnSyncOptions = {}): string {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 300_000, ...options });
  if (r.status !== 0)
    throw new Error(`${command} ${args.join(' ')}: exit ${r.status}\n${String(r.stdout)}\n${String(r.stderr)}`);
  return String(r.stdout);
}

test('npm pack builds a clean dist first: the prepack script removes dist and runs the build', () => {
  assert.equal(packageJson.scripts.prepack, 'rm -rf dist && npm run build');
});

// A dependency left out of the bundle is resolved from the registry at install time: the offline
// install below then works only where npm's cache happens to hold its metadata.
test('every dependency is bundled, so the package installs without the registry', () => {
  assert.deepEqual(Object.keys(packageJson.dependencies).sort(), [...packageJson.bundleDependencies].sort());
});

test('the installed package: init, user add, check, start and mail in, sendmail and mailq links', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'mailsrv-package-'));
  await chmod(root, 0o755); // the daemon's user goes through it, as through /usr/local
  t.after(() => (process.env.KEEP_E2E ? undefined : rm(root, { recursive: true, force: true })));

  const packed = run('npm', ['pack', '--ignore-scripts', '--pack-destination', root], { cwd: REPO_ROOT });
  const tarball = join(root, packed.trim().split('\n').pop()!);
  const prefix = join(root, 'prefix');
  run('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tarball], {
    cwd: root,
  });
  const mailsrv = join(prefix, 'bin', 'mailsrv');
  const installed = (...args: string[]) => run(mailsrv, args, { cwd: root });
  assert.equal(installed('--version').trim(), packageJson.version);
  // the man pages are installed where man finds them (MANPATH as /usr/local/share/man would be)
  for (const [section, page] of [
    ['5', 'mailsrv.toml'],
    ['8', 'mailsrv'],
  ] as const) {
    const shown = run('man', ['-P', 'cat', section, page], {
      env: { ...process.env, MANPATH: join(prefix, 'share', 'man'), MANWIDTH: '80', LC_ALL: 'C.UTF-8' },
    });
    assert.match(shown, new RegExp(`^${page.toUpperCase()}\\(${section}\\)`), shown);
  }

  const etc = join(root, 'etc');
  const config = join(etc, 'mailsrv.toml');
  assert.match(installed('init', '--dir', etc, '--hostname', HOST), /wrote/);
  const [mxPort] = await localizeInitConfig(config, root);
  run(mailsrv, ['user', 'add', 'alice', '--password-stdin', '-c', config], { input: 'a password\n' });
  await appendFile(join(etc, 'aliases'), 'root: alice\n');
  assert.match(installed('check', '-c', config), /is OK/);

  const daemon = await startDaemon(config, 30_000, [mailsrv]);
  t.after(() => daemon.kill9());
  const sent = await sendRaw(mxPort!, {
    from: 'someone@elsewhere.test',
    to: [`alice@${HOST}`],
    message: 'Subject: over SMTP\r\n\r\nhello\r\n',
  });
  assert.equal(sent.end?.code, 250, JSON.stringify(sent));
  await daemon.waitForLog((e) => e.msg === 'delivered' && e.user === 'alice', 10_000, 'delivered over SMTP');

  const sbin = join(root, 'sbin');
  const bin = join(root, 'bin');
  await mkdir(sbin);
  await mkdir(bin);
  const links = installed('install-links', '--sbin', sbin, '--bin', bin);
  assert.equal(links, `${join(sbin, 'sendmail')} -> ${mailsrv}\n${join(bin, 'mailq')} -> ${mailsrv}\n`);
  run(join(sbin, 'sendmail'), ['-t'], {
    input: `To: alice@${HOST}\nSubject: through the sendmail link\n\nhello\n`,
    env: { ...process.env, MAILSRV_CONFIG: config },
  });
  await daemon.waitForLogs((e) => e.msg === 'delivered' && e.user === 'alice', 2, 10_000, 'delivered via sendmail');
  assert.equal(run(join(bin, 'mailq'), [], { env: { ...process.env, MAILSRV_CONFIG: config } }), 'queue is empty\n');
  const mailbox = readFileSync(join(root, 'spool', 'alice'), 'utf8');
  assert.match(mailbox, /Subject: over SMTP/);
  assert.match(mailbox, /Subject: through the sendmail link/);

  // again: nothing to do; another MTA's sendmail is kept unless --force, which moves it aside
  assert.match(installed('install-links', '--sbin', sbin, '--bin', bin), /\(already there\)\n.*\(already there\)\n$/);
  const otherSbin = join(root, 'other-sbin');
  await mkdir(otherSbin);
  await writeFile(join(otherSbin, 'sendmail'), '#!/bin/sh\n', { mode: 0o755 });
  const refused = spawnSync(mailsrv, ['install-links', '--sbin', otherSbin, '--bin', bin], { encoding: 'utf8' });
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /sendmail exists, from another mail system\?: remove it, or run again with --force/);
  const forced = installed('install-links', '--sbin', otherSbin, '--bin', bin, '--force');
  assert.ok(forced.includes(`(the one before is now ${join(otherSbin, 'sendmail')}.before-mailsrv)`), forced);
  assert.equal(readFileSync(join(otherSbin, 'sendmail.before-mailsrv'), 'utf8'), '#!/bin/sh\n');
});
