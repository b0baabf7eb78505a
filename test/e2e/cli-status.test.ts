// E2E: `mailsrv status` against the running daemon: version, pid, uptime, the listeners it
// bound, the sessions open (one SMTP, one POP3), the queue with its oldest entry (a message
// deferred by a relayhost that refuses connections), the certificate's names and expiry, and
// the last reload's result (none, failed with the reason, then ok); exit 1 once stopped.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  DOMAIN,
  envForTest,
  eventually,
  freePort,
  HOSTNAME,
  Pop3Client,
  REPO_ROOT,
  runCli,
  SmtpClient,
  sendRaw,
} from './harness.js';

/** In the test config's mynetworks: may relay. */
const MYNETWORKS_CLIENT = '127.0.0.2';

test('mailsrv status shows what the running daemon reports about itself', async (t) => {
  const pop3Port = await freePort();
  const metricsPort = await freePort();
  const deadRelay = await freePort();
  const { env, start } = await envForTest(t, {
    tls: true,
    config: {
      pop3: { listen: [`127.0.0.1:${pop3Port}`] },
      metrics: { listen: [`127.0.0.1:${metricsPort}`] },
      relay: { relayhost: `127.0.0.1:${deadRelay}` },
    },
  });
  const daemon = await start();
  // a copy of the config for the CLI: the daemon's own file is broken for a while below
  const cliConfig = join(env.dir, 'cli.toml');
  await copyFile(env.configPath, cliConfig);
  const status = () => runCli(['status', '-c', cliConfig]);

  const sent = await sendRaw(env.port, {
    from: `alice@${DOMAIN}`,
    to: ['someone@elsewhere.test'],
    message: 'Subject: out\r\n\r\nout\r\n',
    localAddress: MYNETWORKS_CLIENT,
  });
  assert.ok(sent.queueId !== null, JSON.stringify(sent.end));
  await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === sent.queueId, 15_000, '"deferred"');
  const { client: smtp } = await SmtpClient.connect(env.port);
  t.after(() => smtp.destroy());
  const pop3 = await Pop3Client.login(pop3Port, 'alice');
  t.after(() => pop3.destroy());

  // the status file is rewritten every few seconds: wait for the one that has both sessions
  let shown = status();
  await eventually(
    () => {
      shown = status();
      return /sessions: +smtp 1, pop3 1$/m.test(shown.stdout);
    },
    20_000,
    'status shows the open sessions',
    500,
  );
  assert.equal(shown.code, 0, shown.stderr);
  const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const lines = shown.stdout;
  assert.match(lines, new RegExp(`^mailsrv ${version} is running, pid ${daemon.child.pid}, up \\d+s\\n`));
  assert.match(lines, new RegExp(`^  smtp: +127\\.0\\.0\\.1:${env.port}$`, 'm'));
  assert.match(lines, /^ {2}submission: +-$/m);
  assert.match(lines, new RegExp(`^  pop3: +127\\.0\\.0\\.1:${pop3Port}$`, 'm'));
  assert.match(lines, new RegExp(`^  metrics: +127\\.0\\.0\\.1:${metricsPort}$`, 'm'));
  assert.match(lines, /^ {2}queue: +1 message\(s\), oldest \d+s old$/m);
  const expires = new Date(new X509Certificate(env.tls!.cert).validTo).toISOString().replace(/\.000Z$/, 'Z');
  assert.match(lines, new RegExp(`^  certificate: ${HOSTNAME}, expires ${expires}$`, 'm'));
  assert.match(lines, /^ {2}last reload: none since the start$/m);

  // a reload that fails is shown with its reason; the next good one as ok
  await env.writeConfig({ ...env.config, message_size_limit: 'lots' });
  daemon.child.kill('SIGHUP');
  await daemon.waitForLog((e) => e.msg.startsWith('reload failed'), 10_000, '"reload failed"');
  await eventually(
    () => /^ {2}last reload: failed \(.*message_size_limit.*\), \d+s ago$/m.test(status().stdout),
    10_000,
    'status shows the failed reload',
  );
  await env.writeConfig(env.config);
  daemon.child.kill('SIGHUP');
  await daemon.waitForLog((e) => e.msg.startsWith('reloaded'), 10_000, '"reloaded"');
  await eventually(
    () => /^ {2}last reload: ok, \d+s ago$/m.test(status().stdout),
    10_000,
    'status shows the good reload',
  );

  smtp.destroy();
  pop3.destroy();
  assert.equal(await daemon.stop(), 0);
  const stopped = status();
  assert.equal(stopped.code, 1);
  assert.equal(stopped.stdout, 'mailsrv is not running (1 message(s) in the queue)\n');
});
