// `mailsrv report`'s parts on a fixed log sample (lines shaped as the daemon logs them):
// the totals and lists, lines that are not JSON, --since from the newest line of a file and
// from an injected now on stdin, bounded top lists, an over-long line, and the SVG chart
// (well-formed XML, read by python3's parser).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { MailLogReport } from '../../src/report/aggregate.js';
import { BoundedCounter } from '../../src/report/counter.js';
import { MAX_LOG_LINE, readLog } from '../../src/report/read.js';
import { summarizeLog } from '../../src/report/summarize.js';
import { niceCeiling, trafficSvg } from '../../src/report/svg.js';
import { formatReport } from '../../src/report/text.js';
import { PYTHON } from '../e2e/harness/constants.js';

const base = { level: 'info', service: 'mailsrv' };
const at = (time: string, fields: Record<string, unknown>) => JSON.stringify({ ...base, time, ...fields });

/** Two hours of a day (07:xx and 09:xx, none at 08:xx), then a line from the next day. */
const SAMPLE = [
  at('2026-12-05T07:00:00.000Z', { pid: 1, msg: 'ready' }),
  at('2026-12-05T07:01:00.000Z', { sessionId: 's1', client: '192.0.2.1', port: 25, listener: 'mx', msg: 'connect' }),
  at('2026-12-05T07:01:01.000Z', {
    sessionId: 's1',
    to: 'nobody@example.test',
    reply: '550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in local recipient table',
    msg: 'reject',
  }),
  at('2026-12-05T07:01:02.000Z', {
    sessionId: 's1',
    queueId: 'Q1',
    from: 'Sender@client.test',
    nrcpt: 2,
    size: 1000,
    client: '192.0.2.1',
    msg: 'queued',
  }),
  'this is not JSON: a line pino-pretty or a shell wrote',
  at('2026-12-05T07:01:03.000Z', {
    queueId: 'Q1',
    to: 'bob@example.test',
    user: 'bob',
    status: 'sent',
    msg: 'delivered',
  }),
  at('2026-12-05T07:02:00.000Z', {
    queueId: 'Q1',
    to: 'alice@example.test',
    status: 'deferred',
    reason: '4.2.0 mailbox of alice is locked by another program',
    attempts: 1,
    msg: 'deferred',
  }),
  at('2026-12-05T07:03:00.000Z', {
    client: '192.0.2.9',
    listener: 'mx',
    maxClients: 1,
    msg: 'smtp: too many connections',
  }),
  at('2026-12-05T07:04:00.000Z', { sessionId: 'P1', client: '192.0.2.5', port: 110, listener: 'pop3', msg: 'connect' }),
  at('2026-12-05T07:04:01.000Z', {
    sessionId: 'P1',
    user: 'bob',
    client: '192.0.2.5',
    delayMs: 2000,
    msg: 'login failed',
  }),
  at('2026-12-05T07:04:05.000Z', { sessionId: 'P1', user: 'bob', client: '192.0.2.5', messages: 1, msg: 'login' }),
  '{"half a JSON line',
  at('2026-12-05T09:10:00.000Z', {
    sessionId: 's2',
    client: '192.0.2.7',
    port: 587,
    listener: 'submission',
    msg: 'connect',
  }),
  at('2026-12-05T09:10:01.000Z', {
    sessionId: 's2',
    user: 'carol',
    client: '192.0.2.7',
    method: 'LOGIN',
    msg: 'login failed',
  }),
  at('2026-12-05T09:10:02.000Z', {
    sessionId: 's2',
    user: 'carol',
    client: '192.0.2.7',
    method: 'PLAIN',
    msg: 'login',
  }),
  at('2026-12-05T09:10:03.000Z', {
    sessionId: 's2',
    queueId: 'Q2',
    from: 'carol@example.test',
    nrcpt: 1,
    size: 500,
    client: '192.0.2.7',
    msg: 'queued',
  }),
  at('2026-12-05T09:10:04.000Z', {
    queueId: 'Q2',
    to: 'gone@remote.test',
    status: 'bounced',
    reason: '550 5.1.1 <gone@remote.test>: no such user',
    msg: 'bounced',
  }),
  at('2026-12-05T09:20:00.000Z', { queueId: 'Q3', from: '', nrcpt: 1, size: 200, uid: 0, msg: 'queued' }),
  at('2026-12-05T09:20:01.000Z', {
    queueId: 'Q3',
    to: 'Bob@example.test',
    user: 'bob',
    status: 'sent',
    msg: 'delivered',
  }),
  at('2026-12-05T09:30:00.000Z', {
    queueId: 'Q1',
    to: 'alice@example.test',
    status: 'expired',
    reason: '4.2.0 mailbox of alice is locked by another program',
    msg: 'expired',
  }),
  at('2026-12-05T09:40:00.000Z', {
    file: 'x',
    uid: 1000,
    reason: 'no recipients',
    msg: 'maildrop file rejected and removed',
  }),
  JSON.stringify({ note: 'JSON but not a mailsrv line' }),
  '',
  at('2026-12-06T09:00:00.000Z', { queueId: 'Q4', from: 'late@client.test', nrcpt: 1, size: 10, msg: 'queued' }),
];

function reportOf(lines: string[], cutoff: number | null = null) {
  const report = new MailLogReport({ cutoff });
  for (const line of lines) report.addLine(line);
  return report.summary(10);
}

const pairs = (list: { key: string; count: number }[]) => list.map(({ key, count }) => [key, count]);

test('totals, per-hour traffic and lists of the sample', () => {
  const summary = reportOf(SAMPLE);
  assert.deepEqual(summary.totals, {
    received: 4,
    receivedBytes: 1710,
    delivered: 2,
    deferred: 1,
    bounced: 1,
    expired: 1,
    rejected: 2,
    connections: 3,
    connectionsRefused: 1,
    pop3Logins: 1,
    smtpLogins: 1,
    authFailures: 2,
    pop3AuthFailures: 1,
    smtpAuthFailures: 1,
  });
  assert.deepEqual(summary.lines, { total: 23, notJson: 2, other: 1, beforeSince: 0 });
  assert.equal(summary.first, '2026-12-05T07:00:00.000Z');
  assert.equal(summary.last, '2026-12-06T09:00:00.000Z');
  assert.equal(summary.since, null);
  // every hour from the first to the last, the quiet ones too
  assert.equal(summary.hours.length, 27);
  assert.deepEqual(summary.hours[0], {
    hour: '2026-12-05T07:00:00.000Z',
    received: 1,
    delivered: 1,
    deferred: 1,
    bounced: 0,
    rejected: 1,
  });
  assert.deepEqual(summary.hours[1], {
    hour: '2026-12-05T08:00:00.000Z',
    received: 0,
    delivered: 0,
    deferred: 0,
    bounced: 0,
    rejected: 0,
  });
  assert.deepEqual(summary.hours[2], {
    hour: '2026-12-05T09:00:00.000Z',
    received: 2,
    delivered: 1,
    deferred: 0,
    bounced: 2,
    rejected: 1,
  });
  assert.equal(summary.hours[26]!.received, 1);
  assert.deepEqual(
    summary.topSenders,
    [
      { key: 'sender@client.test', count: 1, bytes: 1000 },
      { key: 'carol@example.test', count: 1, bytes: 500 },
      { key: '<>', count: 1, bytes: 200 },
      { key: 'late@client.test', count: 1, bytes: 10 },
    ].sort((a, b) => (a.key < b.key ? -1 : 1)),
  );
  assert.deepEqual(pairs(summary.topRecipients), [['bob@example.test', 2]]);
  assert.deepEqual(pairs(summary.rejectionReasons), [
    ['550 5.1.1 <address>: Recipient address rejected: User unknown in local recipient table', 1],
    ['maildrop: no recipients', 1],
  ]);
  assert.deepEqual(pairs(summary.deferralReasons), [['4.2.0 mailbox of alice is locked by another program', 1]]);
  assert.deepEqual(pairs(summary.bounceReasons), [
    ['550 5.1.1 <address>: no such user', 1],
    ['expired: 4.2.0 mailbox of alice is locked by another program', 1],
  ]);
  assert.deepEqual(pairs(summary.connectionsByListener), [
    ['mx', 1],
    ['pop3', 1],
    ['submission', 1],
  ]);
  assert.deepEqual(pairs(summary.pop3LoginsByUser), [['bob', 1]]);
  assert.deepEqual(pairs(summary.smtpLoginsByUser), [['carol', 1]]);
  assert.deepEqual(pairs(summary.authFailuresByClient), [
    ['192.0.2.5', 1],
    ['192.0.2.7', 1],
  ]);
  assert.deepEqual(pairs(summary.authFailuresByUser), [
    ['bob', 1],
    ['carol', 1],
  ]);
  assert.deepEqual(summary.approximate, []);
  const text = formatReport(summary);
  assert.match(text, /^ {2}received +4 {2}messages, 1710 bytes$/m);
  assert.match(text, /^ {2}2026-12-05 08:00 +0 +0 +0 +0 +0$/m);
  assert.match(text, /^ {2}log lines +23 {2}\(2 not JSON, 1 other, 0 before --since\)$/m);
});

test('--since: lines before the cutoff are skipped and counted', () => {
  const summary = reportOf(SAMPLE, Date.parse('2026-12-05T09:00:00.000Z'));
  assert.equal(summary.since, '2026-12-05T09:00:00.000Z');
  assert.equal(summary.totals.received, 3);
  assert.equal(summary.totals.rejected, 1);
  assert.equal(summary.lines.beforeSince, 10);
  assert.equal(summary.hours[0]!.hour, '2026-12-05T09:00:00.000Z');
});

test('--since counts back from the newest line of a file, or from now on stdin', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mailsrv-report-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'mailsrv.log');
  // the last line has no line end
  writeFileSync(path, SAMPLE.join('\n'));
  const neverNow = () => assert.fail('a file has a newest line: now is not asked');
  const fromFile = await summarizeLog({ path, stdin: Readable.from([]), sinceMs: 3_600_000, top: 5, now: neverNow });
  assert.equal(fromFile.since, '2026-12-06T08:00:00.000Z');
  assert.equal(fromFile.totals.received, 1, 'only the newest line is within the hour before it');
  assert.equal(fromFile.lines.total, 23);

  const now = () => Date.parse('2026-12-05T09:15:00.000Z');
  const stdin = Readable.from([Buffer.from(SAMPLE.join('\n'))]);
  const fromStdin = await summarizeLog({ path: null, stdin, sinceMs: 30 * 60_000, top: 5, now });
  assert.equal(fromStdin.since, '2026-12-05T08:45:00.000Z');
  // 09:10 (carol) and 09:20 (null sender) and the next day's: lines are not cut at "now"
  assert.equal(fromStdin.totals.received, 3);

  const everything = await summarizeLog({ path, stdin: Readable.from([]), sinceMs: null, top: 5, now: neverNow });
  assert.equal(everything.totals.received, 4);
});

test('the log is read line by line: lines split across chunks, an over-long line counted, CRLF', async () => {
  const text = `${SAMPLE[1]}\r\n${'x'.repeat(MAX_LOG_LINE + 10)}\n${SAMPLE[3]}\n`;
  const report = new MailLogReport({ cutoff: null });
  // 100-byte chunks: every line arrives in pieces
  const chunks: Buffer[] = [];
  for (let i = 0; i < text.length; i += 100) chunks.push(Buffer.from(text.slice(i, i + 100)));
  await readLog(Readable.from(chunks), report);
  const summary = report.summary(5);
  assert.deepEqual(summary.lines, { total: 3, notJson: 1, other: 0, beforeSince: 0 });
  assert.equal(summary.totals.connections, 1);
  assert.equal(summary.totals.received, 1);
});

test('top lists hold a bounded number of keys and say when they are approximate', () => {
  const counter = new BoundedCounter(4);
  for (const key of ['a', 'a', 'a', 'b', 'b', 'c']) counter.add(key);
  assert.equal(counter.approximate, false);
  counter.add('d');
  counter.add('e'); // full: the less frequent half goes
  assert.equal(counter.approximate, true);
  assert.deepEqual(pairs(counter.top(10)), [
    ['a', 3],
    ['b', 2],
    ['e', 1],
  ]);
  counter.add('x'.repeat(500));
  assert.equal(counter.top(10).find((k) => k.key.startsWith('xxx'))!.key.length, 203);

  const report = new MailLogReport({ cutoff: null, maxKeys: 2 });
  for (const to of ['a@x', 'b@x', 'c@x'])
    report.addLine(at('2026-12-05T07:00:00.000Z', { to, status: 'sent', msg: 'delivered' }));
  assert.deepEqual(report.summary(10).approximate, ['topRecipients']);
  assert.match(formatReport(report.summary(10)), /^Recipients by deliveries \(approximate/m);
});

test('the per-hour table keeps the newest 31 days', () => {
  const report = new MailLogReport({ cutoff: null });
  const start = Date.parse('2026-11-01T00:00:00.000Z');
  for (let hour = 0; hour < 800; hour++) {
    const time = new Date(start + hour * 3_600_000).toISOString();
    report.addLine(at(time, { from: 'a@x', size: 1, msg: 'queued' }));
  }
  const summary = report.summary(5);
  assert.equal(summary.totals.received, 800, 'the totals count every line');
  assert.equal(summary.hours.length, 31 * 24);
  assert.equal(summary.hoursTruncated, true);
  assert.equal(summary.hours[0]!.hour, new Date(start + (800 - 31 * 24) * 3_600_000).toISOString());
  assert.match(formatReport(summary), /^Per-hour traffic \(UTC, the newest hours only\)$/m);
});

test('control characters from clients are not printed to the terminal', () => {
  const report = new MailLogReport({ cutoff: null });
  report.addLine(at('2026-12-05T07:00:00.000Z', { user: 'x\u001b[2Jy', client: '192.0.2.1', msg: 'login failed' }));
  assert.match(formatReport(report.summary(5)), /^ +1 {2}x\?\[2Jy$/m);
});

test('the chart is well-formed SVG with a bar per hour and kind, and round y ticks', () => {
  const summary = reportOf(SAMPLE);
  const svg = trafficSvg(summary);
  const parsed = execFileSync(
    PYTHON,
    [
      '-c',
      'import sys, json, xml.etree.ElementTree as E\n' +
        'root = E.fromstring(sys.stdin.read())\n' +
        "ns = '{http://www.w3.org/2000/svg}'\n" +
        "print(json.dumps({'tag': root.tag, 'titles': [t.text for t in root.iter(ns + 'title')],\n" +
        "  'texts': [t.text for t in root.iter(ns + 'text')]}))",
    ],
    { input: svg, encoding: 'utf8' },
  );
  const { tag, titles, texts } = JSON.parse(parsed) as { tag: string; titles: string[]; texts: string[] };
  assert.equal(tag, '{http://www.w3.org/2000/svg}svg');
  assert.deepEqual(titles, [
    '2026-12-05 07:00 UTC: 1 received',
    '2026-12-05 07:00 UTC: 1 delivered',
    '2026-12-05 09:00 UTC: 2 received',
    '2026-12-05 09:00 UTC: 1 delivered',
    '2026-12-06 09:00 UTC: 1 received',
  ]);
  assert.ok(texts.includes('messages received') && texts.includes('recipients delivered'), texts.join('|'));
  assert.ok(texts.includes('12-05 07h'), 'hour labels');
  for (const tick of ['0', '1', '2', '3', '4', '5']) assert.ok(texts.includes(tick), `y tick ${tick}`);

  const empty = trafficSvg(reportOf([]));
  assert.match(empty, /no traffic/);
  execFileSync(PYTHON, ['-c', 'import sys, xml.etree.ElementTree as E; E.fromstring(sys.stdin.read())'], {
    input: empty,
  });
});

test('y axis tops: five whole ticks', () => {
  assert.deepEqual([0, 1, 5, 6, 11, 26, 99, 101, 2400].map(niceCeiling), [5, 5, 5, 10, 25, 50, 100, 250, 2500]);
});
