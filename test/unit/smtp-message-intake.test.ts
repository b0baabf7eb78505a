// Reading DATA into the queue (MessageIntake): the size limit drops chunks past it, hops are
// counted, a slow take holds the stream back, and a failed take, a stream error or a stream
// closed before its end each reject the read.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { HopCounter } from '../../src/message/hops.js';
import { MessageIntake } from '../../src/smtp/message-intake.js';

function intake(limit = 1000) {
  const progress = { lastChunkAt: 0 };
  const hops = new HopCounter();
  return { progress, hops, intake: new MessageIntake(limit, hops, progress) };
}

/** A promise with its resolve and reject at hand. */
function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A feed of a fresh stream noting each chunk taken; `answer` gives a take's result by its number (1, 2, ...). */
function feeding(limit = 1000, answer: (n: number) => Promise<void> | undefined = () => undefined) {
  const { intake: reader, hops, progress } = intake(limit);
  const stream = new PassThrough();
  const taken: string[] = [];
  const done = reader.feed(stream, (chunk) => {
    taken.push(chunk.toString());
    return answer(taken.length);
  });
  return { stream, taken, done, hops, progress };
}

describe('MessageIntake.feed', () => {
  it('hands over every chunk in order and counts the Received headers', async () => {
    const { stream, taken, done, hops, progress } = feeding();
    stream.write('Received: a\r\nReceived: b\r\n');
    stream.end('\r\nbody\r\n');
    await done;
    assert.deepEqual(taken, ['Received: a\r\nReceived: b\r\n', '\r\nbody\r\n']);
    assert.equal(hops.hops, 2);
    assert.ok(progress.lastChunkAt > 0);
  });

  it('drops the chunks that begin past the limit', async () => {
    const { stream, taken, done } = feeding(10);
    for (const piece of ['12345678', '90abcdef', 'ghij', 'klmn']) {
      stream.write(piece);
      await new Promise((resolve) => setImmediate(resolve));
    }
    stream.end();
    await done;
    // the chunk that crosses the limit still goes in (the message is refused at its end anyway)
    assert.deepEqual(taken, ['12345678', '90abcdef']);
  });

  it('holds the stream back while a take is in progress, and ends only after it', async () => {
    const slow = deferred();
    const { stream, taken, done: fed } = feeding(1000, (n) => (n === 1 ? slow.promise : undefined));
    let ended = false;
    const done = fed.then(() => {
      ended = true;
    });
    const paused = new Promise((resolve) => stream.once('pause', resolve));
    stream.write('first');
    await paused;
    stream.end('second');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(taken, ['first'], 'the next chunk waits for the slow take');
    assert.equal(ended, false);
    slow.resolve();
    await done;
    assert.deepEqual(taken, ['first', 'second']);
  });

  it('rejects with a failed take and destroys the stream', async () => {
    const { intake: reader } = intake();
    const stream = new PassThrough();
    const done = reader.feed(stream, () => Promise.reject(new Error('disk full')));
    stream.write('x');
    await assert.rejects(done, /disk full/);
    assert.equal(stream.destroyed, true);
  });

  it('rejects when the stream fails or closes before its end', async () => {
    const failing = new PassThrough();
    const failed = intake().intake.feed(failing, () => undefined);
    failing.destroy(new Error('client reset'));
    await assert.rejects(failed, /client reset/);

    const closing = new PassThrough();
    const closed = intake().intake.feed(closing, () => undefined);
    closing.write('partial');
    closing.destroy();
    await assert.rejects(closed, /closed before its end/);
  });
});
