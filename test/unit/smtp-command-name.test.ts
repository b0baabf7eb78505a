// The names SMTP command lines are counted under in the `disconnect` log line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { smtpCommandName } from '../../src/smtp/command-name.js';

const name = (line: string) => smtpCommandName(Buffer.from(line, 'latin1'));

test('a known verb in any case, alone or followed by a space, is counted under its lowercase name', () => {
  assert.equal(name('EHLO client.test'), 'ehlo');
  assert.equal(name('ehlo client.test'), 'ehlo');
  assert.equal(name('Mail FROM:<a@b>'), 'mail');
  assert.equal(name('RCPT TO:<a@b>'), 'rcpt');
  assert.equal(name('DATA'), 'data');
  assert.equal(name('QUIT'), 'quit');
  assert.equal(name('starttls'), 'starttls');
  assert.equal(name('AUTH PLAIN AGFsaWNlAGFsaWNl'), 'auth');
  assert.equal(name('VRFY alice'), 'vrfy');
});

test('anything else is "unknown": other words, verbs run into other text, non-letters that look alike', () => {
  for (const line of [
    '',
    'MAI',
    'MAILX FROM:<a@b>',
    'DATA2',
    'XCLIENT ADDR=1.2.3.4',
    'GET / HTTP/1.1',
    'WIZ',
    '\u00cdAIL',
  ]) {
    assert.equal(name(line), 'unknown', JSON.stringify(line));
  }
  // 0x4D | 0x80 is not "M": only ASCII letters fold case
  assert.equal(smtpCommandName(Buffer.from([0xcd, 0x41, 0x49, 0x4c])), 'unknown');
});
