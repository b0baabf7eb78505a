// E2E: DKIM signing. Mail submitted with AUTH (nodemailer), from mynetworks and through
// `mailsrv sendmail` is signed with the From: domain's keys made by `mailsrv dkim keygen`
// (RSA, plus Ed25519 when it has one), bounces with the hostname's key, and what lands in the
// mailbox verifies with python3-dkim against the records served by a test DNS server. Mail from
// outside on the MX port is not signed; a key made while running is used after SIGHUP.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { type DnsZoneServer, startDnsZone } from '../support/dns-zone.js';
import { type SignatureCheck, verifyDkim } from '../support/dkim-verify.js';
import {
  crlf,
  type Daemon,
  DOMAIN,
  envForTest,
  freePort,
  HOSTNAME,
  makeEnv,
  PASSWORD,
  queueIdOf,
  readMailbox,
  runCli,
  sendRaw,
  startDaemon,
  type TestEnv,
} from './harness.js';

/** `mailsrv dkim keygen`; returns the record it printed, as the zone's name and strings. */
function keygen(env: TestEnv, domain: string, type: 'rsa' | 'ed25519'): { name: string; strings: string[] } {
  const r = runCli(['dkim', 'keygen', domain, '--type', type, '-c', env.configPath]);
  assert.equal(r.code, 0, r.stderr);
  const match = /^(\S+)\. 3600 IN TXT (.*)$/.exec(r.stdout.trim());
  assert.ok(match, r.stdout);
  const strings = [...match[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1'));
  return { name: match[1]!.toLowerCase(), strings };
}

/** Publishes the key's record in the test zone. */
function publish(dns: DnsZoneServer, record: { name: string; strings: string[] }): void {
  dns.zone[record.name] = { txt: [record.strings] };
}

/** The delivered messages of `user`, each with CRLF line ends as a recipient reads it. */
function delivered(env: TestEnv, user: string): Buffer[] {
  return readMailbox(env.mailbox(user)).messages.map((m) =>
    Buffer.from(m.body.toString('latin1').replace(/\n/g, '\r\n'), 'latin1'),
  );
}

function waitDelivered(daemon: Daemon, user: string, queueId?: string) {
  return daemon.waitForLog(
    (e) => e.msg === 'delivered' && e.user === user && (queueId === undefined || e.queueId === queueId),
    15_000,
    `delivery to ${user}`,
  );
}

function assertSignedBy(checks: SignatureCheck[], domain: string, algorithms: string[]): void {
  assert.deepEqual(
    checks.map((c) => ({ d: c.d, a: c.a, ok: c.ok })),
    algorithms.map((a) => ({ d: domain, a, ok: true })),
  );
}

describe('DKIM signing', () => {
  let dns: DnsZoneServer;
  let env: TestEnv;
  let daemon: Daemon;
  let submissionPort: number;

  before(async () => {
    dns = await startDnsZone({});
    submissionPort = await freePort();
    env = await makeEnv({
      users: ['alice', 'bob', 'carol', 'dave', 'erin'],
      config: {
        dns_servers: [dns.server],
        message_size_limit: 2_000_000,
        smtp: { submission: [`127.0.0.1:${submissionPort}`] },
      },
    });
    publish(dns, keygen(env, DOMAIN, 'rsa'));
    publish(dns, keygen(env, DOMAIN, 'ed25519'));
    publish(dns, keygen(env, HOSTNAME, 'rsa'));
    daemon = await startDaemon(env);
  });
  after(async () => {
    await daemon?.kill9();
    await env?.cleanup();
    await dns?.close();
  });

  test('keygen writes the key 0600 (its owner alone) and never overwrites it', () => {
    assert.equal(statSync(`${env.dir}/dkim/${DOMAIN}.key`).mode & 0o777, 0o600);
    const again = runCli(['dkim', 'keygen', DOMAIN, '-c', env.configPath]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`${env.dir}/dkim/${DOMAIN}\\.key exists`));
    const other = runCli(['dkim', 'keygen', 'elsewhere.test', '-c', env.configPath]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /elsewhere\.test is not a local domain/);
  });

  test('AUTH submission (nodemailer): RSA and Ed25519 signatures, Date and Message-ID added and signed', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: submissionPort,
      secure: false,
      ignoreTLS: true,
      name: 'client.test',
      auth: { user: 'alice', pass: PASSWORD },
    });
    const raw = crlf(
      `From: Alice <alice@${DOMAIN}>`,
      `To: bob@${DOMAIN}`,
      'Subject: signed  by   submission',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Hello Bob,',
      '',
      'trailing blanks and empty lines at the end   ',
      '',
      '',
    );
    const info = await transport.sendMail({ envelope: { from: `alice@${DOMAIN}`, to: [`bob@${DOMAIN}`] }, raw });
    transport.close();
    await waitDelivered(daemon, 'bob', queueIdOf(info.response) ?? undefined);
    const [message] = delivered(env, 'bob');
    const checks = await verifyDkim(message!, dns.server);
    assertSignedBy(checks, DOMAIN, ['rsa-sha256', 'ed25519-sha256']);
    const signedFields = checks[0]!.h.toLowerCase().split(':');
    for (const field of ['from', 'to', 'subject', 'date', 'message-id', 'mime-version', 'content-type'])
      assert.ok(signedFields.includes(field), `h= lacks ${field}: ${checks[0]!.h}`);
    assert.equal(signedFields.filter((f) => f === 'from').length, 2, 'From is oversigned');
    const text = message!.toString('latin1');
    assert.equal(text.match(/^Date: /gim)?.length, 1, text);
    assert.equal(text.match(/^Message-ID: /gim)?.length, 1, text);
    // a From: added on the way breaks every signature: the oversigned From covers it
    const forged = Buffer.concat([Buffer.from('From: Mallory <m@evil.test>\r\n'), message!]);
    assert.deepEqual(
      (await verifyDkim(forged, dns.server)).map((c) => c.ok),
      [false, false],
    );
  });

  test('mailsrv sendmail: the picked-up message is signed', async () => {
    const r = runCli(['sendmail', '-c', env.configPath, '-i', `carol@${DOMAIN}`], {
      input: `From: alice@${DOMAIN}\nTo: carol@${DOMAIN}\nSubject: from cron\n\nreport\n`,
    });
    assert.equal(r.code, 0, r.stderr);
    await waitDelivered(daemon, 'carol');
    assertSignedBy(await verifyDkim(delivered(env, 'carol')[0]!, dns.server), DOMAIN, ['rsa-sha256', 'ed25519-sha256']);
  });

  test('a message from mynetworks larger than what is held in memory is signed from its queue file', async () => {
    const line = `${'x'.repeat(76)}\r\n`;
    const body = line.repeat(Math.ceil(600_000 / line.length));
    const result = await sendRaw(env.port, {
      localAddress: '127.0.0.2',
      from: `alice@${DOMAIN}`,
      to: [`dave@${DOMAIN}`],
      message: `From: alice@${DOMAIN}\r\nTo: dave@${DOMAIN}\r\nSubject: big\r\n\r\n${body}`,
    });
    assert.equal(result.end?.code, 250, JSON.stringify(result.end));
    await waitDelivered(daemon, 'dave', result.queueId!);
    const [message] = delivered(env, 'dave');
    assert.ok(message!.length > 600_000);
    assertSignedBy(await verifyDkim(message!, dns.server), DOMAIN, ['rsa-sha256', 'ed25519-sha256']);
  });

  test('a bounce is signed with the hostname key', async () => {
    const result = await sendRaw(env.port, {
      localAddress: '127.0.0.2',
      from: `alice@${DOMAIN}`,
      to: ['someone@nowhere.test'],
      message: crlf(`From: alice@${DOMAIN}`, 'To: someone@nowhere.test', 'Subject: to nowhere', '', 'lost'),
    });
    assert.equal(result.end?.code, 250, JSON.stringify(result.end));
    const bounce = await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.user === 'alice' && e.queueId !== result.queueId,
      15_000,
      'the bounce delivered to alice',
    );
    const messages = delivered(env, 'alice');
    const message = messages.find((m) => m.includes(`X-Delivery-ID: `) && m.includes('MAILER-DAEMON@'));
    assert.ok(message, `no bounce in alice's mailbox (${bounce.queueId})`);
    assertSignedBy(await verifyDkim(message, dns.server), HOSTNAME, ['rsa-sha256']);
  });

  test('mail from outside on the MX port is not signed', async () => {
    const result = await sendRaw(env.port, {
      from: 'someone@client.test',
      to: [`erin@${DOMAIN}`],
      message: crlf(`From: alice@${DOMAIN}`, `To: erin@${DOMAIN}`, 'Subject: looks local', '', 'but is not'),
    });
    assert.equal(result.end?.code, 250, JSON.stringify(result.end));
    await waitDelivered(daemon, 'erin', result.queueId!);
    const [message] = delivered(env, 'erin');
    assert.doesNotMatch(message!.toString('latin1'), /^DKIM-Signature:/im);
    assert.deepEqual(await verifyDkim(message!, dns.server), []);
  });
});

test('no key: a warning and unsigned mail; a key made while running signs after SIGHUP', async (t) => {
  const dns = await startDnsZone({});
  t.after(() => dns.close());
  const { env, start } = await envForTest(t, { config: { dns_servers: [dns.server] } });
  const daemon = await start();
  const warning = await daemon.waitForLog((e) => e.msg.startsWith('no DKIM key'), 5_000, 'the missing-key warning');
  assert.deepEqual(warning.domains, [DOMAIN, HOSTNAME]);
  const send = async (subject: string) => {
    const result = await sendRaw(env.port, {
      localAddress: '127.0.0.2',
      from: `alice@${DOMAIN}`,
      to: [`bob@${DOMAIN}`],
      message: crlf(`From: alice@${DOMAIN}`, `To: bob@${DOMAIN}`, `Subject: ${subject}`, '', subject),
    });
    assert.equal(result.end?.code, 250, JSON.stringify(result.end));
    await waitDelivered(daemon, 'bob', result.queueId!);
  };
  await send('before the key');
  publish(dns, keygen(env, DOMAIN, 'rsa'));
  daemon.child.kill('SIGHUP');
  await daemon.waitForLog((e) => e.msg === 'DKIM keys loaded', 10_000, 'the keys loaded on SIGHUP');
  await send('after the key');
  const [before, afterKey] = delivered(env, 'bob');
  assert.deepEqual(await verifyDkim(before!, dns.server), []);
  assertSignedBy(await verifyDkim(afterKey!, dns.server), DOMAIN, ['rsa-sha256']);
});
