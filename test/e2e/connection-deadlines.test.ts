// E2E: the deadlines and stress mode of the real daemon, with their production values (each
// test waits 10 s, the login deadline 60 s; they run side by side): a TLS handshake must be done
// 10 s after accept (implicit TLS) or after STARTTLS/STLS, however the client trickles bytes; a
// POP3 client must log in within 60 s of connecting, however busy; and past ¾ of max_clients
// (stress mode) SMTP clients before MAIL FROM and POP3 clients before login get 10 s of idle
// time, timers already running included, while committed clients keep theirs.
import assert from 'node:assert/strict';
import { createConnection, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import {
  DOMAIN,
  envForTest,
  freePort,
  makePop3Env,
  PASSWORD,
  Pop3Client,
  SmtpClient,
  startDaemon,
  type TestEnv,
} from './harness.js';

/** Generous guards for waits that are expected to end after 10 or 60 s (never asserted). */
const WAIT_10S = 60_000;
const WAIT_60S = 180_000;

/**
 * Begins a TLS handshake that never ends: a ClientHello record header and the start of the
 * message, then one byte a second. Resolves once the server closes the connection.
 */
function trickleHandshake(socket: Socket): Promise<void> {
  socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
  const trickle = setInterval(() => socket.write(Buffer.from([0x00])), 1000);
  return new Promise((resolve) =>
    socket.once('close', () => {
      clearInterval(trickle);
      resolve();
    }),
  );
}

async function rawConnection(port: number): Promise<Socket> {
  const socket = createConnection({ port, host: '127.0.0.1' });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return socket;
}

/** Starts the daemon of `env`; it is killed and `env` removed when the test ends. */
async function daemonFor(t: { after: (fn: () => Promise<void>) => void }, env: TestEnv) {
  const daemon = await startDaemon(env);
  t.after(async () => {
    await daemon.kill9();
    await env.cleanup();
  });
  return daemon;
}

describe('connection deadlines and stress mode', { concurrency: true }, () => {
  test('TLS handshakes trickled byte by byte are cut 10 s after accept, STARTTLS or STLS', async (t) => {
    const [smtpsPort, pop3sPort] = [await freePort(), await freePort()];
    const env = await makePop3Env({
      tls: true,
      config: { smtp: { smtps: [`127.0.0.1:${smtpsPort}`] }, pop3: { pop3s: [`127.0.0.1:${pop3sPort}`] } },
    });
    const daemon = await daemonFor(t, env);
    const sockets: Socket[] = [];
    t.after(() => {
      for (const socket of sockets) socket.destroy();
    });

    const smtps = await rawConnection(smtpsPort);
    const pop3s = await rawConnection(pop3sPort);
    const { client: smtp } = await SmtpClient.connect(env.port);
    assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    assert.equal((await smtp.cmd('STARTTLS')).code, 220);
    const { client: pop3 } = await Pop3Client.connect(env.pop3Port);
    assert.match(await pop3.cmd('STLS'), /^\+OK/);
    sockets.push(smtps, pop3s, smtp.socket, pop3.socket);

    await Promise.all(sockets.map((socket) => trickleHandshake(socket)));
    const smtpCut = await daemon.waitForLogs(
      (e) => e.msg === 'smtp connection error' && /no TLS handshake within 10000 ms/.test(String(e.err)),
      2,
      WAIT_10S,
    );
    const pop3Cut = await daemon.waitForLogs(
      (e) => e.msg === 'TLS handshake failed' && /no TLS handshake within 10000 ms/.test(String(e.err)),
      2,
      WAIT_10S,
    );
    assert.ok(smtpCut.length >= 2 && pop3Cut.every((e) => e.client === '127.0.0.1'));
  });

  test('pop3: a client must log in within 60 s of connecting, however busy; one logged in stays', async (t) => {
    const env = await makePop3Env({ users: ['alice'] });
    const daemon = await daemonFor(t, env);
    const loggedIn = await Pop3Client.login(env.pop3Port, 'alice', undefined, { timeoutMs: WAIT_60S });
    const { client: busy } = await Pop3Client.connect(env.pop3Port, { timeoutMs: WAIT_60S });
    t.after(() => {
      loggedIn.destroy();
      busy.destroy();
    });
    const capa = setInterval(() => busy.write('CAPA\r\n'), 5000);
    t.after(() => clearInterval(capa));
    let line = await busy.readLine();
    while (line !== '-ERR [SYS/TEMP] Disconnected: no login in time') {
      assert.ok(line === '.' || /^(\+OK|[A-Z])/.test(line), `CAPA listing: ${line}`);
      line = await busy.readLine();
    }
    clearInterval(capa);
    await busy.waitClosed();
    await daemon.waitForLog((e) => e.msg === 'no login in time' && e.client === '127.0.0.1');
    assert.match(await loggedIn.cmd('STAT'), /^\+OK /);
  });

  // max_clients = 5: stress from the 4th connection on, and until only 3 are left
  test('smtp stress mode: clients before MAIL FROM get 10 s of idle time, those past MAIL keep 5 min', async (t) => {
    const { env, start } = await envForTest(t, { config: { smtp: { max_clients: 5 } } });
    const daemon = await start();
    const clients: SmtpClient[] = [];
    t.after(() => {
      for (const client of clients) client.destroy();
    });
    const connect = async () => {
      const { client, greeting } = await SmtpClient.connect(env.port, { timeoutMs: WAIT_10S });
      assert.equal(greeting.code, 220);
      assert.equal((await client.cmd('EHLO client.test')).code, 250);
      clients.push(client);
      return client;
    };
    const mail = async (client: SmtpClient) => {
      assert.equal((await client.cmd('MAIL FROM:<sender@client.test>')).code, 250);
      return client;
    };
    // its 5 min timer is running when stress begins
    const waiting = await connect();
    const committed = [await mail(await connect()), await mail(await connect())];
    // the 4th connection brings SMTP under stress; it gives MAIL FROM under stress
    const pending = connect();
    await daemon.waitForLog((e) => e.msg === 'smtp: entering stress mode');
    committed.push(await mail(await pending));
    const late = await connect();

    for (const client of [waiting, late]) {
      const reply = await client.read();
      assert.equal(reply.code, 421, `idle timeout under stress: ${reply.raw}`);
      assert.match(reply.raw, /Timeout/);
      await client.waitClosed();
    }
    await daemon.waitForLog((e) => e.msg === 'smtp: leaving stress mode');
    for (const client of committed) {
      assert.equal((await client.cmd(`RCPT TO:<alice@${DOMAIN}>`)).code, 250, 'a client past MAIL stays');
    }
    assert.equal(daemon.find((e) => e.msg === 'smtp: entering stress mode').length, 1);
  });

  // max_clients = 5: stress from the 4th connection on, and until only 3 are left
  test('pop3 stress mode: clients not logged in get 10 s of idle time, those logged in keep 10 min', async (t) => {
    const env = await makePop3Env({ users: ['alice', 'bob', 'carol'], config: { pop3: { max_clients: 5 } } });
    const daemon = await daemonFor(t, env);
    const clients: Pop3Client[] = [];
    t.after(() => {
      for (const client of clients) client.destroy();
    });
    const connect = async () => {
      const { client, greeting } = await Pop3Client.connect(env.pop3Port, { timeoutMs: WAIT_10S });
      assert.equal(greeting, '+OK mailsrv ready');
      clients.push(client);
      return client;
    };
    const login = async (client: Pop3Client, user: string) => {
      assert.match(await client.cmd(`USER ${user}`), /^\+OK/);
      assert.match(await client.cmd(`PASS ${PASSWORD}`), /^\+OK/);
      return client;
    };
    // its 10 min timer is running when stress begins; a USER without PASS is not a login
    const waiting = await connect();
    assert.match(await waiting.cmd('USER dave'), /^\+OK/);
    const loggedIn = [await login(await connect(), 'alice'), await login(await connect(), 'bob')];
    // the 4th connection brings POP3 under stress; it logs in under stress
    const pending = connect();
    await daemon.waitForLog((e) => e.msg === 'pop3: entering stress mode');
    loggedIn.push(await login(await pending, 'carol'));
    const late = await connect();

    for (const client of [waiting, late]) {
      assert.equal(await client.readLine(), '-ERR Autologout; idle for too long');
      await client.waitClosed();
    }
    await daemon.waitForLog((e) => e.msg === 'pop3: leaving stress mode');
    for (const client of loggedIn) assert.match(await client.cmd('STAT'), /^\+OK /, 'a client logged in stays');
    assert.equal(daemon.find((e) => e.msg === 'pop3: entering stress mode').length, 1);
  });
});
