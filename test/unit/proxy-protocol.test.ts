// src/net/proxy-protocol.ts and src/net/proxied-client.ts: PROXY v1 and v2 headers as HAProxy
// sends them (TCP4, TCP6, UNKNOWN/UNSPEC, LOCAL, TLVs), every prefix of a valid header waiting
// for more, the length bounds, malformed headers refused; and the reader over a real socket
// leaving the bytes after the header to the session.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createConnection, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { PROXY_HEADER_TIMEOUT_MS, ProxyHeaderError, readProxyHeader } from '../../src/net/proxied-client.js';
import { parseProxyHeader, V1_MAX_LENGTH, V2_MAX_LENGTH } from '../../src/net/proxy-protocol.js';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: command 0 LOCAL / 1 PROXY, family/protocol byte, then the address block and TLVs. */
function v2(command: number, familyProtocol: number, body: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(body.length);
  return Buffer.concat([SIGNATURE, Buffer.from([0x20 | command, familyProtocol]), length, body]);
}

function inet4Block(source: number[], destination: number[], sourcePort: number, destinationPort: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sourcePort, 0);
  ports.writeUInt16BE(destinationPort, 2);
  return Buffer.concat([Buffer.from(source), Buffer.from(destination), ports]);
}

function inet6Block(source: string, sourcePort: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sourcePort, 0);
  ports.writeUInt16BE(25, 2);
  return Buffer.concat([Buffer.from(source.replace(/:/g, ''), 'hex'), Buffer.alloc(16), ports]);
}

/** A TLV as HAProxy appends them (type, 16-bit length, value). */
function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head.writeUInt8(type, 0);
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

/** Every proper prefix of a valid header is incomplete, never invalid nor a header. */
function assertPrefixesIncomplete(header: Buffer): void {
  for (let n = 0; n < header.length; n += 1) {
    assert.deepEqual(parseProxyHeader(header.subarray(0, n)), { kind: 'incomplete' }, `prefix of ${n} bytes`);
  }
}

test('v1 TCP4 and TCP6 name the client; what follows the CRLF is not part of the header', () => {
  const line = Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\nEHLO x\r\n');
  assert.deepEqual(parseProxyHeader(line), {
    kind: 'header',
    version: 1,
    length: 'PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n'.length,
    source: { address: '192.0.2.7', port: 56324 },
  });
  const six = Buffer.from('PROXY TCP6 2001:DB8::7 2001:db8::1 65535 110\r\n');
  assert.deepEqual(parseProxyHeader(six), {
    kind: 'header',
    version: 1,
    length: six.length,
    source: { address: '2001:db8::7', port: 65535 },
  });
  assertPrefixesIncomplete(six);
});

test('v1 UNKNOWN keeps the peer', () => {
  const line = Buffer.from('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n');
  assert.deepEqual(parseProxyHeader(line), { kind: 'header', version: 1, length: line.length, source: null });
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), {
    kind: 'header',
    version: 1,
    length: 15,
    source: null,
  });
});

test('v1 headers that break the grammar are refused', () => {
  const invalid = [
    'PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n', // 5 fields
    'PROXY TCP4 192.0.2.7  198.51.100.1 56324 25\r\n', // two spaces
    'PROXY TCP4 2001:db8::7 198.51.100.1 56324 25\r\n', // a TCP6 address in TCP4
    'PROXY TCP6 192.0.2.7 2001:db8::1 56324 25\r\n',
    'PROXY TCP4 192.0.2.300 198.51.100.1 56324 25\r\n',
    'PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n',
    'PROXY TCP4 192.0.2.7 198.51.100.1 0025 25\r\n',
    'PROXY TCP4 192.0.2.7 198.51.100.1 -1 25\r\n',
    'PROXY UDP4 192.0.2.7 198.51.100.1 56324 25\r\n',
    'PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\n', // LF without CR
    'proxy TCP4 192.0.2.7 198.51.100.1 56324 25\r\n',
    'EHLO client.example\r\n',
    'USER alice\r\n',
  ];
  for (const text of invalid) {
    assert.equal(parseProxyHeader(Buffer.from(text)).kind, 'invalid', JSON.stringify(text));
  }
});

test('v1: 107 bytes without a CRLF are refused, a 107-byte line is read', () => {
  const longest = `PROXY UNKNOWN ${'x'.repeat(V1_MAX_LENGTH - 16)}\r\n`;
  assert.equal(longest.length, V1_MAX_LENGTH);
  assert.equal(parseProxyHeader(Buffer.from(longest)).kind, 'header');
  assert.equal(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`)).kind, 'invalid');
  assert.equal(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(V1_MAX_LENGTH - 15)}\r\n`)).kind, 'invalid');
});

test('v2 PROXY over TCP4 and TCP6 names the client; TLVs are skipped', () => {
  const four = v2(
    1,
    0x11,
    Buffer.concat([inet4Block([10, 1, 2, 3], [10, 0, 0, 1], 40000, 25), tlv(0x04, Buffer.alloc(20))]),
  );
  assert.deepEqual(parseProxyHeader(Buffer.concat([four, Buffer.from('EHLO x\r\n')])), {
    kind: 'header',
    version: 2,
    length: four.length,
    source: { address: '10.1.2.3', port: 40000 },
  });
  assertPrefixesIncomplete(four);
  const sixes: [string, string][] = [
    ['2001:0db8:0000:0000:0000:0000:0000:0007', '2001:db8::7'],
    ['2001:0db8:0000:0001:0000:0000:0001:0001', '2001:db8:0:1::1:1'],
    ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
    ['0000:0000:0000:0000:0000:ffff:c000:0207', '::ffff:192.0.2.7'],
    ['2001:0db8:0001:0002:0003:0004:0005:0006', '2001:db8:1:2:3:4:5:6'],
    ['2001:0db8:0000:0001:0001:0001:0001:0001', '2001:db8:0:1:1:1:1:1'],
  ];
  for (const [bytes, text] of sixes) {
    const header = v2(1, 0x21, inet6Block(bytes, 587));
    assert.deepEqual(parseProxyHeader(header), {
      kind: 'header',
      version: 2,
      length: header.length,
      source: { address: text, port: 587 },
    });
  }
});

test('v2 LOCAL (a health check) and UNSPEC keep the peer', () => {
  const local = v2(0, 0x00, Buffer.alloc(0));
  assert.deepEqual(parseProxyHeader(local), { kind: 'header', version: 2, length: 16, source: null });
  // LOCAL with an address block: the block is skipped, whatever it holds
  const localWithBlock = v2(0, 0x11, inet4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
  assert.deepEqual(parseProxyHeader(localWithBlock), { kind: 'header', version: 2, length: 28, source: null });
  assert.deepEqual(parseProxyHeader(v2(1, 0x00, Buffer.alloc(0))), {
    kind: 'header',
    version: 2,
    length: 16,
    source: null,
  });
});

test('v2 headers mailsrv cannot use, or that break the format, are refused', () => {
  const block = inet4Block([10, 1, 2, 3], [10, 0, 0, 1], 40000, 25);
  const bad: [string, Buffer][] = [
    ['version 1 in the binary form', Buffer.concat([SIGNATURE, Buffer.from([0x11, 0x11, 0, 12]), block])],
    ['command 2', v2(2, 0x11, block)],
    ['UDP', v2(1, 0x12, block)],
    ['AF_UNIX', v2(1, 0x31, Buffer.alloc(216))],
    ['family 4', v2(1, 0x41, block)],
    ['TCP4 block too short', v2(1, 0x11, block.subarray(0, 11))],
    ['TCP6 block too short', v2(1, 0x21, Buffer.alloc(35))],
  ];
  for (const [why, header] of bad) assert.equal(parseProxyHeader(header).kind, 'invalid', why);
  // a length beyond the bound is refused from the 16 fixed bytes on, before the rest arrives
  const tooLong = v2(1, 0x11, Buffer.alloc(V2_MAX_LENGTH - 16 + 1));
  assert.equal(parseProxyHeader(tooLong.subarray(0, 16)).kind, 'invalid');
  const longest = v2(1, 0x11, Buffer.concat([block, Buffer.alloc(V2_MAX_LENGTH - 16 - block.length)]));
  assert.equal(parseProxyHeader(longest).kind, 'header');
  // a signature that goes wrong part way is refused at the first wrong byte
  assert.equal(parseProxyHeader(Buffer.from('\r\n\r\nX')).kind, 'invalid');
});

/** A connected socket pair on loopback: [the server's accepted side, the client]. */
async function socketPair(t: { after: (fn: () => unknown) => void }): Promise<[Socket, Socket]> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = createConnection((server.address() as AddressInfo).port, '127.0.0.1');
  const [socket] = await accepted;
  t.after(() => {
    client.destroy();
    socket.destroy();
  });
  return [socket, client];
}

test('the reader takes a header sent in pieces and leaves what follows to the session', async (t) => {
  const [socket, client] = await socketPair(t);
  const header = v2(1, 0x11, inet4Block([127, 0, 0, 5], [127, 0, 0, 1], 1234, 25));
  const reading = readProxyHeader(socket);
  for (const byte of header) {
    client.write(Buffer.from([byte]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  client.write('EHLO client.example\r\n');
  assert.deepEqual(await reading, { address: '127.0.0.5', port: 1234 });
  const [rest] = (await once(socket, 'data')) as [Buffer];
  assert.equal(rest.toString(), 'EHLO client.example\r\n');
});

test('the reader refuses garbage at once and a peer that goes away', async (t) => {
  const [socket, client] = await socketPair(t);
  const reading = readProxyHeader(socket);
  client.write('EHLO client.example\r\n');
  await assert.rejects(reading, (err) => err instanceof ProxyHeaderError && /not a PROXY/.test(err.message));

  const [other, otherClient] = await socketPair(t);
  const waiting = readProxyHeader(other);
  otherClient.end('PROXY TCP4 ');
  await assert.rejects(waiting, (err) => err instanceof ProxyHeaderError && /closed before/.test(err.message));
});

test('the reader gives up when the header is not whole in time', async (t) => {
  const [socket, client] = await socketPair(t);
  assert.equal(PROXY_HEADER_TIMEOUT_MS, 5000);
  const reading = readProxyHeader(socket, 50);
  client.write('PROXY TCP4 127.0.0.5');
  await assert.rejects(reading, (err) => err instanceof ProxyHeaderError && /within 50 ms/.test(err.message));
});
