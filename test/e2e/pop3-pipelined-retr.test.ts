// E2E: runs of pipelined RETRs, the path where the daemon answers many commands from one read
// of the mailbox file and one write to the socket (README "POP3"). Every reply of a run is
// compared byte for byte with what RFC 1939 asks (status with the octet count, CRLF line ends,
// mboxrd unquoting, dot-stuffing, the terminator) over a mailbox several file windows long with
// stuffed lines, CRLF-stored messages and larger streamed messages mixed in; a deleted and a
// missing message in the middle of a run get -ERR and the rest is unharmed; and a client that
// stops reading a long run holds the daemon back (it never reads far ahead of the client).
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Daemon, eventually, makePop3Env, PASSWORD, startDaemon, type TestEnv, writeMailbox } from './harness.js';

/** A message as generated: its lines as the client must get them (before dot-stuffing). */
interface Generated {
  lines: string[];
  /** stored with CRLF line ends (mailsrv sends them as they are) */
  crlfStored: boolean;
}

/** A small deterministic generator (the same mailbox on every run). */
function generator(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
  };
}

/** Body lines that exercise the conversion: stuffing, mboxrd quoting, empty lines, long lines. */
function bodyLine(random: (n: number) => number): string {
  switch (random(10)) {
    case 0:
      return '.';
    case 1:
      return `.hidden line ${random(1000)}`;
    case 2:
      return '..two dots';
    case 3:
      return 'From the body, quoted in the file';
    case 4:
      return '>From quoted twice in the file';
    case 5:
      return '';
    default:
      return 'x'.repeat(random(120));
  }
}

function generate(count: number): Generated[] {
  const random = generator(7);
  return Array.from({ length: count }, (_, i) => {
    // mostly small (one whole reply each), every 20th over 32 KiB (streamed in pieces)
    const target = i % 20 === 13 ? 40_000 + random(20_000) : 200 + random(6000);
    // the first body line and the last are stuffed lines too
    const lines = [`Subject: message ${i + 1}`, `Message-ID: <${i + 1}@pipelined.test>`, '', '.first'];
    let size = 0;
    while (size < target) {
      const line = bodyLine(random);
      lines.push(line);
      size += line.length + 2;
    }
    lines.push('.last');
    return { lines, crlfStored: i % 7 === 3 };
  });
}

/** The mbox file (mboxrd: one more `>` on `>*From ` lines; the From_ line; a blank line after each). */
function mboxFile(messages: Generated[]): string {
  return messages
    .map(({ lines, crlfStored }, i) => {
      const eol = crlfStored ? '\r\n' : '\n';
      const stored = lines.map((line) => `${line.replace(/^(>*From )/, '>$1')}${eol}`).join('');
      return `From sender${i}@example.org Tue Nov 24 10:00:00 2026\n${stored}\n`;
    })
    .join('');
}

/** The octets LIST and RETR's status count: CRLF line ends, before dot-stuffing. */
function size({ lines }: Generated): number {
  return lines.reduce((sum, line) => sum + line.length + 2, 0);
}

/** RETR's whole reply, as RFC 1939 §3 and §7 ask. */
function retrReply(message: Generated): string {
  const stuffed = message.lines.map((line) => `${line.startsWith('.') ? '.' : ''}${line}\r\n`).join('');
  return `+OK ${size(message)} octets\r\n${stuffed}.\r\n`;
}

/** One session: the login and `commands` in one write; everything the daemon sends until it closes. */
async function pipelinedSession(port: number, user: string, commands: string[]): Promise<string> {
  const socket = new Socket();
  await new Promise<void>((resolve, reject) => socket.connect(port, '127.0.0.1', resolve).once('error', reject));
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = new Promise<void>((resolve, reject) => {
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
  socket.write(`USER ${user}\r\nPASS ${PASSWORD}\r\n${commands.map((c) => `${c}\r\n`).join('')}`);
  await closed;
  return Buffer.concat(chunks).toString('latin1');
}

describe('pop3 pipelined RETR runs', () => {
  let env: TestEnv & { pop3Port: number };
  let daemon: Daemon;
  const messages = generate(160);
  const total = messages.reduce((sum, m) => sum + size(m), 0);
  const login = (user: string) =>
    `+OK mailsrv ready\r\n+OK send PASS\r\n+OK ${user} has ${messages.length} messages (${total} octets)\r\n`;

  before(async () => {
    env = await makePop3Env({ users: ['frank', 'grace', 'heidi'] });
    const file = mboxFile(messages);
    // several 256 KiB file windows and 128 KiB reply blocks: messages straddle their boundaries
    assert.ok(file.length > 3 * 256 * 1024, `the mailbox has ${file.length} octets`);
    writeMailbox(env.mailbox('frank'), file);
    writeMailbox(env.mailbox('grace'), file);
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    await env?.cleanup();
  });

  test('RETR of every message in one pipelined run: each reply byte for byte, in order', async () => {
    const commands = messages.map((_, i) => `RETR ${i + 1}`);
    const received = await pipelinedSession(env.pop3Port, 'frank', [...commands, 'QUIT']);
    const expected = `${login('frank')}${messages.map(retrReply).join('')}+OK mailsrv signing off\r\n`;
    // compared reply by reply first, so that a failure names the message
    let at = login('frank').length;
    for (const [i, message] of messages.entries()) {
      const reply = retrReply(message);
      assert.equal(received.slice(at, at + reply.length), reply, `RETR ${i + 1}`);
      at += reply.length;
    }
    assert.equal(received, expected);
  });

  test('a deleted and a missing message in the middle of a run get -ERR; the replies around are whole', async () => {
    const retrs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => `RETR ${from + k}`);
    const commands = ['DELE 40', ...retrs(35, 45), `RETR ${messages.length + 1}`, ...retrs(46, 50), 'RSET', 'QUIT'];
    const received = await pipelinedSession(env.pop3Port, 'grace', commands);
    const replies = (from: number, to: number) =>
      messages
        .slice(from - 1, to)
        .map(retrReply)
        .join('');
    const expected =
      login('grace') +
      '+OK message 40 deleted\r\n' +
      replies(35, 39) +
      '-ERR Message 40 is deleted\r\n' +
      replies(41, 45) +
      `-ERR No such message (the maildrop has ${messages.length})\r\n` +
      replies(46, 50) +
      `+OK maildrop has ${messages.length} messages (${total} octets)\r\n` +
      '+OK mailsrv signing off\r\n';
    assert.equal(received, expected);
  });

  test('a client that stops reading a long run of small RETRs: the daemon never reads far ahead of it', async () => {
    // 40 MB of 4 KiB messages: far more than the socket buffers on both sides hold
    const body = `${'y'.repeat(78)}\n`.repeat(50);
    const count = 10_000;
    const file = Array.from(
      { length: count },
      (_, i) => `From s@example.org Tue Nov 24 10:00:00 2026\nSubject: ${i + 1}\n\n${body}\n`,
    ).join('');
    writeMailbox(env.mailbox('heidi'), file);
    const replyOctets = (i: number) => {
      const octets = `Subject: ${i + 1}\r\n\r\n`.length + 50 * 80;
      return `+OK ${octets} octets\r\n`.length + octets + 3;
    };
    let expected = 0;
    for (let i = 0; i < count; i++) expected += replyOctets(i);

    const socket = new Socket();
    await new Promise<void>((resolve, reject) =>
      socket.connect(env.pop3Port, '127.0.0.1', resolve).once('error', reject),
    );
    let text = '';
    let received = 0;
    let readBefore: number | null = null;
    let readAhead = 0;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (readBefore === null) text += chunk.toString('latin1');
      else readAhead = Math.max(readAhead, daemon.io().read - readBefore - received);
    });
    socket.write(`USER heidi\r\nPASS ${PASSWORD}\r\n`);
    await eventually(() => (text.match(/\r\n/g) ?? []).length >= 3, 10_000, 'greeting and login');
    assert.match(text, /\+OK heidi has 10000 messages/);

    // the whole run sent at once; the client reads nothing until the daemon is well under way
    socket.pause();
    const start = daemon.io();
    socket.write(Array.from({ length: count }, (_, i) => `RETR ${i + 1}\r\n`).join(''));
    await eventually(() => daemon.io().written - start.written >= 256 * 1024, 10_000, 'replies under way', 5);
    received = 0;
    readBefore = start.read;
    socket.resume();
    await eventually(() => received >= expected, 60_000, 'every reply');
    assert.equal(received, expected, 'octets of all the replies');
    // a daemon that read the run's messages as fast as it could would be ~40 MB ahead
    assert.ok(
      readAhead < 20 * 1024 * 1024,
      `the daemon read ${Math.round(readAhead / 1024 / 1024)} MB ahead of a client that stopped reading`,
    );
    socket.end('QUIT\r\n');
  });
});
