// feedData (src/smtp/data-feed.ts) against smtp-server's own SMTPStream#_feedDataStream: the
// same sessions, cut into the same random pieces, must give the same messages (escape dots
// removed, same byte counts) and the same commands after each end of DATA.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { feedData } from '../../src/smtp/data-feed.js';

type Event = [kind: 'command' | 'message', text: string, bytes?: number];

/**
 * Runs `pieces` through a parser that starts DATA on the first `DATA` command (later ones are
 * just commands: one message per session keeps the harness simpler than smtp-server's own
 * connection); returns what came out.
 */
async function parse(pieces: Buffer[], fast: boolean): Promise<Event[]> {
  const parser = new SMTPStream();
  if (fast) parser._feedDataStream = feedData;
  const events: Event[] = [];
  let started = false;
  parser.oncommand = (command, callback) => {
    const text = command.toString('latin1');
    events.push(['command', text]);
    if (text === 'DATA' && !started) {
      started = true;
      const message = parser.startDataMode();
      const chunks: Buffer[] = [];
      message.on('data', (chunk: Buffer) => chunks.push(chunk));
      message.on('end', () => {
        events.push(['message', Buffer.concat(chunks).toString('latin1'), message.byteLength]);
        parser.continue();
      });
    }
    callback?.();
  };
  for (const piece of pieces) parser.write(piece);
  parser.end();
  await once(parser, 'finish');
  return events;
}

/** A pseudo-random source that a failing case can be replayed from (its seed is in the message). */
function random(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1;
  return (n) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
}

const TOKENS = ['.', '..', '\r', '\n', '\r\n', 'a', 'bc', '\r\n.', '.\r\n', '\r\n..\r\n', '\r\n.\r\n', 'DATA\r\n'];

/** A DATA transaction with a body full of dots and line ends (an early end of DATA included by chance). */
function session(next: (n: number) => number): Buffer {
  let text = 'DATA\r\n';
  for (let t = 0, tokens = next(160); t < tokens; t++) text += TOKENS[next(TOKENS.length)];
  return Buffer.from(`${text}\r\n.\r\nNOOP\r\nQUIT\r\n`, 'latin1');
}

function cut(input: Buffer, next: (n: number) => number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0; at < input.length; ) {
    const size = next(4) === 0 ? 1 + next(input.length) : 1 + next(9);
    pieces.push(input.subarray(at, at + size));
    at += size;
  }
  return pieces;
}

test('feedData and smtp-server agree on random sessions cut anywhere', async () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const next = random(seed);
    const pieces = cut(session(next), next);
    assert.deepEqual(await parse(pieces, true), await parse(pieces, false), `seed ${seed}`);
  }
});

test('feedData on chosen cases: start of DATA, escapes across pieces, a large message', async () => {
  const cases: string[][] = [
    ['DATA\r\n', '.\r\nQUIT\r\n'], // an empty message
    ['DATA\r\n', '.', '\r', '\nQUIT\r\n'], // its end in three pieces
    ['DATA\r\n..\r\n.\r\nQUIT\r\n'], // a message of one line with a single dot
    ['DATA\r\n', '..', '\r\n.\r\nQUIT\r\n'],
    ['DATA\r\nx\r', '\n', '.', '.y\r\n', '.', '\r\nQUIT\r\n'],
    ['DATA\r\nx\r\n..a\r\n..b\r\n...c\r\n.d\r\n.\r\nQUIT\r\n'],
    ['DATA\r\n', 'a'.repeat(200_000), '\r\n..', 'b'.repeat(70_000), '\r\n.\r\nQUIT\r\n'],
  ];
  for (const pieces of cases) {
    const buffers = pieces.map((p) => Buffer.from(p, 'latin1'));
    const fast = await parse(buffers, true);
    assert.deepEqual(fast, await parse(buffers, false), JSON.stringify(pieces).slice(0, 200));
    assert.equal(fast.at(-1)?.[1], 'QUIT', 'every case ends its DATA and reads QUIT as a command');
  }
  const [, message] = await parse([Buffer.from('DATA\r\nx\r\n..a\r\n.\r\nQUIT\r\n', 'latin1')], true);
  assert.deepEqual(message, ['message', 'x\r\n.a\r\n', 7]);
});
