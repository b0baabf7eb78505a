// The log lines a sysadmin reads (README "Logs"), from the real daemon: the version at start;
// `disconnect` with the client, the duration and the commands counted (SMTP and POP3); the TLS
// events named alike on both protocols; and `mailsrv start --log-format pretty|logfmt`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseLogfmt } from '../support/logfmt.js';
import {
  authPlain,
  connectPop3s,
  connectSmtpTls,
  Daemon,
  deepMerge,
  DOMAIN,
  freePort,
  type LogEntry,
  makeEnv,
  makePop3Env,
  MAILSRV_BIN,
  note,
  Pop3Client,
  pop3Stls,
  REPO_ROOT,
  requireBuild,
  sendRaw,
  SmtpClient,
  startDaemon,
  startTls,
  type TestEnv,
  writeMailbox,
} from './harness.js';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The session a client from `client` opened on `listener`, by its `connect` line. */
async function sessionOf(daemon: Daemon, client: string, listener: string): Promise<string> {
  const connect = await daemon.waitForLog(
    (e) => e.msg === 'connect' && e.client === client && e.listener === listener,
    10_000,
    `connect from ${client} on ${listener}`,
  );
  return connect.sessionId!;
}

function disconnectOf(daemon: Daemon, sessionId: string): Promise<LogEntry> {
  return daemon.waitForLog((e) => e.msg === 'disconnect' && e.sessionId === sessionId, 10_000, 'disconnect');
}

function assertDuration(entry: LogEntry): void {
  assert.ok(Number.isInteger(entry.durationMs) && (entry.durationMs as number) >= 0, `durationMs: ${entry.durationMs}`);
}

describe('JSON logs', () => {
  let env: TestEnv & { pop3Port: number };
  let daemon: Daemon;
  let smtpsPort: number;
  let pop3sPort: number;
  let ca: string;

  before(async () => {
    smtpsPort = await freePort();
    pop3sPort = await freePort();
    env = await makePop3Env({ tls: true });
    await env.writeConfig(
      deepMerge(env.config, {
        smtp: { smtps: [`127.0.0.1:${smtpsPort}`] },
        pop3: { pop3s: [`127.0.0.1:${pop3sPort}`] },
      }),
    );
    ca = env.tls!.cert;
    daemon = await startDaemon(env);
  });
  after(async () => {
    await daemon?.stop();
    await env?.cleanup();
  });

  test('the first line names the version, Node, the pid and the config file', () => {
    const [first] = daemon.logs;
    assert.equal(first?.msg, 'starting', JSON.stringify(first));
    assert.equal(first.version, VERSION);
    assert.equal(first.node, process.version);
    assert.equal(first.pid, daemon.pid);
    assert.equal(first.config, env.configPath);
  });

  test('SMTP disconnect: client, user, duration, and each command counted as Postfix does', async () => {
    const client = '127.0.0.5';
    const { client: smtp } = await SmtpClient.connect(env.port, { localAddress: client });
    assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    assert.equal((await smtp.cmd('FROB')).code, 500);
    // the continuation line of AUTH is not a command of its own
    assert.equal((await smtp.cmd('AUTH PLAIN')).code, 334);
    assert.equal((await smtp.cmd(authPlain('alice'))).code, 235);
    assert.equal((await smtp.cmd(`MAIL FROM:<alice@${DOMAIN}>`)).code, 250);
    assert.equal((await smtp.cmd(`RCPT TO:<bob@${DOMAIN}>`)).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    assert.equal((await smtp.data(note('counted'))).code, 250);
    assert.equal((await smtp.cmd('RSET')).code, 250);
    await smtp.quit();

    const sessionId = await sessionOf(daemon, client, 'mx');
    const disconnect = await disconnectOf(daemon, sessionId);
    assert.equal(disconnect.client, client);
    assert.equal(disconnect.user, 'alice');
    assertDuration(disconnect);
    assert.deepEqual(disconnect.commands, {
      ehlo: 1,
      unknown: 1,
      auth: 1,
      mail: 1,
      rcpt: 1,
      data: 1,
      rset: 1,
      quit: 1,
    });
    assert.equal(disconnect.total, 8);
  });

  test('POP3 disconnect: client, user, duration and the commands', async () => {
    const client = '127.0.0.6';
    writeMailbox(env.mailbox('carol'), `From a@client.test Mon Nov 30 10:00:00 2026\n${note('for carol')}\n`);
    const pop3 = await Pop3Client.login(env.pop3Port, 'carol', undefined, { localAddress: client });
    assert.match(await pop3.cmd('STAT'), /^\+OK 1 /);
    assert.match((await pop3.message('RETR 1')).status, /^\+OK /);
    assert.match(await pop3.cmd('DELE 1'), /^\+OK/);
    assert.match(await pop3.quit(), /^\+OK/);

    const sessionId = await sessionOf(daemon, client, 'pop3');
    const disconnect = await disconnectOf(daemon, sessionId);
    assert.equal(disconnect.client, client);
    assert.equal(disconnect.user, 'carol', 'named after QUIT let go of the mailbox');
    assertDuration(disconnect);
    assert.deepEqual(disconnect.commands, { user: 1, pass: 1, stat: 1, retr: 1, dele: 1, quit: 1 });
    assert.equal(disconnect.total, 6);
  });

  test('TLS events: `starttls` for STARTTLS and STLS, `tls` for smtps and pop3s, with client and cipher', async () => {
    const client = '127.0.0.7';
    const plain = (await SmtpClient.connect(env.port, { localAddress: client })).client;
    await plain.cmd('EHLO client.test');
    const upgraded = await startTls(plain, ca);
    await upgraded.cmd('EHLO client.test');
    await upgraded.quit();
    await (await connectSmtpTls(smtpsPort, ca, { localAddress: client })).client.quit();
    const stls = await pop3Stls((await Pop3Client.connect(env.pop3Port, { localAddress: client })).client, ca);
    await stls.quit();
    await (await connectPop3s(pop3sPort, ca, { localAddress: client })).client.quit();

    const expected: [string, string][] = [
      ['mx', 'starttls'],
      ['smtps', 'tls'],
      ['pop3', 'starttls'],
      ['pop3s', 'tls'],
    ];
    for (const [listener, event] of expected) {
      const sessionId = await sessionOf(daemon, client, listener);
      const line = await daemon.waitForLog((e) => e.sessionId === sessionId && /tls$/.test(e.msg), 10_000, event);
      assert.equal(line.msg, event, `${listener}: ${JSON.stringify(line)}`);
      assert.equal(line.client, client);
      assert.match(String(line.protocol), /^TLSv1\.[23]$/);
      assert.equal(typeof line.cipher, 'string');
    }
    const upgradedSession = await sessionOf(daemon, client, 'mx');
    const disconnect = await disconnectOf(daemon, upgradedSession);
    assert.deepEqual(disconnect.commands, { ehlo: 2, starttls: 1, quit: 1 });
  });
});

/** `mailsrv start --log-format FORMAT`; its lines are kept as `(not json)` entries of the Daemon. */
async function startWithFormat(env: TestEnv, format: string, isReady: (line: string) => boolean): Promise<Daemon> {
  requireBuild();
  const child = spawn(process.execPath, [MAILSRV_BIN, 'start', '-c', env.configPath, '--log-format', format], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const daemon = new Daemon(child);
  await daemon.waitForLog((e) => typeof e.line === 'string' && isReady(e.line), 15_000, `${format} "ready"`);
  return daemon;
}

function textLines(daemon: Daemon): string[] {
  return daemon.logs.map((e) => {
    assert.equal(e.msg, '(not json)', `a JSON line in a text format: ${JSON.stringify(e)}`);
    return e.line as string;
  });
}

/** Sends one message from `client` and returns its queue id once the session has logged `disconnect`. */
async function oneMessage(daemon: Daemon, env: TestEnv, client: string, hasDisconnect: (line: string) => boolean) {
  const result = await sendRaw(env.port, {
    from: 'a@client.test',
    to: [`alice@${DOMAIN}`],
    message: note('formatted'),
    localAddress: client,
  });
  assert.ok(result.queueId, JSON.stringify(result));
  await daemon.waitForLog((e) => typeof e.line === 'string' && hasDisconnect(e.line), 10_000, 'disconnect');
  return result.queueId;
}

describe('--log-format', () => {
  test('logfmt: every line is logfmt, time level msg first, nested fields dotted', async (t) => {
    const env = await makeEnv();
    t.after(() => env.cleanup());
    const readFields = (line: string) => {
      try {
        return new Map(parseLogfmt(line));
      } catch {
        return new Map<string, string>(); // asserted below, with the whole log at hand
      }
    };
    const daemon = await startWithFormat(env, 'logfmt', (line) => readFields(line).get('msg') === 'ready');
    t.after(() => daemon.kill9());
    const client = '127.0.0.9';
    const queueId = await oneMessage(daemon, env, client, (line) => {
      const fields = readFields(line);
      return fields.get('msg') === 'disconnect' && fields.get('client') === client;
    });
    assert.equal(await daemon.stop(), 0);

    const entries = textLines(daemon).map(parseLogfmt);
    for (const entry of entries) {
      assert.deepEqual(
        entry.slice(0, 3).map(([key]) => key),
        ['time', 'level', 'msg'],
      );
    }
    const byMsg = (msg: string) => entries.map((e) => new Map(e)).filter((e) => e.get('msg') === msg);
    assert.equal(byMsg('starting')[0]?.get('version'), VERSION);
    assert.equal(
      byMsg('queued')
        .find((e) => e.get('queueId') === queueId)
        ?.get('from'),
      'a@client.test',
    );
    const disconnect = byMsg('disconnect').find((e) => e.get('client') === client)!;
    assert.equal(disconnect.get('commands.mail'), '1');
    assert.equal(disconnect.get('total'), '5');
    assert.equal(byMsg('stopped').length, 1, 'the last line is written before the exit');
  });

  test('pretty: HH:MM:SS.mmm LEVEL msg key=value', async (t) => {
    const env = await makeEnv();
    t.after(() => env.cleanup());
    const daemon = await startWithFormat(env, 'pretty', (line) => / INFO {2}ready /.test(line));
    t.after(() => daemon.kill9());
    const client = '127.0.0.10';
    await oneMessage(
      daemon,
      env,
      client,
      (line) => line.includes(` disconnect `) && line.includes(` client=${client} `),
    );
    assert.equal(await daemon.stop(), 0);

    const lines = textLines(daemon);
    for (const line of lines) assert.match(line, /^\d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \S/);
    assert.match(lines[0]!, new RegExp(`^\\S+ INFO {2}starting version=${VERSION.replace(/\./g, '\\.')} node=v`));
    assert.ok(
      lines.some((l) =>
        / INFO {2}disconnect sessionId=\S+ client=127\.0\.0\.10 durationMs=\d+ commands\.ehlo=1 /.test(l),
      ),
      lines.join('\n'),
    );
    assert.ok(lines.some((l) => / INFO {2}stopped$/.test(l)));
  });
});
