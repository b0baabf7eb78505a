// Hostile input on the SMTP port of the running daemon: random command streams (every command
// with random arguments, raw bytes with NUL, controls and 8-bit, over-long lines), pipelined in
// one write and split into random packets. Invariants: every line the daemon sends is an
// RFC 5321 reply (three digits, then space or hyphen, at most 512 bytes), the session ends
// cleanly at QUIT, and afterwards the daemon still takes mail.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { connectSocket, DOMAIN, envForTest, sendRaw } from './harness.js';

const keyword = fc.constantFrom(
  'HELO',
  'EHLO',
  'MAIL FROM:',
  'RCPT TO:',
  'DATA',
  'RSET',
  'NOOP',
  'VRFY',
  'HELP',
  'AUTH',
  'STARTTLS',
  'BDAT',
  'XCLIENT',
);
const argument = fc.oneof(
  fc.constantFrom(`<alice@${DOMAIN}>`, '<>', '<a@remote.test>', 'PLAIN', 'LOGIN', 'client.test', 'SIZE=99999999999'),
  fc.string({ maxLength: 30 }),
  fc.string({ maxLength: 30, unit: 'binary' }),
);
const line = fc.oneof(
  fc.tuple(keyword, fc.array(argument, { maxLength: 3 })).map(([word, args]) => [word, ...args].join(' ')),
  fc.uint8Array({ maxLength: 60 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  fc.nat({ max: 3000 }).map((n) => 'X'.repeat(n)),
);
/** A session's bytes: the random lines, then whatever ends DATA or an AUTH dialogue, then QUIT. */
const session = fc
  .array(fc.tuple(line, fc.constantFrom('\r\n', '\n')), { maxLength: 25 })
  .map((lines) => Buffer.from(`${lines.map(([l, end]) => l + end).join('')}\r\n.\r\n*\r\nRSET\r\nQUIT\r\n`, 'latin1'));

/** Sends `bytes` in random pieces; resolves to everything the daemon answered until it closed. */
async function run(port: number, bytes: Buffer, cuts: number[]): Promise<Buffer> {
  const socket = await connectSocket(port, {}, 10_000);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.on('error', () => undefined); // a reset after QUIT or a refusal is an end like any other
  const closed = once(socket, 'close');
  let at = 0;
  for (const cut of [...cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
    if (cut > at) socket.write(bytes.subarray(at, cut));
    at = Math.max(at, cut);
  }
  await closed;
  return Buffer.concat(received);
}

describe('smtp fuzz', () => {
  test('random command streams in random packets: RFC-shaped replies, a clean end, the daemon goes on', async (t) => {
    const { env, start } = await envForTest(t, { config: { smtp: { max_connections_per_ip: 1000 } } });
    const daemon = await start();
    await fc.assert(
      fc.asyncProperty(session, fc.array(fc.nat(), { maxLength: 6 }), async (bytes, cuts) => {
        const answer = (await run(env.port, bytes, cuts)).toString('latin1');
        const lines = answer.split('\r\n');
        assert.equal(lines.pop(), '', `the answer ends with a whole line: ${JSON.stringify(answer.slice(-80))}`);
        for (const reply of lines) {
          assert.match(reply, /^[2-5]\d\d[ -]/, `a reply line: ${JSON.stringify(reply)}`);
          assert.ok(reply.length <= 510, `reply of ${reply.length} bytes`);
          assert.doesNotMatch(reply, /[\0\r\n]/);
        }
      }),
      { numRuns: 60 },
    );
    assert.ok(daemon.running, 'the daemon is still running');
    const message = `From: a@client.test\r\nSubject: after the fuzz\r\n\r\nhello\r\n`;
    const after = await sendRaw(env.port, { from: 'a@client.test', to: [`alice@${DOMAIN}`], message });
    assert.equal(after.end?.code, 250, 'mail is still taken');
  });
});
