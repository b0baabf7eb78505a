// E2E: SMTP over TLS and SMTP AUTH (README, "TLS, logins and privileges"; RFC 3207, 4954, 6409, 8314) with real clients
// (openssl s_client, nodemailer, swaks, Python smtplib) and raw sockets: STARTTLS and implicit
// TLS with mailsrv's certificate, AUTH only over TLS or from plaintext_auth_networks, the
// submission ports refuse mail without AUTH, relay after AUTH, sender_login_match, the
// Received protocol, what a failed login logs, and STARTTLS command injection.
// Clients connect from 127.0.0.1 (outside mynetworks and plaintext_auth_networks) unless a test
// binds another loopback address; tests whose logins fail use their own address, so the
// per-address failure throttle of one test does not slow another.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import {
  authPlain,
  connectSmtpTls,
  continueOverTls,
  crlf,
  type Daemon,
  DOMAIN,
  freePort,
  HOSTNAME,
  logsSoFar,
  makeEnv,
  messageId,
  PASSWORD,
  PYTHON,
  queueIdOf,
  readMailbox,
  rfcDate,
  SmtpClient,
  smtpDialog,
  startDaemon,
  startTls,
  type Reply,
  type TestEnv,
  withTimeout,
} from './harness.js';

/** plaintext_auth_networks = 127.0.0.8/29: logins that succeed come from .9, failing ones from .10 to .12 */
const PLAINTEXT_AUTH_CLIENT = '127.0.0.9';
const WRONG_PASSWORD_CLIENT = '127.0.0.10';
const AUTH_FAILURES_CLIENT = '127.0.0.11';
const THROTTLED_CLIENT = '127.0.0.12';
const MYNETWORKS_CLIENT = '127.0.0.2';
const addr = (user: string) => `${user}@${DOMAIN}`;

/** The EHLO extensions, upper-cased, without the greeting line. */
function extensions(ehlo: Reply): string[] {
  return ehlo.lines.slice(1).map((line) => line.toUpperCase());
}

function message(subject: string, extra: string[] = []): string {
  return crlf(
    `From: ${addr('alice')}`,
    `Subject: ${subject}`,
    `Date: ${rfcDate()}`,
    `Message-ID: ${messageId()}`,
    ...extra,
    '',
    'body',
  );
}

/** Sends MAIL, RCPTs and DATA on a session that is ready for them; returns every reply. */
async function transaction(
  client: SmtpClient,
  from: string,
  to: string[],
  body: string,
): Promise<{ mail: Reply; rcpt: Reply[]; end: Reply | null }> {
  const mail = await client.cmd(`MAIL FROM:<${from}>`);
  const rcpt: Reply[] = [];
  if (mail.code !== 250) return { mail, rcpt, end: null };
  for (const to1 of to) rcpt.push(await client.cmd(`RCPT TO:<${to1}>`));
  if (!rcpt.some((r) => r.code === 250)) return { mail, rcpt, end: null };
  assert.equal((await client.cmd('DATA')).code, 354);
  return { mail, rcpt, end: await client.data(body) };
}

/**
 * openssl s_client -starttls smtp, driven over stdin: it sends EHLO and STARTTLS itself, then
 * relays our lines; `expect` waits for server output matching a pattern.
 */
class OpensslClient {
  private output = '';
  private consumed = 0;
  private readonly child;
  /** wakes expect() when output arrives or openssl exits */
  private wake: () => void = () => undefined;

  constructor(port: number, caFile: string) {
    this.child = spawn(
      'openssl',
      [
        's_client',
        '-starttls',
        'smtp',
        '-connect',
        `127.0.0.1:${port}`,
        '-crlf',
        '-quiet',
        '-nocommands',
        '-CAfile',
        caFile,
        '-verify_return_error',
        '-verify_hostname',
        HOSTNAME,
        '-servername',
        HOSTNAME,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const arrived = (chunk: string) => {
      this.output += chunk;
      this.wake();
    };
    this.child.stdout.setEncoding('latin1').on('data', arrived);
    this.child.stderr.setEncoding('latin1').on('data', arrived);
    this.child.on('exit', () => this.wake());
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** Waits for output (after what earlier calls matched) that matches `pattern`. */
  /** The next match of `pattern` in openssl's output, waiting for more output as it comes. */
  async expect(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    const found = async (): Promise<RegExpExecArray> => {
      for (;;) {
        const match = pattern.exec(this.output.slice(this.consumed));
        if (match) {
          this.consumed += match.index + match[0].length;
          return match;
        }
        if (this.child.exitCode !== null) throw new Error(`openssl s_client exited; output:\n${this.output}`);
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    };
    return withTimeout(found(), timeoutMs, `openssl s_client: no ${pattern} within ${timeoutMs} ms`);
  }

  close(): void {
    this.child.kill();
  }
}

describe('smtp TLS and AUTH', () => {
  let env: TestEnv;
  let daemon: Daemon;
  let submissionPort: number;
  let smtpsPort: number;
  let ca: string;

  before(async () => {
    submissionPort = await freePort();
    smtpsPort = await freePort();
    // relayed mail goes to a smarthost that is down: it stays in the queue, deferred
    const downRelayhost = `127.0.0.1:${await freePort()}`;
    env = await makeEnv({
      tls: true,
      users: ['alice', 'bob', 'carol', 'dave'],
      aliases: 'postmaster: alice\nsales: alice\nteam: alice, bob\nmailer-daemon: postmaster\n',
      config: {
        plaintext_auth_networks: ['127.0.0.8/29'],
        auth: { failure_delay: '20ms' },
        smtp: { submission: [`127.0.0.1:${submissionPort}`], smtps: [`127.0.0.1:${smtpsPort}`] },
        relay: { relayhost: downRelayhost },
        // the protocol dialogue too: a password must not show even there
        log: { level: 'debug' },
      },
    });
    ca = env.tls!.cert;
    daemon = await startDaemon(env);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    if (env) await env.cleanup();
  });

  /** A session on `port` after EHLO, STARTTLS, EHLO and AUTH PLAIN as `user`. */
  async function loggedIn(port: number, user = 'alice'): Promise<SmtpClient> {
    const { client: plain } = await SmtpClient.connect(port);
    assert.equal((await plain.cmd('EHLO client.test')).code, 250);
    const client = await startTls(plain, ca);
    assert.equal((await client.cmd('EHLO client.test')).code, 250);
    const auth = await client.cmd(`AUTH PLAIN ${authPlain(user)}`);
    assert.equal(auth.code, 235, auth.raw);
    return client;
  }

  /** The mailbox message whose Subject is `subject` (waits for its delivery). */
  async function delivered(user: string, queueId: string, subject: string) {
    await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.queueId === queueId && e.user === user,
      10_000,
      `delivery of ${queueId} to ${user}`,
    );
    const found = readMailbox(env.mailbox(user)).messages.find((m) =>
      m.original.toString('latin1').includes(`Subject: ${subject}`),
    );
    assert.ok(found, `no message "${subject}" in ${user}'s mailbox`);
    return found;
  }

  // the client is outside plaintext_auth_networks
  test('before STARTTLS: STARTTLS offered, AUTH not advertised, and refused with 538 5.7.11', async () => {
    for (const port of [env.port, submissionPort]) {
      const [, ehlo, plain, login] = await smtpDialog(port, [
        'EHLO client.test',
        `AUTH PLAIN ${authPlain('alice')}`,
        'AUTH LOGIN',
      ]);
      const caps = extensions(ehlo!);
      assert.ok(caps.includes('STARTTLS'), `STARTTLS not offered: ${ehlo!.raw}`);
      assert.ok(!caps.some((c) => c.startsWith('AUTH')), `AUTH advertised without TLS: ${ehlo!.raw}`);
      assert.equal(plain!.raw, '538 5.7.11 Encryption required for requested authentication mechanism');
      assert.equal(login!.raw, '538 5.7.11 Encryption required for requested authentication mechanism');
    }
    assert.equal(daemon.find((e) => e.msg === 'login').length, 0);
  });

  test('after STARTTLS: AUTH PLAIN LOGIN advertised (STARTTLS no more), both mechanisms work', async () => {
    const { client: plain } = await SmtpClient.connect(env.port);
    assert.equal((await plain.cmd('EHLO client.test')).code, 250);
    const client = await startTls(plain, ca);
    try {
      const ehlo = await client.cmd('EHLO client.test');
      const caps = extensions(ehlo);
      assert.ok(caps.includes('AUTH PLAIN LOGIN'), `no AUTH PLAIN LOGIN after STARTTLS: ${ehlo.raw}`);
      assert.ok(!caps.includes('STARTTLS'), `STARTTLS offered inside TLS: ${ehlo.raw}`);
      const auth = await client.cmd(`AUTH PLAIN ${authPlain('alice')}`);
      assert.match(auth.raw, /^235 2\.7\.0 /);
      assert.match(
        (await client.cmd(`AUTH PLAIN ${authPlain('bob')}`)).raw,
        /^503 5\.5\.1 /,
        'a second AUTH must be refused',
      );
    } finally {
      await client.quit();
    }
    const login = await daemon.waitForLog((e) => e.msg === 'login' && e.user === 'alice' && e.method === 'PLAIN');
    assert.equal(login.client, '127.0.0.1');
    assert.ok(login.sessionId);
    assert.ok(
      daemon.find(
        (e) => e.msg === 'starttls' && e.sessionId === login.sessionId && /^TLSv1\.[23]$/.test(String(e.protocol)),
      ).length === 1,
      'no starttls log line',
    );

    const { client: plain2 } = await SmtpClient.connect(submissionPort);
    await plain2.cmd('EHLO client.test');
    const viaLogin = await startTls(plain2, ca);
    try {
      await viaLogin.cmd('EHLO client.test');
      assert.equal((await viaLogin.cmd('AUTH LOGIN')).raw, '334 VXNlcm5hbWU6');
      assert.equal((await viaLogin.cmd(Buffer.from('bob').toString('base64'))).raw, '334 UGFzc3dvcmQ6');
      assert.match((await viaLogin.cmd(Buffer.from(PASSWORD).toString('base64'))).raw, /^235 2\.7\.0 /);
      assert.match((await viaLogin.cmd('MAIL FROM:<bob@example.test>')).raw, /^250 /);
      assert.match(
        (await viaLogin.cmd(`AUTH PLAIN ${authPlain('bob')}`)).raw,
        /^503 5\.5\.1 /,
        'AUTH inside a mail transaction',
      );
    } finally {
      await viaLogin.quit();
    }
    await daemon.waitForLog((e) => e.msg === 'login' && e.user === 'bob' && e.method === 'LOGIN');
  });

  test('AUTH without TLS from plaintext_auth_networks: advertised and accepted', async () => {
    const [, ehlo, auth] = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('carol')}`], {
      localAddress: PLAINTEXT_AUTH_CLIENT,
    });
    assert.ok(extensions(ehlo!).includes('AUTH PLAIN LOGIN'), ehlo!.raw);
    assert.match(auth!.raw, /^235 2\.7\.0 /);
    await daemon.waitForLog((e) => e.msg === 'login' && e.user === 'carol' && e.client === PLAINTEXT_AUTH_CLIENT);
  });

  test('submission and smtps without AUTH: MAIL refused 530 5.7.0 (local user, TLS, mynetworks alike)', async () => {
    const before = daemon.find((e) => e.msg === 'queued').length;
    const { client: plain } = await SmtpClient.connect(submissionPort, { localAddress: MYNETWORKS_CLIENT });
    await plain.cmd('EHLO client.test');
    const tls = await startTls(plain, ca);
    try {
      await tls.cmd('EHLO client.test');
      assert.equal((await tls.cmd('MAIL FROM:<alice@example.test>')).raw, '530 5.7.0 Authentication required');
      assert.equal((await tls.cmd(`RCPT TO:<${addr('bob')}>`)).code, 503);
    } finally {
      await tls.quit();
    }
    const { client: implicit, greeting } = await connectSmtpTls(smtpsPort, ca);
    try {
      assert.match(greeting.raw, /^220 mx\.test\.local ESMTP/);
      await implicit.cmd('EHLO client.test');
      assert.equal((await implicit.cmd('MAIL FROM:<alice@example.test>')).raw, '530 5.7.0 Authentication required');
    } finally {
      await implicit.quit();
    }
    assert.equal(daemon.find((e) => e.msg === 'queued').length, before);
  });

  test('openssl s_client -starttls smtp: AUTH PLAIN and a message to a local user', async () => {
    const client = new OpensslClient(env.port, env.tls!.certFile);
    try {
      client.send('EHLO openssl.test');
      await client.expect(/250-AUTH PLAIN LOGIN\r?\n/);
      await client.expect(/250 [^\r\n]*\r?\n/);
      client.send(`AUTH PLAIN ${authPlain('alice')}`);
      await client.expect(/235 2\.7\.0 [^\r\n]*\r?\n/);
      client.send(`MAIL FROM:<${addr('alice')}>`);
      await client.expect(/250 [^\r\n]*\r?\n/);
      client.send(`RCPT TO:<${addr('bob')}>`);
      await client.expect(/250 [^\r\n]*\r?\n/);
      client.send('DATA');
      await client.expect(/354 [^\r\n]*\r?\n/);
      client.send(`Subject: via openssl\n\nhello\n.`);
      const [, queueId] = await client.expect(/250 2\.0\.0 Ok: queued as (\S+)/);
      client.send('QUIT');
      await client.expect(/221 /);
      const stored = await delivered('bob', queueId!, 'via openssl');
      assert.match(stored.trace!.received, /with ESMTPSA id /);
    } finally {
      client.close();
    }
  });

  test('nodemailer STARTTLS + AUTH on submission: delivered, Received: ESMTPSA, Message-ID, Date added', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: submissionPort,
      secure: false,
      requireTLS: true,
      name: 'client.test',
      auth: { user: 'alice', pass: PASSWORD },
      tls: { ca, servername: HOSTNAME },
    });
    const raw = crlf(
      `From: ${addr('alice')}`,
      `To: ${addr('carol')}`,
      'Subject: nodemailer starttls',
      '',
      'no ids here',
    );
    const info = await transport.sendMail({ envelope: { from: addr('alice'), to: [addr('carol')] }, raw });
    transport.close();
    const queueId = queueIdOf(String(info.response));
    assert.ok(queueId, String(info.response));
    const stored = await delivered('carol', queueId, 'nodemailer starttls');
    assert.match(
      stored.trace!.received,
      /^from client\.test \(localhost \[127\.0\.0\.1\]\)\n\tby mx\.test\.local \(mailsrv\) with ESMTPSA id /,
    );
    const headers = stored.original.toString('latin1').split('\n\n')[0]!;
    assert.match(headers, /^Message-ID: <[^>]+@mx\.test\.local>$/m, headers);
    assert.match(headers, /^Date: \S/m, headers);
  });

  test('nodemailer implicit TLS (smtps, secure: true) with AUTH LOGIN', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: smtpsPort,
      secure: true,
      name: 'client.test',
      auth: { user: 'bob', pass: PASSWORD, method: 'LOGIN' },
      tls: { ca, servername: HOSTNAME },
    });
    const info = await transport.sendMail({
      envelope: { from: addr('bob'), to: [addr('dave')] },
      raw: message('nodemailer smtps'),
    });
    transport.close();
    const queueId = queueIdOf(String(info.response));
    assert.ok(queueId, String(info.response));
    const stored = await delivered('dave', queueId, 'nodemailer smtps');
    assert.match(stored.trace!.received, /with ESMTPSA id /);
  });

  test('swaks --tls with --auth PLAIN and --auth LOGIN', async () => {
    for (const mechanism of ['PLAIN', 'LOGIN']) {
      const subject = `swaks ${mechanism}`;
      const result = spawnSync(
        'swaks',
        [
          '--server',
          `127.0.0.1:${submissionPort}`,
          '--tls',
          '--auth',
          mechanism,
          '--auth-user',
          'alice',
          '--auth-password',
          PASSWORD,
          '--from',
          addr('alice'),
          '--to',
          addr('bob'),
          '--helo',
          'swaks.test',
          '--header',
          `Subject: ${subject}`,
          '--timeout',
          '20',
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(result.status, 0, `swaks ${mechanism} failed:\n${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /<- +220 2\.0\.0 Ready to start TLS\n=== TLS started/);
      assert.match(result.stdout, /<~ +235 2\.7\.0 /);
      const queueId = /<~ +250 2\.0\.0 Ok: queued as (\S+)/.exec(result.stdout)?.[1];
      assert.ok(queueId, result.stdout);
      await delivered('bob', queueId, subject);
    }
  });

  test('Python smtplib: starttls() and login(), then sendmail()', async () => {
    const code = [
      'import smtplib, ssl, sys',
      'port, cafile, user, password, sender, rcpt = sys.argv[1:7]',
      's = smtplib.SMTP("127.0.0.1", int(port), local_hostname="python.test", timeout=20)',
      's._host = sys.argv[7]  # the name the certificate is checked against',
      's.starttls(context=ssl.create_default_context(cafile=cafile))',
      's.login(user, password)',
      'refused = s.sendmail(sender, [rcpt], b"Subject: via smtplib\\r\\n\\r\\nhello\\r\\n")',
      'print("refused", refused)',
      'code, text = s.noop()',
      's.quit()',
    ].join('\n');
    const result = spawnSync(
      PYTHON,
      [
        '-c',
        code,
        String(submissionPort),
        env.tls!.certFile,
        'carol',
        PASSWORD,
        addr('carol'),
        addr('alice'),
        HOSTNAME,
      ],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    assert.equal(result.status, 0, `smtplib failed:\n${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /refused \{\}/);
    const queued = await daemon.waitForLog(
      (e) => e.msg === 'queued' && e.from === addr('carol') && e.client === '127.0.0.1',
    );
    await delivered('alice', String(queued.queueId), 'via smtplib');
  });

  // deferred while the smarthost is down
  test('relay after AUTH is accepted and queued; without AUTH still 554 5.7.1', async () => {
    const [, , , refused] = await smtpDialog(env.port, [
      'EHLO client.test',
      `MAIL FROM:<${addr('alice')}>`,
      'RCPT TO:<friend@remote.test>',
    ]);
    assert.equal(refused!.raw, '554 5.7.1 <friend@remote.test>: Relay access denied');

    for (const port of [env.port, submissionPort]) {
      const client = await loggedIn(port);
      try {
        const { rcpt, end } = await transaction(
          client,
          addr('alice'),
          ['friend@remote.test'],
          message(`relay via ${port}`),
        );
        assert.equal(rcpt[0]!.code, 250, rcpt[0]!.raw);
        assert.equal(end?.code, 250, end?.raw);
        const queueId = queueIdOf(end);
        const deferred = await daemon.waitForLog(
          (e) => e.msg === 'deferred' && e.queueId === queueId,
          10_000,
          `deferral of ${queueId}`,
        );
        assert.match(String(deferred.reason), /^4\.\d\.\d .*refused/i, 'the smarthost is down: retried later');
        assert.equal(
          daemon.find((e) => e.msg === 'removed' && e.queueId === queueId).length,
          0,
          'the relayed message left the queue',
        );
      } finally {
        await client.quit();
      }
    }
  });

  test('sender_login_match: 553 for others, shared aliases, MAILER-DAEMON; own address, alias, <> pass', async () => {
    const client = await loggedIn(submissionPort, 'alice');
    try {
      const refusals = [
        `bob@${DOMAIN}`,
        'alice@remote.test',
        `alice@sub.${DOMAIN}`,
        `team-not@${DOMAIN}`,
        `team@${DOMAIN}`, // an alias alice shares with bob
        `MAILER-DAEMON@${DOMAIN}`, // even where an alias reaches alice
      ];
      for (const sender of refusals) {
        const reply = await client.cmd(`MAIL FROM:<${sender}>`);
        assert.equal(reply.raw, `553 5.7.1 <${sender}>: Sender address rejected: not owned by user alice`);
      }
      for (const sender of [
        `alice@${DOMAIN}`,
        `ALICE@${DOMAIN.toUpperCase()}`,
        `sales@${DOMAIN}`,
        `postmaster@${HOSTNAME}`,
        '',
      ]) {
        const reply = await client.cmd(`MAIL FROM:<${sender}>`);
        assert.equal(reply.code, 250, `MAIL FROM:<${sender}>: ${reply.raw}`);
        assert.equal((await client.cmd('RSET')).code, 250);
      }
    } finally {
      await client.quit();
    }
  });

  test('wrong password: 535 5.7.8; the log names the user and the client, never the password', async () => {
    const wrong = 'Wrong-Pa55word';
    const client = '127.0.0.21';
    const [, , plain] = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('alice', wrong)}`], {
      localAddress: WRONG_PASSWORD_CLIENT,
    });
    assert.equal(plain!.raw, '535 5.7.8 Authentication credentials invalid');
    const session = await loggedInAttempt(env.port, client, 'bob', wrong);
    assert.equal(session.raw, '535 5.7.8 Authentication credentials invalid');
    const failed = await daemon.waitForLog((e) => e.msg === 'login failed' && e.user === 'bob' && e.client === client);
    assert.equal(typeof failed.delayMs, 'number');
    assert.ok(failed.sessionId);
    await daemon.waitForLog(
      (e) => e.msg === 'login failed' && e.user === 'alice' && e.client === WRONG_PASSWORD_CLIENT,
    );
    const [, , bad] = await smtpDialog(env.port, ['EHLO client.test', `AUTH PLAIN ${authPlain('../etc', wrong)}`], {
      localAddress: WRONG_PASSWORD_CLIENT,
    });
    assert.equal(bad!.code, 535);
    await daemon.waitForLog((e) => e.msg === 'login failed' && e.user === '(invalid name)');
    for (const secret of [
      wrong,
      authPlain('alice', wrong),
      authPlain('bob', wrong),
      Buffer.from(wrong).toString('base64'),
      PASSWORD,
      authPlain('alice'),
    ]) {
      assert.ok(!daemon.stdout.includes(secret), `the log contains ${secret}`);
      assert.ok(!daemon.stderr.includes(secret), `stderr contains ${secret}`);
    }
  });

  /** AUTH LOGIN over STARTTLS from `localAddress`; returns the final reply. */
  async function loggedInAttempt(port: number, localAddress: string, user: string, password: string): Promise<Reply> {
    const { client: plain } = await SmtpClient.connect(port, { localAddress });
    await plain.cmd('EHLO client.test');
    const client = await startTls(plain, ca);
    try {
      await client.cmd('EHLO client.test');
      await client.cmd('AUTH LOGIN');
      await client.cmd(Buffer.from(user).toString('base64'));
      return await client.cmd(Buffer.from(password).toString('base64'));
    } finally {
      await client.quit();
    }
  }

  test('five failed AUTHs in one session: the fifth gets 421 4.7.0 and the connection is closed', async () => {
    const { client } = await SmtpClient.connect(env.port, { localAddress: AUTH_FAILURES_CLIENT, timeoutMs: 30_000 });
    try {
      await client.cmd('EHLO client.test');
      for (let i = 1; i <= 4; i++) {
        assert.equal((await client.cmd(`AUTH PLAIN ${authPlain('alice', `wrong-${i}`)}`)).code, 535);
      }
      const fifth = await client.cmd(`AUTH PLAIN ${authPlain('alice', 'wrong-5')}`);
      assert.match(fifth.raw, /^421 4\.7\.0 /);
      await client.waitClosed(5000);
    } finally {
      client.destroy();
    }
  });

  test('failed logins from one address slow down: with failure_delay = 20ms the 6th waits longest', async () => {
    const waited: number[] = [];
    for (let attempt = 1; attempt <= 6; attempt++) {
      const { client } = await SmtpClient.connect(env.port, { localAddress: THROTTLED_CLIENT, timeoutMs: 30_000 });
      try {
        await client.cmd('EHLO client.test');
        const started = performance.now();
        const reply = await client.cmd(`AUTH PLAIN ${authPlain('alice', `wrong-${attempt}`)}`);
        waited.push(performance.now() - started);
        assert.equal(reply.code, 535, reply.raw);
      } finally {
        await client.quit();
      }
    }
    // the delay doubles per failure: 20 ms, then 40, 80, 160, 320 and 640 ms for the 6th
    const failed = (
      await daemon.waitForLogs((e) => e.msg === 'login failed' && e.client === THROTTLED_CLIENT, 6)
    ).filter((e) => e.client === THROTTLED_CLIENT);
    assert.deepEqual(
      failed.map((e) => e.delayMs),
      [20, 40, 80, 160, 320, 640],
    );
    // a timer may end a little early by the clock read here (Node's loop time lags): half the delay at least
    assert.ok(waited[0]! >= 10, `1st failure answered after ${waited[0]} ms`);
    assert.ok(waited[5]! >= 320, `6th failure answered after ${waited[5]} ms`);
  });

  test('STARTTLS command injection: plaintext pipelined after STARTTLS is discarded', async () => {
    const before = daemon.find((e) => e.msg === 'queued').length;
    const { client: plain } = await SmtpClient.connect(env.port);
    await plain.cmd('EHLO client.test');
    // one write: the server reads the injected lines in the same chunk as STARTTLS
    plain.write('STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<injected@client.test>\r\n');
    assert.match((await plain.read()).raw, /^220 /);
    const client = await continueOverTls(plain, ca);
    try {
      // the first reply over TLS is RCPT's: had the injected EHLO and MAIL run, their replies would
      // come first (and this RCPT would be accepted)
      assert.match((await client.cmd(`RCPT TO:<${addr('alice')}>`)).raw, /^503 5\.5\.1 /);
      assert.equal((await client.cmd('EHLO client.test')).code, 250);
      assert.equal((await client.cmd('MAIL FROM:<real@client.test>')).code, 250);
      assert.equal((await client.cmd(`RCPT TO:<${addr('alice')}>`)).code, 250);
      assert.equal((await client.cmd('RSET')).code, 250);
      assert.equal(client.unread, 0, 'a reply for the injected commands');
    } finally {
      await client.quit();
    }
    assert.equal(plain.unread, 0, 'a plaintext reply followed the 220');
    await logsSoFar(daemon, env.port);
    assert.equal(daemon.find((e) => e.msg === 'queued').length, before);
  });
});
