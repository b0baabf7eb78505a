// Unit tests for src/message/date.ts: the RFC 5322 date text, formatted once a second.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rfc5322Date } from '../../src/message/date.js';

describe('rfc5322Date', () => {
  it('writes the UTC date with a numeric zone', () => {
    assert.equal(rfc5322Date(new Date('2026-11-25T11:54:57.250Z')), 'Wed, 25 Nov 2026 11:54:57 +0000');
  });

  it('gives each second its own text, whatever order the dates come in', () => {
    const a = new Date('2026-12-06T23:59:59.900Z');
    const b = new Date('2026-12-07T00:00:00.100Z');
    for (const [date, text] of [
      [a, 'Sun, 06 Dec 2026 23:59:59 +0000'],
      [b, 'Mon, 07 Dec 2026 00:00:00 +0000'],
      [new Date(a.getTime() - 800), 'Sun, 06 Dec 2026 23:59:59 +0000'],
      [a, 'Sun, 06 Dec 2026 23:59:59 +0000'],
      [new Date('1969-12-31T23:59:59.500Z'), 'Wed, 31 Dec 1969 23:59:59 +0000'],
      [new Date('1970-01-01T00:00:00.000Z'), 'Thu, 01 Jan 1970 00:00:00 +0000'],
    ] as const)
      assert.equal(rfc5322Date(date), text);
  });
});
