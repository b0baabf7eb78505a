// e2e: started as root, the daemon keeps the users file, the TLS certificate and key, a DKIM
// key and the relayhost password file root:root 0600 and still reads them after the privilege
// drop, through the root helper (README, "Privileges"): on SIGHUP a user added to the users file
// logs in, a replaced certificate is served, the DKIM key loads again; the smarthost gets the
// password from the file. The helper worker, run on its own, reads only the files named at start:
// another path, or a symlink among them, is refused. Skipped unless run as root (CI is).
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { chmod, chown, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';
import { type SmtpSink, startSmtpSink } from '../support/smtp-sink.js';
import {
  authPlain,
  type Daemon,
  deepMerge,
  DOMAIN,
  HOSTNAME,
  makeEnv,
  passwordHash,
  sendRaw,
  RUN_AS_ROOT,
  SmtpClient,
  smtpDialog,
  startDaemon,
  startTls,
  type TestEnv,
} from './harness.js';
import { startHelperWorker } from '../support/helper-worker.js';

const RELOADED = 'reloaded config, users, aliases and TLS certificate';
const RELAY_PASSWORD = 'smarthost-secret';

/** Makes `path` root:root 0600: the daemon's user cannot read it. */
async function makeRootOnly(path: string): Promise<void> {
  await chown(path, 0, 0);
  await chmod(path, 0o600);
}

async function writeRootOnly(path: string, text: string): Promise<void> {
  await writeFile(path, text);
  await makeRootOnly(path);
}

describe('secret files root-only, reloaded through the root helper', {
  skip: RUN_AS_ROOT ? false : 'run as root to start the root helper',
}, () => {
  let env: TestEnv;
  let daemon: Daemon;
  let smarthost: SmtpSink;
  const smarthostLogins: string[] = [];
  let reloads = 0;

  async function reload(): Promise<void> {
    reloads += 1;
    daemon.child.kill('SIGHUP');
    await daemon.waitForLogs((e) => e.msg === RELOADED, reloads);
  }

  before(async () => {
    smarthost = await startSmtpSink({
      server: {
        authOptional: false,
        allowInsecureAuth: true,
        disabledCommands: ['STARTTLS'],
        onAuth(auth, _session, callback) {
          smarthostLogins.push(`${auth.username}:${auth.password}`);
          if (auth.password === RELAY_PASSWORD) return callback(null, { user: auth.username });
          callback(new Error('wrong password'));
        },
      },
    });
    env = await makeEnv({
      tls: true,
      users: ['alice'],
      config: {
        relay: {
          relayhost: `127.0.0.1:${smarthost.port}`,
          relayhost_user: 'relay-user',
        },
      },
    });
    const passwordFile = join(env.dir, 'relay-password');
    await writeRootOnly(passwordFile, `${RELAY_PASSWORD}\n`);
    await env.writeConfig(deepMerge(env.config, { relay: { relayhost_password_file: passwordFile } }));
    const keysDir = join(env.dir, 'dkim');
    await mkdir(keysDir);
    const dkimKey = join(keysDir, `${DOMAIN}.key`);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeRootOnly(dkimKey, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    for (const file of [env.usersFile, env.tls!.certFile, env.tls!.keyFile]) await makeRootOnly(file);
    daemon = await startDaemon(env);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    if (env) await env.cleanup();
    await smarthost?.close();
  });

  test('the root-only relayhost password file logs in at the smarthost', async () => {
    const sent = await sendRaw(env.port, {
      from: 'sender@client.test',
      to: ['friend@remote.test'],
      message: 'Subject: out\r\n\r\nbody\r\n',
      localAddress: '127.0.0.2',
    });
    assert.ok(sent.queueId, JSON.stringify(sent));
    await daemon.waitForLog((e) => e.queueId === sent.queueId && (e.msg === 'delivered' || e.msg === 'deferred'));
    assert.deepEqual(smarthostLogins, [`relay-user:${RELAY_PASSWORD}`]);
    assert.equal(smarthost.messages.at(-1)?.to[0], 'friend@remote.test');
  });

  test('SIGHUP reads the root-only users file: a new user logs in', async () => {
    const [, , before] = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('dave')}`]);
    assert.match(before!.raw, /^535 /);
    await writeRootOnly(env.usersFile, `alice:${await passwordHash()}\ndave:${await passwordHash()}\n`);
    await reload();
    const [, , after] = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('dave')}`]);
    assert.match(after!.raw, /^235 /);
    // the DKIM key was read again too, with no problem
    assert.equal(daemon.find((e) => e.msg === 'DKIM keys loaded').length, 2, daemon.output());
    assert.equal(daemon.find((e) => String(e.msg).startsWith('DKIM key not used')).length, 0, daemon.output());
  });

  test('SIGHUP reads the root-only certificate and key: the new certificate is served', async () => {
    const fresh = await generateSelfSigned(HOSTNAME, 30);
    await writeRootOnly(env.tls!.certFile, fresh.cert);
    await writeRootOnly(env.tls!.keyFile, fresh.key);
    await reload();
    assert.equal(daemon.find((e) => String(e.msg).startsWith('cannot reload the TLS certificate')).length, 0);
    const { client } = await SmtpClient.connect(env.port);
    await client.cmd('EHLO client.test');
    const secured = await startTls(client, fresh.cert);
    try {
      const served = (secured.socket as TLSSocket).getPeerCertificate().fingerprint256;
      assert.equal(served, new X509Certificate(fresh.cert).fingerprint256);
    } finally {
      await secured.quit();
    }
  });

  test('the helper worker reads only the files named at start, never through a symlink', async (t) => {
    const link = join(env.dir, 'users-link');
    await symlink('/etc/shadow', link);
    const settings = {
      spoolDir: env.spoolDir,
      minUid: 1000,
      pamService: 'unused',
      mailGid: 0,
      accounts: false,
      secretFiles: [env.usersFile, link],
    };
    const worker = startHelperWorker(settings);
    t.after(() => void worker.process.kill('SIGKILL'));
    const requests = [
      { id: 1, op: 'secret', path: env.usersFile },
      { id: 2, op: 'secret', path: '/etc/shadow' },
      { id: 3, op: 'secret', path: `${env.dir}/./users` },
      { id: 4, op: 'secret', path: link },
      { id: 5, op: 'mailbox', user: 'alice', path: join(env.spoolDir, 'alice') },
    ];
    const answers = await worker.ask(requests);
    const users = answers.get(1)!;
    assert.equal(users.ok, true, JSON.stringify(users));
    assert.match(Buffer.from(String(users.content), 'base64').toString(), /^alice:\{ARGON2ID\}/m);
    const refused = 'path is not a secret file named by the config at start';
    assert.deepEqual(answers.get(2), { id: 2, ok: false, error: 'invalid', detail: refused });
    assert.deepEqual(answers.get(3), { id: 3, ok: false, error: 'invalid', detail: refused });
    assert.equal(answers.get(4)!.ok, false);
    assert.match(String(answers.get(4)!.detail), /is a symlink/);
    assert.equal(answers.get(5)!.detail, 'accounts = "file": no Unix account requests');
    worker.process.stdin.end();
    assert.equal(await worker.exited, 0);
  });
});
