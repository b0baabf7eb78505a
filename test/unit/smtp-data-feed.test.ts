// feedData (src/smtp/data-feed.ts) against smtp-server's own SMTPStream#_feedDataStream: the
// same sessions, cut into the same random pieces, must give the same messages (escape dots
// removed, same byte counts, same size verdict) and the same commands after each end of DATA,
// whether the message is read at once, read slowly from a small stream (its writes say "full"),
// or destroyed part-way (what a failed store does to it).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { feedData } from '../../src/smtp/data-feed.js';

type Event = unknown[];

/** How the test's application reads a message; `destroyAt`: after that many bytes it destroys the stream. */
interface Reader {
  slow: boolean;
  destroyAt: number;
  maxBytes: number;
}

const AT_ONCE: Reader = { slow: false, destroyAt: Infinity, maxBytes: 0 };

type MessageStream = PassThrough & { byteLength: number; sizeExceeded: boolean };

/**
 * Runs `pieces` through a parser that starts DATA on a `DATA` that follows a `RCPT` (whose
 * callback comes a loop turn later, as a real recipient check's does: a DATA in the bytes after
 * a message never starts inside the parser's continue()); returns what came out.
 */
async function parse(pieces: Buffer[], fast: boolean, reader: Reader = AT_ONCE): Promise<Event[]> {
  const parser = new SMTPStream();
  if (fast) parser._feedDataStream = feedData;
  const events: Event[] = [];
  let recipient = false;
  parser.oncommand = (command, callback) => {
    const text = command.toString('latin1');
    events.push(['command', text, parser.dataBytes]);
    if (text === 'RCPT') {
      recipient = true;
      setImmediate(() => callback?.());
      return;
    }
    if (text === 'DATA' && recipient) {
      recipient = false;
      let message = parser.startDataMode(reader.maxBytes) as MessageStream;
      if (reader.slow) {
        // a stream that is full after 8 bytes: nearly every write of the parser is told to wait
        message = Object.assign(new PassThrough({ highWaterMark: 8 }), { byteLength: 0, sizeExceeded: false });
        parser._dataStream = message;
      }
      void read(parser, message, reader, events);
    }
    callback?.();
  };
  for (const piece of pieces) parser.write(piece);
  parser.end();
  await once(parser, 'finish');
  return events;
}

/** Reads one message as `reader` says; then lets the parser go on, as smtp-server's connection does. */
async function read(parser: SMTPStream, message: MessageStream, reader: Reader, events: Event[]): Promise<void> {
  const chunks: Buffer[] = [];
  let seen = 0;
  /** keeps `chunk`; true when that is where the reader destroys the stream */
  const take = (chunk: Buffer): boolean => {
    chunks.push(chunk);
    seen += chunk.length;
    if (seen < reader.destroyAt || message.destroyed) return false;
    message.destroy();
    return true;
  };
  const complete = reader.slow
    ? await (async () => {
        for await (const chunk of message) {
          if (take(chunk as Buffer)) return false;
          await new Promise((next) => setImmediate(next));
        }
        return true;
      })()
    : await new Promise<boolean>((resolve) => {
        message.on('data', (chunk: Buffer) => take(chunk) && resolve(false));
        message.on('end', () => resolve(true));
      });
  if (complete) {
    events.push(['message', Buffer.concat(chunks).toString('latin1'), message.byteLength, message.sizeExceeded]);
  } else {
    // what came before the destroy is the same; how much more came with the same write is not
    events.push(['destroyed', Buffer.concat(chunks).subarray(0, reader.destroyAt).toString('latin1')]);
  }
  parser.continue();
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

const TOKENS = [
  ...['.', '..', '...', '\r', '\n', '\r\n', '\n\r', 'a', 'bc', '\r\n.', '\n.', '\r.', '.\r\n', '.\n', '.\r'],
  ...['\r\n..', '\n..', '\r\n..\r\n', '\r\n.\r\n', '\n.\n', 'RCPT\r\nDATA\r\n', '\r\n..'.repeat(5), '..\r\n'.repeat(7)],
];

/**
 * One to three DATA transactions with bodies full of dots and line ends (an early end of DATA
 * included by chance), and where each token ends (to cut there).
 */
function session(next: (n: number) => number): { input: Buffer; ends: number[] } {
  let text = '';
  const ends: number[] = [];
  for (let transactions = 1 + next(3); transactions > 0; transactions--) {
    text += 'RCPT\r\nDATA\r\n';
    ends.push(text.length);
    for (let t = 0, tokens = next(next(20) === 0 ? 4000 : 160); t < tokens; t++) {
      text += TOKENS[next(TOKENS.length)];
      ends.push(text.length);
    }
    text += '\r\n.\r\nNOOP\r\n';
  }
  return { input: Buffer.from(`${text}QUIT\r\n`, 'latin1'), ends };
}

/** Pieces of 1-9 or 1-3 bytes with now and then a long one, or pieces that end (about) where tokens end. */
function cut({ input, ends }: { input: Buffer; ends: number[] }, next: (n: number) => number): Buffer[] {
  const style = next(3);
  const pieces: Buffer[] = [];
  for (let at = 0; at < input.length; ) {
    let size: number;
    if (style === 2) {
      const skip = at + next(6);
      size = Math.max(1, (ends.find((end) => end > skip) ?? input.length) - at + (next(4) === 0 ? next(3) - 1 : 0));
    } else size = next(4) === 0 ? 1 + next(input.length) : 1 + next(style === 0 ? 9 : 3);
    pieces.push(input.subarray(at, at + size));
    at += size;
  }
  return pieces;
}

test('feedData and smtp-server agree on random sessions cut anywhere, read at once, slowly or destroyed', async () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const next = random(seed);
    const pieces = cut(session(next), next);
    const reader = { slow: next(2) === 0, destroyAt: next(3) === 0 ? 1 + next(60) : Infinity, maxBytes: next(80) };
    assert.deepEqual(await parse(pieces, true, reader), await parse(pieces, false, reader), `seed ${seed}`);
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
    const buffers = ['RCPT\r\n', ...pieces].map((p) => Buffer.from(p, 'latin1'));
    const fast = await parse(buffers, true);
    assert.deepEqual(fast, await parse(buffers, false), JSON.stringify(pieces).slice(0, 200));
    assert.equal(fast.at(-1)?.[1], 'QUIT', 'every case ends its DATA and reads QUIT as a command');
  }
  const [, , message] = await parse([Buffer.from('RCPT\r\nDATA\r\nx\r\n..a\r\n.\r\nQUIT\r\n', 'latin1')], true);
  assert.deepEqual(message, ['message', 'x\r\n.a\r\n', 7, false]);
});

test('a chunk of escaped lines that fills the message stream holds the input until it drains', async () => {
  // each `..` line is a write of its own and the chunk ends with none: smtp-server takes the
  // next chunk at once, however full the stream is
  const parser = new SMTPStream();
  parser._feedDataStream = feedData;
  const message = parser.startDataMode();
  // a socket read of `.` lines (3 bytes of message each): twice what the stream's two buffers
  // take (16 KiB each on Node 20, 64 KiB on Node 22 and later)
  const room = message.writableHighWaterMark + message.readableHighWaterMark;
  const chunk = Buffer.from('..\r\n'.repeat(Math.ceil((2 * room) / 3)), 'latin1');
  let taken = false;
  parser._feedDataStream(chunk, () => {
    taken = true;
  });
  assert.ok(message.writableNeedDrain, 'the stream is full');
  assert.equal(taken, false, 'the parser waits for the stream');
  const drained = once(message, 'drain');
  message.resume();
  await drained;
  assert.equal(taken, true, 'the parser goes on once it has drained');
});
