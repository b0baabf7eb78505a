// src/net/http-listener.ts over real loopback sockets: requests reach the service's handler,
// oversized headers get 431, slow headers 408 (Node's own timeouts, checked because the HTTP
// server listens), the connection cap and deadline cut connections, HTTPS serves the context
// given now (and closes without one) and always has a deadline, close() cuts open connections,
// a taken port is an error.
import assert from 'node:assert/strict';
import { connect as connectTcp, type Socket } from 'node:net';
import { test } from 'node:test';
import { connect as connectTls, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { type HttpLimits, HttpListeners } from '../../src/net/http-listener.js';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';
import { freePort } from '../e2e/harness/net.js';
import { withTimeout } from '../support/wait.js';

const HANG_GUARD_MS = 30_000;
const LIMITS: HttpLimits = {
  maxHeaderBytes: 1024,
  headersTimeoutMs: 60_000,
  requestTimeoutMs: 60_000,
  maxRequestsPerConnection: 1,
  maxConnections: 8,
};

async function start(limits: Partial<HttpLimits> = {}, tls?: () => SecureContext | null) {
  const listeners = new HttpListeners({
    name: 'test',
    limits: { ...LIMITS, ...limits },
    handle: (request, response) => {
      const body = `hello ${request.url}\n`;
      response.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
      response.end(body);
    },
    logger: pino({ level: 'silent' }),
    ...(tls === undefined ? {} : { tls }),
  });
  const port = await freePort();
  await listeners.listen({ host: '127.0.0.1', port, https: tls !== undefined });
  return { listeners, port };
}

/** Everything the server sends on `socket` (after `request` is written) until it closes. */
function received(socket: Socket, request = ''): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {}); // a reset counts as a close here
  if (request !== '') socket.write(request);
  const closed = new Promise<string>((resolve) =>
    socket.once('close', () => resolve(Buffer.concat(chunks).toString())),
  );
  return withTimeout(closed, HANG_GUARD_MS, 'the server never closed the connection');
}

function connected(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A TLS connection to `port` whose handshake is done, trusting `ca`. */
async function handshaken(port: number, ca: string): Promise<TLSSocket> {
  const secure = connectTls({ host: '127.0.0.1', port, servername: 'localhost', ca });
  await withTimeout(
    new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject)),
    HANG_GUARD_MS,
    'no TLS handshake',
  );
  return secure;
}

test('a request reaches the handler; headers over the limit get 431', async (t) => {
  const { listeners, port } = await start();
  t.after(() => listeners.close());
  const answer = await received(await connected(port), 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.match(answer, /^HTTP\/1\.1 200 /);
  assert.match(answer, /hello \/x\n$/);
  const big = await received(await connected(port), `GET / HTTP/1.1\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`);
  assert.match(big, /^HTTP\/1\.1 431 /);
});

test('headers that do not arrive in time get 408', async (t) => {
  const { listeners, port } = await start({ headersTimeoutMs: 200, requestTimeoutMs: 200 });
  t.after(() => listeners.close());
  const answer = await received(await connected(port), 'GET / HTTP/1.1\r\nHost: a\r\n');
  assert.match(answer, /^HTTP\/1\.1 408 /);
});

test('a connection is cut at its deadline; one over the cap is closed at once', async (t) => {
  const { listeners, port } = await start({ connectionDeadlineMs: 300, maxConnections: 1 });
  t.after(() => listeners.close());
  const first = await connected(port);
  const firstClosed = received(first, 'GET / HTTP/1.1\r\n');
  // connections are accepted in the order they came: the first holds the only slot
  const second = received(await connected(port), 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.equal(await second, '', 'the connection over the cap got no answer');
  assert.equal(await firstClosed, '', 'the unfinished request got no answer, only the close');
});

test('close() cuts open connections; a taken port is an error', async () => {
  const { listeners, port } = await start();
  const open = received(await connected(port), 'GET / HTTP/1.1\r\n');
  await withTimeout(listeners.close(), HANG_GUARD_MS, 'close() never finished');
  assert.equal(await open, '');
  const holder = await start();
  const again = new HttpListeners({
    name: 'test',
    limits: LIMITS,
    handle: () => {},
    logger: pino({ level: 'silent' }),
  });
  await assert.rejects(again.listen({ host: '127.0.0.1', port: holder.port }), /EADDRINUSE/);
  await again.close();
  await holder.listeners.close();
});

test('HTTPS: served with the context given now; closed without one', async (t) => {
  const pem = await generateSelfSigned('localhost');
  let context: SecureContext | null = createSecureContext(pem);
  const { listeners, port } = await start({ connectionDeadlineMs: 30_000 }, () => context);
  t.after(() => listeners.close());
  const secure = await handshaken(port, pem.cert);
  const answer = await received(secure as unknown as Socket, 'GET /tls HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.match(answer, /^HTTP\/1\.1 200 [\s\S]*hello \/tls\n$/);
  context = null;
  assert.equal(await received(await connected(port)), '', 'without a certificate the connection is closed');
});

test('HTTPS without a connection deadline: a connection is cut at the request timeout', async (t) => {
  const pem = await generateSelfSigned('localhost');
  const { listeners, port } = await start({ headersTimeoutMs: 300, requestTimeoutMs: 300 }, () =>
    createSecureContext(pem),
  );
  t.after(() => listeners.close());
  const secure = await handshaken(port, pem.cert);
  assert.equal(await received(secure as unknown as Socket), '', 'a client that sends no request after TLS is cut');
});
