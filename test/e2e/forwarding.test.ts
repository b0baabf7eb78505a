// e2e: an alias forwarding to a remote address (README, "Forwarding: SRS and ARC"). The remote
// MX is an SMTP sink on 127.0.0.41:25 (so run as root, as CI does; skipped otherwise), found
// through the test's DNS server, which also serves the hostname's DKIM key. The forwarded copy
// leaves with an SRS0 sender at the hostname and an ARC set that python3-dkim's arc_verify
// accepts; a local sender is kept; a bounce to the SRS address goes back to the original sender
// (from any client: the hash is the permission); a forged or altered SRS address gets 550 5.1.1.
// A message that arrives with an ARC set of its own leaves with the next one (i=2, cv=pass).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { authenticate } from 'mailauth';
import { type DnsZoneServer, startDnsZone } from '../support/dns-zone.js';
import { verifyArc } from '../support/dkim-verify.js';
import { startSmtpSink, type SinkMessage, type SmtpSink } from '../support/smtp-sink.js';
import {
  crlf,
  type Daemon,
  DOMAIN,
  eventually,
  HOSTNAME,
  makeEnv,
  RUN_AS_ROOT,
  runCli,
  sendRaw,
  smtpDialog,
  startDaemon,
  type TestEnv,
} from './harness.js';

const MX_ADDRESS = '127.0.0.41';
const SRS_SENDER = new RegExp(`^SRS0=[^=]{4}=[A-Z2-7]{2}=outside\\.test=stranger@${HOSTNAME.replace(/\./g, '\\.')}$`);

describe('forwarding: SRS and ARC', {
  skip: RUN_AS_ROOT ? false : 'needs root: the remote MX listens on port 25',
}, () => {
  let dns: DnsZoneServer;
  let env: TestEnv;
  let daemon: Daemon;
  let mx: SmtpSink;

  before(async () => {
    dns = await startDnsZone({
      'remote.test': { mx: [[10, 'mx.remote.test']] },
      'outside.test': { mx: [[10, 'mx.remote.test']] },
      'mx.remote.test': { a: [MX_ADDRESS] },
    });
    mx = await startSmtpSink({ host: MX_ADDRESS, port: 25 });
    env = await makeEnv({
      aliases: 'postmaster: alice\nfwd: friend@remote.test\n',
      config: { dns_servers: [dns.server], relay: { retry: ['200ms'], connect_timeout: '3s', timeout: '10s' } },
    });
    const keygen = runCli(['dkim', 'keygen', HOSTNAME, '-c', env.configPath]);
    assert.equal(keygen.code, 0, keygen.stderr);
    const record = /^(\S+)\. 3600 IN TXT (.*)$/.exec(keygen.stdout.trim())!;
    const strings = [...record[2]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
    dns.zone[record[1]!.toLowerCase()] = { txt: [strings] };
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    await mx?.close();
    await dns?.close();
    await env?.cleanup();
  });

  async function forwardedCopy(from: string, subject: string, message?: string): Promise<SinkMessage> {
    const sent = await sendRaw(env.port, {
      from,
      to: [`fwd@${DOMAIN}`],
      message: message ?? crlf(`From: <${from}>`, `To: fwd@${DOMAIN}`, `Subject: ${subject}`, '', 'forward me', ''),
    });
    assert.ok(sent.queueId, JSON.stringify(sent));
    const find = () => mx.messages.find((m) => m.data.includes(`Subject: ${subject}`));
    await eventually(() => find() !== undefined, 15_000, 'the forwarded copy at the remote MX');
    return find()!;
  }

  test('a remote sender becomes SRS0 at the hostname; the copy carries an ARC set that verifies', async () => {
    const copy = await forwardedCopy('stranger@outside.test', 'sealed');
    assert.match(copy.from, SRS_SENDER);
    assert.deepEqual(copy.to, ['friend@remote.test']);
    const text = copy.data.toString('latin1');
    for (const field of [
      'ARC-Seal: i=1;',
      'ARC-Message-Signature: i=1;',
      `ARC-Authentication-Results: i=1; ${HOSTNAME}`,
    ])
      assert.ok(text.includes(field), `${field} in:\n${text}`);
    const unfolded = text.replace(/\r\n[ \t]+/g, ' ');
    assert.match(unfolded, new RegExp(`ARC-Seal: [^\r]*cv=none; d=${HOSTNAME.replace(/\./g, '\\.')}; s=mailsrv;`));
    const check = await verifyArc(copy.data, dns.server);
    assert.deepEqual(check, { cv: 'pass', reason: check.reason, instances: 1 }, JSON.stringify(check));
    const key = await stat(join(env.stateDir, 'srs.key'));
    assert.equal(key.mode & 0o777, 0o600);
  });

  test('a local sender is kept as it is', async () => {
    const copy = await forwardedCopy(`alice@${DOMAIN}`, 'from a local sender');
    assert.equal(copy.from, `alice@${DOMAIN}`);
  });

  test('a bounce to the SRS address reaches the original sender; forged ones are refused', async () => {
    const copy = await forwardedCopy('stranger@outside.test', 'to bounce');
    const bounce = await sendRaw(env.port, {
      from: '',
      to: [copy.from],
      message: crlf('From: MAILER-DAEMON@remote.test', 'Subject: undeliverable', '', 'friend is gone', ''),
    });
    assert.ok(bounce.queueId, JSON.stringify(bounce));
    await eventually(
      () => mx.messages.some((m) => m.to.includes('stranger@outside.test') && m.data.includes('friend is gone')),
      15_000,
      'the bounce at the original sender',
    );
    const returned = mx.messages.find((m) => m.data.includes('friend is gone'))!;
    assert.equal(returned.from, '');

    const [, hash, day] = /^SRS0=([^=]+)=([^=]+)=/.exec(copy.from)!;
    const otherHash = `${hash![0]!.toLowerCase() === 'x' ? 'Y' : 'X'}${hash!.slice(1)}`;
    const forged = [
      `SRS0=${otherHash}=${day}=outside.test=stranger@${HOSTNAME}`,
      `SRS0=${hash}=${day}=elsewhere.test=stranger@${HOSTNAME}`,
      `SRS0=${hash}=${day}=outside.test=victim@${HOSTNAME}`,
    ];
    const replies = await smtpDialog(env.port, [
      'EHLO client.test',
      'MAIL FROM:<>',
      ...forged.map((address) => `RCPT TO:<${address}>`),
    ]);
    for (const reply of replies.slice(3)) assert.match(reply.raw, /^550 5\.1\.1 .*SRS/);
  });

  test('a message with an ARC chain of its own gets the next instance, cv=pass, and still verifies', async () => {
    // an upstream forwarder (upstream.test) sealed it first, with its key published in the test zone
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const der = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    dns.zone['arc._domainkey.upstream.test'] = { txt: [[`v=DKIM1; k=rsa; p=${der.slice(0, 200)}`, der.slice(200)]] };
    const original = crlf('From: <list@upstream.test>', `To: fwd@${DOMAIN}`, 'Subject: sealed twice', '', 'hi', '');
    const resolver = new Resolver();
    resolver.setServers([dns.server]);
    const upstream = await authenticate(Buffer.from(original), {
      ip: '192.0.2.7',
      helo: 'mail.upstream.test',
      sender: 'list@upstream.test',
      mta: 'mail.upstream.test',
      resolver: (name, type) => resolver.resolve(name, type) as Promise<string[]>,
      disableBimi: true,
      seal: {
        signingDomain: 'upstream.test',
        selector: 'arc',
        privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      },
    });
    const arcSet = upstream.headers
      .split(/\r\n(?=[^ \t])/)
      .filter((field) => /^ARC-/i.test(field))
      .join('\r\n');
    const copy = await forwardedCopy('list@upstream.test', 'sealed twice', `${arcSet}\r\n${original}`);
    const unfolded = copy.data.toString('latin1').replace(/\r\n[ \t]+/g, ' ');
    assert.match(unfolded, /ARC-Seal: i=2; [^\r]*cv=pass;/);
    const check = await verifyArc(copy.data, dns.server);
    assert.deepEqual(check, { cv: 'pass', reason: check.reason, instances: 2 }, JSON.stringify(check));
  });
});
