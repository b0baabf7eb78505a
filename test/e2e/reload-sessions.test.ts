// E2E: SIGHUP while a session is open on every listener (MX, submission, smtps, pop3, pop3s).
// The reload brings a new user, a new alias, a new certificate, new limits and a check mode; no session is
// dropped, each goes on working and sees what changed: the open MX session delivers to the new
// user and alias and is held to the new recipient limit and size, the open submission session
// logs in as the new user, the open TLS sessions keep their old certificate while new
// connections get the new one, and the open POP3 sessions go on; `mailsrv status` reports the
// reload as ok.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { appendFile, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';
import {
  authPlain,
  connectPop3s,
  connectSmtpTls,
  crlf,
  DOMAIN,
  deepMerge,
  envForTest,
  eventually,
  freePort,
  HOSTNAME,
  Pop3Client,
  passwordHash,
  queueIdOf,
  readMailbox,
  runCli,
  SmtpClient,
  sendRaw,
} from './harness.js';

const addr = (user: string) => `${user}@${DOMAIN}`;
const fingerprint = (socket: TLSSocket) => new X509Certificate(socket.getPeerCertificate(true).raw).fingerprint256;

test('SIGHUP with a session open on every listener: nothing dropped, every change seen', async (t) => {
  const ports = {
    submission: await freePort(),
    smtps: await freePort(),
    pop3: await freePort(),
    pop3s: await freePort(),
  };
  const { env, start } = await envForTest(t, {
    tls: true,
    config: {
      smtp: {
        submission: [`127.0.0.1:${ports.submission}`],
        smtps: [`127.0.0.1:${ports.smtps}`],
        max_recipients: 10,
      },
      pop3: { listen: [`127.0.0.1:${ports.pop3}`], pop3s: [`127.0.0.1:${ports.pop3s}`] },
      auth: { failure_delay: '10ms' },
    },
  });
  const daemon = await start();
  const ca = env.tls!.cert;

  // one session on each listener, each past its greeting
  const { client: mx } = await SmtpClient.connect(env.port);
  t.after(() => mx.destroy());
  assert.equal((await mx.cmd('EHLO client.test')).code, 250);
  const { client: submission } = await SmtpClient.connect(ports.submission);
  t.after(() => submission.destroy());
  assert.equal((await submission.cmd('EHLO client.test')).code, 250);
  const smtps = await connectSmtpTls(ports.smtps, ca);
  t.after(() => smtps.client.destroy());
  assert.equal((await smtps.client.cmd('EHLO client.test')).code, 250);
  const pop3 = await Pop3Client.login(ports.pop3, 'alice');
  t.after(() => pop3.destroy());
  const pop3s = await connectPop3s(ports.pop3s, ca);
  t.after(() => pop3s.client.destroy());
  assert.match(await pop3s.client.cmd('USER bob'), /^\+OK/);
  assert.match(await pop3s.client.cmd('PASS secret-pw'), /^\+OK/);
  const oldCertificate = fingerprint(pop3s.socket);
  // mail from outside mynetworks before the reload: the inbound checks are off
  const authResults = async (subject: string) => {
    const sent = await sendRaw(env.port, {
      from: 'someone@elsewhere.test',
      to: [addr('bob')],
      message: crlf(`Subject: ${subject}`, '', 'hello'),
    });
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === sent.queueId, 10_000, subject);
    const stored = readMailbox(env.mailbox('bob')).messages.map((m) => m.body.toString('latin1'));
    const header = stored.find((text) => text.includes(`Subject: ${subject}`))!.split('\n\n')[0]!;
    const folded = header.match(/^Authentication-Results: .*(\n[ \t].*)*/m)?.[0];
    return folded === undefined ? null : folded.replace(/\n[ \t]+/g, ' ');
  };
  assert.equal(await authResults('checks off'), null);

  // the changes: a user, an alias, a certificate, limits, a check mode
  await appendFile(env.usersFile, `dave:${await passwordHash()}\n`);
  await appendFile(env.aliasesFile, 'team: dave, alice\n');
  const fresh = await generateSelfSigned(HOSTNAME, 60);
  await writeFile(env.tls!.certFile, fresh.cert);
  await writeFile(env.tls!.keyFile, fresh.key);
  await env.writeConfig(
    deepMerge(env.config, { message_size_limit: 5000, smtp: { max_recipients: 2 }, checks: { dkim: 'tag' } }),
  );
  daemon.child.kill('SIGHUP');
  await daemon.waitForLog((e) => e.msg.startsWith('reloaded'), 10_000, '"reloaded"');

  // MX: the new user and alias are recipients now; the new limits hold
  assert.equal((await mx.cmd('MAIL FROM:<sender@client.test>')).code, 250);
  assert.equal((await mx.cmd(`RCPT TO:<${addr('dave')}>`)).code, 250);
  assert.equal((await mx.cmd(`RCPT TO:<${addr('team')}>`)).code, 250);
  assert.match((await mx.cmd(`RCPT TO:<${addr('bob')}>`)).raw, /^452 4\.5\.3 /);
  assert.equal((await mx.cmd('DATA')).code, 354);
  const sent = await mx.data(crlf('Subject: after the reload', '', 'hello'));
  assert.equal(sent.code, 250, sent.raw);
  const queueId = queueIdOf(sent);
  await daemon.waitForLogs((e) => e.msg === 'delivered' && e.queueId === queueId, 2, 10_000, 'both deliveries');
  assert.equal(readMailbox(env.mailbox('dave')).messages.length, 1);
  assert.equal(readMailbox(env.mailbox('alice')).messages.length, 1);
  assert.equal((await mx.cmd('MAIL FROM:<sender@client.test> SIZE=6000')).code, 552);

  // the check mode: mail from outside now gets its Authentication-Results
  assert.equal(await authResults('checks on'), `Authentication-Results: ${HOSTNAME}; dkim=none`);

  // submission: the new user logs in on the session opened before the reload
  assert.equal((await submission.cmd(`AUTH PLAIN ${authPlain('dave')}`)).code, 235);
  // smtps and pop3s: the open sessions go on over the old certificate; new ones get the new
  assert.equal((await smtps.client.cmd('NOOP')).code, 250);
  assert.match(await pop3s.client.cmd('STAT'), /^\+OK 0 0$/);
  assert.equal(fingerprint(pop3s.socket), oldCertificate);
  const newSession = await connectPop3s(ports.pop3s, fresh.cert);
  assert.equal(fingerprint(newSession.socket), new X509Certificate(fresh.cert).fingerprint256);
  await newSession.client.quit();
  // pop3: the session still answers (its snapshot predates the delivery); dave can log in
  assert.match(await pop3.cmd('STAT'), /^\+OK 0 0$/);
  const dave = await Pop3Client.login(ports.pop3, 'dave');
  assert.match(await dave.cmd('STAT'), /^\+OK 1 \d+$/);
  await dave.quit();

  for (const client of [mx, submission, smtps.client]) assert.equal((await client.cmd('QUIT')).code, 221);
  assert.match(await pop3.quit(), /^\+OK/);
  assert.match(await pop3s.client.quit(), /^\+OK/);
  assert.equal(daemon.find((e) => e.msg === 'reload failed; keeping the running config').length, 0);
  await eventually(
    () => /^ {2}last reload: ok, \d+s ago$/m.test(runCli(['status', '-c', env.configPath]).stdout),
    10_000,
    'status reports the reload',
  );
});
