// smtp-server's log calls become pino debug lines with the sessionId, only at level debug.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { smtpProtocolLogger } from '../../src/protocol-log.js';

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  return { lines, logger: pino({ level }, sink) };
}

test('commands and replies are debug lines carrying the sessionId', () => {
  const { lines, logger } = capture('debug');
  const adapter = smtpProtocolLogger(logger);
  adapter.info({ tnx: 'command', cid: 'abc' }, 'C:', 'MAIL FROM:<a@b.test>');
  adapter.debug({ tnx: 'send', cid: 'abc' }, 'S:', '250 2.1.0 Accepted');
  adapter.error('plain %s', 'message');
  assert.deepEqual(
    lines.map((l) => [l.level, l.sessionId, l.msg]),
    [
      [20, 'abc', 'C: MAIL FROM:<a@b.test>'],
      [20, 'abc', 'S: 250 2.1.0 Accepted'],
      [20, undefined, 'plain message'],
    ],
  );
});

test('nothing is logged above debug', () => {
  const { lines, logger } = capture('info');
  smtpProtocolLogger(logger).info({ tnx: 'command', cid: 'abc' }, 'C:', 'EHLO x');
  assert.deepEqual(lines, []);
});

// e.g. a refused AUTH continuation
test('a client line that is not a command is logged by length only; AUTH data never', () => {
  const { lines, logger } = capture('debug');
  const adapter = smtpProtocolLogger(logger);
  for (const line of [
    'c2VjcmV0LXB3',
    'AUTH\tPLAIN\tAGFsaWNlAHNlY3JldA==',
    'auth login YWxpY2U=',
    'AUTH PLAIN /* secured */',
    'rcpt TO:<a@b.test>',
    'AUTH',
  ]) {
    adapter.info({ tnx: 'command', cid: 'abc' }, 'C:', line);
  }
  assert.deepEqual(
    lines.map((l) => l.msg),
    [
      'C: <12 bytes, not a command>',
      'C: AUTH PLAIN /* secured */',
      'C: AUTH login /* secured */',
      'C: AUTH PLAIN /* secured */',
      'C: rcpt TO:<a@b.test>',
      'C: AUTH',
    ],
  );
  assert.ok(!JSON.stringify(lines).includes('c2VjcmV0LXB3') && !JSON.stringify(lines).includes('AGFsaWNl'));
});
