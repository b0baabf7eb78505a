// Unit tests for src/bounce/hops.ts: counting Received header fields for loop detection.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { countHops, countReceivedHeaders } from '../../src/message/hops.js';

const count = (text: string): number => countReceivedHeaders(Buffer.from(text, 'latin1'));

describe('countReceivedHeaders', () => {
  it('counts Received fields in any case, with obsolete space before the colon', () => {
    assert.equal(count('Received: a\r\nRECEIVED: b\r\nreceived : c\r\nReceived\t: d\r\nSubject: s\r\n'), 4);
  });

  it('counts only field starts: not continuation lines, not other fields that mention Received', () => {
    const block =
      'Received: from a\r\n\tby b; Received: not a field\r\n Received: folded either\r\n' +
      'X-Received: other\r\nSubject: Received: in a subject\r\nReceivedX: no\r\nReceived-SPF: pass\r\n';
    assert.equal(count(block), 1);
  });

  it('works with LF line ends and stops at the empty line (a body never counts)', () => {
    assert.equal(count('Received: a\nReceived: b\n\nReceived: in body\nReceived: also body\n'), 2);
  });

  it('counts 51 Received fields as 51 (above Postfix hopcount_limit 50)', () => {
    assert.equal(count(`${'Received: from x by y\r\n'.repeat(51)}Subject: loop\r\n\r\n`), 51);
  });

  it('counts nothing in an empty block', () => {
    assert.equal(count(''), 0);
  });
});

describe('countHops', () => {
  it('counts the Received fields of a whole message read from a stream, in any chunking, never its body', async () => {
    const message = 'Received: a\r\nReceived: b\r\nSubject: s\r\n\r\nReceived: in body\r\n';
    assert.equal(await countHops(Readable.from([Buffer.from(message, 'latin1')])), 2);
    const chunks = [...message].map((char) => Buffer.from(char, 'latin1'));
    assert.equal(await countHops(Readable.from(chunks)), 2);
  });
});
