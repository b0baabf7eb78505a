// src/pop3/connection.ts in process, with mocked timers: a client that has not logged in 60 s
// after connecting gets -ERR [SYS/TEMP] and is closed, however busy it keeps the connection
// (the autologout only measures silence), even after a USER; the deadline is logged with the
// client.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { Authenticator } from '../../src/auth/authenticator.js';
import { networkMatcher } from '../../src/config/networks.js';
import { ConnectionLimits } from '../../src/net/connection-limits.js';
import { createPop3Server } from '../../src/pop3/server.js';
import { crlfLineReader } from '../support/crlf-lines.js';

const noUsers = { has: () => false, hashOf: () => undefined, names: () => [], problems: [] };

/** Reads lines until one that is not part of a CAPA listing. */
async function replyAfterCapa(next: () => Promise<string>): Promise<string> {
  assert.equal(await next(), '+OK Capability list follows');
  for (let line = await next(); ; line = await next()) if (line === '.') return line;
}

test('no login within 60 s of connecting: -ERR [SYS/TEMP] and close, though the client kept talking', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-pop3-deadline-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logs: { msg: string; client?: string }[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logs.push(JSON.parse(chunk.toString()) as { msg: string });
        callback();
      },
    }),
  );
  const pop3 = createPop3Server({
    settings: { timeoutMs: 600_000, lockTimeoutMs: 1000, plaintextAuth: networkMatcher(['127.0.0.0/8']) },
    tls: () => null,
    ready: Promise.resolve(),
    limits: new ConnectionLimits('pop3', { maxClients: 10, maxPerAddress: 10, exempt: () => false }, logger),
    proxyNetworks: () => networkMatcher([]),
    spoolDir: dir,
    indexDir: dir,
    journalDir: dir,
    authenticator: new Authenticator(() => noUsers, {
      failureDelayMs: 1,
      maxFailures: 10,
      forgetAfterMs: 1,
      exempt: () => false,
      cacheTtlMs: 0,
    }),
    logger,
  });
  t.after(() => pop3.shutdown());
  await pop3.listen({ host: '127.0.0.1', port: 0 }, { implicitTls: false });
  const address = pop3.server.address();
  assert.ok(address !== null && typeof address === 'object');

  t.mock.timers.enable({ apis: ['setTimeout'] });
  const socket = createConnection({ port: address.port, host: '127.0.0.1' });
  t.after(() => socket.destroy());
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const next = crlfLineReader(socket);
  assert.equal(await next(), '+OK mailsrv ready');

  // busy, but not logging in: a command every 9 s for 54 s
  for (let second = 9; second <= 54; second += 9) {
    t.mock.timers.tick(9_000);
    socket.write('CAPA\r\n');
    assert.equal(await replyAfterCapa(next), '.');
  }
  // a USER without PASS is no login either
  socket.write('USER alice\r\n');
  assert.match(await next(), /^\+OK/);
  t.mock.timers.tick(6_000);
  assert.equal(await next(), '-ERR [SYS/TEMP] Disconnected: no login in time');
  await closed;
  const logged = logs.filter((line) => line.msg === 'no login in time');
  assert.deepEqual(
    logged.map((line) => line.client),
    ['127.0.0.1'],
  );
});
