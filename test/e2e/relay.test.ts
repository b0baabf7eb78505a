// e2e: outbound mail through the real daemon. The "internet" is a DNS server of the test's
// (dns_servers) and SMTP sinks on loopback addresses 127.0.0.2x, port 25 (so run as
// root, as CI does; skipped otherwise). Covered: an authenticated message reaching the remote
// MX with the right envelope and body, MX preference and fallback, 451-then-250 retries, 550
// and expiry bouncing to the local sender as an RFC 3464 report, one delay warning, an alias
// forwarding to a remote address (with SRS), mynetworks relaying, kill -9 without loss or duplicates, and
// the open-relay tricks that must never relay.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import { startDnsZone, type DnsZoneServer } from '../support/dns-zone.js';
import { startSmtpSink, type RcptDecision, type SmtpSink } from '../support/smtp-sink.js';
import {
  crlf,
  deepMerge,
  DOMAIN,
  escapeRegex,
  eventually,
  freePort,
  HOSTNAME,
  logsSoFar,
  makeEnv,
  PASSWORD,
  PYTHON,
  queueIdOf,
  readMailbox,
  RUN_AS_ROOT,
  runCli,
  sendRaw,
  smtpDialog,
  startDaemon,
  type Daemon,
  type LogEntry,
  type TestEnv,
} from './harness.js';

const MYNETWORKS_CLIENT = '127.0.0.2';

/** The remote world: each domain's MX hosts (names → loopback addresses where sinks listen on port 25). */
const ZONE = {
  'remote.test': { mx: [[10, 'mx.remote.test']] as [number, string][] },
  'mx.remote.test': { a: ['127.0.0.21'] },
  // mx1 refuses connections (nothing listens), mx2 takes the mail
  'backup.test': {
    mx: [
      [20, 'mx2.backup.test'],
      [10, 'mx1.backup.test'],
    ] as [number, string][],
  },
  'mx1.backup.test': { a: ['127.0.0.22'] },
  'mx2.backup.test': { a: ['127.0.0.23'] },
  'flaky.test': { mx: [[10, 'mx.flaky.test']] as [number, string][] },
  'mx.flaky.test': { a: ['127.0.0.24'] },
  'strict.test': { mx: [[10, 'mx.strict.test']] as [number, string][] },
  'mx.strict.test': { a: ['127.0.0.25'] },
  'down.test': { mx: [[10, 'mx.down.test']] as [number, string][] },
  'mx.down.test': { a: ['127.0.0.26'] },
  // its MX is this very server (it listens on 127.0.0.27:25 too)
  'loop.test': { mx: [[10, 'mx.loop.test']] as [number, string][] },
  'mx.loop.test': { a: ['127.0.0.27'] },
};

describe('outbound relay', { skip: RUN_AS_ROOT ? false : 'needs root: the remote MX sinks listen on port 25' }, () => {
  let dns: DnsZoneServer;
  let env: TestEnv;
  let daemon: Daemon;
  let submissionPort: number;
  const sinks: SmtpSink[] = [];

  async function sink(host: string, rcpt?: RcptDecision): Promise<SmtpSink> {
    const started = await startSmtpSink({ host, port: 25, rcpt });
    sinks.push(started);
    return started;
  }

  before(async () => {
    dns = await startDnsZone(ZONE);
    submissionPort = await freePort();
    env = await makeEnv({
      aliases: 'postmaster: alice\nfwd: someone@remote.test\n',
      config: {
        mynetworks: [`${MYNETWORKS_CLIENT}/32`],
        dns_servers: [dns.server],
        smtp: { submission: [`127.0.0.1:${submissionPort}`] },
        relay: {
          retry: ['200ms'],
          connect_timeout: '3s',
          timeout: '10s',
          delay_warning: '400ms',
          max_queue_lifetime: '1h',
        },
      },
    });
    // the MX port also on 127.0.0.27:25, which loop.test's MX points at
    await env.writeConfig(deepMerge(env.config, { smtp: { listen: [`127.0.0.1:${env.port}`, '127.0.0.27:25'] } }));
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    await Promise.all(sinks.map((s) => s.close()));
    await dns?.close();
    await env?.cleanup();
  });

  /** alice submits over the submission port (AUTH PLAIN; loopback may log in without TLS). */
  async function submit(to: string[], subject: string, body = 'Hello out there.'): Promise<string> {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: submissionPort,
      secure: false,
      ignoreTLS: true,
      name: 'laptop.test',
      auth: { user: 'alice', pass: PASSWORD },
    });
    try {
      const raw = crlf(
        `From: alice@${DOMAIN}`,
        `To: ${to.join(', ')}`,
        `Subject: ${subject}`,
        `Message-ID: <${subject.replace(/\W/g, '')}@laptop.test>`,
        '',
        body,
        '.leading dot line',
        '',
      );
      const info = await transport.sendMail({ envelope: { from: `alice@${DOMAIN}`, to }, raw });
      const queueId = queueIdOf(String(info.response));
      assert.ok(queueId, String(info.response));
      return queueId;
    } finally {
      transport.close();
    }
  }

  /** The delivery status notifications in alice's mailbox, parsed by Python's email package. */
  function dsnsForAlice(): {
    subject: string;
    contentType: string;
    reportType: string;
    parts: string[];
    text: string;
    status: string;
  }[] {
    const script = `
import email, json, mailbox, os, sys
from email import policy
out = []
# create=False: a mailbox made here (root's, mode 0666) would be one the daemon refuses
for msg in (mailbox.mbox(sys.argv[1], create=False) if os.path.exists(sys.argv[1]) else []):
    m = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    if m.get_content_type() != 'multipart/report':
        continue
    parts = list(m.iter_parts())
    status = parts[1].get_payload()
    out.append({
        'subject': str(m['Subject']),
        'contentType': m.get_content_type(),
        'reportType': m.get_param('report-type'),
        'parts': [p.get_content_type() for p in parts],
        'text': parts[0].get_content(),
        'status': '\\n'.join(str(block) for block in status),
    })
print(json.dumps(out))
`;
    const result = spawnSync(PYTHON, ['-c', script, env.mailbox('alice')], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as ReturnType<typeof dsnsForAlice>;
  }

  test('an authenticated message to user@remote.test reaches the MX with the right envelope and body', async () => {
    const mx = await sink('127.0.0.21');
    const queueId = await submit(['friend@remote.test'], 'hello remote');
    const sent = await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueId, 15_000, 'the relay');
    assert.equal(sent.status, 'sent');
    assert.match(String(sent.relay), /^mx\.remote\.test\[127\.0\.0\.21\]:25$/);
    assert.match(String(sent.reply), /^250 /);
    assert.equal(mx.messages.length, 1);
    const [message] = mx.messages;
    assert.equal(message!.from, `alice@${DOMAIN}`);
    assert.deepEqual(message!.to, ['friend@remote.test']);
    assert.equal(message!.helo, HOSTNAME);
    const text = message!.data.toString('latin1');
    assert.match(text, /^Subject: hello remote\r$/m);
    // our Received line on top (the next hop, or we ourselves, can count the hops)
    assert.ok(text.startsWith('Received: from laptop.test '), text.slice(0, 200));
    assert.match(
      text,
      new RegExp(
        `^\tby ${escapeRegex(HOSTNAME)} \\(mailsrv\\) with ESMTPA id ${queueId}\r\n\tfor <friend@remote\\.test>; `,
        'm',
      ),
    );
    assert.match(
      text,
      /\r\n\r\nHello out there\.\r\n\.leading dot line\r\n/,
      'the body arrives byte for byte, dot-unstuffed by the sink',
    );
    await eventually(
      () => daemon.find((e) => e.msg === 'removed' && e.queueId === queueId).length === 1,
      5000,
      'the entry leaves the queue',
    );
  });

  test('MX preference order, and fallback to the second MX when the first refuses connections', async () => {
    const backup = await sink('127.0.0.23');
    const queueId = await submit(['someone@backup.test'], 'via the backup');
    const sent = await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.queueId === queueId,
      15_000,
      'the relay via mx2',
    );
    assert.match(String(sent.relay), /^mx2\.backup\.test\[127\.0\.0\.23\]:25$/);
    assert.equal(backup.messages.length, 1);
    const asked = dns.queries.filter((q) => q.startsWith('mx1.backup.test') || q.startsWith('mx2.backup.test'));
    assert.ok(asked.length >= 2, `both MX hosts looked up: ${asked.join(', ')}`);
  });

  test('a 451 is retried (relay.retry) and then delivered; the sink sees the recipient twice', async () => {
    const flaky = await sink('127.0.0.24', (_address, attempt) =>
      attempt === 1 ? [451, '4.3.0 try again later'] : undefined,
    );
    const queueId = await submit(['twice@flaky.test'], 'retry me');
    const deferred = await daemon.waitForLog(
      (e) => e.msg === 'deferred' && e.queueId === queueId,
      15_000,
      'the deferral',
    );
    assert.match(String(deferred.reason), /451 4\.3\.0 try again later/);
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueId, 15_000, 'the retry');
    assert.equal(flaky.rcptAttempts.get('twice@flaky.test'), 2);
    assert.equal(flaky.messages.length, 1);
  });

  test('a 550 bounces: alice gets one multipart/report quoting the remote reply; never a bounce of it', async () => {
    await sink('127.0.0.25', (address) =>
      address.startsWith('nobody') ? [550, '5.1.1 <nobody@strict.test>: no such user here'] : undefined,
    );
    const before = dsnsForAlice().length;
    const queueId = await submit(['nobody@strict.test'], 'to nobody');
    const bounced = await daemon.waitForLog((e) => e.msg === 'bounced' && e.queueId === queueId, 15_000, 'the bounce');
    assert.equal(bounced.status, 'bounced');
    await eventually(() => dsnsForAlice().length === before + 1, 15_000, "the DSN in alice's mailbox");
    const dsn = dsnsForAlice().at(-1)!;
    assert.equal(dsn.reportType, 'delivery-status');
    assert.deepEqual(dsn.parts, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    assert.match(dsn.subject, /Undelivered/);
    assert.match(dsn.text, /nobody@strict\.test/);
    assert.match(dsn.text, /550 5\.1\.1 <nobody@strict\.test>: no such user here/);
    assert.match(dsn.status, /Action: failed/);
    assert.match(dsn.status, /Status: 5\.1\.1/);
    assert.match(dsn.status, /Diagnostic-Code: smtp; 550 5\.1\.1/);
    const stored = readMailbox(env.mailbox('alice')).messages.at(-1)!;
    assert.match(stored.fromLine, /^From MAILER-DAEMON /, 'the bounce has the null sender');
  });

  test('a recipient still deferred after delay_warning: alice is warned once', async () => {
    const before = dsnsForAlice().filter((d) => /Delayed/.test(d.subject)).length;
    const queueId = await submit(['late@down.test'], 'waiting');
    await daemon.waitForLogs(
      (e) => e.msg === 'deferred' && e.queueId === queueId,
      3,
      20_000,
      'three deferrals (nothing listens on mx.down.test)',
    );
    await eventually(
      () => dsnsForAlice().filter((d) => /Delayed/.test(d.subject)).length === before + 1,
      15_000,
      'one delay warning',
    );
    // while the MX is down, `mailsrv queue` shows the message, the recipient deferred, and why
    const listed = runCli(['queue', 'list', '-c', env.configPath]);
    assert.equal(listed.code, 0, listed.stderr);
    const block = listed.stdout.slice(listed.stdout.indexOf(queueId));
    assert.match(block, /late@down\.test\s+deferred/);
    assert.match(block, /4\.4\.\d .*mx\.down\.test.*(ECONNREFUSED|refused)/i);
    const warning = dsnsForAlice()
      .filter((d) => /Delayed/.test(d.subject))
      .at(-1)!;
    assert.match(warning.status, /Action: delayed/);
    assert.match(warning.status, /Will-Retry-Until:/);
    await daemon.waitForLogs((e) => e.msg === 'deferred' && e.queueId === queueId, 5, 20_000, 'more deferrals');
    assert.equal(dsnsForAlice().filter((d) => /Delayed/.test(d.subject)).length, before + 1, 'warned once only');
  });

  test('an alias pointing at a remote address forwards; mynetworks clients relay without AUTH', async () => {
    const mx = sinks.find((s) => s.host === '127.0.0.21')!;
    const seen = mx.messages.length;
    const viaAlias = await sendRaw(env.port, {
      from: 'stranger@outside.test',
      to: [`fwd@${DOMAIN}`],
      message: crlf('Subject: for the alias', '', 'forward me', ''),
    });
    assert.ok(viaAlias.queueId, JSON.stringify(viaAlias));
    const viaNetwork = await sendRaw(env.port, {
      from: 'cron@inside.test',
      to: ['ops@remote.test'],
      message: crlf('Subject: from mynetworks', '', 'hi', ''),
      localAddress: MYNETWORKS_CLIENT,
    });
    assert.ok(viaNetwork.queueId, JSON.stringify(viaNetwork));
    await eventually(() => mx.messages.length === seen + 2, 15_000, 'both at the remote MX');
    const forwarded = mx.messages.find((m) => m.to.includes('someone@remote.test'))!;
    // SRS: the next hop's SPF check sees our name (the forwarding test covers the rest)
    assert.match(
      forwarded.from,
      new RegExp(`^SRS0=[^=]{4}=[A-Z2-7]{2}=outside\\.test=stranger@${escapeRegex(HOSTNAME)}$`),
    );
    assert.ok(mx.messages.some((m) => m.to.includes('ops@remote.test') && m.from === 'cron@inside.test'));
  });

  test('an MX that is this server: bounced as a loop, not sent round; 51 Received headers refused', async () => {
    const queueId = await submit(['someone@loop.test'], 'to myself');
    const bounced = await daemon.waitForLog(
      (e) => e.msg === 'bounced' && e.queueId === queueId,
      15_000,
      'the loop bounce',
    );
    assert.match(String(bounced.reason), /^5\.4\.6 mail for loop\.test loops back to myself/);
    const received = Array.from(
      { length: 51 },
      (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; ${new Date().toUTCString()}`,
    );
    const looping = await sendRaw(env.port, {
      from: 'x@outside.test',
      to: [`alice@${DOMAIN}`],
      message: crlf(...received, 'Subject: round and round', '', 'body', ''),
    });
    assert.equal(looping.end?.code, 554, looping.end?.raw);
    assert.match(looping.end!.raw, /5\.4\.6 Too many hops/);
  });

  test('open-relay tricks from outside mynetworks are refused or stay local, never relayed', async () => {
    const mx = sinks.find((s) => s.host === '127.0.0.21')!;
    const seen = mx.messages.length;
    const tricks = [
      `user%remote.test@${DOMAIN}`,
      `@${DOMAIN}:user@remote.test`,
      `"user@remote.test"@${DOMAIN}`,
      `remote.test!user@${DOMAIN}`,
      'user@remote.test',
    ];
    for (const trick of tricks) {
      const replies = await smtpDialog(env.port, [
        'EHLO outside.test',
        'MAIL FROM:<x@outside.test>',
        `RCPT TO:<${trick}>`,
      ]);
      const rcpt = replies[3]!;
      assert.ok(rcpt.code >= 500, `${trick}: ${rcpt.raw}`);
    }
    // refused at RCPT, nothing was queued: nothing can be relayed later
    await logsSoFar(daemon, env.port);
    assert.equal(daemon.find((e) => e.msg === 'queued' && e.from === 'x@outside.test').length, 0);
    assert.equal(mx.messages.length, seen);
  });

  test('kill -9 with a message deferred, then a restart: delivered once, nothing lost', async () => {
    const queueId = await submit(['again@flaky.test'], 'survive a crash');
    // mx.flaky.test answers 451 the first time: the message is deferred for 200 ms
    await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === queueId, 15_000, 'the deferral');
    await daemon.kill9();
    const killed = daemon;
    daemon = await startDaemon(env);
    const isDone = (e: LogEntry) => e.queueId === queueId && e.msg === 'removed';
    // the retry normally comes after the restart; on a slow box it may have beaten the kill
    if (killed.find(isDone).length === 0) await daemon.waitForLog(isDone, 15_000, 'delivery after the restart');
    const flaky = sinks.find((s) => s.host === '127.0.0.24')!;
    assert.equal(flaky.messages.filter((m) => m.to.includes('again@flaky.test')).length, 1);
  });
});

describe('outbound relay: expiry', {
  skip: RUN_AS_ROOT ? false : 'needs root: the remote MX sinks listen on port 25',
}, () => {
  test('a recipient still deferred after max_queue_lifetime expires and bounces to the sender', async () => {
    const dns = await startDnsZone(ZONE);
    const submissionPort = await freePort();
    const env = await makeEnv({
      config: {
        dns_servers: [dns.server],
        smtp: { submission: [`127.0.0.1:${submissionPort}`] },
        relay: {
          retry: ['200ms'],
          connect_timeout: '2s',
          delay_warning: '1h',
          max_queue_lifetime: '600ms',
        },
      },
    });
    const daemon = await startDaemon(env);
    try {
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: submissionPort,
        secure: false,
        ignoreTLS: true,
        auth: { user: 'alice', pass: PASSWORD },
      });
      const info = await transport.sendMail({
        envelope: { from: `alice@${DOMAIN}`, to: ['gone@down.test'] },
        raw: crlf(`From: alice@${DOMAIN}`, 'Subject: never arrives', '', 'x', ''),
      });
      transport.close();
      const queueId = queueIdOf(String(info.response))!;
      const expired = await daemon.waitForLog(
        (e) => e.msg === 'expired' && e.queueId === queueId,
        20_000,
        'the expiry',
      );
      assert.equal(expired.status, 'expired');
      await eventually(
        () => readMailbox(env.mailbox('alice')).messages.some((m) => /^From MAILER-DAEMON /.test(m.fromLine)),
        15_000,
        'the bounce for alice',
      );
      const bounce = readMailbox(env.mailbox('alice')).messages.find((m) => /^From MAILER-DAEMON /.test(m.fromLine))!;
      const text = bounce.original.toString('latin1');
      assert.match(text, /multipart\/report; report-type=delivery-status/);
      assert.match(text, /Final-Recipient: rfc822; gone@down\.test/);
      assert.match(text, /Action: failed/);
    } finally {
      await daemon.kill9();
      await dns.close();
      await env.cleanup();
    }
  });
});

describe('outbound relay: smarthost', () => {
  test('with relay.relayhost everything goes to the smarthost, no MX lookup, our Received line on top', async () => {
    const smarthost = await startSmtpSink();
    const env = await makeEnv({
      config: {
        mynetworks: [`${MYNETWORKS_CLIENT}/32`],
        relay: { relayhost: `127.0.0.1:${smarthost.port}`, dns_servers: ['127.0.0.1:9'], retry: ['200ms'] },
      },
    });
    const daemon = await startDaemon(env);
    try {
      const result = await sendRaw(env.port, {
        from: 'cron@inside.test',
        to: ['a@one.example', 'b@two.example'],
        message: crlf('Subject: via the smarthost', '', 'hello', ''),
        localAddress: MYNETWORKS_CLIENT,
      });
      assert.ok(result.queueId, JSON.stringify(result));
      await daemon.waitForLogs(
        (e) => e.msg === 'delivered' && e.queueId === result.queueId,
        2,
        15_000,
        'both recipients at the smarthost',
      );
      const relays = daemon
        .find((e) => e.msg === 'delivered' && e.queueId === result.queueId)
        .map((e) => String(e.relay));
      assert.ok(
        relays.every((r) => r === `[127.0.0.1]:${smarthost.port}`),
        relays.join(', '),
      );
      const got = smarthost.messages.flatMap((m) => m.to).sort();
      assert.deepEqual(got, ['a@one.example', 'b@two.example']);
      assert.ok(smarthost.messages.every((m) => m.from === 'cron@inside.test'));
      assert.ok(smarthost.messages[0]!.data.toString('latin1').startsWith('Received: from '));
    } finally {
      await daemon.kill9();
      await smarthost.close();
      await env.cleanup();
    }
  });
});
