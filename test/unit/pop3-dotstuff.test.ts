// Unit tests for src/pop3/dotstuff.ts: dot-stuffing at line starts only (also across chunk
// boundaries), the terminator, a missing final CRLF, and the octet check for RETR.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DotStuffer, type DotStufferOptions } from '../../src/pop3/dotstuff.js';
import { splitAt } from '../support/chunks.js';

async function stuff(chunks: string[], options: DotStufferOptions = {}): Promise<string> {
  const stuffer = new DotStuffer(options);
  const out = chunks.map((c) => stuffer.push(Buffer.from(c, 'latin1')));
  out.push(stuffer.end());
  return Buffer.concat(out).toString('latin1');
}

/** What a POP3 client does with the reply body: stop at the ".", strip one leading dot. */
function unstuff(wire: string): string {
  const lines = wire.split('\r\n');
  const end = lines.indexOf('.');
  assert.ok(end >= 0, 'terminator present');
  assert.equal(lines.slice(end + 1).join(''), '', 'nothing after the terminator');
  return lines.slice(0, end).map((l) => (l.startsWith('.') ? l.slice(1) : l)).map((l) => `${l}\r\n`).join('');
}

describe('DotStuffer', () => {
  it('doubles a leading dot on every line, and only there', async () => {
    assert.equal(await stuff(['.a\r\nb.c\r\n..d\r\n.\r\n']), '..a\r\nb.c\r\n...d\r\n..\r\n.\r\n');
  });

  it('sees line starts across chunk boundaries', async () => {
    assert.equal(await stuff(['x\r', '\n', '.y\r\n', '', '.', 'z\r\n']), 'x\r\n..y\r\n..z\r\n.\r\n');
    assert.equal(await stuff(['.', '.', '\r\n']), '...\r\n.\r\n');
  });

  it('an empty message is just the terminator', async () => {
    assert.equal(await stuff([]), '.\r\n');
  });

  it('ends an unterminated last line before the terminator', async () => {
    assert.equal(await stuff(['a\r\nno end']), 'a\r\nno end\r\n.\r\n');
  });

  it('passes when the input has exactly the expected octets', async () => {
    assert.equal(await stuff(['ab\r\n', '.c\r\n'], { expectedBytes: 8 }), 'ab\r\n..c\r\n.\r\n');
  });

  it('fails without a terminator when the input is shorter or longer than expected', async () => {
    await assert.rejects(stuff(['ab\r\n'], { expectedBytes: 5 }), /4 octets, 5 expected/);
    await assert.rejects(stuff(['abcdef\r\n'], { expectedBytes: 5 }), /8 octets, 5 expected/);
  });

  it('round-trips any CRLF text under any chunking', () => {
    const lineArb = fc.stringMatching(/^[.a-z ]{0,12}$/);
    return fc.assert(
      fc.asyncProperty(fc.array(lineArb, { maxLength: 12 }), fc.array(fc.nat(200), { maxLength: 6 }), async (lines, cuts) => {
        const text = lines.map((l) => `${l}\r\n`).join('');
        const chunks = splitAt(text, cuts);
        const wire = await stuff(chunks, { expectedBytes: text.length });
        assert.equal(unstuff(wire), text);
        assert.ok(!/(^|\r\n)\.[^.\r]/.test(wire.slice(0, -3)), 'no unstuffed dot line before the terminator');
      }),
    );
  });
});
