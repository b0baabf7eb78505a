// Unit tests for src/pop3/lines.ts: CRLF and bare LF, pipelined lines in order, split chunks,
// the 255-octet limit and what happens after an over-long line, clear() (STLS).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LineReader, MAX_COMMAND_LENGTH, type LineEvent } from '../../src/pop3/lines.js';
import { splitAt } from '../support/chunks.js';

const show = (event: LineEvent | null) =>
  event === null ? null : event.kind === 'line' ? event.line.toString('latin1') : '<too-long>';

/** Feeds the chunks, draining after each; returns every event in order. */
function feed(chunks: (string | Buffer)[], reader = new LineReader()): (string | null)[] {
  const out: (string | null)[] = [];
  for (const chunk of chunks) {
    reader.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
    for (let event = reader.next(); event !== null; event = reader.next()) out.push(show(event));
  }
  return out;
}

describe('LineReader', () => {
  it('splits CRLF and bare LF lines, keeping order (pipelining)', () => {
    assert.deepEqual(feed(['USER a\r\nPASS b c\nSTAT\r\n']), ['USER a', 'PASS b c', 'STAT']);
  });

  it('holds an incomplete line until its end arrives, across chunks', () => {
    const reader = new LineReader();
    reader.push(Buffer.from('LI'));
    assert.equal(reader.next(), null);
    reader.push(Buffer.from('ST 1\r'));
    assert.equal(reader.next(), null);
    reader.push(Buffer.from('\nNO'));
    assert.equal(show(reader.next()), 'LIST 1');
    assert.equal(reader.next(), null);
    assert.equal(reader.buffered, 2);
  });

  it('keeps empty lines and a CR that is not before LF', () => {
    assert.deepEqual(feed(['\r\n\nA\rB\r\n']), ['', '', 'A\rB']);
  });

  it('accepts a line of exactly 255 octets, with CRLF or LF', () => {
    const line = 'X'.repeat(MAX_COMMAND_LENGTH);
    assert.deepEqual(feed([`${line}\r\n${line}\n`]), [line, line]);
  });

  it('refuses a 256-octet line once, drops it, and goes on with the next line', () => {
    const long = 'Y'.repeat(MAX_COMMAND_LENGTH + 1);
    assert.deepEqual(feed([`${long}\r\nNOOP\r\n`]), ['<too-long>', 'NOOP']);
    assert.deepEqual(feed([`${long}\nNOOP\n`]), ['<too-long>', 'NOOP']);
  });

  it('never buffers more than one line of an endless line, and reports it once', () => {
    const reader = new LineReader();
    const events: (string | null)[] = [];
    for (let i = 0; i < 1000; i++) {
      events.push(...feed(['Z'.repeat(1000)], reader));
      assert.ok(reader.buffered <= MAX_COMMAND_LENGTH + 2, `buffered ${reader.buffered}`);
    }
    events.push(...feed(['tail of it\r\nQUIT\r\n'], reader));
    assert.deepEqual(events, ['<too-long>', 'QUIT']);
  });

  it('reports a long line even when it arrives one byte at a time', () => {
    const bytes = [...Buffer.from(`${'a'.repeat(300)}\r\nSTAT\r\n`)].map((b) => Buffer.from([b]));
    assert.deepEqual(feed(bytes), ['<too-long>', 'STAT']);
  });

  it('a raised limit (AUTH continuation) takes longer lines', () => {
    const reader = new LineReader();
    reader.maxLength = 1000;
    assert.deepEqual(feed([`${'b'.repeat(900)}\r\n`], reader), ['b'.repeat(900)]);
  });

  it('any chunking gives the same lines as one chunk', () => {
    const lineArb = fc.stringMatching(/^[ -~]{0,40}$/);
    fc.assert(
      fc.property(
        fc.array(lineArb, { maxLength: 10 }),
        fc.array(fc.nat(400), { maxLength: 8 }),
        fc.boolean(),
        (lines, cuts, bareLf) => {
          const text = lines.map((l) => `${l}${bareLf ? '\n' : '\r\n'}`).join('');
          const chunks = splitAt(text, cuts);
          assert.deepEqual(feed(chunks), lines);
        },
      ),
    );
  });

  it('clear() drops what is buffered, a line being discarded included (STLS)', () => {
    const reader = new LineReader();
    reader.push(Buffer.from('USER injected\r\nCAPA\r\nPART'));
    reader.clear();
    assert.equal(reader.buffered, 0);
    assert.equal(reader.next(), null);
    assert.deepEqual(feed(['NOOP\r\n'], reader), ['NOOP']);
    reader.push(Buffer.alloc(MAX_COMMAND_LENGTH + 10, 'x'));
    assert.equal(show(reader.next()), '<too-long>');
    reader.clear();
    assert.deepEqual(feed(['rest of the long line\r\nSTAT\r\n'], reader), ['rest of the long line', 'STAT']);
  });
});
