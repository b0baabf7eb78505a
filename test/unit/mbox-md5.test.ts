// Unit tests for src/mbox/md5.ts: once its WebAssembly hasher is ready, its digest is node:crypto's
// MD5 for any bytes at any offset, at every length around the padding's block boundaries, for long
// inputs; RFC 1321's test suite; a digest is not changed by the next call.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { md5, md5Ready } from '../../src/mbox/md5.js';

const nodeMd5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');

describe('md5', () => {
  before(() => md5Ready);

  it('runs in WebAssembly on Node 20', async () => {
    assert.equal(await md5Ready, true);
  });

  it("gives RFC 1321's test suite digests", () => {
    const suite: [string, string][] = [
      ['', 'd41d8cd98f00b204e9800998ecf8427e'],
      ['a', '0cc175b9c0f1b6a831c399e269772661'],
      ['abc', '900150983cd24fb0d6963f7d28e17f72'],
      ['message digest', 'f96b697d7cb7938d525a2f31aaf161d0'],
      ['abcdefghijklmnopqrstuvwxyz', 'c3fcd3d76192e4007dfb496cca67e13b'],
      ['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', 'd174ab98d277d9f5a5611c2c9f419d9f'],
      ['1234567890'.repeat(8), '57edf4a22be3c955ac49da2e2107b67a'],
    ];
    for (const [text, digest] of suite) {
      const data = Buffer.from(text, 'latin1');
      assert.equal(md5(data, 0, data.length).toString('hex'), digest, text);
    }
  });

  it("agrees with node:crypto at every length up to 300 bytes, around each block's padding", () => {
    const data = Buffer.from(Array.from({ length: 310 }, (_, i) => (i * 151 + 7) & 0xff));
    for (let length = 0; length <= 300; length++) {
      for (const start of [0, 1, 5]) {
        assert.equal(md5(data, start, start + length).toString('hex'), nodeMd5(data.subarray(start, start + length)));
      }
    }
  });

  it('agrees with node:crypto for any bytes and offsets', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(50), fc.nat(50), (bytes, cutStart, cutEnd) => {
        const data = Buffer.from(bytes);
        const start = Math.min(cutStart, data.length);
        const end = Math.max(start, data.length - cutEnd);
        assert.equal(md5(data, start, end).toString('hex'), nodeMd5(data.subarray(start, end)));
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with node:crypto on long inputs, and a digest stays as it was after the next call', () => {
    const data = Buffer.from(Array.from({ length: 40_000 }, (_, i) => (i * 31) & 0xff));
    for (const length of [16 * 1024, 16 * 1024 + 1, data.length]) {
      assert.equal(md5(data, 0, length).toString('hex'), nodeMd5(data.subarray(0, length)), String(length));
    }
    const first = md5(data, 0, 3);
    const copy = Buffer.from(first);
    assert.equal(md5(data, 5, 200).toString('hex'), nodeMd5(data.subarray(5, 200)));
    assert.deepEqual(first, copy);
  });
});
