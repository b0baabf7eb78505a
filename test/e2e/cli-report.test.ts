// E2E: `mailsrv report` on the real daemon's own stdout. The daemon receives mail (one message
// deferred by a locked mailbox, one bounced by the smarthost, whose notice goes back to its
// local sender), refuses two recipients, logs a POP3 user in (and another out with a bad
// password) and refuses a bad SMTP AUTH; the report of that log, from a file and from stdin,
// has exactly those totals and lists, and its chart is well-formed SVG (python3's XML parser).
// Bad options and a missing file fail with one line.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ReportSummary } from '../../src/report/aggregate.js';
import { startSmtpSink } from '../support/smtp-sink.js';
import {
  authPlain,
  DOMAIN,
  envForTest,
  freePort,
  note,
  Pop3Client,
  PYTHON,
  runCli,
  sendRaw,
  smtpDialog,
} from './harness.js';

test('the report of a real daemon log counts what the daemon did', async (t) => {
  const sink = await startSmtpSink({
    rcpt: (address) => (address === 'gone@remote.test' ? [550, '5.1.1 <gone@remote.test>: no such user'] : undefined),
  });
  t.after(() => sink.close());
  const pop3Port = await freePort();
  const { env, start } = await envForTest(t, {
    config: {
      dns_servers: ['127.0.0.1:9'],
      pop3: { listen: [`127.0.0.1:${pop3Port}`] },
      auth: { failure_delay: '50ms' },
      delivery: { retry: ['1h'] },
      relay: { relayhost: `127.0.0.1:${sink.port}`, retry: ['1h'] },
    },
  });
  const lock = `${env.mailbox('alice')}.lock`;
  execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
  t.after(() => void spawnSync('dotlockfile', ['-u', lock]));
  const daemon = await start();

  const sent = [
    await sendRaw(env.port, {
      from: 'sender@client.test',
      to: [`alice@${DOMAIN}`, `bob@${DOMAIN}`],
      message: note('1'),
    }),
    await sendRaw(env.port, { from: 'sender@client.test', to: [`carol@${DOMAIN}`], message: note('2') }),
    await sendRaw(env.port, {
      from: 'Other@client.test',
      to: [`nobody@${DOMAIN}`, `bob@${DOMAIN}`],
      message: note('3'),
    }),
    // 127.0.0.2 is in the test's mynetworks: relayed to the sink, which refuses it
    await sendRaw(env.port, {
      localAddress: '127.0.0.2',
      from: `bob@${DOMAIN}`,
      to: ['gone@remote.test'],
      message: note('4'),
    }),
  ];
  for (const result of sent) assert.ok(result.queueId, JSON.stringify(result));
  const relayDenied = await sendRaw(env.port, { from: 'stranger@client.test', to: ['x@remote.test'], message: '' });
  assert.equal(relayDenied.rcpt[0]!.code, 554);
  const badAuth = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('alice', 'wrong')}`]);
  assert.equal(badAuth[2]!.code, 535, badAuth[2]!.raw);
  const goodAuth = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('carol')}`]);
  assert.equal(goodAuth[2]!.code, 235, goodAuth[2]!.raw);

  // bob: messages 1 and 3, and the notice of message 4's bounce
  await daemon.waitForLogs((e) => e.msg === 'delivered' && e.user === 'bob', 3, 20_000, 'three deliveries to bob');
  await daemon.waitForLog((e) => e.msg === 'deferred' && e.to === `alice@${DOMAIN}`, 10_000, 'alice deferred');
  const pop3 = await Pop3Client.login(pop3Port, 'bob');
  assert.match((await pop3.message('RETR 1')).status, /^\+OK/);
  assert.match(await pop3.quit(), /^\+OK/);
  const { client: failing } = await Pop3Client.connect(pop3Port);
  await failing.cmd('USER carol');
  assert.match(await failing.cmd('PASS wrong'), /^-ERR/);
  await failing.quit();
  assert.equal(await daemon.stop(), 0);

  const logFile = join(env.dir, 'mailsrv.log');
  writeFileSync(logFile, daemon.stdout);
  const fromFile = runCli(['report', '--json', '--since', '1h', logFile]);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  const report = JSON.parse(fromFile.stdout) as ReportSummary;
  const { totals } = report;
  assert.deepEqual(
    {
      received: totals.received,
      delivered: totals.delivered,
      deferred: totals.deferred,
      bounced: totals.bounced,
      rejected: totals.rejected,
      pop3Logins: totals.pop3Logins,
      smtpLogins: totals.smtpLogins,
      pop3AuthFailures: totals.pop3AuthFailures,
      smtpAuthFailures: totals.smtpAuthFailures,
    },
    {
      received: 4,
      delivered: 4,
      deferred: 1,
      bounced: 1,
      rejected: 2,
      pop3Logins: 1,
      smtpLogins: 1,
      pop3AuthFailures: 1,
      smtpAuthFailures: 1,
    },
    fromFile.stdout,
  );
  assert.deepEqual(report.lines, { total: daemon.logs.length, notJson: 0, other: 0, beforeSince: 0 });
  assert.deepEqual(report.connectionsByListener, [
    { key: 'mx', count: 7, bytes: 0 },
    { key: 'pop3', count: 2, bytes: 0 },
  ]);
  const keysAndCounts = (list: { key: string; count: number }[]) => list.map(({ key, count }) => [key, count]);
  assert.deepEqual(keysAndCounts(report.topSenders), [
    ['sender@client.test', 2],
    [`bob@${DOMAIN}`, 1],
    ['other@client.test', 1],
  ]);
  assert.deepEqual(keysAndCounts(report.topRecipients), [
    [`bob@${DOMAIN}`, 3],
    [`carol@${DOMAIN}`, 1],
  ]);
  assert.deepEqual(keysAndCounts(report.rejectionReasons), [
    ['550 5.1.1 <address>: Recipient address rejected: User unknown in local recipient table', 1],
    ['554 5.7.1 <address>: Relay access denied', 1],
  ]);
  assert.equal(report.deferralReasons.length, 1);
  assert.match(report.deferralReasons[0]!.key, /mailbox of alice is locked/);
  assert.deepEqual(keysAndCounts(report.bounceReasons), [['550 5.1.1 <address>: no such user', 1]]);
  assert.deepEqual(keysAndCounts(report.pop3LoginsByUser), [['bob', 1]]);
  assert.deepEqual(keysAndCounts(report.smtpLoginsByUser), [['carol', 1]]);
  assert.deepEqual(keysAndCounts(report.authFailuresByUser), [
    ['alice', 1],
    ['carol', 1],
  ]);
  assert.deepEqual(keysAndCounts(report.authFailuresByClient), [['127.0.0.1', 2]]);
  const hourly = report.hours.reduce((sum, hour) => sum + hour.received, 0);
  assert.equal(hourly, 4, JSON.stringify(report.hours));

  // the same log on stdin, as text, with the chart
  const svgFile = join(env.dir, 'traffic.svg');
  const fromStdin = runCli(['report', '--svg', svgFile, '-'], { input: daemon.stdout });
  assert.equal(fromStdin.code, 0, fromStdin.stderr);
  assert.match(fromStdin.stdout, /^ {2}received +4 {2}messages, \d+ bytes$/m);
  assert.match(fromStdin.stdout, /^ {2}rejected +2 /m);
  assert.match(fromStdin.stdout, /^ {9}3 {2}bob@example\.test$/m);
  const bars = execFileSync(
    PYTHON,
    [
      '-c',
      'import sys, xml.etree.ElementTree as E\n' +
        'root = E.parse(sys.argv[1]).getroot()\n' +
        "titles = [t.text for t in root.iter('{http://www.w3.org/2000/svg}title')]\n" +
        'print(sum(int(t.split(": ")[1].split()[0]) for t in titles if t.endswith(" received")))',
      svgFile,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(bars.trim(), '4', 'the bars of messages received add up to the total');
});

test('report: bad options and a missing log file fail with one line on stderr', () => {
  const cases: [string[], RegExp][] = [
    [['report', '/nonexistent/mailsrv.log'], /^mailsrv: cannot read \/nonexistent\/mailsrv\.log: ENOENT/],
    [['report', '--since', 'yesterday', '-'], /^mailsrv: --since: expected a duration such as "24h"/],
    [['report', '--top', '0', '-'], /^mailsrv: --top: expected a number from 1 to 1000/],
  ];
  for (const [args, message] of cases) {
    const result = runCli(args, { input: '' });
    assert.equal(result.code, 1, args.join(' '));
    assert.match(result.stderr, message);
    assert.equal(result.stderr.split('\n').length, 2, result.stderr);
  }
});
