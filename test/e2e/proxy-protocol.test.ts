// PROXY protocol (README, "More than one node"): connections from proxy_protocol_networks must
// start with a v1 or v2 header, and the client it names is the one every check and log line
// sees (mynetworks relay, per-IP limits, logins, the Received line); a v2 LOCAL header keeps
// the peer; no valid header closes the connection; from elsewhere a PROXY line is an unknown
// command. First with headers written by the test, then behind a real HAProxy (send-proxy and
// send-proxy-v2) spreading SMTP and POP3 over two daemons that share one spool.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  cleanupAllTempDirs,
  connectSocket,
  type Daemon,
  DOMAIN,
  envForTest,
  eventually,
  freePort,
  logsSoFar,
  note,
  Pop3Client,
  readMailbox,
  SmtpClient,
  tlsHandshake,
} from './harness.js';

after(cleanupAllTempDirs);

const hasHaproxy = spawnSync('haproxy', ['-v']).error === undefined;

/** A PROXY v2 header for a TCP4 client (command 1) or a LOCAL health check (command 0). */
function v2Header(client: string | null, port = 40000): Buffer {
  const head = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
  if (client === null) return Buffer.concat([head, Buffer.from([0x20, 0x00, 0, 0])]);
  const block = Buffer.alloc(12);
  Buffer.from(client.split('.').map(Number)).copy(block, 0);
  Buffer.from([127, 0, 0, 1]).copy(block, 4);
  block.writeUInt16BE(port, 8);
  block.writeUInt16BE(25, 10);
  return Buffer.concat([head, Buffer.from([0x21, 0x11, 0, 12]), block]);
}

function v1Header(client: string, port = 40000): string {
  return `PROXY TCP4 ${client} 127.0.0.1 ${port} 25\r\n`;
}

/** An SMTP client on a connection that starts with `header` (from 127.0.0.1, the trusted balancer). */
async function smtpBehind(port: number, header: Buffer | string) {
  const socket = await connectSocket(port, {}, 10_000);
  socket.write(header);
  const client = SmtpClient.over(socket);
  return { client, greeting: await client.read() };
}

describe('PROXY headers from proxy_protocol_networks', () => {
  test('the client a v1 or v2 header names is the client of every check and log line', async (t) => {
    const pop3Port = await freePort();
    const smtpsPort = await freePort();
    const pop3sPort = await freePort();
    const { env, start } = await envForTest(t, {
      tls: true,
      config: {
        proxy_protocol_networks: ['127.0.0.1/32'],
        mynetworks: ['127.0.0.2/32'],
        smtp: { smtps: [`127.0.0.1:${smtpsPort}`], max_connections_per_ip: 1 },
        pop3: { listen: [`127.0.0.1:${pop3Port}`], pop3s: [`127.0.0.1:${pop3sPort}`] },
      },
    });
    const daemon = await start();
    const ca = env.tls!.cert;
    const connectsFrom = (client: string) => daemon.find((e) => e.msg === 'connect' && e.client === client);

    // v1 names a client in mynetworks: it may relay; v2 names one outside: it may not
    const inside = await smtpBehind(env.port, v1Header('127.0.0.2'));
    assert.equal(inside.greeting.code, 220);
    await inside.client.cmd('EHLO inside.test');
    await inside.client.cmd('MAIL FROM:<a@inside.test>');
    assert.equal((await inside.client.cmd('RCPT TO:<x@remote.test>')).code, 250);
    await inside.client.quit();
    const outside = await smtpBehind(env.port, v2Header('127.0.0.5', 41234));
    await outside.client.cmd('EHLO outside.test');
    await outside.client.cmd('MAIL FROM:<a@outside.test>');
    assert.match((await outside.client.cmd('RCPT TO:<x@remote.test>')).raw, /^554 5\.7\.1 .*Relay access denied/);
    assert.equal((await outside.client.cmd(`RCPT TO:<alice@${DOMAIN}>`)).code, 250);
    assert.equal((await outside.client.cmd('DATA')).code, 354);
    assert.equal((await outside.client.data(note('through the balancer'))).code, 250);
    await outside.client.quit();
    await logsSoFar(daemon, env.port);
    assert.equal(connectsFrom('127.0.0.2').length, 1);
    assert.equal(connectsFrom('127.0.0.5').length, 1);
    assert.equal(connectsFrom('127.0.0.1').length, 0, 'the balancer is never taken for the client');
    const [stored] = readMailbox(env.mailbox('alice')).messages;
    assert.match(stored!.trace!.received, /\[127\.0\.0\.5\]/);
    assert.doesNotMatch(stored!.trace!.received, /127\.0\.0\.1/);

    // a v2 LOCAL header (a health check) keeps the peer
    const check = await smtpBehind(env.port, v2Header(null));
    assert.equal(check.greeting.code, 220);
    await check.client.quit();
    await logsSoFar(daemon, env.port);
    assert.equal(connectsFrom('127.0.0.1').length, 1);

    // max_connections_per_ip counts the named client, not the balancer
    const first = await smtpBehind(env.port, v1Header('10.9.9.9'));
    assert.equal(first.greeting.code, 220);
    const second = await smtpBehind(env.port, v2Header('10.9.9.9'));
    assert.match(second.greeting.raw, /^421 4\.7\.0 Too many connections from your address/);
    second.client.destroy();
    const other = await smtpBehind(env.port, v1Header('10.9.9.10'));
    assert.equal(other.greeting.code, 220);
    await Promise.all([first.client.quit(), other.client.quit()]);

    // POP3, and the implicit-TLS listeners: the header comes before the TLS handshake
    const pop3Socket = await connectSocket(pop3Port, {}, 10_000);
    pop3Socket.write(v1Header('127.0.0.6'));
    const pop3 = Pop3Client.over(pop3Socket);
    assert.match(await pop3.readLine(), /^\+OK/);
    assert.equal(await pop3.cmd('USER alice'), '+OK send PASS');
    assert.match(await pop3.cmd('PASS secret-pw'), /^\+OK alice has 1 message/);
    await pop3.quit();
    const pop3sSocket = await connectSocket(pop3sPort, {}, 10_000);
    pop3sSocket.write(v2Header('127.0.0.7'));
    const pop3s = Pop3Client.over(await tlsHandshake(pop3sSocket, ca));
    assert.match(await pop3s.readLine(), /^\+OK/);
    await pop3s.quit();
    const smtpsSocket = await connectSocket(smtpsPort, {}, 10_000);
    smtpsSocket.write(v2Header('127.0.0.8'));
    const smtps = SmtpClient.over(await tlsHandshake(smtpsSocket, ca));
    assert.equal((await smtps.read()).code, 220);
    await smtps.quit();
    await logsSoFar(daemon, env.port);
    assert.ok(daemon.find((e) => e.msg === 'login' && e.client === '127.0.0.6' && e.user === 'alice').length === 1);
    for (const [client, listener] of [
      ['127.0.0.6', 'pop3'],
      ['127.0.0.7', 'pop3s'],
      ['127.0.0.8', 'smtps'],
    ]) {
      assert.equal(daemon.find((e) => e.msg === 'connect' && e.client === client && e.listener === listener).length, 1);
    }
  });

  test('no valid header from a balancer closes the connection; elsewhere PROXY is an unknown command', async (t) => {
    const pop3Port = await freePort();
    const { env, start } = await envForTest(t, {
      config: { proxy_protocol_networks: ['127.0.0.1/32'], pop3: { listen: [`127.0.0.1:${pop3Port}`] } },
    });
    const daemon = await start();
    const refused = () => daemon.find((e) => e.msg === 'connection without a valid PROXY header closed');

    for (const port of [env.port, pop3Port]) {
      const garbage = await connectSocket(port, {}, 10_000);
      garbage.write('EHLO client.test\r\n');
      await once(garbage, 'close');
    }
    // a health check that hangs up right after its LOCAL header costs nothing (and never crashes)
    const check = await connectSocket(env.port, {}, 10_000);
    check.end(v2Header(null));
    check.resume();
    await once(check, 'close');
    // a header that never ends: closed after 5 s
    const stalled = await connectSocket(env.port, {}, 10_000);
    stalled.on('data', () => assert.fail('no reply before the header'));
    stalled.write('PROXY TCP4 127.0.0.5');
    await once(stalled, 'close');
    await daemon.waitForLogs((e) => e.msg === 'connection without a valid PROXY header closed', 3, 10_000, 'refusals');
    assert.deepEqual(
      refused().map((e) => [e.listener, e.proxy]),
      [
        ['mx', '127.0.0.1'],
        ['pop3', '127.0.0.1'],
        ['mx', '127.0.0.1'],
      ],
    );
    assert.match(String(refused()[2]!.reason), /no whole PROXY header within 5000 ms/);

    // 127.0.0.3 is no balancer: its PROXY line is a command like any other, and the session goes on
    const { client, greeting } = await SmtpClient.connect(env.port, { localAddress: '127.0.0.3' });
    assert.equal(greeting.code, 220);
    assert.match((await client.cmd(v1Header('127.0.0.2').trimEnd())).raw, /^500 /);
    assert.equal((await client.cmd('EHLO client.test')).code, 250);
    await client.quit();
    const { client: pop3 } = await Pop3Client.connect(pop3Port, { localAddress: '127.0.0.3' });
    assert.match(await pop3.cmd(v1Header('127.0.0.2').trimEnd()), /^-ERR /);
    assert.equal(await pop3.cmd('USER alice'), '+OK send PASS');
    await pop3.quit();
    await logsSoFar(daemon, env.port);
    assert.equal(daemon.find((e) => e.msg === 'connect' && e.client === '127.0.0.2').length, 0);
  });
});

/** HAProxy in the foreground with `config`; killed when the test ends. */
async function startHaproxy(t: { after: (fn: () => unknown) => void }, dir: string, config: string) {
  const path = join(dir, 'haproxy.cfg');
  writeFileSync(path, config);
  const child: ChildProcess = spawn('haproxy', ['-db', '-f', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  t.after(() => {
    child.kill('SIGKILL');
  });
  return { child, output: () => output };
}

describe('behind HAProxy', { skip: !hasHaproxy && 'haproxy is not installed' }, () => {
  test('send-proxy and send-proxy-v2 spread SMTP and POP3 over two daemons; they see the real client', async (t) => {
    const ports = { smtp: await freePort(), pop3: await freePort(), pop3a: await freePort(), pop3b: await freePort() };
    const config = {
      proxy_protocol_networks: ['127.0.0.1/32'],
      // the balancer's own address may relay; a client behind it only by its own address
      mynetworks: ['127.0.0.1/32', '127.0.0.2/32'],
    };
    const first = await envForTest(t, { config: { ...config, pop3: { listen: [`127.0.0.1:${ports.pop3a}`] } } });
    const second = await envForTest(t, {
      sharedSpool: first.env.spoolDir,
      config: { ...config, pop3: { listen: [`127.0.0.1:${ports.pop3b}`] } },
    });
    const daemons: [Daemon, Daemon] = [await first.start(), await second.start()];
    const haproxy = await startHaproxy(
      t,
      first.env.dir,
      [
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 60s',
        '  timeout server 60s',
        'frontend smtp',
        `  bind 127.0.0.1:${ports.smtp}`,
        '  default_backend smtp_nodes',
        'backend smtp_nodes',
        '  balance roundrobin',
        // the check waits for the 220 greeting and says HELO: a whole session, so it is logged
        '  option smtpchk HELO haproxy.test',
        `  server node1 127.0.0.1:${first.env.port} send-proxy`,
        // health checks of a send-proxy-v2 server send a LOCAL header
        `  server node2 127.0.0.1:${second.env.port} send-proxy-v2 check inter 500ms check-send-proxy`,
        'frontend pop3',
        `  bind 127.0.0.1:${ports.pop3}`,
        '  default_backend pop3_nodes',
        'backend pop3_nodes',
        '  balance roundrobin',
        `  server node1 127.0.0.1:${ports.pop3a} send-proxy-v2`,
        `  server node2 127.0.0.1:${ports.pop3b} send-proxy`,
        '',
      ].join('\n'),
    );
    await eventually(
      async () => {
        (await connectSocket(ports.smtp, { localAddress: '127.0.0.9' }, 1000)).destroy();
        return true;
      },
      10_000,
      'haproxy listening',
    );
    // the health checks reach node 2 as LOCAL: logged with the balancer's own address
    await daemons[1].waitForLog((e) => e.msg === 'connect' && e.client === '127.0.0.1', 10_000, 'a health check');

    const relayFrom = async (localAddress: string) => {
      const { client } = await SmtpClient.connect(ports.smtp, { localAddress });
      await client.cmd('EHLO client.test');
      await client.cmd('MAIL FROM:<a@client.test>');
      const reply = await client.cmd('RCPT TO:<x@remote.test>');
      await client.quit();
      return reply.raw;
    };
    for (let i = 0; i < 2; i += 1) {
      assert.match(await relayFrom('127.0.0.5'), /^554 5\.7\.1 /, `try ${i}: 127.0.0.5 is not in mynetworks`);
      assert.match(await relayFrom('127.0.0.2'), /^250 /, `try ${i}: 127.0.0.2 is`);
    }
    for (let i = 0; i < 4; i += 1) {
      const { client } = await SmtpClient.connect(ports.smtp, { localAddress: '127.0.0.5' });
      await client.cmd('EHLO client.test');
      await client.cmd('MAIL FROM:<a@client.test>');
      await client.cmd(`RCPT TO:<alice@${DOMAIN}>`);
      await client.cmd('DATA');
      assert.equal((await client.data(note(`through haproxy ${i}`))).code, 250);
      await client.quit();
    }
    for (let i = 0; i < 2; i += 1) {
      const pop3 = await Pop3Client.login(ports.pop3, 'bob', undefined, { localAddress: '127.0.0.6' });
      await pop3.quit();
    }
    for (const [daemon, env] of [
      [daemons[0], first.env],
      [daemons[1], second.env],
    ] as const) {
      await logsSoFar(daemon, env.port);
      const clients = daemon.find((e) => e.msg === 'connect' && e.listener === 'mx').map((e) => e.client);
      // haproxy's output says when it took a node out of the rotation
      const context = `haproxy said: ${haproxy.output()}`;
      assert.ok(clients.includes('127.0.0.5'), `each node got SMTP clients: ${clients.join(' ')}; ${context}`);
      // the clients of the test, haproxy's probes (LOCAL) and the marker connections of logsSoFar
      const known = new Set(['127.0.0.5', '127.0.0.2', '127.0.0.9', '127.0.0.1', '127.0.0.99']);
      assert.deepEqual(
        clients.filter((c) => !known.has(String(c))),
        [],
        context,
      );
      const logins = daemon.find((e) => e.msg === 'login' && e.user === 'bob').map((e) => e.client);
      assert.deepEqual(logins, ['127.0.0.6'], `each node served one POP3 login of the real client; ${context}`);
    }
    // a message whose mailbox the other node held at that moment went through the queue: its 250
    // came once it was queued, and it is appended a moment later
    await eventually(
      () => readMailbox(first.env.mailbox('alice')).messages.length === 4,
      30_000,
      'both nodes delivered into the one shared spool',
    );
    const delivered = readMailbox(first.env.mailbox('alice')).messages;
    for (const message of delivered) {
      assert.match(message.trace!.received, /\[127\.0\.0\.5\]/);
      assert.doesNotMatch(message.trace!.received, /127\.0\.0\.1\b/);
    }
    assert.equal(haproxy.child.exitCode, null, haproxy.output());
  });
});
