// Unit tests for src/mbox/body-lines.ts (the scan's body loop): the WebAssembly and the
// JavaScript counters agree with a reference (lines split with a regular expression) for any
// bytes, start and first-line rule; across the windows of the scratch memory (lines longer than a
// window, inputs of several windows); with two counters taking turns on the memory and a buffer
// refilled in place; and a parser fed a file in random pieces finds the same messages either way.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BodyLineCounter, simdAvailable } from '../../src/mbox/body-lines.js';
import { MboxParser } from '../../src/mbox/parser.js';

interface Counted {
  stop: number;
  lines: number;
  crlfLines: number;
}

/** What count(data, p, fromMayStart) must give, from the lines of text (data as latin1). */
function reference(text: string, p: number, fromMayStart: boolean): Counted {
  const line = /[^\n]*\n/y;
  line.lastIndex = p;
  let lines = 0;
  let crlfLines = 0;
  let stop = p;
  for (let m = line.exec(text); m !== null; m = line.exec(text)) {
    const first = m[0][0]!;
    if (first === '\n' || first === '\r' || first === '>' || (fromMayStart && stop === p && first === 'F')) break;
    lines++;
    if (m[0].endsWith('\r\n')) crlfLines++;
    stop = line.lastIndex;
  }
  return { stop, lines, crlfLines };
}

function count(counter: BodyLineCounter, data: Buffer, p: number, fromMayStart: boolean): Counted {
  const stop = counter.count(data, p, fromMayStart);
  return { stop, lines: counter.lines, crlfLines: counter.crlfLines };
}

const counters = [
  ['WebAssembly', () => new BodyLineCounter()],
  ['JavaScript', () => new BodyLineCounter(true)],
] as const;

/** Bytes rich in the ones that matter: LF, CR, `>`, `F`. */
const bodyBytes = (maxLength: number) =>
  fc
    .uint8Array({ maxLength })
    .map((a) => Buffer.from(a.map((x) => [0x0a, 0x0a, 0x0a, 0x0d, 0x3e, 0x46][x % 40] ?? 0x41 + (x % 26))));

/** Lines of any length up to `longest`, ending in LF or CR LF, some starting with a byte that stops the count. */
const bodyText = (maxLines: number, longest: number) =>
  fc
    .array(
      fc.tuple(
        fc.constantFrom('a', 'a', 'a', 'a', 'F', '>', '\r', ''),
        fc.oneof({ weight: 20, arbitrary: fc.nat(100) }, { weight: 1, arbitrary: fc.nat(longest) }),
        fc.constantFrom('\n', '\n', '\r\n', '\r\r\n'),
      ),
      { maxLength: maxLines },
    )
    .map((lines) => Buffer.from(lines.map(([first, n, eol]) => first + 'x'.repeat(n) + eol).join(''), 'latin1'));

describe('BodyLineCounter', () => {
  it('runs in WebAssembly on Node 20', () => {
    assert.equal(simdAvailable, true);
  });

  for (const [name, make] of counters) {
    it(`${name}: agrees with the reference for any bytes, start and first-line rule`, () => {
      const counter = make();
      fc.assert(
        fc.property(bodyBytes(400), fc.nat(400), fc.boolean(), (data, at, fromMayStart) => {
          const p = Math.min(at, data.length);
          counter.forget();
          assert.deepEqual(count(counter, data, p, fromMayStart), reference(data.toString('latin1'), p, fromMayStart));
        }),
        { numRuns: 2000 },
      );
    });

    it(`${name}: counts across windows, lines longer than a window included, stop after stop`, () => {
      const counter = make();
      fc.assert(
        fc.property(bodyText(200, 400_000), fc.nat(), (data, at) => {
          const text = data.toString('latin1');
          counter.forget();
          // as the parser does: on from each stop, past the line there
          for (let p = at % (data.length + 1); p < data.length; ) {
            const got = count(counter, data, p, false);
            assert.deepEqual(got, reference(text, p, false));
            const nl = data.indexOf(0x0a, got.stop);
            if (nl === -1) break;
            p = nl + 1;
          }
        }),
        { numRuns: 20 },
      );
    });
  }

  for (const [name, make] of counters) {
    it(`${name}: a body of several windows with a line longer than one, every 16-byte alignment`, () => {
      const line = (i: number) => `${'abcdefgh'.repeat(1 + (i % 11)).slice(0, 3 + (i % 83))}${i % 3 ? '\n' : '\r\n'}`;
      const head = Array.from({ length: 9000 }, (_, i) => line(i)).join('');
      const counter = make();
      for (let shift = 0; shift < 16; shift++) {
        const data = Buffer.from(`${'x'.repeat(shift)}${head}${'y'.repeat(300_000)}\r\n${head}>end\n`, 'latin1');
        assert.ok(data.length > 3 * 256 * 1024);
        const want = reference(data.toString('latin1'), 0, false);
        assert.deepEqual(want, { stop: data.length - 5, lines: 18_001, crlfLines: 6_001 });
        assert.deepEqual(count(counter, data, 0, false), want);
      }
    });
  }

  it('WebAssembly: two counters taking turns, and a buffer refilled in place', () => {
    const one = new BodyLineCounter();
    const two = new BodyLineCounter();
    const a = Buffer.from('aaa\nbbb\n>q\nccc\r\nddd\n\n', 'latin1');
    const b = Buffer.from('zz\r\nyy\n\nxx\n', 'latin1');
    assert.deepEqual(count(one, a, 0, false), { stop: 8, lines: 2, crlfLines: 0 });
    assert.deepEqual(count(two, b, 0, false), { stop: 7, lines: 2, crlfLines: 1 });
    assert.deepEqual(count(one, a, 11, false), { stop: 20, lines: 2, crlfLines: 1 });
    Buffer.from('eee\n\n', 'latin1').copy(a, 11);
    one.forget();
    assert.deepEqual(count(one, a, 11, false), { stop: 15, lines: 1, crlfLines: 0 });
  });
});

/** The messages a parser finds in `file` fed in the pieces ending at `cuts`, as scan.ts feeds it. */
function parseInPieces(file: Buffer, cuts: number[], scalarBodyLines: boolean) {
  const parser = new MboxParser(new Set(), false, scalarBodyLines);
  let carry = Buffer.alloc(0);
  let position = 0;
  for (const cut of [...cuts.map((c) => c % (file.length + 1)).sort((x, y) => x - y), file.length]) {
    if (cut < position) continue;
    const piece = Buffer.concat([carry, file.subarray(position, cut)]);
    const consumed = parser.feed(piece, position - carry.length, cut === file.length);
    carry = piece.subarray(consumed);
    position = cut;
  }
  return parser.finish(file.length);
}

describe('MboxParser with either body counter', () => {
  const mboxLine = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('', 'From a Mon', 'From ', '>From b', '>>From c', 'Received: r', 'Fx') },
    { weight: 10, arbitrary: fc.string({ maxLength: 90 }).map((s) => s.replace(/[\r\n]/g, '')) },
    { weight: 1, arbitrary: fc.nat(200_000).map((n) => 'y'.repeat(n)) },
  );
  const mboxFile = fc
    .array(fc.tuple(mboxLine, fc.constantFrom('\n', '\r\n')), { maxLength: 400 })
    .map((lines) => Buffer.from(lines.map(([line, eol]) => line + eol).join(''), 'latin1'));

  it('finds the same messages with the file fed in random pieces', () => {
    fc.assert(
      fc.property(
        mboxFile,
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (file, c1, c2) => {
          const file2 = Buffer.concat([Buffer.from('From first\n'), file]);
          assert.deepEqual(parseInPieces(file2, c1, false), parseInPieces(file2, c2, true));
        },
      ),
      { numRuns: 150 },
    );
  });
});
