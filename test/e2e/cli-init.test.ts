// E2E: `mailsrv init` writes a starter installation that the real config loader, `mailsrv
// check`, openssl and the daemon accept; it never overwrites anything, so a second run changes
// nothing and a run after a file was removed writes only that file.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, type Stats, writeFileSync } from 'node:fs';
import { appendFile, chmod, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { hostname as osHostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { PAM_SERVICE_TEXT } from '../../src/accounts/pam-service.js';
import { parseUsersFile } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config/load.js';
import { parseAliases } from '../../src/delivery/aliases.js';
import { freePort, localizeInitConfig, makeEnv, runCli, startDaemon, withTimeout } from './harness.js';

const HOST = 'mail.example.test';
const FILES = ['mailsrv.toml', 'users', 'aliases', 'tls/cert.pem', 'tls/key.pem'];

describe('mailsrv init', () => {
  let root: string;
  let n = 0;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mailsrv-init-'));
    // as /etc is: the daemon's user may go through it (else check warns about every file)
    await chmod(root, 0o755);
  });
  after(async () => {
    if (root && !process.env.KEEP_E2E) await rm(root, { recursive: true, force: true });
  });

  /** A directory for one test, not created yet: init makes it. */
  function freshDir(): string {
    n += 1;
    return join(root, `etc-${n}`);
  }

  function init(dir: string, ...args: string[]) {
    return runCli(['init', '--dir', dir, '--hostname', HOST, ...args]);
  }

  function contents(dir: string): Map<string, Buffer> {
    return new Map(FILES.map((file) => [file, readFileSync(join(dir, file))]));
  }

  const mode = (info: Stats) => info.mode & 0o777;

  test('writes the five files with their modes, and says what it wrote and what comes next', () => {
    const dir = freshDir();
    const r = init(dir);
    assert.equal(r.code, 0, r.stderr);
    for (const file of FILES)
      assert.match(r.stdout, new RegExp(`^  wrote ${escapeRegex(join(dir, file))}\\b`, 'm'), r.stdout);
    assert.doesNotMatch(r.stdout, /kept existing/);
    for (const step of ['mailsrv user add', 'root: NAME', 'mailsrv dkim keygen', 'mailsrv check', 'mailsrv start'])
      assert.ok(r.stdout.includes(step), `${step} missing:\n${r.stdout}`);

    assert.equal(mode(statSync(dir)), 0o755);
    assert.equal(mode(statSync(join(dir, 'tls'))), 0o755);
    assert.equal(mode(statSync(join(dir, 'mailsrv.toml'))), 0o644);
    assert.equal(mode(statSync(join(dir, 'aliases'))), 0o644);
    assert.equal(mode(statSync(join(dir, 'tls/cert.pem'))), 0o644);
    const users = statSync(join(dir, 'users'));
    const key = statSync(join(dir, 'tls/key.pem'));
    assert.equal(mode(users), 0o600);
    assert.equal(mode(key), 0o600);
    // run as root, they are root's alone: the daemon's root helper re-reads them (SIGHUP)
    for (const info of [users, key]) {
      assert.equal(info.uid, process.getuid!());
      assert.equal(info.gid, process.getgid!());
    }
  });

  test('--accounts system: the Unix accounts, /etc/aliases and a PAM service file; no users file', () => {
    const dir = freshDir();
    const pamDir = join(root, `pam.d-${n}`);
    mkdirSync(pamDir); // as /etc/pam.d exists
    const r = init(dir, '--accounts', 'system', '--pam-dir', pamDir);
    assert.equal(r.code, 0, r.stderr);
    const pamFile = join(pamDir, 'mailsrv');
    assert.match(r.stdout, new RegExp(`^  wrote ${escapeRegex(pamFile)}\\b`, 'm'), r.stdout);
    assert.ok(r.stdout.includes('adduser NAME'), r.stdout);
    assert.equal(readFileSync(pamFile, 'utf8'), PAM_SERVICE_TEXT);
    assert.equal(mode(statSync(pamFile)), 0o644);
    assert.throws(() => statSync(join(dir, 'users')), /ENOENT/);
    assert.throws(() => statSync(join(dir, 'aliases')), /ENOENT/);
    const config = loadConfig(join(dir, 'mailsrv.toml'));
    assert.equal(config.accounts, 'system');
    assert.equal(config.system_min_uid, 1000);
    assert.equal(config.pam_service, 'mailsrv');
    assert.equal(config.aliases_file, '/etc/aliases');
    // run again: the PAM file an admin edited is kept
    writeFileSync(pamFile, 'auth required pam_unix.so\n');
    const again = init(dir, '--accounts', 'system', '--pam-dir', pamDir);
    assert.match(again.stdout, new RegExp(`kept existing ${escapeRegex(pamFile)}`), again.stdout);
    assert.equal(readFileSync(pamFile, 'utf8'), 'auth required pam_unix.so\n');
  });

  test('the config validates with the real loader and names the files init wrote', () => {
    const dir = freshDir();
    assert.equal(init(dir).code, 0);
    const config = loadConfig(join(dir, 'mailsrv.toml'));
    assert.equal(config.hostname, HOST);
    assert.deepEqual(config.domains, ['example.test']);
    assert.equal(config.users_file, join(dir, 'users'));
    assert.equal(config.aliases_file, join(dir, 'aliases'));
    assert.deepEqual(config.tls, { cert: join(dir, 'tls/cert.pem'), key: join(dir, 'tls/key.pem') });
    assert.equal(config.dkim.keys_dir, join(dir, 'dkim'));
    assert.deepEqual(config.smtp.listen, ['0.0.0.0:25', '[::]:25']);
    assert.deepEqual(config.smtp.submission, ['0.0.0.0:587', '[::]:587']);
    assert.deepEqual(config.smtp.smtps, ['0.0.0.0:465', '[::]:465']);
    assert.deepEqual(config.pop3.listen, ['0.0.0.0:110', '[::]:110']);
    assert.deepEqual(config.pop3.pop3s, ['0.0.0.0:995', '[::]:995']);
    assert.equal(config.spool_dir, '/var/mail');
    assert.equal(config.state_dir, '/var/lib/mailsrv');
    assert.equal(config.user, 'mail');
    assert.equal(config.group, 'mail');
    assert.match(
      readFileSync(join(dir, 'mailsrv.toml'), 'utf8'),
      /config\/mailsrv\.toml/,
      'the reference config is not pointed to',
    );

    const users = parseUsersFile(readFileSync(join(dir, 'users'), 'utf8'), 'users');
    assert.equal(users.users.size, 0);
    assert.deepEqual(users.problems, []);
    assert.match(readFileSync(join(dir, 'users'), 'utf8'), /^#.*mailsrv user add NAME/m);
    const aliasesText = readFileSync(join(dir, 'aliases'), 'utf8');
    const aliases = parseAliases(aliasesText, 'aliases');
    assert.deepEqual(aliases.problems, []);
    assert.deepEqual(Object.fromEntries(aliases.aliases), {
      postmaster: ['root'],
      abuse: ['postmaster'],
      'mailer-daemon': ['postmaster'],
    });
    assert.match(aliasesText, /^#.*root: NAME/m);
  });

  test('a host name without a domain part: hostname as it is, no domains; the default is the system host name', () => {
    const dir = freshDir();
    assert.equal(runCli(['init', '--dir', dir, '--hostname', 'mailhost']).code, 0);
    const config = loadConfig(join(dir, 'mailsrv.toml'));
    assert.equal(config.hostname, 'mailhost');
    assert.deepEqual(config.domains, []);

    const systemDir = freshDir();
    const r = runCli(['init', '--dir', systemDir]);
    if (r.code !== 0) {
      // a system host name that is no domain name (e.g. "build_01") is refused, naming the way out
      assert.match(r.stderr, /--hostname NAME/);
      return;
    }
    assert.equal(loadConfig(join(systemDir, 'mailsrv.toml')).hostname, osHostname().toLowerCase());
  });

  test('a bad --hostname is refused before anything is written', () => {
    const dir = freshDir();
    const r = runCli(['init', '--dir', dir, '--hostname', 'not a name']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /key 'hostname'.*--hostname NAME/);
    assert.throws(() => statSync(dir), /ENOENT/);
  });

  test('the certificate: EC P-256 signed with SHA-256, for the host name, and the key belongs to it', () => {
    const dir = freshDir();
    assert.equal(init(dir).code, 0);
    const certFile = join(dir, 'tls/cert.pem');
    const keyFile = join(dir, 'tls/key.pem');
    const text = openssl(['x509', '-in', certFile, '-noout', '-text']);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(text, /NIST CURVE: P-256|prime256v1/);
    assert.match(text, new RegExp(`DNS:${escapeRegex(HOST)}`));
    assert.equal(openssl(['pkey', '-in', keyFile, '-pubout']), openssl(['x509', '-in', certFile, '-noout', '-pubkey']));
    const certificate = new X509Certificate(readFileSync(certFile));
    assert.ok(certificate.checkPrivateKey(createPrivateKey(readFileSync(keyFile))));
    assert.ok(new Date(certificate.validTo).getTime() > Date.now() + 9 * 365 * 86_400_000, certificate.validTo);
  });

  test('a second run changes nothing and says it kept every file', () => {
    const dir = freshDir();
    assert.equal(init(dir).code, 0);
    const before = contents(dir);
    const r = init(dir);
    assert.equal(r.code, 0, r.stderr);
    for (const file of FILES)
      assert.match(r.stdout, new RegExp(`^  kept existing ${escapeRegex(join(dir, file))}$`, 'm'), r.stdout);
    assert.doesNotMatch(r.stdout, /wrote/);
    assert.deepEqual(contents(dir), before);
  });

  test('a removed users file is written again; every other file is kept as it was', async () => {
    const dir = freshDir();
    assert.equal(init(dir).code, 0);
    const before = contents(dir);
    await unlink(join(dir, 'users'));
    const r = init(dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^  wrote ${escapeRegex(join(dir, 'users'))} `, 'm'));
    assert.equal((r.stdout.match(/kept existing/g) ?? []).length, 4, r.stdout);
    assert.deepEqual(contents(dir), before);
  });

  test('the certificate and key are a pair: one without the other is an error, and nothing is written', async () => {
    const dir = freshDir();
    assert.equal(init(dir).code, 0);
    const cert = readFileSync(join(dir, 'tls/cert.pem'));
    await unlink(join(dir, 'tls/key.pem'));
    const r = init(dir);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(`${join(dir, 'tls/cert.pem')} exists without ${join(dir, 'tls/key.pem')}`), r.stderr);
    assert.throws(() => statSync(join(dir, 'tls/key.pem')), /ENOENT/);
    assert.deepEqual(readFileSync(join(dir, 'tls/cert.pem')), cert);
  });

  test('a directory that cannot be created: exit 1 naming it', async () => {
    const file = join(root, 'a-plain-file');
    await writeFile(file, 'x');
    const r = init(join(file, 'etc'));
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(join(file, 'etc')), r.stderr);
  });

  test('mailsrv check after init: "add a user" and DKIM keys are left; after that the installation is OK', async () => {
    const dir = freshDir();
    assert.equal(init(dir).code, 0);
    const configFile = join(dir, 'mailsrv.toml');
    await localizeInitConfig(configFile, dir);

    const fresh = runCli(['check', '-c', configFile]);
    assert.equal(fresh.code, 1, fresh.stdout);
    const noKey = (domain: string) =>
      `warning: key 'dkim.keys_dir': ${domain} has no DKIM key (${join(dir, 'dkim', `${domain}.key`)}): ` +
      `its mail is sent unsigned and large receivers junk or refuse it; mailsrv dkim keygen ${domain}`;
    assert.deepEqual(fresh.stderr.trim().split('\n'), [
      `${join(dir, 'users')}: no users yet, so postmaster and the other local aliases reach no one: ` +
        `add a user with \`mailsrv user add NAME\`, then a line "root: NAME" in ${join(dir, 'aliases')}`,
      noKey('example.test'),
      noKey(HOST),
      'mailsrv check: 1 problem found, 2 warnings',
    ]);

    const added = runCli(['user', 'add', '-c', configFile, 'alice', '--password-stdin'], { input: 'a password\n' });
    assert.equal(added.code, 0, added.stderr);
    await appendFile(join(dir, 'aliases'), 'root: alice\n');
    for (const domain of ['example.test', HOST]) {
      const keygen = runCli(['dkim', 'keygen', '-c', configFile, domain]);
      assert.equal(keygen.code, 0, keygen.stderr);
    }
    const ready = runCli(['check', '-c', configFile]);
    assert.equal(ready.code, 0, ready.stderr);
    assert.equal(ready.stderr, '', 'no warnings expected');
    assert.match(ready.stdout, /is OK$/m);
  });

  test('the daemon serves the certificate init made (implicit TLS)', async () => {
    const dir = freshDir();
    assert.equal(init(dir).code, 0);
    const certFile = join(dir, 'tls/cert.pem');
    const smtpsPort = await freePort();
    const env = await makeEnv({
      config: { tls: { cert: certFile, key: join(dir, 'tls/key.pem') }, smtp: { smtps: [`127.0.0.1:${smtpsPort}`] } },
    });
    const daemon = await startDaemon(env);
    try {
      const ca = readFileSync(certFile);
      const { greeting, fingerprint } = await withTimeout(
        new Promise<{ greeting: string; fingerprint: string }>((resolve, reject) => {
          const socket = tlsConnect({ port: smtpsPort, host: '127.0.0.1', servername: HOST, ca }, () => {
            const fingerprint = socket.getPeerX509Certificate()!.fingerprint256;
            socket.once('data', (chunk) => {
              socket.destroy();
              resolve({ greeting: chunk.toString(), fingerprint });
            });
          });
          socket.once('error', reject);
        }),
        10_000,
        'no TLS greeting',
      );
      assert.match(greeting, /^220 /);
      assert.equal(fingerprint, new X509Certificate(ca).fingerprint256);
    } finally {
      await daemon.stop();
      await env.cleanup();
    }
  });
});

function openssl(args: string[]): string {
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
