// src/net/connection-limits.ts: max_clients and the per-address limit counted across every
// socket admitted (mynetworks exempt from the second), a slot freed when its socket closes,
// stress mode past ¾ of max_clients, and SIGHUP's new limits; each refusal and each change of
// stress mode is logged once.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { networkMatcher } from '../../src/config/networks.js';
import {
  type ConnectionLimitSettings,
  ConnectionLimits,
  STRESS_IDLE_TIMEOUT_MS,
} from '../../src/net/connection-limits.js';

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A socket as admit() sees it: an address, and 'close' when the test says so. */
class FakeSocket extends EventEmitter {
  constructor(readonly remoteAddress: string) {
    super();
  }

  close(): void {
    this.emit('close');
  }
}

function setup(settings: Partial<ConnectionLimitSettings> = {}) {
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(JSON.parse(chunk.toString()) as LogLine);
      callback();
    },
  });
  const limits = new ConnectionLimits(
    'smtp',
    { maxClients: 100, maxPerAddress: 3, exempt: networkMatcher(['10.0.0.0/8']), ...settings },
    pino({ level: 'info' }, sink),
  );
  const connect = (address: string) => {
    const socket = new FakeSocket(address);
    return { socket, refusal: limits.admit(socket, 'mx') };
  };
  return { limits, logs, connect };
}

test('one address gets max_connections_per_ip slots; another address is still served', () => {
  const { limits, logs, connect } = setup();
  for (let i = 0; i < 3; i++) assert.equal(connect('192.0.2.1').refusal, null);
  assert.equal(connect('192.0.2.1').refusal, 'per-address');
  assert.equal(connect('::ffff:192.0.2.1').refusal, 'per-address', 'an IPv4-mapped address is that IPv4 address');
  assert.equal(connect('192.0.2.2').refusal, null);
  assert.equal(limits.connections, 4, 'refused sockets are not counted');
  const refusals = logs.filter((line) => line.msg === 'smtp: too many connections from one address');
  assert.equal(refusals.length, 2, 'each refusal is logged once');
  assert.deepEqual(
    refusals.map((line) => [line.client, line.listener]),
    [
      ['192.0.2.1', 'mx'],
      ['::ffff:192.0.2.1', 'mx'],
    ],
  );
});

test('exempt networks have no per-address limit but count towards max_clients', () => {
  const { limits, logs, connect } = setup({ maxClients: 5 });
  for (let i = 0; i < 5; i++) assert.equal(connect('10.1.2.3').refusal, null);
  assert.equal(limits.connections, 5);
  assert.equal(connect('192.0.2.9').refusal, 'max-clients');
  assert.equal(connect('10.1.2.3').refusal, 'max-clients');
  const refusals = logs.filter((line) => line.msg === 'smtp: too many connections');
  assert.deepEqual(
    refusals.map((line) => [line.client, line.maxClients]),
    [
      ['192.0.2.9', 5],
      ['10.1.2.3', 5],
    ],
  );
});

test('a slot is free again once its socket closes, for max_clients and per address', () => {
  const { limits, connect } = setup({ maxClients: 4 });
  const held = [connect('192.0.2.1'), connect('192.0.2.1'), connect('192.0.2.1'), connect('192.0.2.2')];
  assert.ok(held.every(({ refusal }) => refusal === null));
  assert.equal(connect('192.0.2.3').refusal, 'max-clients');
  held[0]!.socket.close();
  assert.equal(limits.connections, 3);
  assert.equal(connect('192.0.2.1').refusal, null, 'the address got its slot back');
  assert.equal(connect('192.0.2.3').refusal, 'max-clients', 'and it took the one free slot');
  for (const { socket } of held) socket.close();
  assert.equal(limits.connections, 1);
});

test('stress mode while more than 3/4 of max_clients are in use: short idle timeouts, listeners told', () => {
  const { limits, logs, connect } = setup({ maxClients: 8, maxPerAddress: 100 });
  let changes = 0;
  limits.onStressChange(() => {
    changes += 1;
  });
  const sockets = Array.from({ length: 6 }, () => connect('192.0.2.1').socket);
  assert.equal(limits.stressed, false, '6 of 8 is not more than 3/4');
  assert.equal(limits.idleTimeoutMs(300_000), 300_000);
  sockets.push(connect('192.0.2.1').socket);
  assert.equal(limits.stressed, true, '7 of 8 is');
  assert.equal(changes, 1);
  assert.equal(limits.idleTimeoutMs(300_000), STRESS_IDLE_TIMEOUT_MS);
  assert.equal(limits.idleTimeoutMs(2000), 2000, 'a shorter timeout stays as it is');
  sockets.push(connect('192.0.2.1').socket);
  assert.equal(changes, 1, 'no change, no call');

  sockets.pop()!.close();
  assert.equal(limits.stressed, true);
  sockets.pop()!.close();
  assert.equal(limits.stressed, false);
  assert.equal(changes, 2);
  assert.equal(limits.idleTimeoutMs(300_000), 300_000);
  const stressLogs = logs.filter((line) => /stress mode/.test(line.msg)).map((line) => [line.msg, line.connections]);
  assert.deepEqual(stressLogs, [
    ['smtp: entering stress mode', 7],
    ['smtp: leaving stress mode', 6],
  ]);
});

test('SIGHUP: new limits apply to new connections, the open ones stay counted; stress follows max_clients', () => {
  const { limits, connect } = setup({ maxClients: 10, maxPerAddress: 2 });
  const first = [connect('192.0.2.1').socket, connect('192.0.2.1').socket];
  assert.equal(connect('192.0.2.1').refusal, 'per-address');
  let changes = 0;
  limits.onStressChange(() => {
    changes += 1;
  });

  limits.reconfigure({ maxClients: 2, maxPerAddress: 3, exempt: networkMatcher(['192.0.2.0/24']) });
  assert.equal(limits.stressed, true, '2 of 2 in use');
  assert.equal(changes, 1);
  assert.equal(connect('192.0.2.1').refusal, 'max-clients');

  limits.reconfigure({ maxClients: 10, maxPerAddress: 2, exempt: networkMatcher(['192.0.2.0/24']) });
  assert.equal(limits.stressed, false);
  assert.equal(connect('192.0.2.1').refusal, null, 'now exempt');
  assert.equal(connect('192.0.2.1').refusal, null);
  // the sockets counted under the old rules give their per-address slots back
  for (const socket of first) socket.close();
  limits.reconfigure({ maxClients: 10, maxPerAddress: 2, exempt: networkMatcher([]) });
  assert.equal(connect('192.0.2.1').refusal, null);
  assert.equal(connect('192.0.2.1').refusal, null);
  assert.equal(connect('192.0.2.1').refusal, 'per-address');
  assert.equal(limits.connections, 4);
});
