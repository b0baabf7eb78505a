// E2E: SMTP AUTH and TLS settings that change with the config: a daemon started without a
// certificate (AUTH only from plaintext_auth_networks, Received says ESMTPA),
// smtp.sender_login_match = false, and SIGHUP turning STARTTLS on, replacing the certificate
// under an open TLS session, and turning it off again. (Failed logins: login-penalties.test.ts.)
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';
import {
  authPlain,
  crlf,
  type Daemon,
  deepMerge,
  DOMAIN,
  HOSTNAME,
  makeEnv,
  queueIdOf,
  readMailbox,
  SmtpClient,
  smtpDialog,
  startDaemon,
  startTls,
  type ConfigTree,
  type TestEnv,
} from './harness.js';

/** plaintext_auth_networks = 127.0.0.0/26; OUTSIDE is not in it */
const OUTSIDE = '127.0.0.100';
const addr = (user: string) => `${user}@${DOMAIN}`;

function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

describe('smtp AUTH and TLS across config changes', () => {
  let env: TestEnv;
  let daemon: Daemon;
  let withTls: ConfigTree;
  let reloads = 0;

  before(async () => {
    env = await makeEnv({
      tls: true,
      config: {
        plaintext_auth_networks: ['127.0.0.0/26'],
        auth: { failure_delay: '20ms' },
        smtp: { sender_login_match: false },
      },
    });
    withTls = env.config;
    // started without a certificate: SIGHUP brings it in later
    await env.writeConfig(deepMerge(withTls, { tls: { cert: '', key: '' } }));
    daemon = await startDaemon(env);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    if (env) await env.cleanup();
  });

  async function reload(config: ConfigTree): Promise<void> {
    await env.writeConfig(config);
    reloads += 1;
    daemon.child.kill('SIGHUP');
    await daemon.waitForLogs(
      (e) => e.msg === 'reloaded config, users, aliases and TLS certificate',
      reloads,
      10_000,
      'reloads',
    );
  }

  test('without a certificate: no STARTTLS; AUTH only from plaintext_auth_networks, elsewhere 503 5.5.1', async () => {
    const [, ehlo, starttls, auth] = await smtpDialog(
      env.port,
      ['EHLO client.test', 'STARTTLS', `AUTH PLAIN ${authPlain('alice')}`],
      { localAddress: OUTSIDE },
    );
    const caps = ehlo!.lines.slice(1);
    assert.ok(!caps.includes('STARTTLS') && !caps.some((c) => c.startsWith('AUTH')), ehlo!.raw);
    assert.match(starttls!.raw, /^500 5\.5\.2 /);
    assert.equal(auth!.raw, '503 5.5.1 Error: authentication not enabled');

    const [, inside, ok] = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('alice')}`]);
    assert.ok(inside!.lines.includes('AUTH PLAIN LOGIN'), inside!.raw);
    assert.match(ok!.raw, /^235 2\.7\.0 /);
  });

  test('sender_login_match = false: any sender after AUTH, relayed or local; Received says ESMTPA', async () => {
    const { client } = await SmtpClient.connect(env.port);
    try {
      await client.cmd('EHLO client.test');
      assert.equal((await client.cmd(`AUTH PLAIN ${authPlain('alice')}`)).code, 235);
      assert.equal((await client.cmd('MAIL FROM:<someone@elsewhere.test>')).code, 250);
      assert.equal((await client.cmd(`RCPT TO:<${addr('bob')}>`)).code, 250);
      assert.equal((await client.cmd('RCPT TO:<friend@remote.test>')).code, 250);
      assert.equal((await client.cmd('DATA')).code, 354);
      const end = await client.data(crlf('From: someone@elsewhere.test', 'Subject: any sender', '', 'body'));
      assert.equal(end.code, 250, end.raw);
      const queueId = queueIdOf(end);
      await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueId && e.user === 'bob');
    } finally {
      await client.quit();
    }
    const stored = readMailbox(env.mailbox('bob')).messages.at(-1)!;
    assert.match(
      stored.trace!.received,
      /^from client\.test \(localhost \[127\.0\.0\.1\]\)\n\tby mx\.test\.local \(mailsrv\) with ESMTPA id /,
    );
  });

  // replacing the certificate keeps open sessions; taking it out stops STARTTLS
  test('SIGHUP: STARTTLS follows the certificate in, replaced and out', async () => {
    await reload(withTls);
    const { client: plain } = await SmtpClient.connect(env.port, { localAddress: OUTSIDE });
    const ehlo = await plain.cmd('EHLO client.test');
    assert.ok(ehlo.lines.includes('STARTTLS'), `no STARTTLS after SIGHUP brought a certificate: ${ehlo.raw}`);
    const old = await startTls(plain, env.tls!.cert);
    try {
      assert.equal((old.socket as TLSSocket).getPeerCertificate().fingerprint256, fingerprint(env.tls!.cert));
      await old.cmd('EHLO client.test');
      assert.equal((await old.cmd(`AUTH PLAIN ${authPlain('alice')}`)).code, 235);

      // a new certificate for the same host, in the same files
      const fresh = await generateSelfSigned(HOSTNAME, 30);
      assert.notEqual(fingerprint(fresh.cert), fingerprint(env.tls!.cert));
      await writeFile(env.tls!.keyFile, fresh.key);
      await writeFile(env.tls!.certFile, fresh.cert);
      await reload(withTls);

      const { client: plain2 } = await SmtpClient.connect(env.port, { localAddress: OUTSIDE });
      await plain2.cmd('EHLO client.test');
      const renewed = await startTls(plain2, fresh.cert);
      try {
        assert.equal((renewed.socket as TLSSocket).getPeerCertificate().fingerprint256, fingerprint(fresh.cert));
        assert.match((await renewed.cmd('EHLO client.test')).raw, /AUTH PLAIN LOGIN/);
      } finally {
        await renewed.quit();
      }

      // the session opened before the reload goes on with its certificate and login
      assert.equal((await old.cmd('MAIL FROM:<alice@example.test>')).code, 250);
      assert.equal((await old.cmd(`RCPT TO:<${addr('carol')}>`)).code, 250);
      assert.equal((await old.cmd('DATA')).code, 354);
      const end = await old.data(crlf('Subject: across a reload', '', 'body'));
      assert.equal(end.code, 250, end.raw);
      const queueId = queueIdOf(end);
      await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueId && e.user === 'carol');
      const stored = readMailbox(env.mailbox('carol')).messages.at(-1)!;
      assert.match(stored.trace!.received, /with ESMTPSA id /);
    } finally {
      await old.quit();
    }

    await reload(deepMerge(withTls, { tls: { cert: '', key: '' } }));
    const [, off, starttls] = await smtpDialog(env.port, ['EHLO client.test', 'STARTTLS'], { localAddress: OUTSIDE });
    assert.ok(!off!.lines.includes('STARTTLS'), `STARTTLS still offered: ${off!.raw}`);
    assert.match(starttls!.raw, /^500 /);
  });
});
