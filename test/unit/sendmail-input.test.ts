// What `mailsrv sendmail` makes of its stdin: CRLF line ends, a "." line ending the input
// unless -i (and nothing read after it), a leading From_ line dropped, Bcc removed, To/Cc/Bcc
// values for -t, missing headers added at the end of the header block, a separator where the
// header block had none, the size and header limits; the same output however the input is cut.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { MAX_HEADER_BLOCK, SubmittedMessage, type SubmittedHeader } from '../../src/cli/sendmail-input.js';
import { splitAt } from '../support/chunks.js';

interface Run {
  header: SubmittedHeader;
  output: string;
  /** chunks the message pulled from its input */
  read: number;
  /** whether it stopped reading early (iterator return()) */
  returned: boolean;
}

/** Feeds `chunks` (latin1) through a SubmittedMessage and collects the result. */
async function run(
  chunks: string[],
  options: { dotEnds?: boolean; sizeLimit?: number; add?: string[] } = {},
): Promise<Run> {
  let read = 0;
  let returned = false;
  const input: AsyncIterable<Buffer> = {
    [Symbol.asyncIterator]: () => ({
      next: async () =>
        read < chunks.length
          ? { done: false, value: Buffer.from(chunks[read++]!, 'latin1') }
          : { done: true, value: undefined },
      return: async () => {
        returned = true;
        return { done: true, value: undefined };
      },
    }),
  };
  const message = new SubmittedMessage(input, {
    dotEnds: options.dotEnds ?? true,
    sizeLimit: options.sizeLimit ?? 1_000_000,
  });
  const header = await message.readHeader();
  const parts: Buffer[] = [];
  for await (const part of message.content(options.add ?? [])) parts.push(part);
  return { header, output: Buffer.concat(parts).toString('latin1'), read, returned };
}

describe('SubmittedMessage', () => {
  test('LF input becomes CRLF; the added headers go at the end of the header block', async () => {
    const r = await run(['Subject: hi\nTo: a@b\n\nline 1\nline 2\n'], { add: ['Date: now', 'Message-ID: <x@y>'] });
    assert.equal(r.output, 'Subject: hi\r\nTo: a@b\r\nDate: now\r\nMessage-ID: <x@y>\r\n\r\nline 1\r\nline 2\r\n');
    assert.deepEqual([...r.header.fieldNames], ['subject', 'to']);
  });

  test('a "." line ends the input, in the body or in the header block; nothing after it is read', async () => {
    const body = await run(['Subject: x\n\nkept\n', '.\n', 'never read\n', 'nor this\n']);
    assert.equal(body.output, 'Subject: x\r\n\r\nkept\r\n');
    assert.equal(body.read, 2);
    assert.ok(body.returned, 'the input was not closed');
    const header = await run(['Subject: x\r\n.\r\nmore\r\n']);
    assert.equal(header.output, 'Subject: x\r\n\r\n');
    assert.ok(header.returned);
  });

  test('with -i (dotEnds false) a "." line is a line; ".." is never unstuffed', async () => {
    const r = await run(['Subject: x\n\n.\n..\n.x\n'], { dotEnds: false });
    assert.equal(r.output, 'Subject: x\r\n\r\n.\r\n..\r\n.x\r\n');
    const dotted = await run(['Subject: x\n\n..\n.x\n. \n.\n'], { dotEnds: true });
    assert.equal(dotted.output, 'Subject: x\r\n\r\n..\r\n.x\r\n. \r\n');
  });

  test('a "." without a line end at the very end also ends it; a missing final line end is added', async () => {
    assert.equal((await run(['Subject: x\n\nlast\n.'])).output, 'Subject: x\r\n\r\nlast\r\n');
    assert.equal((await run(['Subject: x\n\nno newline'])).output, 'Subject: x\r\n\r\nno newline\r\n');
    assert.equal((await run(['Subject: no body'])).output, 'Subject: no body\r\n\r\n');
    assert.equal((await run([])).output, '\r\n');
  });

  test('a leading mbox From_ line is dropped (only at the top)', async () => {
    const r = await run(['From someone Wed Nov 25 13:02:11 2026\n>From x\nSubject: x\n\nFrom here\n']);
    assert.equal(r.output, 'Subject: x\r\n\r\nFrom here\r\n');
  });

  test('Bcc is removed; To, Cc and Bcc values (unfolded) are reported for -t', async () => {
    const r = await run(['To: a@b,\n  c@d\nBcc: secret@e\nCC: f@g\nSubject: x\n\nbody\n']);
    assert.equal(r.output, 'To: a@b,\r\n  c@d\r\nCC: f@g\r\nSubject: x\r\n\r\nbody\r\n');
    assert.deepEqual(r.header.recipientFields, ['a@b,  c@d', 'secret@e', 'f@g']);
    assert.ok(r.header.fieldNames.has('bcc'));
  });

  test('a line that is no header field ends the header block: an empty line is put before it', async () => {
    const r = await run(['Subject: x\nthis is the body\nmore\n'], { add: ['Date: now'] });
    assert.equal(r.output, 'Subject: x\r\nDate: now\r\n\r\nthis is the body\r\nmore\r\n');
  });

  test('the message may not grow past the size limit', async () => {
    await assert.rejects(
      run(['Subject: x\n\n', 'y'.repeat(100), '\n'], { sizeLimit: 100 }),
      /message too big \(limit 100 bytes\)/,
    );
    const exact = 'Subject: x\r\n\r\nbody\r\n';
    assert.equal((await run([exact], { sizeLimit: exact.length })).output, exact);
    await assert.rejects(run([exact], { sizeLimit: exact.length - 1 }), /message too big/);
  });

  test('the header block is bounded', async () => {
    const long = `X-Long: ${'x'.repeat(MAX_HEADER_BLOCK)}\n\nbody\n`;
    await assert.rejects(
      run([long.slice(0, 70_000), long.slice(70_000)], { sizeLimit: 10 * MAX_HEADER_BLOCK }),
      /message header too big/,
    );
    const many = Array.from({ length: 20_000 }, (_, i) => `X-H${i}: ${'v'.repeat(50)}\n`).join('');
    await assert.rejects(run([many, '\nbody\n'], { sizeLimit: 10 * MAX_HEADER_BLOCK }), /message header too big/);
  });

  test('the same output however the input is cut into chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.constantFrom('Subject: s', 'To: a@b', 'Bcc: c@d', ' folded', '', '.', '..', 'From x', 'body', '\r'),
          { maxLength: 12 },
        ),
        fc.constantFrom('\n', '\r\n'),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (lines, eol, dotEnds, cuts) => {
          const input = lines.join(eol);
          const whole = await run([input], { dotEnds, add: ['Date: d'] });
          const cut = await run(splitAt(input, cuts), { dotEnds, add: ['Date: d'] });
          assert.equal(cut.output, whole.output);
          assert.deepEqual(cut.header, whole.header);
          assert.doesNotMatch(whole.output, /(?<!\r)\n/, 'a bare LF in the output');
          assert.ok(whole.output.endsWith('\r\n'));
        },
      ),
    );
  });
});
