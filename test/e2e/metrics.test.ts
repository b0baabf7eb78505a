// E2E: the monitoring listener ([metrics] listen). After real SMTP and POP3 traffic (mail
// delivered, recipients refused, failed and good logins, a RETR), a scrape of /metrics passes
// `promtool check metrics` (Prometheus' own parser and linter) and its values count exactly
// what happened; /healthz answers "ok", and 503 once a stop has begun (held open by an outbound
// delivery to a relayhost that never answers); anything but GET /metrics and /healthz is
// refused, and oversized requests too. contrib/prometheus-alerts.yml and the queries of
// contrib/grafana-dashboard.json pass `promtool check rules` and name only exported metrics;
// `promtool test rules` shows each alert firing on the series it is meant for.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  authPlain,
  DOMAIN,
  HOSTNAME,
  deliverOverSmtp,
  envForTest,
  eventually,
  freePort,
  Pop3Client,
  REPO_ROOT,
  sendRaw,
  smtpDialog,
} from './harness.js';

/** In the test config's mynetworks: may relay. */
const MYNETWORKS_CLIENT = '127.0.0.2';

/** `promtool check metrics` over `text`: its complaints, one a line ([] = clean). */
function promtoolProblems(text: string): string[] {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.ok(result.error === undefined, `promtool (Debian package "prometheus") is needed: ${result.error?.message}`);
  return `${result.stdout}${result.stderr}`.split('\n').filter((line) => line.trim() !== '');
}

/**
 * Lint complaints about prom-client's own default metrics (gauges named *_total), which
 * mailsrv exports as prom-client makes them; anything else (a parse error, a mailsrv_ metric)
 * is a failure.
 */
const PROM_CLIENT_LINT = /^nodejs_active_\w+_total non-counter metrics should not have "_total" suffix$/;

/** The samples of an exposition: `name{label="v",...}` (labels sorted) → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = (m[2] ?? '').match(/\w+="(?:[^"\\]|\\.)*"/g) ?? [];
    out.set(labels.length > 0 ? `${m[1]}{${labels.sort().join(',')}}` : m[1]!, Number(m[3]));
  }
  return out;
}

interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(port: number, path: string, options: { method?: string; headers?: Record<string, string> } = {}) {
  return new Promise<HttpReply>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.method === 'POST' ? 'x=1' : undefined);
  });
}

test('metrics count real traffic and pass promtool; /healthz follows the stop', async (t) => {
  const metricsPort = await freePort();
  const pop3Port = await freePort();
  // the relayhost: accepts the connection and says nothing until the test lets it go
  const held: Socket[] = [];
  const relayhost = createServer((socket) => {
    socket.on('error', () => undefined);
    held.push(socket);
  });
  await new Promise<void>((resolve) => relayhost.listen(0, '127.0.0.1', resolve));
  t.after(() => relayhost.close());
  const relayPort = (relayhost.address() as { port: number }).port;
  const { env, start } = await envForTest(t, {
    tls: true,
    config: {
      metrics: { listen: [`127.0.0.1:${metricsPort}`] },
      pop3: { listen: [`127.0.0.1:${pop3Port}`] },
      auth: { failure_delay: '10ms' },
      relay: { relayhost: `127.0.0.1:${relayPort}`, connect_timeout: '5m' },
    },
  });
  const daemon = await start();

  await deliverOverSmtp(daemon, env, 'alice', 'Subject: one\r\n\r\nfirst\r\n');
  await deliverOverSmtp(daemon, env, 'bob', 'Subject: two\r\n\r\nsecond\r\n');
  const unknown = await sendRaw(env.port, { from: 'a@client.test', to: [`nobody@${DOMAIN}`], message: 'x' });
  assert.equal(unknown.rcpt[0]!.code, 550);
  const relay = await sendRaw(env.port, { from: 'a@client.test', to: ['someone@elsewhere.test'], message: 'x' });
  assert.equal(relay.rcpt[0]!.code, 554);
  const auth = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('alice', 'wrong')}`]);
  assert.equal(auth[2]!.code, 535);

  const { client: refused } = await Pop3Client.connect(pop3Port);
  await refused.cmd('USER alice');
  assert.match(await refused.cmd('PASS wrong'), /^-ERR/);
  await refused.quit();
  const pop3 = await Pop3Client.login(pop3Port, 'alice');
  const retr = await pop3.message('RETR 1');
  const octets = Number(/^\+OK (\d+) octets/.exec(retr.status)![1]);
  await pop3.quit();

  const scrape = await http(metricsPort, '/metrics');
  assert.equal(scrape.status, 200);
  assert.match(String(scrape.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const problems = promtoolProblems(scrape.body).filter((line) => !PROM_CLIENT_LINT.test(line));
  assert.deepEqual(problems, [], `promtool check metrics:\n${problems.join('\n')}`);

  const values = samples(scrape.body);
  const smtpConnects = daemon.find((e) => e.msg === 'connect' && e.listener === 'mx').length;
  const expected: Record<string, number> = {
    'mailsrv_connections_total{listener="mx"}': smtpConnects,
    'mailsrv_connections_total{listener="pop3"}': 2,
    mailsrv_messages_received_total: 2,
    'mailsrv_messages_delivered_total{kind="local"}': 2,
    'mailsrv_messages_delivered_total{kind="remote"}': 0,
    'mailsrv_delivery_seconds_count{kind="local"}': 2,
    mailsrv_messages_deferred_total: 0,
    mailsrv_messages_bounced_total: 0,
    'mailsrv_messages_rejected_total{reason="unknown_recipient"}': 1,
    'mailsrv_messages_rejected_total{reason="relay_denied"}': 1,
    'mailsrv_auth_failures_total{protocol="smtp"}': 1,
    'mailsrv_auth_failures_total{protocol="pop3"}': 1,
    'mailsrv_pop3_logins_total{result="ok"}': 1,
    'mailsrv_pop3_logins_total{result="invalid"}': 1,
    mailsrv_pop3_retrieved_bytes_total: octets,
    mailsrv_queue_messages: 0,
    mailsrv_queue_oldest_seconds: 0,
    mailsrv_config_last_reload_successful: 1,
    [`mailsrv_build_info{version="${packageJsonVersion()}"}`]: 1,
    [`mailsrv_tls_certificate_expiry_timestamp_seconds{names="${HOSTNAME}"}`]:
      Date.parse(new X509Certificate(env.tls!.cert).validTo) / 1000,
  };
  for (const [series, value] of Object.entries(expected)) assert.equal(values.get(series), value, series);
  assert.ok(smtpConnects >= 5, 'every SMTP connection of the test was logged');
  assert.ok(values.get('mailsrv_eventloop_lag_seconds')! >= 0, 'event-loop lag');
  assert.ok(values.get('process_resident_memory_bytes')! > 0, "prom-client's process metrics");
  assert.ok(values.get('mailsrv_sessions{protocol="smtp"}')! >= 0, 'sessions gauge');
  // the dashboard and the alerts ask only for metrics that exist
  assert.equal(alertExpressions().length, 9);
  const exported = new Set([...values.keys()].map((series) => series.replace(/(_bucket|_count|_sum)?\{.*$/, '')));
  for (const expr of [...dashboardExpressions(), ...alertExpressions()]) {
    for (const name of expr.match(/\b(mailsrv|process|nodejs)_\w+/g) ?? []) {
      assert.ok(exported.has(name.replace(/_bucket$/, '')), `${name} (in ${expr}) is not exported`);
    }
  }

  // only GET of the two paths, bounded requests
  assert.equal((await http(metricsPort, '/healthz')).body, 'ok\n');
  assert.equal((await http(metricsPort, '/healthz')).status, 200);
  assert.equal((await http(metricsPort, '/')).status, 404);
  const post = await http(metricsPort, '/metrics', { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET');
  assert.equal((await http(metricsPort, '/metrics', { headers: { 'X-Big': 'x'.repeat(20_000) } })).status, 431);

  // a stop held open by an outbound delivery: /healthz says 503 until the process is gone
  const remote = await sendRaw(env.port, {
    from: `alice@${DOMAIN}`,
    to: ['someone@elsewhere.test'],
    message: 'Subject: out\r\n\r\nout\r\n',
    localAddress: MYNETWORKS_CLIENT,
  });
  assert.ok(remote.queueId !== null, JSON.stringify(remote.end));
  await eventually(() => held.length > 0, 10_000, 'the delivery connects to the relayhost');
  daemon.child.kill('SIGTERM');
  await daemon.waitForLog((e) => e.msg.startsWith('stopping'), 10_000, '"stopping"');
  const stopping = await http(metricsPort, '/healthz');
  assert.equal(stopping.status, 503);
  assert.equal(stopping.body, 'stopping\n');
  for (const socket of held) socket.destroy();
  assert.equal(await daemon.stop(), 0);
});

test('the alert rules and the dashboard queries pass promtool; each alert fires when it should', async (t) => {
  const alerts = spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' });
  assert.equal(alerts.status, 0, `${alerts.stdout}${alerts.stderr}${alerts.error?.message ?? ''}`);
  assert.match(alerts.stdout, /SUCCESS: 9 rules found/);
  // each alert fires on the series that should trigger it (and not on healthy ones)
  const fixture = join(REPO_ROOT, 'test', 'fixtures', 'prometheus-alerts.test.yml');
  const fired = spawnSync('promtool', ['test', 'rules', fixture], { encoding: 'utf8' });
  assert.equal(fired.status, 0, `${fired.stdout}${fired.stderr}`);

  // each dashboard query as a recording rule: promtool parses its PromQL
  const { env } = await envForTest(t);
  const queries = dashboardExpressions().map((expr) =>
    expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*'),
  );
  const rules = join(env.dir, 'dashboard-rules.yml');
  const yaml = queries.map((expr, i) => `      - record: dashboard:query${i}\n        expr: ${JSON.stringify(expr)}\n`);
  await writeFile(rules, `groups:\n  - name: dashboard\n    rules:\n${yaml.join('')}`);
  const checked = spawnSync('promtool', ['check', 'rules', rules], { encoding: 'utf8' });
  assert.equal(checked.status, 0, `${checked.stdout}${checked.stderr}`);
  assert.match(checked.stdout, new RegExp(`SUCCESS: ${queries.length} rules found`));
});

const ALERTS = join(REPO_ROOT, 'contrib', 'prometheus-alerts.yml');

/** The PromQL of every panel of contrib/grafana-dashboard.json. */
function dashboardExpressions(): string[] {
  const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'contrib', 'grafana-dashboard.json'), 'utf8')) as {
    panels: { targets: { expr: string }[] }[];
  };
  return dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr));
}

/** The `expr:` of every alert (one line, or a folded `>` block). */
function alertExpressions(): string[] {
  const text = readFileSync(ALERTS, 'utf8');
  return [...text.matchAll(/^ +expr: (?:>\n((?: {10}.*\n)+)|(.*)\n)/gm)].map((m) => (m[1] ?? m[2]!).trim());
}

function packageJsonVersion(): string {
  return (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}
