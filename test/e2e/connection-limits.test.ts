// E2E: the connection limits of SMTP and POP3 against the real daemon, each counted across all
// of a protocol's listeners: max_connections_per_ip (clients from several loopback addresses;
// mynetworks exempt, another address still served) and max_clients with implicit-TLS
// handshakes left unfinished taking their slots. Each refusal is logged with the client.
import assert from 'node:assert/strict';
import { createConnection, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import {
  connectPop3s,
  connectSmtpTls,
  envForTest,
  freePort,
  makePop3Env,
  Pop3Client,
  SmtpClient,
  startDaemon,
  type Daemon,
  type TestEnv,
} from './harness.js';

/** In the test config's mynetworks (harness.ts): exempt from the per-address limit. */
const MYNETWORKS_CLIENT = '127.0.0.2';
/** Outside mynetworks: the client that reaches the per-address limit, and another one. */
const GREEDY_CLIENT = '127.0.0.3';
const OTHER_CLIENT = '127.0.0.4';

/** A TCP connection that never says anything (an implicit-TLS handshake left unfinished). */
async function silentConnection(port: number, closeAfterTest: (socket: Socket) => void): Promise<Socket> {
  const socket = createConnection({ port, host: '127.0.0.1' });
  socket.on('error', () => undefined);
  closeAfterTest(socket);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return socket;
}

/** Starts the daemon of `env`; it is killed and `env` removed when the test ends. */
async function daemonFor(t: { after: (fn: () => Promise<void>) => void }, env: TestEnv): Promise<Daemon> {
  const daemon = await startDaemon(env);
  t.after(async () => {
    await daemon.kill9();
    await env.cleanup();
  });
  return daemon;
}

describe('connection limits', () => {
  test('smtp.max_connections_per_ip counts the MX and submission ports together; mynetworks exempt', async (t) => {
    const submissionPort = await freePort();
    const { env, start } = await envForTest(t, {
      config: { smtp: { submission: [`127.0.0.1:${submissionPort}`], max_connections_per_ip: 2 } },
    });
    const daemon = await start();
    const clients: SmtpClient[] = [];
    t.after(() => {
      for (const client of clients) client.destroy();
    });
    const connect = async (port: number, localAddress: string) => {
      const { client, greeting } = await SmtpClient.connect(port, { localAddress });
      clients.push(client);
      return { client, greeting };
    };

    assert.equal((await connect(env.port, GREEDY_CLIENT)).greeting.code, 220);
    assert.equal((await connect(submissionPort, GREEDY_CLIENT)).greeting.code, 220);
    for (const port of [env.port, submissionPort]) {
      const { client, greeting } = await connect(port, GREEDY_CLIENT);
      assert.equal(greeting.raw, '421 4.7.0 Too many connections from your address, try again later');
      await client.waitClosed();
    }
    assert.equal((await connect(env.port, OTHER_CLIENT)).greeting.code, 220, 'another address is served');
    for (const port of [env.port, submissionPort, env.port]) {
      assert.equal((await connect(port, MYNETWORKS_CLIENT)).greeting.code, 220, 'mynetworks has no per-address limit');
    }
    const logged = await daemon.waitForLogs((e) => e.msg === 'smtp: too many connections from one address', 2);
    assert.deepEqual(
      logged.map((e) => [e.client, e.listener, e.maxConnectionsPerIp]),
      [
        [GREEDY_CLIENT, 'mx', 2],
        [GREEDY_CLIENT, 'submission', 2],
      ],
    );
  });

  test('pop3.max_connections_per_ip counts both POP3 ports together; mynetworks exempt', async (t) => {
    const [firstPort, secondPort] = [await freePort(), await freePort()];
    const env = await makePop3Env({
      config: { pop3: { listen: [`127.0.0.1:${firstPort}`, `127.0.0.1:${secondPort}`], max_connections_per_ip: 2 } },
    });
    const daemon = await daemonFor(t, env);
    const clients: Pop3Client[] = [];
    t.after(() => {
      for (const client of clients) client.destroy();
    });
    const connect = async (port: number, localAddress: string) => {
      const { client, greeting } = await Pop3Client.connect(port, { localAddress });
      clients.push(client);
      return { client, greeting };
    };

    assert.equal((await connect(firstPort, GREEDY_CLIENT)).greeting, '+OK mailsrv ready');
    assert.equal((await connect(secondPort, GREEDY_CLIENT)).greeting, '+OK mailsrv ready');
    for (const port of [firstPort, secondPort]) {
      const { client, greeting } = await connect(port, GREEDY_CLIENT);
      assert.equal(greeting, '-ERR [SYS/TEMP] too many connections from your address');
      await client.waitClosed();
    }
    assert.equal((await connect(secondPort, OTHER_CLIENT)).greeting, '+OK mailsrv ready', 'another address is served');
    for (const port of [firstPort, secondPort, firstPort]) {
      assert.equal((await connect(port, MYNETWORKS_CLIENT)).greeting, '+OK mailsrv ready', 'mynetworks is exempt');
    }
    const logged = await daemon.waitForLogs((e) => e.msg === 'pop3: too many connections from one address', 2);
    assert.deepEqual(
      logged.map((e) => [e.client, e.listener]),
      [
        [GREEDY_CLIENT, 'pop3'],
        [GREEDY_CLIENT, 'pop3'],
      ],
    );
  });

  test('smtp.max_clients counts the MX port and smtps together, unfinished TLS handshakes included', async (t) => {
    const smtpsPort = await freePort();
    const { env, start } = await envForTest(t, {
      tls: true,
      config: { smtp: { smtps: [`127.0.0.1:${smtpsPort}`], max_clients: 3 } },
    });
    const daemon = await start();
    const open: { destroy(): void }[] = [];
    t.after(() => {
      for (const socket of open) socket.destroy();
    });
    // two implicit-TLS connections that never start their handshake, and one SMTP session
    await silentConnection(smtpsPort, (socket) => open.push(socket));
    await silentConnection(smtpsPort, (socket) => open.push(socket));
    const { client: session, greeting } = await SmtpClient.connect(env.port);
    open.push(session);
    assert.equal(greeting.code, 220);

    const { client: refused, greeting: refusal } = await SmtpClient.connect(env.port);
    open.push(refused);
    assert.equal(refusal.raw, '421 4.7.0 Too many connections, try again later');
    await assert.rejects(connectSmtpTls(smtpsPort, env.tls!.cert), 'an smtps connection is closed, no handshake');
    const logged = await daemon.waitForLogs((e) => e.msg === 'smtp: too many connections', 2);
    assert.deepEqual(
      logged.map((e) => [e.client, e.listener, e.maxClients]),
      [
        ['127.0.0.1', 'mx', 3],
        ['127.0.0.1', 'smtps', 3],
      ],
    );
    assert.equal((await session.cmd('NOOP')).code, 250, 'the session admitted goes on');
  });

  test('pop3.max_clients counts the POP3 port and pop3s together, unfinished TLS handshakes included', async (t) => {
    const pop3sPort = await freePort();
    const env = await makePop3Env({
      tls: true,
      config: { pop3: { pop3s: [`127.0.0.1:${pop3sPort}`], max_clients: 3 } },
    });
    const daemon = await daemonFor(t, env);
    const open: { destroy(): void }[] = [];
    t.after(() => {
      for (const socket of open) socket.destroy();
    });
    await silentConnection(pop3sPort, (socket) => open.push(socket));
    await silentConnection(pop3sPort, (socket) => open.push(socket));
    const { client: session, greeting } = await Pop3Client.connect(env.pop3Port);
    open.push(session);
    assert.equal(greeting, '+OK mailsrv ready');

    const { client: refused, greeting: refusal } = await Pop3Client.connect(env.pop3Port);
    open.push(refused);
    assert.equal(refusal, '-ERR [SYS/TEMP] too many connections');
    await assert.rejects(connectPop3s(pop3sPort, env.tls!.cert), 'a pop3s connection is closed, no handshake');
    const logged = await daemon.waitForLogs((e) => e.msg === 'pop3: too many connections', 2);
    assert.deepEqual(
      logged.map((e) => [e.client, e.listener, e.maxClients]),
      [
        ['127.0.0.1', 'pop3', 3],
        ['127.0.0.1', 'pop3s', 3],
      ],
    );
    assert.match(await session.cmd('CAPA'), /^\+OK/, 'the session admitted goes on');
  });
});
