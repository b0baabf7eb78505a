// E2E: POP3 over TLS against the real daemon: STLS (RFC 2595) on the plaintext port and implicit
// TLS (pop3s, RFC 8314), with raw sockets and with real clients (openssl s_client, curl, Python
// poplib); CAPA by state; plaintext login only under TLS when plaintext_auth_networks is empty;
// the STLS command-injection defence (CVE-2011-0411); no STLS without a certificate; the
// certificate reloaded by SIGHUP; failed TLS handshakes; max_clients across both listeners; and
// the failure delay growing to the 6th wrong password over TLS.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';
import {
  authPlain,
  connectPop3s,
  crlf,
  deepMerge,
  deliverOverSmtp,
  eventually,
  freePort,
  HOSTNAME,
  makePop3Env,
  PASSWORD,
  Pop3Client,
  pop3ContinueOverTls,
  pop3Stls,
  pop3Wire,
  PYTHON,
  startDaemon,
  type ConfigTree,
  type Daemon,
  type LogEntry,
  type TestEnv,
  writeMailbox,
} from './harness.js';

type Pop3TlsEnv = TestEnv & { pop3Port: number; pop3sPort: number; tls: NonNullable<TestEnv['tls']> };

const REFUSED = '-ERR [AUTH] Plaintext authentication disallowed on non-secured connection';

/** An env with TLS, a pop3s listener next to the plaintext one, and no plaintext login without TLS. */
async function makeTlsEnv(config: ConfigTree = {}): Promise<Pop3TlsEnv> {
  const pop3sPort = await freePort();
  const base: ConfigTree = {
    plaintext_auth_networks: [],
    auth: { failure_delay: '20ms' },
    pop3: { pop3s: [`127.0.0.1:${pop3sPort}`] },
  };
  const env = await makePop3Env({ tls: true, users: ['alice', 'bob'], config: deepMerge(base, config) });
  return Object.assign(env, { pop3sPort, tls: env.tls! });
}

/** Runs a client program to completion (stdin from `input`). */
function run(command: string, args: string[], input?: string) {
  const result = spawnSync(command, args, { encoding: 'latin1', timeout: 20_000, input });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('pop3 over TLS (plaintext_auth_networks = [])', () => {
  let env: Pop3TlsEnv;
  let daemon: Daemon;

  before(async () => {
    env = await makeTlsEnv();
    daemon = await startDaemon(env);
    await deliverOverSmtp(daemon, env, 'alice', crlf('Subject: first', '', 'hello', '.dot line', 'From here'));
    await deliverOverSmtp(daemon, env, 'alice', crlf('Subject: second', '', 'body'));
  });

  after(async () => {
    await daemon?.kill9();
    await env?.cleanup();
  });

  test('before STLS: CAPA offers STLS and no plaintext login; USER, PASS and AUTH PLAIN are refused', async () => {
    const { client, greeting } = await Pop3Client.connect(env.pop3Port);
    assert.equal(greeting, '+OK mailsrv ready');
    const capa = await client.multi('CAPA');
    assert.deepEqual(capa.lines, [
      'TOP',
      'UIDL',
      'RESP-CODES',
      'AUTH-RESP-CODE',
      'PIPELINING',
      'STLS',
      'IMPLEMENTATION mailsrv',
    ]);
    assert.equal(await client.cmd('USER alice'), REFUSED);
    assert.equal(await client.cmd(`PASS ${PASSWORD}`), REFUSED);
    assert.equal(await client.cmd(`AUTH PLAIN ${authPlain('alice')}`), REFUSED);
    assert.deepEqual((await client.multi('AUTH')).lines, [], 'no mechanism offered');
    assert.match(await client.cmd('STAT'), /^-ERR/);
    assert.match(await client.quit(), /^\+OK/);
    await daemon.waitForLog((e) => e.msg === 'connect' && e.listener === 'pop3' && e.tls === false);
  });

  test('after STLS: CAPA offers USER and SASL PLAIN, not STLS; login, LIST, RETR work; no second STLS', async () => {
    const box = env.mailbox('alice');
    const { client: plain } = await Pop3Client.connect(env.pop3Port);
    assert.equal(await plain.cmd('STLS extra'), '-ERR Too many arguments');
    const client = await pop3Stls(plain, env.tls.cert);
    const capa = await client.multi('CAPA');
    assert.deepEqual(capa.lines, [
      'TOP',
      'UIDL',
      'RESP-CODES',
      'AUTH-RESP-CODE',
      'PIPELINING',
      'USER',
      'SASL PLAIN',
      'IMPLEMENTATION mailsrv',
    ]);
    assert.equal(await client.cmd('STLS'), '-ERR Already in TLS');
    assert.match(await client.cmd('USER alice'), /^\+OK/);
    assert.match(await client.cmd(`PASS ${PASSWORD}`), /^\+OK alice has 2 messages/);
    assert.deepEqual(
      [...(await client.sizes()).values()],
      [1, 2].map((n) => pop3Wire(box, n).length),
    );
    const retr = await client.message('RETR 1');
    assert.deepEqual(retr.body, pop3Wire(box, 1));
    assert.equal(await client.cmd('STLS'), '-ERR STLS not allowed in the TRANSACTION state');
    assert.deepEqual((await client.multi('CAPA')).lines, [
      'TOP',
      'UIDL',
      'RESP-CODES',
      'AUTH-RESP-CODE',
      'PIPELINING',
      'IMPLEMENTATION mailsrv',
    ]);
    assert.match(await client.quit(), /^\+OK/);

    const started = await daemon.waitForLog((e) => e.msg === 'starttls');
    assert.match(String(started.protocol), /^TLSv1\.[23]$/);
    assert.equal(typeof started.cipher, 'string');
  });

  test('STLS injection: commands sent with STLS, before the handshake, are discarded', async () => {
    const { client: plain } = await Pop3Client.connect(env.pop3Port);
    plain.write('STLS\r\nUSER alice\r\nCAPA\r\n');
    assert.equal(await plain.readLine(), '+OK Begin TLS negotiation');
    const client = await pop3ContinueOverTls(plain, env.tls.cert);
    // the first reply over TLS is PASS's: replies to injected commands would come before it
    assert.equal(await client.cmd(`PASS ${PASSWORD}`), '-ERR USER first', 'the injected USER was not taken');
    assert.match(await client.cmd('USER alice'), /^\+OK/);
    assert.match(await client.cmd(`PASS ${PASSWORD}`), /^\+OK/);
    assert.match(await client.quit(), /^\+OK/);
    assert.equal(client.unread, 0, 'a reply to the injected commands over TLS');
    assert.equal(plain.unread, 0, 'a plaintext reply to the injected commands');
  });

  test('openssl s_client -starttls pop3: login, RETR and QUIT over TLS', async () => {
    const box = env.mailbox('alice');
    const result = run(
      'openssl',
      [
        's_client',
        '-starttls',
        'pop3',
        '-connect',
        `127.0.0.1:${env.pop3Port}`,
        '-quiet',
        '-crlf',
        '-CAfile',
        env.tls.certFile,
        '-verify_return_error',
        '-verify_hostname',
        HOSTNAME,
        '-servername',
        HOSTNAME,
      ],
      `USER alice\nPASS ${PASSWORD}\nRETR 2\nQUIT\n`,
    );
    assert.equal(result.code, 0, result.stderr);
    const replies = result.stdout.split('\r\n');
    assert.match(replies[0]!, /^\+OK send PASS/, result.stdout);
    assert.match(replies[1]!, /^\+OK alice has 2 messages/);
    assert.match(replies[2]!, /^\+OK \d+ octets/);
    assert.ok(result.stdout.includes(pop3Wire(box, 2).toString('latin1')), result.stdout);
    assert.match(result.stdout, /\r\n\.\r\n\+OK mailsrv signing off\r\n$/);
  });

  test('curl: pop3s lists and retrieves; pop3 with --ssl-reqd goes through STLS', async () => {
    const box = env.mailbox('alice');
    const sizes = [1, 2].map((n) => pop3Wire(box, n).length);
    const options = ['-sS', '--max-time', '10', '--cacert', env.tls.certFile, '-u', `alice:${PASSWORD}`];
    const pop3s = `pop3s://${HOSTNAME}:${env.pop3sPort}/`;
    const resolve = (port: number) => ['--resolve', `${HOSTNAME}:${port}:127.0.0.1`];

    const list = run('curl', [...options, ...resolve(env.pop3sPort), pop3s]);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(list.stdout, `1 ${sizes[0]}\r\n2 ${sizes[1]}\r\n`);
    const retr = run('curl', [...options, ...resolve(env.pop3sPort), `${pop3s}1`]);
    assert.equal(retr.code, 0, retr.stderr);
    assert.deepEqual(Buffer.from(retr.stdout, 'latin1'), pop3Wire(box, 1));

    const stls = run('curl', [
      ...options,
      ...resolve(env.pop3Port),
      '--ssl-reqd',
      `pop3://${HOSTNAME}:${env.pop3Port}/2`,
    ]);
    assert.equal(stls.code, 0, stls.stderr);
    assert.deepEqual(Buffer.from(stls.stdout, 'latin1'), pop3Wire(box, 2));
    await daemon.waitForLog((e) => e.msg === 'connect' && e.listener === 'pop3s' && e.tls === true);
  });

  test('Python poplib: POP3_SSL, and POP3.stls() then CAPA without STLS and a login', async () => {
    const box = env.mailbox('alice');
    // the certificate is checked against the test CA; its name below (poplib connects by IP address)
    const script = [
      'import poplib, ssl, sys, json',
      'pop3s_port, pop3_port, ca, password = sys.argv[1:5]',
      'ctx = ssl.create_default_context(cafile=ca)',
      'ctx.check_hostname = False',
      'names = lambda p: [v for k, v in p.sock.getpeercert()["subjectAltName"]]',
      'out = {}',
      'p = poplib.POP3_SSL("127.0.0.1", int(pop3s_port), context=ctx, timeout=10)',
      'out["pop3sNames"] = names(p)',
      'out["pop3sWelcome"] = p.getwelcome().decode()',
      'out["pop3sCapa"] = sorted(p.capa().keys())',
      'p.user("alice"); p.pass_(password)',
      'out["pop3sRetr"] = b"".join(l + b"\\r\\n" for l in p.retr(1)[1]).decode("latin1")',
      'p.quit()',
      'p = poplib.POP3("127.0.0.1", int(pop3_port), timeout=10)',
      'out["capaBefore"] = sorted(p.capa().keys())',
      'p.stls(ctx)',
      'out["stlsNames"] = names(p)',
      'out["capaAfter"] = sorted(p.capa().keys())',
      'p.user("alice"); p.pass_(password)',
      'out["stat"] = list(p.stat())',
      'p.quit()',
      'print(json.dumps(out))',
    ].join('\n');
    const result = run(PYTHON, ['-c', script, String(env.pop3sPort), String(env.pop3Port), env.tls.certFile, PASSWORD]);
    assert.equal(result.code, 0, result.stderr);
    const out = JSON.parse(result.stdout) as {
      pop3sNames: string[];
      pop3sWelcome: string;
      pop3sCapa: string[];
      pop3sRetr: string;
      capaBefore: string[];
      stlsNames: string[];
      capaAfter: string[];
      stat: [number, number];
    };
    assert.deepEqual(out.pop3sNames, [HOSTNAME]);
    assert.equal(out.pop3sWelcome, '+OK mailsrv ready');
    assert.ok(out.pop3sCapa.includes('USER') && !out.pop3sCapa.includes('STLS'), out.pop3sCapa.join(','));
    assert.equal(out.pop3sRetr, pop3Wire(box, 1).toString('latin1'));
    assert.ok(out.capaBefore.includes('STLS') && !out.capaBefore.includes('USER'), out.capaBefore.join(','));
    assert.deepEqual(out.stlsNames, [HOSTNAME]);
    assert.ok(
      out.capaAfter.includes('USER') && out.capaAfter.includes('SASL') && !out.capaAfter.includes('STLS'),
      out.capaAfter.join(','),
    );
    assert.deepEqual(out.stat, [2, [1, 2].reduce((sum, n) => sum + pop3Wire(box, n).length, 0)]);
  });

  test('pop3s: pipelined commands, a 4 MB RETR to a client that pauses, and a half-close, all over TLS', async () => {
    const box = env.mailbox('bob');
    const line = `${'y'.repeat(76)}\n`;
    writeMailbox(box, `From big@example.org Tue Nov 24 10:00:00 2026\nSubject: big\n\n${line.repeat(55_000)}\n`);
    const wire = pop3Wire(box, 1);
    const { client, greeting } = await connectPop3s(env.pop3sPort, env.tls.cert);
    assert.equal(greeting, '+OK mailsrv ready');
    client.socket.pause();
    const sentBefore = daemon.io().written;
    client.socket.end(`USER bob\r\nPASS ${PASSWORD}\r\nLIST 1\r\nRETR 1\r\nQUIT\r\n`);
    // the client reads nothing until the daemon is well into the message
    await eventually(() => daemon.io().written - sentBefore >= 64 * 1024, 10_000, 'the message under way', 5);
    client.socket.resume();
    assert.match(await client.readLine(), /^\+OK/);
    assert.match(await client.readLine(), /^\+OK bob has 1 message/);
    assert.equal(await client.readLine(), `+OK 1 ${wire.length}`);
    const { status, lines } = await client.readMulti(20_000);
    assert.equal(status, `+OK ${wire.length} octets`);
    assert.deepEqual(Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1'), wire);
    assert.match(await client.readLine(), /^\+OK mailsrv signing off/);
    await client.waitClosed();
  });

  test('throttling: over TLS the failure delay doubles, and the 6th wrong password waits longest', async () => {
    const localAddress = '127.0.3.6'; // its own address: nobody else's logins reset its failures
    const attempt = async (client: Pop3Client, password: string) => {
      assert.match(await client.cmd('USER bob'), /^\+OK/);
      const started = Date.now();
      const reply = await client.cmd(`PASS ${password}`);
      return { reply, ms: Date.now() - started };
    };
    const { client: first } = await connectPop3s(env.pop3sPort, env.tls.cert, { localAddress });
    const delays: number[] = [];
    for (let i = 1; i <= 4; i++) {
      const { reply, ms } = await attempt(first, `wrong-${i}`);
      assert.equal(reply, '-ERR [AUTH] Invalid user name or password');
      delays.push(ms);
    }
    first.destroy();
    // five failures close a connection: the 5th and 6th come over STLS on the plaintext port
    const { client: plain } = await Pop3Client.connect(env.pop3Port, { localAddress });
    const second = await pop3Stls(plain, env.tls.cert);
    for (let i = 5; i <= 6; i++) {
      const { reply, ms } = await attempt(second, `wrong-${i}`);
      assert.equal(reply, '-ERR [AUTH] Invalid user name or password');
      delays.push(ms);
    }
    // 20 ms doubled per failure: 20, 40, 80, 160, 320, 640 ms (a loaded box adds, never removes)
    const failed = (await daemon.waitForLogs((e) => e.msg === 'login failed' && e.client === localAddress, 6)).filter(
      (e) => e.client === localAddress,
    );
    assert.deepEqual(
      failed.map((e) => e.delayMs),
      [20, 40, 80, 160, 320, 640],
      `waited ${delays.join(', ')} ms`,
    );
    // a timer may end a little early by the clock read here (Node's loop time lags): half the delay at least
    assert.ok(delays[0]! >= 10, `1st: ${delays.join(', ')} ms`);
    assert.ok(delays[5]! >= 320, `6th: ${delays.join(', ')} ms`);
    // the right password still works (below auth.max_failures) and clears the address
    assert.match(await second.cmd('USER bob'), /^\+OK/);
    assert.match(await second.cmd(`PASS ${PASSWORD}`), /^\+OK/);
    assert.match(await second.quit(), /^\+OK/);
    assert.ok(!daemon.stdout.includes('wrong-6') && !daemon.stdout.includes(PASSWORD), 'no password in the log');
  });

  test('SIGHUP: a new certificate serves new pop3s and STLS connections; an open session keeps working', async () => {
    const box = env.mailbox('alice');
    const { client: open } = await connectPop3s(env.pop3sPort, env.tls.cert);
    assert.match(await open.cmd('USER alice'), /^\+OK/);
    assert.match(await open.cmd(`PASS ${PASSWORD}`), /^\+OK/);

    const fresh = await generateSelfSigned(HOSTNAME, 30);
    writeFileSync(env.tls.certFile, fresh.cert);
    writeFileSync(env.tls.keyFile, fresh.key);
    const reloads = daemon.find((e) => e.msg.startsWith('reloaded config')).length;
    daemon.child.kill('SIGHUP');
    await daemon.waitForLogs((e) => e.msg.startsWith('reloaded config'), reloads + 1);

    const fingerprint = new X509Certificate(fresh.cert).fingerprint256;
    const { client: pop3s, socket } = await connectPop3s(env.pop3sPort, fresh.cert);
    assert.equal(socket.getPeerCertificate().fingerprint256, fingerprint, 'pop3s serves the new certificate');
    assert.match(await pop3s.quit(), /^\+OK/);
    const { client: plain } = await Pop3Client.connect(env.pop3Port);
    const stls = await pop3Stls(plain, fresh.cert);
    assert.match(await stls.quit(), /^\+OK/);

    // the session opened before the reload goes on over its TLS session
    assert.match(await open.cmd('STAT'), /^\+OK 2 /);
    assert.deepEqual((await open.message('RETR 2')).body, pop3Wire(box, 2));
    assert.match(await open.quit(), /^\+OK/);
  });
});

describe('pop3 without a certificate (tls.cert = "")', () => {
  test('CAPA does not offer STLS and STLS is refused', async (t) => {
    const env = await makePop3Env();
    const daemon = await startDaemon(env);
    t.after(async () => {
      await daemon.kill9();
      await env.cleanup();
    });
    const { client } = await Pop3Client.connect(env.pop3Port);
    const capa = await client.multi('CAPA');
    assert.ok(!capa.lines.includes('STLS'), capa.lines.join(','));
    assert.equal(await client.cmd('STLS'), '-ERR STLS not available: TLS is not configured');
    assert.match(await client.cmd('USER alice'), /^\+OK/, 'the session goes on in plaintext (loopback may log in)');
    assert.match(await client.cmd(`PASS ${PASSWORD}`), /^\+OK/);
    assert.match(await client.quit(), /^\+OK/);
  });
});

describe('pop3 TLS handshakes, limits and stop', () => {
  let env: Pop3TlsEnv;
  let daemon: Daemon;

  before(async () => {
    env = await makeTlsEnv({ pop3: { max_clients: 2, timeout: '2s' } });
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    await env?.cleanup();
  });

  /** A raw connection: what it receives until the server closes it, and how long that took. */
  async function rawUntilClosed(port: number, send: (socket: Socket) => void) {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let received = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
    socket.on('error', () => undefined);
    const started = Date.now();
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    send(socket);
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    return { received, ms: Date.now() - started };
  }

  test('a failed or missing handshake (pop3s, or after STLS) closes the connection and is logged', async () => {
    const failures = daemon.find((e) => e.msg === 'TLS handshake failed').length;
    const disconnects = daemon.find((e) => e.msg === 'disconnect').length;
    // plaintext on the pop3s port; garbage after STLS: closed at once, nothing answered
    const garbage = await rawUntilClosed(env.pop3sPort, (s) => s.write('USER alice\r\n'));
    assert.equal(garbage.received, '');
    const afterStls = await rawUntilClosed(env.pop3Port, (s) => s.write('STLS\r\n'));
    assert.equal(afterStls.received, '+OK mailsrv ready\r\n+OK Begin TLS negotiation\r\n');
    // both sessions have let go of their max_clients slots (2) before the next two connect
    await daemon.waitForLogs((e) => e.msg === 'disconnect', disconnects + 2);
    // silence: cut off after pop3.timeout (2 s; the handshake limit is 30 s at most)
    const [silentPop3s, silentStls] = await Promise.all([
      rawUntilClosed(env.pop3sPort, () => undefined),
      rawUntilClosed(env.pop3Port, (s) => s.write('STLS\r\n')),
    ]);
    for (const silent of [silentPop3s, silentStls]) assert.ok(silent.ms >= 1800, `closed after ${silent.ms} ms`);
    const timedOut = await daemon.waitForLogs((e) => e.msg === 'TLS handshake failed', failures + 4);
    assert.ok(
      timedOut.slice(failures + 2).every((e) => /no TLS handshake within 2000 ms/.test(String(e.err))),
      'the silent ones were cut off by the handshake limit',
    );
    // and these two have let go of their slots too (the client may see the close first)
    await daemon.waitForLogs((e) => e.msg === 'disconnect', disconnects + 4);
    // a client that hangs up before its handshake (only its side: the listeners are half-open)
    // frees its max_clients slot at once, not after the handshake limit
    await Promise.all([
      rawUntilClosed(env.pop3sPort, (s) => s.end()),
      rawUntilClosed(env.pop3Port, (s) => s.end('STLS\r\n')),
    ]);
    const logged = await daemon.waitForLogs((e) => e.msg === 'TLS handshake failed', failures + 6);
    assert.ok(logged.slice(failures).every((e) => e.client === '127.0.0.1' && typeof e.err === 'string'));
    assert.ok(
      logged.slice(failures + 4).every((e) => !/no TLS handshake within/.test(String(e.err))),
      'a hang-up is noticed at once, not at the handshake limit',
    );
  });

  test('autologout over TLS (pop3s and after STLS)', async () => {
    const { client: pop3s } = await connectPop3s(env.pop3sPort, env.tls.cert);
    const stls = await pop3Stls((await Pop3Client.connect(env.pop3Port)).client, env.tls.cert);
    for (const client of [pop3s, stls]) {
      assert.match(await client.readLine(10_000), /^-ERR Autologout/);
      await client.waitClosed(10_000);
    }
  });

  test('max_clients counts both listeners: over it, pop3s is closed and plaintext gets -ERR', async () => {
    const { client: plain } = await Pop3Client.connect(env.pop3Port);
    const { client: pop3s, greeting } = await connectPop3s(env.pop3sPort, env.tls.cert);
    assert.equal(greeting, '+OK mailsrv ready');
    // closed by the server, not given up on here
    await assert.rejects(connectPop3s(env.pop3sPort, env.tls.cert, { timeoutMs: 30_000 }), (err: Error) => {
      assert.doesNotMatch(err.message, /did not complete/);
      return true;
    });
    const { client: extra, greeting: refused } = await Pop3Client.connect(env.pop3Port);
    assert.equal(refused, '-ERR [SYS/TEMP] too many connections');
    extra.destroy();
    assert.match(await pop3s.quit(), /^\+OK/);
    plain.destroy();
  });

  test('SIGTERM: a pop3s session gets [SYS/TEMP] over TLS, a connection still in its handshake is closed', async () => {
    let session: Pop3Client | null = null;
    // the sessions of the test before may take a moment to be let go
    await eventually(
      async () => {
        session = (await connectPop3s(env.pop3sPort, env.tls.cert, { timeoutMs: 2000 })).client;
        return true;
      },
      10_000,
      'a pop3s session',
      100,
    );
    const isPop3sConnect = (e: LogEntry) => e.msg === 'connect' && e.listener === 'pop3s';
    const connects = daemon.find(isPop3sConnect).length;
    const handshaking = rawUntilClosed(env.pop3sPort, () => undefined);
    await daemon.waitForLogs(isPop3sConnect, connects + 1, 10_000, 'the connection that sends nothing taken in');
    const failures = daemon.find((e) => e.msg === 'TLS handshake failed').length;
    daemon.child.kill('SIGTERM');
    assert.equal(await session!.readLine(), '-ERR [SYS/TEMP] server shutting down');
    await handshaking;
    assert.equal(await daemon.stop(), 0);
    // the daemon has exited and all it logged is read: the stop closed it, not the handshake limit
    const cutOff = daemon.find((e) => e.msg === 'TLS handshake failed').slice(failures);
    assert.ok(
      cutOff.every((e) => !/no TLS handshake within/.test(String(e.err))),
      `closed by the handshake limit: ${JSON.stringify(cutOff)}`,
    );
  });
});
