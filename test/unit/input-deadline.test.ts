// src/net/input-deadline.ts on a fake clock: a command line must be complete within the limit of
// its first byte however it trickles in; a message gets the limit plus a second per 500 bytes;
// the clock starts afresh while the server is busy; a shorter limit applies at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type DeadlineExpiry, InputDeadline, MIN_DATA_RATE } from '../../src/net/input-deadline.js';
import { FakeClock } from '../support/fake-clock.js';

function deadline(options: { limitMs?: () => number; busy?: () => boolean } = {}) {
  const clock = new FakeClock();
  const expired: DeadlineExpiry[] = [];
  const input = new InputDeadline({
    limitMs: options.limitMs ?? (() => 10_000),
    serverBusy: options.busy ?? (() => false),
    expired: (expiry) => expired.push(expiry),
    clock,
  });
  return { clock, input, expired };
}

const bytes = (text: string) => Buffer.from(text, 'latin1');

test('a command line trickled a byte a second is cut 10 s after its first byte', () => {
  const { clock, input, expired } = deadline();
  for (let second = 0; second < 10; second++) {
    input.received(bytes('x'));
    clock.advance(1000);
  }
  assert.deepEqual(expired, [{ kind: 'command', elapsedMs: 10_000, bytes: 0 }]);
  assert.equal(clock.pending, 0, 'it fires once');
});

test('a line that ends in time settles; the next one gets its own 10 s from its first byte', () => {
  const { clock, input, expired } = deadline();
  input.received(bytes('NOOP'));
  clock.advance(9000);
  input.received(bytes('\r\nRSET'));
  assert.equal(clock.nextDue, clock.now() + 10_000, 'the line begun in the chunk starts the clock');
  clock.advance(9000);
  input.received(bytes('\r\n'));
  assert.equal(clock.pending, 0, 'no line in progress: no deadline');
  clock.advance(60_000);
  assert.deepEqual(expired, []);
});

test(`a message may take 10 s plus a second per ${MIN_DATA_RATE} bytes, however long that is`, () => {
  const { clock, input, expired } = deadline();
  input.dataStarted();
  // an honest slow link: 600 bytes a second for ten minutes, lines and all
  for (let second = 0; second < 600; second++) {
    input.received(Buffer.alloc(600, 0x61));
    clock.advance(1000);
  }
  assert.equal(expired.length, 0, 'an honest slow link is not cut');
  input.messageEnded();
  assert.equal(clock.pending, 0);

  // a trickle of complete lines, 3 bytes every 2 s: 10 s + 18 bytes' worth (36 ms)
  input.dataStarted();
  for (let i = 0; i < 10; i++) {
    input.received(bytes('x\r\n'));
    clock.advance(2000);
  }
  assert.equal(expired.length, 1);
  assert.equal(expired[0]!.kind, 'data');
  assert.ok(expired[0]!.elapsedMs >= 10_000 && expired[0]!.bytes === 18, JSON.stringify(expired[0]));
});

test('while the server is busy the request starts afresh; a shorter limit applies at once', () => {
  let busy = true;
  let limitMs = 10_000;
  const { clock, input, expired } = deadline({ busy: () => busy, limitMs: () => limitMs });
  input.received(bytes('MAIL FROM:<a'));
  clock.advance(25_000);
  assert.deepEqual(expired, [], 'a line waiting behind a command being answered is not cut');
  busy = false;
  // the last restart was at 20 s: the line is cut at 30 s
  clock.advance(5000);
  assert.deepEqual(expired, [{ kind: 'command', elapsedMs: 10_000, bytes: 0 }]);

  limitMs = 300_000;
  input.received(bytes('RCPT'));
  limitMs = 10_000;
  input.follow();
  clock.advance(10_000);
  assert.equal(expired.length, 2, 'stress mode shortens the deadline of the line in progress');
});
