// Unit tests for src/mbox/crlf.ts: the WebAssembly and the JavaScript LF → CRLF copies give the
// same bytes as a string replace for any input, offset and length (LFs at every position of a
// 16-byte block, runs of LFs, inputs longer than one wasm piece), and leave the rest of the
// output alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { addCRs, addCRsScalar, simdAvailable } from '../../src/mbox/crlf.js';

const expected = (input: Buffer, start: number, end: number): Buffer =>
  Buffer.from(input.toString('latin1', start, end).replaceAll('\n', '\r\n'), 'latin1');

const implementations = [
  ['WebAssembly', addCRs],
  ['JavaScript', addCRsScalar],
] as const;

describe('addCRs', () => {
  it('runs in WebAssembly on Node 20', () => {
    assert.equal(simdAvailable, true);
  });

  for (const [name, convert] of implementations) {
    it(`${name}: equals a string replace for any bytes, offsets and output position`, () => {
      const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a.map((x) => (x % 4 === 0 ? 0x0a : x))));
      fc.assert(
        fc.property(bytes, fc.nat(20), fc.nat(20), fc.nat(20), (input, cutStart, cutEnd, at) => {
          const start = Math.min(cutStart, input.length);
          const end = Math.max(start, input.length - cutEnd);
          const out = Buffer.alloc(at + 2 * input.length + 16, 0xee);
          const after = convert(input, start, end, out, at);
          const want = expected(input, start, end);
          assert.equal(after, at + want.length);
          assert.deepEqual(out.subarray(at, after), want);
          // nothing before or after the output is touched
          assert.ok(out.subarray(0, at).every((x) => x === 0xee));
          assert.ok(out.subarray(after).every((x) => x === 0xee));
        }),
        { numRuns: 2000 },
      );
    });

    it(`${name}: an LF at each position of a 16-byte block, and only LFs`, () => {
      for (let position = 0; position < 40; position++) {
        const input = Buffer.alloc(48, 'a');
        input[position] = 0x0a;
        const out = Buffer.alloc(100);
        assert.deepEqual(out.subarray(0, convert(input, 0, input.length, out, 0)), expected(input, 0, input.length));
      }
      const lfs = Buffer.alloc(50, '\n');
      const out = Buffer.alloc(100);
      assert.equal(out.toString('latin1', 0, convert(lfs, 0, lfs.length, out, 0)), '\r\n'.repeat(50));
    });

    it(`${name}: an input longer than one wasm piece (64 KiB)`, () => {
      const input = Buffer.from(`${'x'.repeat(70)}\n`.repeat(3000), 'latin1');
      const out = Buffer.alloc(2 * input.length);
      const after = convert(input, 5, input.length - 3, out, 0);
      assert.deepEqual(out.subarray(0, after), expected(input, 5, input.length - 3));
    });
  }
});
