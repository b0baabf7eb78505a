// E2E: the command line around the config file: `mailsrv check` names every bad key and
// exits 1 (and checks the TLS files as the daemon loads them, their dates, names and modes, and,
// as root, what the daemon can re-read after dropping root), `mailsrv config` prints the
// effective config with defaults, `mailsrv start` refuses a bad config or a busy port with exit 1.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseToml, stringify } from 'smol-toml';
import { resolveIdentity } from '../../src/privileges.js';
import { generateSelfSigned, type SelfSignedPem } from '../../src/tls/selfsigned.js';
import {
  cannotRunAs,
  DAEMON_USER,
  DOMAIN,
  deepMerge,
  freePort,
  escapeRegex,
  HOSTNAME,
  MAILSRV_BIN,
  makeEnv,
  REPO_ROOT,
  runCli,
  startDaemon,
  withTimeout,
  type ConfigTree,
  type TestEnv,
} from './harness.js';

const DAY_MS = 86_400_000;

describe('mailsrv check / config / start with bad input', () => {
  let env: TestEnv;
  let n = 0;

  before(async () => {
    env = await makeEnv();
    // every local domain has its DKIM key: a config without one gets a warning (tested below)
    for (const domain of [DOMAIN, HOSTNAME]) {
      const keygen = runCli(['dkim', 'keygen', domain, '-c', env.configPath]);
      assert.equal(keygen.code, 0, keygen.stderr);
    }
  });
  after(async () => {
    if (env) await env.cleanup();
  });

  /** Writes a variant of the test config (deep-merged overrides, or raw TOML text) and returns its path. */
  async function variant(over: ConfigTree | string): Promise<string> {
    n += 1;
    const path = join(env.dir, `variant-${n}.toml`);
    const text = typeof over === 'string' ? over : stringify(deepMerge(env.config, over));
    await writeFile(path, text);
    return path;
  }

  function check(path: string) {
    return runCli(['check', '-c', path]);
  }

  test('a good config: exit 0 and "is OK"', () => {
    const r = check(env.configPath);
    assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stdout, /is OK/);
    assert.ok(r.stdout.includes(env.configPath), r.stdout);
  });

  test('a wrong type: exit 1, the key, the expected type and the value are named', async () => {
    const path = await variant({ smtp: { max_clients: 'x' } });
    const r = check(path);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^${escapeRegex(path)}: key 'smtp\\.max_clients': expected number, received string \\(got "x"\\)$`,
        'm',
      ),
    );
  });

  test('an unknown key, at the top and in a section: exit 1, each named', async () => {
    const path = await variant({ smtp: { bogus: 1 }, bogus_top: true });
    const r = check(path);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^${escapeRegex(path)}: unknown key 'smtp\\.bogus'$`, 'm'));
    assert.match(r.stderr, /unknown key 'bogus_top'/);
  });

  test('bad values of several kinds are all reported in one run', async () => {
    const path = await variant({
      mynetworks: ['300.1.1.0/24'],
      smtp: { listen: ['no-port-here'], max_recipients: 0 },
      delivery: { lock_timeout: 'soon' },
      relay: { retry: [] as string[] },
      log: { level: 'loud' },
      hostname: 'not a host name',
    });
    const r = check(path);
    assert.equal(r.code, 1, r.stderr);
    for (const key of [
      'mynetworks',
      'smtp.listen',
      'smtp.max_recipients',
      'delivery.lock_timeout',
      'relay.retry',
      'log.level',
      'hostname',
    ]) {
      assert.match(r.stderr, new RegExp(`key '${escapeRegex(key)}(\\.\\d+)?'`), `${key} not named in:\n${r.stderr}`);
    }
    assert.match(r.stderr, /"300\.1\.1\.0\/24"/, 'the bad value is not shown');
  });

  test('TOML syntax error: exit 1 naming the file and line', async () => {
    const path = await variant('hostname = "mx.test.local"\n[smtp\nlisten = []\n');
    const r = check(path);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${escapeRegex(path)}:2\\b`), r.stderr);
  });

  test('missing config file: exit 1 naming it and how to make one (check and the user commands alike)', () => {
    const missing = join(env.dir, 'does-not-exist.toml');
    const problem =
      `no config file ${missing}: write one with \`sudo mailsrv init\`, ` +
      'or name yours with -c FILE or $MAILSRV_CONFIG';
    const checked = check(missing);
    assert.equal(checked.code, 1);
    assert.equal(checked.stderr, `${problem}\nmailsrv check: 1 problem found\n`);
    const added = runCli(['user', 'add', 'x', '--password-stdin', '-c', missing], { input: 'p\n' });
    assert.equal(added.code, 1);
    assert.equal(added.stderr, `mailsrv: ${problem}\n`);
  });

  test('-c defaults to $MAILSRV_CONFIG', () => {
    const r = runCli(['check'], { env: { MAILSRV_CONFIG: env.configPath } });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(env.configPath), r.stdout);
  });

  test('a bad users file line: exit 1 naming file:line', async () => {
    const usersFile = join(env.dir, 'users-bad');
    const good = readFileSync(env.usersFile, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('alice:'))!;
    await writeFile(usersFile, `${good}\nBad Name!:{ARGON2ID}nothash\n`);
    const r = check(await variant({ users_file: usersFile }));
    assert.equal(r.code, 1, `stdout ${r.stdout} stderr ${r.stderr}`);
    assert.ok(r.stderr.includes(`${usersFile}:2`), `users file line not named:\n${r.stderr}`);
  });

  test('postmaster that resolves nowhere: exit 1', async () => {
    const aliasesFile = join(env.dir, 'aliases-no-postmaster');
    await writeFile(aliasesFile, 'team: alice, bob\n');
    const r = check(await variant({ aliases_file: aliasesFile }));
    assert.equal(r.code, 1, `stdout ${r.stdout} stderr ${r.stderr}`);
    assert.match(r.stderr, /postmaster/i);
  });

  test('unusable spool_dir and unreadable TLS files: exit 1 naming the keys', async () => {
    const file = join(env.dir, 'plain-file');
    await writeFile(file, 'x');
    const r = check(
      await variant({
        spool_dir: join(file, 'spool'),
        tls: { cert: join(env.dir, 'nope.pem'), key: join(env.dir, 'nope.key') },
      }),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /'spool_dir'/);
    assert.match(r.stderr, /'tls\.cert'/);
  });

  /**
   * A config variant using this certificate and key. The key is mode 0640 and, run as root,
   * belongs to the daemon's group (as `mailsrv init` makes it) unless `keyOwnedByRoot`.
   */
  async function tlsVariant(
    pem: SelfSignedPem,
    options: { key?: string; keyMode?: number; keyOwnedByRoot?: boolean } = {},
  ): Promise<{ path: string; cert: string; key: string }> {
    n += 1;
    const cert = join(env.dir, `cert-${n}.pem`);
    const key = join(env.dir, `key-${n}.pem`);
    await writeFile(cert, pem.cert);
    await writeFile(key, options.key ?? pem.key);
    await chmod(key, options.keyMode ?? 0o640);
    if (DAEMON_USER && !options.keyOwnedByRoot)
      await chown(key, 0, resolveIdentity(DAEMON_USER.user, DAEMON_USER.group).gid);
    return { path: await variant({ tls: { cert, key } }), cert, key };
  }

  test('a valid certificate for hostname and a private key: exit 0 without warnings', async () => {
    const r = check((await tlsVariant(await generateSelfSigned(HOSTNAME, 365))).path);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  test('a key that does not belong to the certificate: exit 1 naming tls.key', async () => {
    const other = await generateSelfSigned(HOSTNAME, 365);
    const { path, key } = await tlsVariant(await generateSelfSigned(HOSTNAME, 365), { key: other.key });
    const r = check(path);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^key 'tls\\.key': ${escapeRegex(key)}: does not belong to the certificate in tls\\.cert$`, 'm'),
    );
  });

  test('a certificate file without a certificate: exit 1 naming tls.cert', async () => {
    const pem = await generateSelfSigned(HOSTNAME, 365);
    const r = check((await tlsVariant({ cert: pem.key, key: pem.key })).path);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^key 'tls\.cert': .*: not a PEM certificate/m);
  });

  test('an expired certificate: exit 1 naming tls.cert', async () => {
    const r = check((await tlsVariant(await generateSelfSigned(HOSTNAME, 1, new Date(Date.now() - 10 * DAY_MS)))).path);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^key 'tls\.cert': .*: the certificate expired on \d{4}-\d\d-\d\d \d\d:\d\d UTC/m);
  });

  test('a certificate not valid yet: exit 1 naming tls.cert', async () => {
    const r = check(
      (await tlsVariant(await generateSelfSigned(HOSTNAME, 365, new Date(Date.now() + 10 * DAY_MS)))).path,
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^key 'tls\.cert': .*: the certificate is not valid before /m);
  });

  test('a certificate expiring within 30 days: a warning, exit 0', async () => {
    const r = check((await tlsVariant(await generateSelfSigned(HOSTNAME, 10))).path);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^warning: key 'tls\.cert': .*: the certificate expires on .* \(in \d days?\): renew it$/m);
    assert.match(r.stdout, /is OK \(1 warning\)/);
  });

  test('a certificate that does not name hostname: a warning naming tls.cert, exit 0', async () => {
    const r = check((await tlsVariant(await generateSelfSigned('other.example', 365))).path);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^warning: key 'tls\\.cert': .* is for DNS:other\\.example, not for hostname "${escapeRegex(HOSTNAME)}"`,
        'm',
      ),
    );
  });

  test('a private key readable by every user: exit 1 naming tls.key and the fix', async () => {
    const { path, key } = await tlsVariant(await generateSelfSigned(HOSTNAME, 365), { keyMode: 0o644 });
    const r = check(path);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^key 'tls\\.key': ${escapeRegex(key)} is readable by every user \\(mode 0644\\)` +
          `.*chmod o-rwx ${escapeRegex(key)}$`,
        'm',
      ),
    );
  });

  test('as root: root-only secrets pass (the helper re-reads them); unreadable aliases, symlinked key warn', {
    skip: !DAEMON_USER,
  }, async () => {
    const { user, group } = DAEMON_USER!;
    const hidden = join(env.dir, 'root-only');
    await mkdir(hidden, { recursive: true });
    await chmod(hidden, 0o700);
    const usersFile = join(hidden, 'users');
    const aliasesFile = join(hidden, 'aliases');
    await copyFile(env.usersFile, usersFile);
    await copyFile(env.aliasesFile, aliasesFile);
    await chmod(usersFile, 0o600);
    const { cert, key } = await tlsVariant(await generateSelfSigned(HOSTNAME, 365), {
      keyMode: 0o600,
      keyOwnedByRoot: true,
    });
    const rootOnly = check(await variant({ users_file: usersFile, tls: { cert, key } }));
    assert.equal(rootOnly.code, 0, rootOnly.stderr);
    assert.equal(rootOnly.stderr, '');

    const keyLink = join(env.dir, `key-link-${n}.pem`);
    await symlink(key, keyLink);
    const r = check(await variant({ users_file: usersFile, aliases_file: aliasesFile, tls: { cert, key: keyLink } }));
    assert.equal(r.code, 0, r.stderr);
    const who = `is not readable by user ${user}/group ${group}, as whom mailsrv re-reads it on SIGHUP`;
    assert.ok(
      r.stderr.includes(
        `warning: key 'aliases_file': ${aliasesFile} ${who}: directory ${hidden} is not searchable by them`,
      ),
      r.stderr,
    );
    assert.ok(
      r.stderr.includes(`warning: ${keyLink} leads to ${key} through a symlink, which the root helper does not follow`),
      r.stderr,
    );
    assert.match(r.stdout, /is OK \(2 warnings\)/);
  });

  test('run as a user who cannot read the users file: it says so, not "no users yet"', {
    skip: cannotRunAs(1, 1) ?? false,
  }, async () => {
    const usersFile = join(env.dir, 'users-root-only');
    await copyFile(env.usersFile, usersFile);
    await chmod(usersFile, 0o600);
    const r = spawnSync(process.execPath, [MAILSRV_BIN, 'check', '-c', await variant({ users_file: usersFile })], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      uid: 1,
      gid: 1,
      env: { PATH: process.env.PATH ?? '' },
    });
    assert.equal(r.status, 1, r.stdout);
    assert.ok(r.stderr.includes(`key 'users_file': cannot read ${usersFile}: EACCES`), r.stderr);
    assert.doesNotMatch(r.stderr, /no users yet|alias/, r.stderr);
  });

  test('a local domain without a DKIM key: a warning naming it and the command that makes one', async () => {
    const keysDir = join(env.dir, 'dkim-partial');
    await mkdir(keysDir);
    const key = join(keysDir, `${DOMAIN}.key`);
    await copyFile(join(env.dir, 'dkim', `${DOMAIN}.key`), key);
    if (DAEMON_USER) await chown(key, 0, resolveIdentity(DAEMON_USER.user, DAEMON_USER.group).gid);
    const r = check(await variant({ dkim: { keys_dir: keysDir } }));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `warning: key 'dkim.keys_dir': ${HOSTNAME} has no DKIM key (${keysDir}/${HOSTNAME}.key): its mail is sent ` +
        `unsigned and large receivers junk or refuse it; mailsrv dkim keygen ${HOSTNAME}\n`,
    );
    assert.match(r.stdout, /is OK \(1 warning\)/);
  });

  test('a DKIM key that cannot be used: exit 1 naming dkim.keys_dir, the file and why', async () => {
    const keysDir = join(env.dir, 'dkim-bad');
    await mkdir(keysDir);
    await copyFile(join(env.dir, 'dkim', `${HOSTNAME}.key`), join(keysDir, `${HOSTNAME}.key`));
    await writeFile(join(keysDir, `${DOMAIN}.key`), 'not a key\n');
    const r = check(await variant({ dkim: { keys_dir: keysDir } }));
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^key 'dkim\\.keys_dir': ${escapeRegex(keysDir)}/${DOMAIN}\\.key: not a PEM`, 'm'),
    );
  });

  test('run as root: a user that does not exist is an error naming the key', { skip: !DAEMON_USER }, async () => {
    const r = check(await variant({ user: 'no-such-user-here' }));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /key 'user': no such user "no-such-user-here"/);
  });

  test('mailsrv config prints the effective config with every default filled in', async () => {
    const r = runCli(['config', '-c', env.configPath]);
    assert.equal(r.code, 0, r.stderr);
    const cfg = parseToml(r.stdout) as Record<string, unknown>;
    assert.equal(cfg.hostname, 'mx.test.local');
    assert.deepEqual((cfg.delivery as Record<string, unknown>).retry, ['200ms']);
    const smtp = cfg.smtp as Record<string, unknown>;
    assert.equal(smtp.max_clients, 500);
    assert.equal(smtp.max_recipients, 100);
    assert.equal(smtp.vrfy, false);
    assert.deepEqual(cfg.plaintext_auth_networks, ['127.0.0.0/8', '::1/128']);
    const relay = cfg.relay as Record<string, unknown>;
    assert.deepEqual(relay.retry, ['1m', '5m', '15m', '1h']);
    assert.equal(relay.delay_warning, '4h');
    assert.equal(relay.max_queue_lifetime, '5d');

    // a config that sets almost nothing shows the documented defaults (config/mailsrv.toml)
    const minimal = await variant('hostname = "only.test"\n');
    const m = runCli(['config', '-c', minimal]);
    assert.equal(m.code, 0, m.stderr);
    const d = parseToml(m.stdout) as Record<string, unknown>;
    assert.equal(d.hostname, 'only.test');
    assert.equal(d.spool_dir, '/var/mail');
    assert.equal(d.state_dir, '/var/lib/mailsrv');
    assert.deepEqual(d.mynetworks, ['127.0.0.0/8', '::1/128']);
    assert.equal(d.message_size_limit, 10240000);
    assert.equal(d.mailbox_size_limit, 51200000);
    assert.deepEqual((d.smtp as Record<string, unknown>).listen, ['0.0.0.0:25', '[::]:25']);
    assert.deepEqual((d.smtp as Record<string, unknown>).submission, ['0.0.0.0:587']);
    assert.deepEqual((d.pop3 as Record<string, unknown>).listen, ['0.0.0.0:110']);
    assert.equal((d.log as Record<string, unknown>).level, 'info');
  });

  test('mailsrv config and start refuse a bad config with exit 1 naming the key', async () => {
    const path = await variant({ smtp: { max_clients: 'x' } });
    const c = runCli(['config', '-c', path]);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /smtp\.max_clients/);
    const s = runCli(['start', '-c', path]);
    assert.equal(s.code, 1);
    assert.match(s.stderr + s.stdout, /smtp\.max_clients/);
  });

  test('a listen address held by another program: exit 1 naming the key, the address and how to find who', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = check(await variant({ pop3: { listen: [`127.0.0.1:${port}`] } }));
      assert.equal(r.code, 1, r.stdout);
      assert.ok(
        r.stderr.includes(
          `key 'pop3.listen': 127.0.0.1:${port} is in use by another program (Postfix, exim, Dovecot?): ` +
            `see \`ss -ltnp 'sport = :${port}'\``,
        ),
        r.stderr,
      );
    } finally {
      blocker.close();
    }
    const elsewhere = check(await variant({ smtp: { submission: ['192.0.2.7:2587'] } }));
    assert.equal(elsewhere.code, 1);
    assert.ok(elsewhere.stderr.includes(`key 'smtp.submission': 192.0.2.7:2587: this host has no such address`));
    const autoconfig = check(
      await variant({
        smtp: { submission: [`127.0.0.1:${await freePort()}`] },
        pop3: { listen: [`127.0.0.1:${await freePort()}`] },
        autoconfig: { listen: ['192.0.2.7:2080'] },
      }),
    );
    assert.equal(autoconfig.code, 1, autoconfig.stdout);
    assert.ok(autoconfig.stderr.includes(`key 'autoconfig.listen': 192.0.2.7:2080: this host has no such address`));
  });

  test('start on a busy port exits 1 with an error naming the address', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const stateDir = join(env.dir, 'state-busy');
      await mkdir(stateDir, { recursive: true });
      const path = await variant({ state_dir: stateDir, smtp: { listen: [`127.0.0.1:${port}`] } });
      const started = startDaemon(path, 10_000).then(
        async (d) => {
          await d.kill9();
          return 'started';
        },
        (err: Error) => err.message,
      );
      const outcome = await withTimeout(started, 15_000, 'start did not return');
      assert.notEqual(outcome, 'started', 'the daemon became ready on a busy port');
      assert.match(outcome, /daemon exited \(code 1/, outcome);
      assert.match(outcome, new RegExp(`EADDRINUSE|${port}`), outcome);
    } finally {
      blocker.close();
    }
  });

  test('--version and --help', () => {
    const v = runCli(['--version']);
    assert.equal(v.code, 0);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(v.stdout.trim(), pkg.version);
    const h = runCli(['--help']);
    assert.equal(h.code, 0);
    for (const cmd of ['start', 'check', 'config', 'init'])
      assert.match(h.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'), h.stdout);
  });

  test('run as a program, the launcher starts node through its #! line with its V8 heap settings', () => {
    const report = 'data:text/javascript,process.stderr.write(JSON.stringify(process.execArgv))';
    const result = spawnSync(join(REPO_ROOT, 'bin/mailsrv'), ['--version'], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: `--import ${report}` },
    });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stderr), [
      '--max-semi-space-size=1',
      '--gc-memory-reducer-start-delay-ms=300000',
    ]);
  });
});
