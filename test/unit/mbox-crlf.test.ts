// Unit tests for src/mbox/crlf.ts: the WebAssembly and the JavaScript toPlainWire agree with a
// reference (a string replace of LF by CR LF, or -1 when the piece has a CR or a line starting
// with `>`, or `.` when dot-stuffing) for any bytes, offsets and output position; LFs at every
// position of a 16-byte block; inputs longer than one wasm piece, with a `>` or `.` line starting
// right at a piece boundary; nothing around the output is touched.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { simdAvailable, toPlainWire, toPlainWireScalar } from '../../src/mbox/crlf.js';

/** What toPlainWire must give for input[start, end) (which follows an LF), or null for -1. */
function reference(input: Buffer, start: number, end: number, dotStuff: boolean): Buffer | null {
  const text = input.toString('latin1', start, end);
  if (text.includes('\r') || text.includes('\n>') || (dotStuff && text.includes('\n.'))) return null;
  return Buffer.from(text.replaceAll('\n', '\r\n'), 'latin1');
}

const implementations = [
  ['WebAssembly', toPlainWire],
  ['JavaScript', toPlainWireScalar],
] as const;

/** Bytes rich in the ones that matter: LF, CR, `>`, `.`. */
const mailBytes = (maxLength: number) =>
  fc
    .uint8Array({ maxLength })
    .map((a) => Buffer.from(a.map((x) => [0x0a, 0x0a, 0x0a, 0x0d, 0x3e, 0x2e][x % 40] ?? 0x41 + (x % 26))));

describe('toPlainWire', () => {
  it('runs in WebAssembly on Node 20', () => {
    assert.equal(simdAvailable, true);
  });

  for (const [name, convert] of implementations) {
    it(`${name}: agrees with the reference for any bytes, offsets, output position and dot-stuffing`, () => {
      fc.assert(
        fc.property(
          mailBytes(300),
          fc.nat(20),
          fc.nat(20),
          fc.nat(20),
          fc.boolean(),
          (raw, cutStart, cutEnd, at, dot) => {
            // the piece must not start with `>` or `.` (the caller's check)
            const input = Buffer.concat([Buffer.from('a'), raw]);
            const start = Math.min(cutStart, input.length);
            const end = Math.max(start, input.length - cutEnd);
            if (input[start] === 0x3e || input[start] === 0x2e) return;
            const out = Buffer.alloc(at + 2 * input.length + 16, 0xee);
            const after = convert(input, start, end, out, at, dot);
            const want = reference(input, start, end, dot);
            if (want === null) {
              assert.equal(after, -1);
              return;
            }
            assert.equal(after, at + want.length);
            assert.deepEqual(out.subarray(at, after), want);
            assert.ok(out.subarray(0, at).every((x) => x === 0xee));
            assert.ok(out.subarray(after).every((x) => x === 0xee));
          },
        ),
        { numRuns: 3000 },
      );
    });

    it(`${name}: an LF, a CR, a ">" and a "." line at each position of a 16-byte block`, () => {
      for (let position = 0; position < 40; position++) {
        for (const [insert, dot] of [
          ['\n', true],
          ['\r', true],
          ['\n>', false],
          ['\n.', true],
          ['\n.', false],
        ] as const) {
          const input = Buffer.alloc(48, 'a');
          input.write(insert, position, 'latin1');
          const out = Buffer.alloc(100);
          const after = convert(input, 0, input.length, out, 0, dot);
          const want = reference(input, 0, input.length, dot);
          assert.deepEqual(
            after === -1 ? null : out.subarray(0, after),
            want,
            `${JSON.stringify(insert)} at ${position}`,
          );
        }
      }
      const lfs = Buffer.alloc(50, '\n');
      const out = Buffer.alloc(100);
      assert.equal(out.toString('latin1', 0, convert(lfs, 0, lfs.length, out, 0, true)), '\r\n'.repeat(50));
    });

    it(`${name}: inputs longer than one wasm piece (64 KiB), a stuffed line at the piece boundary`, () => {
      const line = `${'x'.repeat(63)}\n`; // 64 octets: lines start at every multiple of 64
      const input = Buffer.from(line.repeat(3000), 'latin1');
      const out = Buffer.alloc(2 * input.length);
      const after = convert(input, 5, input.length - 3, out, 0, true);
      assert.deepEqual(out.subarray(0, after), reference(input, 5, input.length - 3, true));
      for (const first of ['.', '>']) {
        const boundary = Buffer.from(input);
        boundary.write(first, 64 * 1024, 'latin1');
        assert.equal(convert(boundary, 0, boundary.length, out, 0, true), -1, `"${first}" line at 64 KiB`);
      }
    });
  }
});
