// Unit tests for src/mbox/headers.ts: store-only headers removed, added lines on top, all else byte-exact.
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { editHeaders } from '../../src/mbox/headers.js';

async function edit(
  input: Buffer | string,
  add: string[] = [],
  chunking: 'whole' | 'bytes' = 'whole',
  addIfMissing: string[] = [],
): Promise<Buffer> {
  const buf = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const chunks = chunking === 'whole' ? [buf] : [...buf].map((b) => Buffer.from([b]));
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    editHeaders({ add, addIfMissing }),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

/** Checks the result whole and fed byte by byte. */
async function expectEdit(input: string, add: string[], expected: string): Promise<void> {
  assert.equal((await edit(input, add)).toString('latin1'), expected);
  assert.equal((await edit(input, add, 'bytes')).toString('latin1'), expected, 'byte by byte');
}

describe('editHeaders', () => {
  it('removes every store-only header, any case, with its folded lines', async () => {
    const input =
      'Received: from a\r\n\tby b\r\n' +
      'X-UIDL: 123\r\nx-uid: 4\r\nX-IMAPbase: 1 2\r\nX-IMAP: 1\r\nSTATUS: RO\r\nX-Status: A\r\n' +
      'X-Keywords: a\r\n b\r\n\tc\r\nContent-Length: 99\r\nX-Delivery-ID: forged\r\nStatus : O\r\n' +
      'Subject: kept\r\n  folded\r\nX-Statuses: kept\r\n\r\nStatus: RO in body\r\n';
    const expected =
      'Received: from a\r\n\tby b\r\nSubject: kept\r\n  folded\r\nX-Statuses: kept\r\n\r\nStatus: RO in body\r\n';
    await expectEdit(input, [], expected);
  });

  it('adds the given lines at the top in order', async () => {
    await expectEdit(
      'Subject: s\r\n\r\nbody\r\n',
      ['Return-Path: <a@b>', 'Received: from x\r\n\tby y'],
      'Return-Path: <a@b>\r\nReceived: from x\r\n\tby y\r\nSubject: s\r\n\r\nbody\r\n',
    );
  });

  it('keeps 8-bit bytes, bare CRs and odd lines byte for byte', async () => {
    const input = Buffer.concat([
      Buffer.from('Subject: caf'),
      Buffer.from([0xc3, 0xa9, 0xff]),
      Buffer.from('\r\nX-Odd: a\rb\r\r\nnot a header line\r\n continued\r\nFrom: x\r\n\r\n'),
      Buffer.from([0x00, 0x80, 0xfe, 0x0d, 0x0a]),
    ]);
    assert.deepEqual(await edit(input), input);
    assert.deepEqual(await edit(input, [], 'bytes'), input);
  });

  it('leaves the body and multipart structure untouched', async () => {
    const body =
      'preamble\r\n--b\r\nContent-Type: text/plain\r\nStatus: RO\r\n\r\nx\r\n--b  \r\n\r\ny\n' +
      '--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n' +
      'X-UIDL: 1\r\n\r\ninner\r\n--b--\r\nepilogue';
    const input = `Content-Type: multipart/mixed; boundary=b\r\nX-UIDL: 9\r\n\r\n${body}`;
    await expectEdit(input, ['X-A: 1'], `X-A: 1\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n${body}`);
  });

  it('handles a message without a body separator', async () => {
    await expectEdit('Subject: a\r\nStatus: RO\r\n', ['X-A: 1'], 'X-A: 1\r\nSubject: a\r\n');
    await expectEdit('Subject: a\r\nStatus: RO', ['X-A: 1'], 'X-A: 1\r\nSubject: a\r\n');
    await expectEdit('Status: RO\r\nSubject: a', [], 'Subject: a');
    await expectEdit('Subject', [], 'Subject');
  });

  it('handles empty input and an empty header block', async () => {
    await expectEdit('', ['X-A: 1', 'X-B: 2'], 'X-A: 1\r\nX-B: 2\r\n');
    await expectEdit('', [], '');
    await expectEdit('\r\nStatus: RO\r\n', ['X-A: 1'], 'X-A: 1\r\n\r\nStatus: RO\r\n');
  });

  it('handles LF-only line ends', async () => {
    await expectEdit(
      'Subject: a\nStatus: RO\n x\nTo: b\n\nStatus: body\n',
      ['X-A: 1'],
      'X-A: 1\r\nSubject: a\nTo: b\n\nStatus: body\n',
    );
  });

  it('keeps a leading From_ line (not a header) and still edits the headers', async () => {
    await expectEdit(
      'From a@b Mon Jan  1 00:00:00 2024\r\nStatus: RO\r\nSubject: a\r\n\r\nx',
      [],
      'From a@b Mon Jan  1 00:00:00 2024\r\nSubject: a\r\n\r\nx',
    );
  });

  it('keeps overlong lines without a colon and streams them', async () => {
    const long = 'a'.repeat(5000);
    await expectEdit(`${long}\r\nStatus: RO\r\n${long}: v\r\n\r\nb`, [], `${long}\r\n${long}: v\r\n\r\nb`);
  });

  it('does not hold back a long header value', () => {
    const editor = editHeaders({ add: [] });
    editor.write(Buffer.from(`Subject: ${'x'.repeat(100000)}`));
    assert.equal(editor.read()?.length, 100009);
    editor.destroy();
  });

  it('refuses added lines that are not exactly one header', () => {
    for (const bad of ['no colon', 'A: b\r\nC: d', 'A: b\nC', 'A: b\r', ': x', ' A: b', 'A: \0']) {
      assert.throws(() => editHeaders({ add: [bad] }), TypeError, JSON.stringify(bad));
    }
    for (const bad of ['A: b\r\n', 'A: b\n c', 'A: b\r\r\n c', 'A: b\r c', 'A: b\r\n c\r\n'])
      assert.throws(() => editHeaders({ add: [bad] }), TypeError, JSON.stringify(bad));
    for (const folded of ['A: b\r\n c', 'A: b\r\n\tc\r\n d', 'A:\r\n b', 'A: \u00e9'])
      editHeaders({ add: [folded] }).destroy();
  });

  it('takes an added line exactly when it is one field with only folding line breaks (property)', () => {
    // the rule, as a pattern: `name:`, then no NUL, and CR LF only before a space or a tab
    const oneField = (line: string) => /^[!-9;-~]+:(?:[^\0\r\n]|\r\n[ \t])*$/.test(line);
    const piece = fc.constantFrom('A', 'b', ':', ' ', '\t', '\r', '\n', '\0', '\r\n', '\r\n ');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
        const line = pieces.join('');
        let taken = true;
        try {
          editHeaders({ add: [line] }).destroy();
        } catch (err) {
          assert.ok(err instanceof TypeError);
          taken = false;
        }
        assert.equal(taken, oneField(line), JSON.stringify(line));
      }),
      { numRuns: 2000 },
    );
  });

  it('is byte-exact for arbitrary bodies and chunkings (property)', async () => {
    const bytes = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
    await fc.assert(
      fc.asyncProperty(bytes, bytes, async (head, body) => {
        // a header block free of store-only fields and of blank lines, then any body
        const headers = Buffer.from(head.toString('latin1').replace(/\n/g, '\nX-H: ').replace(/^/, 'X-H: '), 'latin1');
        const input = Buffer.concat([headers, Buffer.from('\r\n\r\n'), body]);
        assert.deepEqual(await edit(input, []), input);
        assert.deepEqual(await edit(input, [], 'bytes'), input);
      }),
      { numRuns: 200 },
    );
  });
});

describe('editHeaders addIfMissing', () => {
  const ensure = ['Message-ID: <1@x>', 'Date: Thu, 1 Jan 2026 00:00:00 +0000'];
  const expectEnsured = async (input: string, expected: string) => {
    assert.equal((await edit(input, [], 'whole', ensure)).toString('latin1'), expected);
    assert.equal((await edit(input, [], 'bytes', ensure)).toString('latin1'), expected, 'byte by byte');
  };

  it('adds only the fields the message lacks, at the end of the header block', async () => {
    await expectEnsured(
      'Subject: a\r\nmessage-id: <own@y>\r\n\r\nbody\r\n',
      'Subject: a\r\nmessage-id: <own@y>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\nbody\r\n',
    );
    await expectEnsured(
      'Subject: a\r\nDate: x\r\nMessage-ID: <z>\r\n\r\nbody\r\n',
      'Subject: a\r\nDate: x\r\nMessage-ID: <z>\r\n\r\nbody\r\n',
    );
  });

  it('handles a message of headers only, and ignores fields in the body', async () => {
    await expectEnsured(
      'Subject: only headers',
      'Subject: only headers\r\nMessage-ID: <1@x>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n',
    );
    await expectEnsured(
      'Subject: a\r\n\r\nDate: in the body\r\n',
      'Subject: a\r\nMessage-ID: <1@x>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\nDate: in the body\r\n',
    );
  });
});
