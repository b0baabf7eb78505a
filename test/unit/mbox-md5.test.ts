// Unit tests for src/mbox/md5.ts: its digest is node:crypto's MD5 for any bytes at any offset, at
// every length around the padding's block boundaries, up to and past the longest input it hashes
// in WebAssembly; RFC 1321's test suite; the digest is read before the next call overwrites it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MD5_WASM_MAX_BYTES, md5, md5InWasm } from '../../src/mbox/md5.js';

const nodeMd5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');

describe('md5', () => {
  it('runs in WebAssembly on Node 20', () => {
    assert.equal(md5InWasm, true);
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

  it('agrees with node:crypto at the longest input hashed in WebAssembly and past it', () => {
    const data = Buffer.from(Array.from({ length: MD5_WASM_MAX_BYTES + 100 }, (_, i) => (i * 31) & 0xff));
    for (const length of [MD5_WASM_MAX_BYTES - 56, MD5_WASM_MAX_BYTES, MD5_WASM_MAX_BYTES + 1, data.length]) {
      assert.equal(md5(data, 0, length).toString('hex'), nodeMd5(data.subarray(0, length)), String(length));
    }
    // a short input after a long one: nothing of the long one's padding is left over
    assert.equal(md5(data, 0, 3).toString('hex'), nodeMd5(data.subarray(0, 3)));
  });
});
