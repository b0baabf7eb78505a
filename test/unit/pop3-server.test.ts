// src/pop3/server.ts in process: a connection accepted before the daemon is ready is counted
// against max_clients but not greeted (nor are its commands run) until `ready` resolves; a
// stop before then closes it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { Authenticator } from '../../src/auth/authenticator.js';
import { networkMatcher } from '../../src/config/networks.js';
import { ConnectionLimits } from '../../src/net/connection-limits.js';
import { createPop3Server, type Pop3Service } from '../../src/pop3/server.js';
import { eventually } from '../support/wait.js';

const noUsers = { has: () => false, hashOf: () => undefined, names: () => [], problems: [] };

describe('pop3 server before the daemon is ready', () => {
  const dirs: string[] = [];
  const services: Pop3Service[] = [];
  const sockets: Socket[] = [];
  // whatever a failed assertion left open, so the test process can end
  after(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all(services.map((pop3) => pop3.shutdown()));
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  /** A connected client that collects what it receives. */
  async function connect(port: number): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
    const socket = createConnection({ port, host: '127.0.0.1' });
    sockets.push(socket);
    let text = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    return { socket, received: () => text, closed };
  }

  async function service(ready: Promise<void>): Promise<{ pop3: Pop3Service; port: number }> {
    const dir = await mkdtemp(join(tmpdir(), 'mailsrv-pop3-ready-'));
    dirs.push(dir);
    const logger = pino({ level: 'silent' });
    const pop3 = createPop3Server({
      settings: {
        timeoutMs: 60_000,
        lockTimeoutMs: 1000,
        plaintextAuth: networkMatcher(['127.0.0.0/8']),
      },
      tls: () => null,
      ready,
      limits: new ConnectionLimits('pop3', { maxClients: 1, maxPerAddress: 1, exempt: () => false }, logger),
      proxyNetworks: () => networkMatcher([]),
      spoolDir: dir,
      indexDir: dir,
      journalDir: dir,
      authenticator: new Authenticator(() => noUsers, {
        failureDelayMs: 10,
        maxFailures: 10,
        forgetAfterMs: 1000,
        exempt: () => false,
        cacheTtlMs: 0,
      }),
      logger,
    });
    services.push(pop3);
    await pop3.listen({ host: '127.0.0.1', port: 0 }, { implicitTls: false });
    const address = pop3.server.address();
    assert.ok(address !== null && typeof address === 'object');
    return { pop3, port: address.port };
  }

  it('counts the connection, answers nothing until ready, then greets and runs what was sent', async () => {
    let open!: () => void;
    let ready = false;
    const { pop3, port } = await service(new Promise<void>((resolve) => (open = resolve)));
    const early = await connect(port);
    let readyAtFirstByte: boolean | null = null;
    early.socket.once('data', () => (readyAtFirstByte = ready));
    early.socket.write('CAPA\r\n');
    // taken in (a second connection is turned away) but not answered
    const extra = await connect(port);
    await extra.closed;
    assert.equal(extra.received(), '-ERR [SYS/TEMP] too many connections\r\n', 'max_clients counts a waiting session');
    assert.equal(pop3.connections, 1);

    ready = true;
    open();
    await eventually(() => /\r\n\.\r\n$/.test(early.received()), 10_000, 'the CAPA reply', 5);
    assert.equal(readyAtFirstByte, true, 'a greeting or reply came before ready');
    assert.match(early.received(), /^\+OK mailsrv ready\r\n\+OK Capability list follows\r\n/);
    early.socket.end('QUIT\r\n');
    await early.closed;
    await pop3.shutdown();
  });

  it('a stop before ready closes the waiting connection', async () => {
    const { pop3, port } = await service(new Promise<void>(() => undefined));
    const waiting = await connect(port);
    await eventually(() => pop3.connections === 1, 10_000, 'the connection taken in', 5);
    await pop3.shutdown();
    await waiting.closed;
    assert.equal(waiting.received(), '');
    assert.equal(pop3.connections, 0);
  });
});
