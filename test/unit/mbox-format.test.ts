// Unit tests for src/mbox/format.ts: From_ line, mboxrd quoting/unquoting, chunk boundaries, output
// buffers used again.
import assert from 'node:assert/strict';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fromLine, MboxrdQuoter, MboxrdQuoting } from '../../src/mbox/format.js';
import { splitAt } from '../support/chunks.js';

async function run(transform: Transform, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    transform,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

const quote = async (s: string, chunks?: Buffer[]): Promise<string> =>
  (await run(new MboxrdQuoter(), chunks ?? [Buffer.from(s, 'latin1')])).toString('latin1');
/** Reference mboxrd reader for the round-trip property (the product's is src/mbox/retrieve.ts). */
const unquote = (s: string): string => s.replace(/^>(>*From )/gm, '$1');
const bytewise = (s: string): Buffer[] => [...Buffer.from(s, 'latin1')].map((b) => Buffer.from([b]));

/** Latin-1 chunks of `s` cut at `cuts`. */
const chunksOf = (s: string, cuts: number[]): Buffer[] => splitAt(s, cuts).map((part) => Buffer.from(part, 'latin1'));

describe('fromLine', () => {
  it('writes sender and UTC asctime', () => {
    assert.equal(
      fromLine('a@example.org', new Date('2026-11-25T11:54:57Z')),
      'From a@example.org Wed Nov 25 11:54:57 2026\n',
    );
  });
  it('pads a one-digit day with a space as ctime does', () => {
    assert.equal(fromLine('a@b', new Date('2026-03-05T01:02:03Z')), 'From a@b Thu Mar  5 01:02:03 2026\n');
  });
  it('uses UTC whatever the local zone', () => {
    assert.equal(fromLine('a@b', new Date('2026-01-01T00:30:00+02:00')), 'From a@b Wed Dec 31 22:30:00 2025\n');
  });
  it('writes the null sender as MAILER-DAEMON', () => {
    assert.equal(fromLine('', new Date('2026-11-25T11:54:57Z')), 'From MAILER-DAEMON Wed Nov 25 11:54:57 2026\n');
  });
  it('refuses whitespace, CR, LF and NUL in the sender', () => {
    for (const bad of ['a b@c', 'a\t@b', 'a\r@b', 'a\n@b', 'a\0@b', 'a@b\u00a0']) {
      assert.throws(() => fromLine(bad, new Date()), TypeError, JSON.stringify(bad));
    }
  });
  it('refuses an invalid date', () => {
    assert.throws(() => fromLine('a@b', new Date('nope')), TypeError);
  });
});

describe('MboxrdQuoter', () => {
  it('quotes From_ lines mboxrd style', async () => {
    const input =
      'Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\nFrom\r\n' +
      'Fromage\r\n From x\r\n>From\r\n>>\r\nend\r\n';
    const expected = 'Subject: x\n\n>From here\n>>From there\n>>>From far\nFrom\nFromage\n From x\n>From\n>>\nend\n\n';
    assert.equal(await quote(input), expected);
    assert.equal(await quote(input, bytewise(input)), expected);
  });
  it('quotes a From_ line at the very start and at the very end', async () => {
    assert.equal(await quote('From x'), '>From x\n\n');
    assert.equal(await quote('a\nFrom '), 'a\n>From \n\n');
  });
  it('turns CRLF into LF, keeps other CRs, adds a missing final newline', async () => {
    assert.equal(await quote('a\r\nb\rc\r\n\r\r\nd'), 'a\nb\rc\n\r\nd\n\n');
    assert.equal(await quote('a\r'), 'a\r\n\n');
    assert.equal(await quote('a\n'), 'a\n\n');
    assert.equal(await quote('a\n\n'), 'a\n\n\n');
  });
  it('writes only the separator for an empty message', async () => {
    assert.equal(await quote(''), '\n');
  });
  it('gives the same output for every way of chunking', async () => {
    const input = '>>From a\r\nFrom\rb\r\nFro\r\n\r\n>From\r\nFrom ';
    const whole = await quote(input);
    assert.equal(await quote(input, bytewise(input)), whole);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat({ max: 64 }), { maxLength: 12 }), async (cuts) => {
        assert.equal(await quote(input, chunksOf(input, cuts)), whole);
      }),
    );
  });
  it('streams a long line without holding it back', () => {
    const quoter = new MboxrdQuoter();
    quoter.write(Buffer.alloc(1024 * 1024, 0x61));
    assert.equal(quoter.read()?.length, 1024 * 1024);
    quoter.write(Buffer.from('From '));
    assert.equal(quoter.read()?.toString(), 'From ');
    quoter.write(Buffer.from('b\r'));
    assert.equal(quoter.read()?.toString(), 'b', 'only a final CR is held back');
    quoter.destroy();
  });
  it('quotes a chunk made of nothing but From_ lines, whole and cut after each held-back prefix', async () => {
    const input = `${'From \n'.repeat(2000)}>From x\n`;
    const expected = `${'>From \n'.repeat(2000)}>>From x\n\n`;
    assert.equal(await quote(input), expected);
    const cuts = Array.from({ length: 400 }, (_, i) => 6 * i + 4); // each piece starts with ` \nFrom`
    assert.equal(await quote(input, chunksOf(input, cuts)), expected);
  });
  it('holds back at most a partial From at a line start', () => {
    const quoter = new MboxrdQuoter();
    quoter.write(Buffer.from('x\n>>>Fro'));
    assert.equal(quoter.read()?.toString(), 'x\n>>>');
    quoter.destroy();
  });
});

describe('MboxrdQuoting with reuseOutput', () => {
  it('writes each chunk into the buffer of the chunk before when it fits, with the same bytes', async () => {
    const input = `${'>From x\r\nline one\r\nFrom y\r\n'.repeat(3000)}tail`;
    const cuts = Array.from({ length: 40 }, (_, i) => 2_000 * (i + 1) + (i % 7));
    const chunks = chunksOf(input, cuts);
    const quoting = new MboxrdQuoting(true);
    const copies: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for (const chunk of chunks) {
      const out: Buffer[] = [];
      quoting.write(chunk, out);
      for (const piece of out) {
        buffers.add(piece.buffer);
        copies.push(Buffer.from(piece)); // valid only until the next write
      }
    }
    const end: Buffer[] = [];
    quoting.end(end);
    copies.push(...end);
    assert.equal(Buffer.concat(copies).toString('latin1'), await quote(input));
    assert.ok(buffers.size < chunks.length / 4, `${buffers.size} output buffers for ${chunks.length} chunks`);
  });
});

describe('MboxrdQuoting.quoteWhole', () => {
  const whole = (pieces: Buffer[]): string => new MboxrdQuoting().quoteWhole(pieces).toString('latin1');

  it('renders a message held in pieces as the stream renders it, however it is cut', async () => {
    const input = '>>From a\r\nFrom\rb\r\nFro\r\n\r\n>From\r\nFrom \r\nFrom x\r\n\r\rFrom ';
    const expected = await quote(input);
    assert.equal(whole([Buffer.from(input, 'latin1')]), expected);
    assert.equal(whole(bytewise(input)), expected);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat({ max: 64 }), { maxLength: 12 }), async (cuts) => {
        assert.equal(whole(chunksOf(input, cuts)), expected);
      }),
    );
  });
  it('has room for a From_ line cut between every two pieces', async () => {
    // each boundary splits a `From `, which neither piece's own count sees
    const input = 'From \n'.repeat(300);
    const cuts = Array.from({ length: 300 }, (_, i) => 6 * i + 3);
    const pieces = chunksOf(input, cuts);
    assert.equal(whole(pieces), await quote(input));
  });
  it('renders an empty message as the separator alone, and nothing but the end after held bytes', async () => {
    assert.equal(whole([]), '\n');
    assert.equal(whole([Buffer.alloc(0)]), '\n');
    assert.equal(whole([Buffer.from('Fro'), Buffer.from('\r')]), await quote('Fro\r'));
  });
});

describe('quote/unquote property', () => {
  const lineChar = fc.constantFrom('>', 'F', 'r', 'o', 'm', ' ', 'x', '\t', '\u00e9');
  const line = fc.oneof(
    fc.string({ unit: lineChar, maxLength: 12 }),
    fc
      .tuple(fc.string({ unit: fc.constant('>'), maxLength: 4 }), fc.string({ unit: lineChar, maxLength: 6 }))
      .map(([q, rest]) => `${q}From ${rest}`),
  );

  it('unquote(quote(msg)) gives the message with LF line ends, and no line starts with From_', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { maxLength: 20 }),
        fc.array(fc.nat({ max: 400 }), { maxLength: 8 }),
        async (lines, cuts) => {
          const crlf = lines.map((l) => `${l}\r\n`).join('');
          const lf = lines.map((l) => `${l}\n`).join('');
          const quoted = await quote(crlf, chunksOf(crlf, cuts));
          assert.ok(quoted.endsWith('\n'));
          const body = quoted.slice(0, -1); // the separator line
          assert.ok(!/(^|\n)From /.test(body), 'a line starts with From_');
          assert.equal(unquote(body), lf);
          // LF line ends: nothing is dropped, so every `>` added must fit in the chunk's output
          assert.equal(unquote((await quote(lf, chunksOf(lf, cuts))).slice(0, -1)), lf);
        },
      ),
      { numRuns: 300 },
    );
  });
});
