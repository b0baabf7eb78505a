// E2E: the POP3 protocol over raw sockets against the real daemon: greeting and CAPA, every
// command and its errors, octet counts equal to what RETR sends, TOP, pipelining, AUTH PLAIN,
// failed logins (same reply, delayed, growing), plaintext refused outside
// plaintext_auth_networks, hostile user names, long lines, one session per mailbox, limits
// (max_clients, autologout) and the graceful stop.
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  crlf,
  deepMerge,
  deliverOverSmtp,
  eventually,
  logsSoFar,
  makePop3Env,
  PASSWORD,
  passwordHash,
  Pop3Client,
  pop3Wire,
  readMailbox,
  startDaemon,
  type Daemon,
  type TestEnv,
  note,
} from './harness.js';

const INSIDE = '127.0.0.1'; // in plaintext_auth_networks, as is 127.0.1.0/24 (one address per test that fails logins)
const OUTSIDE = '127.0.0.2'; // not in it
const DELAY_MS = 50;

/** What TOP n k must send: the header, the blank line, the first k body lines. */
function expectedTop(wire: Buffer, k: number): Buffer {
  const text = wire.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  const head = text.slice(0, split + 4);
  const bodyLines = text
    .slice(split + 4)
    .split('\r\n')
    .slice(0, -1);
  return Buffer.from(
    head +
      bodyLines
        .slice(0, k)
        .map((l) => `${l}\r\n`)
        .join(''),
    'latin1',
  );
}

function tricky(subject: string): string {
  return note(
    subject,
    'line one',
    '.line starting with a dot',
    '..two dots',
    '.',
    'From the start of a line',
    '>From already quoted',
    'line six',
    'line seven',
    'last line',
  );
}

describe('pop3 protocol', () => {
  let env: TestEnv & { pop3Port: number };
  let daemon: Daemon;
  let port: number;

  before(async () => {
    env = await makePop3Env({
      users: ['alice', 'bob', 'carol', 'erin', 'frank'],
      config: { plaintext_auth_networks: [`${INSIDE}/32`, '127.0.1.0/24'], auth: { failure_delay: `${DELAY_MS}ms` } },
    });
    port = env.pop3Port;
    daemon = await startDaemon(env);
    await deliverOverSmtp(daemon, env, 'alice', tricky('first'));
    await deliverOverSmtp(daemon, env, 'alice', tricky('second'));
    await deliverOverSmtp(daemon, env, 'alice', crlf('Subject: no body', ''));
  });

  after(async () => {
    await daemon?.kill9();
    await env?.cleanup();
  });

  test('greeting and CAPA (with USER and SASL PLAIN inside plaintext_auth_networks)', async () => {
    const { client, greeting } = await Pop3Client.connect(port);
    assert.equal(greeting, '+OK mailsrv ready');
    const capa = await client.multi('CAPA');
    assert.match(capa.status, /^\+OK/);
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
    assert.match(await client.quit(), /^\+OK/);
  });

  test('a client that sends its commands and shuts down its side (printf | nc) gets every reply', async () => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let received = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.end(`USER bob\r\nPASS ${PASSWORD}\r\nSTAT\r\nDELE 1\r\nNOOP\r\n`);
    await closed;
    const replies = received.split('\r\n').filter(Boolean);
    assert.equal(replies.length, 6, received);
    // greeting, USER, PASS, STAT
    assert.ok(
      replies.slice(0, 4).every((r) => r.startsWith('+OK')),
      received,
    );
    assert.match(replies[4]!, /^-ERR/); // bob's mailbox is empty: DELE 1 has nothing to delete
    assert.match(replies[5]!, /^\+OK/);
  });

  test('a session: STAT/LIST octets equal RETR bytes, UIDL, TOP n 0 / n 3, errors for bad commands', async () => {
    const box = env.mailbox('alice');
    const client = await Pop3Client.login(port, 'alice');
    const wires = [1, 2, 3].map((n) => pop3Wire(box, n));
    const total = wires.reduce((sum, w) => sum + w.length, 0);
    assert.equal(await client.cmd('STAT'), `+OK 3 ${total}`);
    const sizes = await client.sizes();
    assert.deepEqual(
      [...sizes.values()],
      wires.map((w) => w.length),
    );
    assert.equal(await client.cmd('LIST 2'), `+OK 2 ${wires[1]!.length}`);
    for (const n of [1, 2, 3]) {
      const retr = await client.message(`RETR ${n}`);
      assert.match(retr.status, new RegExp(`^\\+OK ${sizes.get(n)} octets`));
      assert.equal(retr.body.length, sizes.get(n), `RETR ${n} sends exactly the LIST size`);
      assert.deepEqual(retr.body, wires[n - 1], `RETR ${n} is the stored message, CRLF, unquoted`);
    }
    assert.match(
      wires[0]!.toString('latin1'),
      /\r\n\.line starting with a dot\r\n\.\.two dots\r\n\.\r\nFrom the start/,
    );
    const uidls = await client.uidls();
    assert.equal(new Set(uidls.values()).size, 3);
    for (const uid of uidls.values()) assert.match(uid, /^[\x21-\x7e]{1,70}$/);
    assert.equal(await client.cmd('UIDL 3'), `+OK 3 ${uidls.get(3)}`);
    assert.deepEqual((await client.message('TOP 1 0')).body, expectedTop(wires[0]!, 0));
    assert.deepEqual((await client.message('TOP 1 3')).body, expectedTop(wires[0]!, 3));
    assert.deepEqual((await client.message('TOP 1 1000')).body, wires[0]);
    assert.deepEqual((await client.message('TOP 3 5')).body, wires[2]);

    // errors: unknown, wrong state, bad arguments, missing and deleted messages
    assert.match(await client.cmd('XYZZY'), /^-ERR/);
    assert.match(await client.cmd('USER alice'), /^-ERR/);
    assert.match(await client.cmd('PASS x'), /^-ERR/);
    assert.match(await client.cmd('RETR x'), /^-ERR/);
    assert.match(await client.cmd('RETR'), /^-ERR/);
    assert.match(await client.cmd('LIST 1 2'), /^-ERR/);
    assert.match(await client.cmd('TOP 1'), /^-ERR/);
    assert.match(await client.cmd('TOP 1 -1'), /^-ERR/);
    assert.match(await client.cmd('RETR 0'), /^-ERR/);
    assert.match(await client.cmd('RETR 4'), /^-ERR/);
    assert.match(await client.cmd('LIST 99999999999999999999'), /^-ERR/);
    assert.equal(await client.cmd('NOOP'), '+OK');
    assert.match(await client.cmd('DELE 1'), /^\+OK/);
    assert.match(await client.cmd('DELE 1'), /^-ERR/);
    assert.match(await client.cmd('RETR 1'), /^-ERR/);
    assert.match(await client.cmd('LIST 1'), /^-ERR/);
    assert.match(await client.cmd('UIDL 1'), /^-ERR/);
    assert.match(await client.cmd('TOP 1 0'), /^-ERR/);
    assert.equal(await client.cmd('STAT'), `+OK 2 ${total - wires[0]!.length}`);
    assert.deepEqual([...(await client.sizes()).keys()], [2, 3]);
    assert.deepEqual([...(await client.uidls()).keys()], [2, 3]);
    assert.match(await client.cmd('RSET'), /^\+OK/);
    assert.equal(await client.cmd('STAT'), `+OK 3 ${total}`);
    assert.match(await client.quit(), /^\+OK/);
    assert.equal(readMailbox(box).messages.length, 3, 'nothing deleted after RSET');
  });

  test('commands are case-insensitive; wrong-state commands before login get -ERR', async () => {
    const { client } = await Pop3Client.connect(port);
    for (const cmd of [
      'STAT',
      'LIST',
      'RETR 1',
      'DELE 1',
      'NOOP',
      'RSET',
      'TOP 1 1',
      'UIDL',
      'PASS secret-pw',
      'APOP alice 0123',
      'STLS',
    ]) {
      assert.match(await client.cmd(cmd), /^-ERR/, cmd);
    }
    assert.match(await client.cmd('user alice'), /^\+OK/);
    assert.match(await client.cmd(`pAsS ${PASSWORD}`), /^\+OK/);
    assert.match(await client.cmd('stat'), /^\+OK 3 /);
    assert.match((await client.multi('list')).status, /^\+OK/);
    assert.match(await client.cmd('quit'), /^\+OK/);
  });

  test('pipelined commands are answered in order', async () => {
    const { client } = await Pop3Client.connect(port);
    client.write(
      `CAPA\r\nUSER alice\r\nPASS ${PASSWORD}\r\nSTAT\r\nLIST\r\nUIDL 2\r\n` +
        'BOGUS\r\nRETR 2\r\nTOP 1 0\r\nNOOP\r\nRSET\r\nQUIT\r\n',
    );
    assert.match((await client.readMulti()).status, /^\+OK/); // CAPA
    assert.match(await client.readLine(), /^\+OK/); // USER
    assert.match(await client.readLine(), /^\+OK/); // PASS
    const stat = await client.readLine();
    assert.match(stat, /^\+OK 3 \d+$/);
    const list = await client.readMulti();
    assert.equal(list.lines.length, 3);
    assert.match(await client.readLine(), /^\+OK 2 \S+$/); // UIDL 2
    assert.match(await client.readLine(), /^-ERR/); // BOGUS
    const retr = await client.readMulti();
    assert.equal(
      Buffer.from(retr.lines.map((l) => `${l}\r\n`).join(''), 'latin1').length,
      Number(list.lines[1]!.split(' ')[1]),
    );
    assert.match((await client.readMulti()).status, /^\+OK/); // TOP
    assert.equal(await client.readLine(), '+OK'); // NOOP
    assert.match(await client.readLine(), /^\+OK/); // RSET
    assert.match(await client.readLine(), /^\+OK/); // QUIT
    await client.waitClosed();
  });

  test('AUTH PLAIN with an initial response, with a continuation, cancelled, and malformed', async () => {
    const plain = (authz: string, user: string, pass: string) =>
      Buffer.from(`${authz}\0${user}\0${pass}`).toString('base64');
    let { client } = await Pop3Client.connect(port);
    assert.match(await client.cmd(`AUTH PLAIN ${plain('', 'bob', PASSWORD)}`), /^\+OK/);
    assert.match(await client.cmd('STAT'), /^\+OK 0 0$/);
    assert.match(await client.quit(), /^\+OK/);

    ({ client } = await Pop3Client.connect(port));
    assert.equal(await client.cmd('AUTH PLAIN'), '+ ');
    assert.match(await client.cmd(plain('bob', 'bob', PASSWORD)), /^\+OK/);
    assert.match(await client.quit(), /^\+OK/);

    ({ client } = await Pop3Client.connect(port));
    assert.equal(await client.cmd('auth plain'), '+ ');
    assert.match(await client.cmd('*'), /^-ERR/);
    assert.match(await client.cmd('AUTH PLAIN !!notbase64'), /^-ERR/);
    assert.match(await client.cmd('AUTH CRAM-MD5'), /^-ERR/);
    assert.deepEqual((await client.multi('AUTH')).lines, ['PLAIN']);
    assert.match(await client.cmd(`AUTH PLAIN ${plain('alice', 'bob', PASSWORD)}`), /^-ERR \[AUTH\]/, 'no proxy login');
    assert.match(await client.cmd(`AUTH PLAIN ${plain('', 'bob', 'wrong')}`), /^-ERR \[AUTH\]/);
    assert.match(await client.quit(), /^\+OK/);
  });

  test('unknown user and wrong password: the same reply after the same delay, growing per address', async () => {
    const attempt = async (localAddress: string, user: string, pass: string) => {
      const { client } = await Pop3Client.connect(port, { localAddress });
      assert.match(await client.cmd(`USER ${user}`), /^\+OK/);
      const started = Date.now();
      const reply = await client.cmd(`PASS ${pass}`);
      const ms = Date.now() - started;
      await client.quit();
      return { reply, ms };
    };
    const wrongPassword = await attempt('127.0.1.3', 'carol', 'not-her-password');
    const unknownUser = await attempt('127.0.1.4', 'nosuchuser', PASSWORD);
    const badName = await attempt('127.0.1.5', '../../etc/passwd', PASSWORD);
    assert.match(wrongPassword.reply, /^-ERR \[AUTH\] /);
    assert.equal(unknownUser.reply, wrongPassword.reply);
    assert.equal(badName.reply, wrongPassword.reply);
    // a timer may end a little early by the clock read here (Node's loop time lags): half the delay at least
    for (const r of [wrongPassword, unknownUser, badName]) assert.ok(r.ms >= DELAY_MS / 2, `delayed (${r.ms} ms)`);
    // and the same delay for each: the daemon waited the base delay for all three first failures
    const firsts = await daemon.waitForLogs(
      (e) => e.msg === 'login failed' && /^127\.0\.1\.[345]$/.test(String(e.client)),
      3,
    );
    assert.deepEqual(
      firsts.map((e) => e.delayMs),
      [DELAY_MS, DELAY_MS, DELAY_MS],
    );

    // a second and third failure from the same address wait longer
    const second = await attempt('127.0.1.3', 'carol', 'guess-2');
    const third = await attempt('127.0.1.3', 'carol', 'guess-3');
    assert.ok(second.ms >= DELAY_MS, `second failure waited ${second.ms} ms`);
    assert.ok(third.ms >= 2 * DELAY_MS, `third failure waited ${third.ms} ms`);
    // a success clears it
    const ok = await attempt('127.0.1.3', 'carol', PASSWORD);
    assert.match(ok.reply, /^\+OK/);
    await attempt('127.0.1.3', 'carol', 'again');
    const failed = await daemon.waitForLogs((e) => e.msg === 'login failed' && e.client === '127.0.1.3', 4);
    assert.deepEqual(
      failed.filter((e) => e.client === '127.0.1.3').map((e) => e.delayMs),
      [DELAY_MS, 2 * DELAY_MS, 4 * DELAY_MS, DELAY_MS],
      'the delay doubles per failure and starts again after a success',
    );

    // and no password nor AUTH payload reaches the log
    await logsSoFar(daemon, env.port);
    for (const secret of [
      PASSWORD,
      'not-her-password',
      'guess-2',
      Buffer.from(`\0bob\0${PASSWORD}`).toString('base64'),
    ]) {
      assert.ok(!daemon.stdout.includes(secret), `log contains ${JSON.stringify(secret)}`);
    }
    assert.ok(daemon.find((e) => e.msg === 'login failed').length >= 3);
  });

  test('plaintext login is refused outside plaintext_auth_networks, and CAPA does not offer it', async () => {
    const { client } = await Pop3Client.connect(port, { localAddress: OUTSIDE });
    const capa = await client.multi('CAPA');
    assert.ok(!capa.lines.includes('USER') && !capa.lines.some((l) => l.startsWith('SASL')), capa.lines.join(','));
    const refused = '-ERR [AUTH] Plaintext authentication disallowed on non-secured connection';
    assert.equal(await client.cmd('USER alice'), refused);
    assert.equal(await client.cmd(`PASS ${PASSWORD}`), refused);
    assert.equal(await client.cmd(`AUTH PLAIN ${Buffer.from(`\0alice\0${PASSWORD}`).toString('base64')}`), refused);
    assert.match(await client.cmd('STAT'), /^-ERR/);
    assert.match(await client.quit(), /^\+OK/);
  });

  test('hostile user names are refused before they can name a file', async () => {
    const before = readdirSync(env.dir).sort();
    const spoolBefore = readdirSync(env.spoolDir).sort();
    // a file the name would reach if it were used as a path
    mkdirSync(join(env.dir, 'x'), { recursive: true });
    writeFileSync(join(env.dir, 'x', 'canary'), 'untouched');
    const names = ['../x', '../x/canary', '/etc/passwd', '.alice', 'alice/../bob', 'ALICE\0', '..'];
    // in parallel, each from its own address (failed logins from one address wait longer and longer)
    await Promise.all(
      names.map(async (name, i) => {
        const { client } = await Pop3Client.connect(port, { localAddress: `127.0.1.${20 + i}` });
        await client.cmd(`USER ${name}`);
        assert.match(await client.cmd(`PASS ${PASSWORD}`), /^-ERR \[AUTH\]/, name);
        const plain = Buffer.from(`\0${name}\0${PASSWORD}`).toString('base64');
        assert.match(await client.cmd(`AUTH PLAIN ${plain}`), /^-ERR \[AUTH\]/, name);
        await client.quit();
      }),
    );
    assert.deepEqual(
      readdirSync(env.dir)
        .filter((n) => n !== 'x')
        .sort(),
      before,
    );
    assert.deepEqual(readdirSync(join(env.dir, 'x')), ['canary']);
    assert.deepEqual(readdirSync(env.spoolDir).sort(), spoolBefore);
  });

  test('a line over 255 octets gets -ERR and is not buffered; the server answers others meanwhile', async () => {
    const { client } = await Pop3Client.connect(port);
    assert.equal(await client.cmd('A'.repeat(256)), '-ERR line too long');
    assert.match((await client.multi('CAPA')).status, /^\+OK/, 'the session goes on');
    assert.match(
      await client.cmd(`NOOP ${'x'.repeat(250)}`),
      /^-ERR/,
      'a 255-octet line is a command (with bad arguments)',
    );

    // an endless line: 2 MB without a line end, in pieces
    const { client: flood } = await Pop3Client.connect(port);
    const piece = Buffer.alloc(64 * 1024, 'B');
    for (let i = 0; i < 32; i++) flood.write(piece);
    assert.equal(await flood.readLine(), '-ERR line too long');
    // meanwhile another client is served
    const other = await Pop3Client.login(port, 'erin');
    assert.match(await other.cmd('STAT'), /^\+OK/);
    await other.quit();
    flood.write('\r\nCAPA\r\n');
    assert.match((await flood.readMulti()).status, /^\+OK/);
    assert.match(await flood.quit(), /^\+OK/);
    assert.match(await client.quit(), /^\+OK/);
  });

  test('a second session for the same mailbox gets [IN-USE]; after QUIT the mailbox is free again', async () => {
    const first = await Pop3Client.login(port, 'frank');
    const { client: second } = await Pop3Client.connect(port);
    await second.cmd('USER frank');
    assert.match(await second.cmd(`PASS ${PASSWORD}`), /^-ERR \[IN-USE\] /);
    // a wrong password for a mailbox in use is still just [AUTH]
    await second.cmd('USER frank');
    assert.match(await second.cmd('PASS wrong'), /^-ERR \[AUTH\] /);
    assert.match(await first.quit(), /^\+OK/);
    await second.cmd('USER frank');
    assert.match(await second.cmd(`PASS ${PASSWORD}`), /^\+OK/);
    // a dropped connection frees the mailbox too (as soon as the daemon has seen it go)
    second.destroy();
    let third: Pop3Client | null = null;
    await eventually(
      async () => {
        const { client } = await Pop3Client.connect(port);
        await client.cmd('USER frank');
        if ((await client.cmd(`PASS ${PASSWORD}`)).startsWith('+OK')) third = client;
        else client.destroy();
        return third !== null;
      },
      10_000,
      'a login to the mailbox the dropped session had',
    );
    assert.match(await third!.quit(), /^\+OK/);
  });
});

describe('pop3 limits and stop', () => {
  // SIGHUP: users, plaintext_auth_networks; SIGTERM: an update in progress finishes, other sessions get [SYS/TEMP]
  test('max_clients, autologout, SIGHUP and SIGTERM', async (t) => {
    const env = await makePop3Env({ users: ['alice', 'bob'], config: { pop3: { max_clients: 3, timeout: '2s' } } });
    const daemons: Daemon[] = [];
    t.after(async () => {
      for (const d of daemons) await d.kill9();
      await env.cleanup();
    });
    const daemon = await startDaemon(env);
    daemons.push(daemon);
    const port = env.pop3Port;
    await deliverOverSmtp(daemon, env, 'alice', crlf('Subject: one', '', 'one'));
    await deliverOverSmtp(daemon, env, 'alice', crlf('Subject: two', '', 'two'));
    await deliverOverSmtp(daemon, env, 'bob', crlf('Subject: three', '', 'three'));

    // max_clients: the fourth connection is turned away
    const clients = await Promise.all([1, 2, 3].map(async () => (await Pop3Client.connect(port)).client));
    const { client: extra, greeting } = await Pop3Client.connect(port);
    assert.equal(greeting, '-ERR [SYS/TEMP] too many connections');
    await extra.waitClosed(10_000);
    for (const c of clients) c.destroy();

    // autologout after pop3.timeout of silence (once the server has seen the three go: retry until welcome)
    let idle: Pop3Client | null = null;
    while (idle === null) {
      const { client, greeting } = await Pop3Client.connect(port);
      if (greeting === '+OK mailsrv ready') idle = client;
      else client.destroy();
    }
    const started = Date.now();
    assert.match(await idle.readLine(10_000), /^-ERR .*[Aa]utologout/);
    await idle.waitClosed(10_000);
    assert.ok(Date.now() - started >= 1500, 'not before the timeout');
    assert.equal(readMailbox(env.mailbox('alice')).messages.length, 2);

    // SIGHUP: a new user and a narrower plaintext_auth_networks apply without a restart
    appendFileSync(env.usersFile, `zed:${await passwordHash()}\n`);
    await env.writeConfig(deepMerge(env.config, { plaintext_auth_networks: ['127.0.0.2/32'] }));
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog((e) => e.msg === 'reloaded config, users, aliases and TLS certificate');
    const { client: refused } = await Pop3Client.connect(port);
    assert.equal(
      await refused.cmd('USER zed'),
      '-ERR [AUTH] Plaintext authentication disallowed on non-secured connection',
    );
    refused.destroy();
    const zed = await Pop3Client.login(port, 'zed', PASSWORD, { localAddress: OUTSIDE });
    assert.match(await zed.cmd('STAT'), /^\+OK 0 0$/);
    await zed.quit();

    // stop: bob's session is idle with a DELE mark; alice's QUIT update waits for a lock
    const bob = await Pop3Client.login(port, 'bob', PASSWORD, { localAddress: OUTSIDE });
    assert.match(await bob.cmd('DELE 1'), /^\+OK/);
    const alice = await Pop3Client.login(port, 'alice', PASSWORD, { localAddress: OUTSIDE });
    assert.match(await alice.cmd('DELE 1'), /^\+OK/);
    const lock = `${env.mailbox('alice')}.lock`;
    writeFileSync(lock, `${process.pid}\n`); // held by a live process (us)
    alice.write('QUIT\r\n');
    // the update waits for the lock: its own lock file is there, waiting to be linked
    await eventually(
      () => readdirSync(env.spoolDir).some((name) => name.startsWith('alice.lock.')),
      10_000,
      "the QUIT update waiting for alice's lock",
      5,
    );
    daemon.child.kill('SIGTERM');
    assert.equal(await bob.readLine(), '-ERR [SYS/TEMP] server shutting down');
    rmSync(lock);
    assert.match(await alice.readLine(5000), /^\+OK .*1 messages? deleted/);
    assert.equal(await daemon.stop(), 0);
    assert.deepEqual(
      readMailbox(env.mailbox('alice')).messages.map((m) => /Subject: (\w+)/.exec(m.body.toString())![1]),
      ['two'],
    );
    assert.equal(readMailbox(env.mailbox('bob')).messages.length, 1, 'an interrupted session deletes nothing');
  });
});
