// Unit tests for src/mbox/retrieve.ts: RETR bytes (CRLF, mboxrd unquoting, chunk boundaries),
// sizes equal to scan.ts's, TOP, dot-stuffing in any chunking, errors when the file changed,
// closing the file, and pieces written into the caller's buffers.
import assert from 'node:assert/strict';
import { promises as fs, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from '../../src/mbox/mailbox.js';
import {
  encodedBound,
  FileWindow,
  OUTPUT_BYTES,
  retrieveMessage,
  WINDOW_BYTES,
  WireEncoder,
} from '../../src/mbox/retrieve.js';
import { scanMailbox } from '../../src/mbox/scan.js';

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-retrieve-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let counter = 0;
const b = (s: string): Buffer => Buffer.from(s, 'latin1');

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Writes `file` as a new mailbox and scans it (fresh index). */
async function mailbox(file: Buffer | string): Promise<MailboxSnapshot> {
  counter++;
  const path = join(dir, `user${counter}`);
  await fs.writeFile(path, typeof file === 'string' ? b(file) : file);
  return scanMailbox(path, { indexDir: join(dir, `index${counter}`) });
}

const retr = async (snapshot: MailboxSnapshot, i = 0): Promise<string> =>
  (await collect(retrieveMessage(snapshot.path, snapshot.messages[i]!))).toString('latin1');
const top = async (snapshot: MailboxSnapshot, bodyLines: number, i = 0): Promise<string> =>
  (await collect(retrieveMessage(snapshot.path, snapshot.messages[i]!, { bodyLines }))).toString('latin1');

/** The message content as it is on disk. */
async function onDisk(snapshot: MailboxSnapshot, m: MessageInfo): Promise<Buffer> {
  return (await fs.readFile(snapshot.path)).subarray(m.contentOffset, m.contentOffset + m.contentLength);
}

/** What RETR must send for on-disk content: the README's rules, one line at a time. */
function expected(content: Buffer): Buffer {
  const text = content.toString('latin1');
  if (text === '') return Buffer.alloc(0);
  const terminated = text.endsWith('\n');
  const lines = (terminated ? text.slice(0, -1) : text).split('\n');
  return b(
    lines
      .map((line, i) => {
        const unquoted = /^>+From /.test(line) ? line.slice(1) : line;
        // the CR of a CRLF goes; a CR ending a last line without LF is content
        return `${terminated || i < lines.length - 1 ? unquoted.replace(/\r$/, '') : unquoted}\r\n`;
      })
      .join(''),
  );
}

describe('retrieveMessage: RETR', () => {
  it('sends LF lines with CRLF and keeps existing CRLF', async () => {
    const snapshot = await mailbox('From a Mon\nSubject: x\r\nTo: y\n\r\nline one\nline two\r\n\n');
    assert.equal(await retr(snapshot), 'Subject: x\r\nTo: y\r\n\r\nline one\r\nline two\r\n');
  });

  it('strips exactly one > from ^>+From lines and nothing else', async () => {
    const body = [
      '>From a',
      '>>From b',
      '>>>>From c',
      '> From d',
      '>Fro',
      '>>',
      'From_ x',
      '>From',
      'x>From y',
      '>>From ',
    ];
    const snapshot = await mailbox(`From a Mon\n\n${body.join('\n')}\n\n`);
    assert.equal(
      await retr(snapshot),
      `\r\n${[
        'From a',
        '>From b',
        '>>>From c',
        '> From d',
        '>Fro',
        '>>',
        'From_ x',
        '>From',
        'x>From y',
        '>From ',
      ].join('\r\n')}\r\n`,
    );
  });

  it('adds CRLF to a last line without newline, also after a held-back prefix', async () => {
    for (const last of ['text', '>Fr', '>>>', '>From', 'a\r']) {
      const snapshot = await mailbox(`From a Mon\n\n${last}`);
      const wire = await retr(snapshot);
      assert.equal(wire, `\r\n${last}\r\n`, JSON.stringify(last));
      assert.equal(wire.length, snapshot.messages[0]!.size, JSON.stringify(last));
    }
  });

  it('sends nothing for an empty message', async () => {
    const snapshot = await mailbox('From a Mon\n\nFrom b Tue\nSubject: y\n\n');
    assert.equal(snapshot.messages[0]!.size, 0);
    assert.equal(await retr(snapshot), '');
  });

  it('handles >From runs, CRLF and From prefixes across window boundaries', async () => {
    const chunk = WINDOW_BYTES;
    const run = chunk + 4_000;
    // content offsets: the blank line at 0, then
    const lines = [
      `${'>'.repeat(run)}From long run`, // [1, run + 15): the `>` run crosses the first window boundary
      'x'.repeat(2 * chunk - 2 - (run + 15) - 1), // padding, so that the next line starts 2 bytes before a boundary
      '>From split', // `>F` in one window, `rom split` in the next
      `${'y'.repeat(4 * chunk - 1 - (2 * chunk - 2 + 12))}\r`, // CR at a window's last byte, LF at the next one's first
      '>>>From z',
    ];
    const snapshot = await mailbox(`From a Mon\n\n${lines.join('\n')}\n\n`);
    const message = snapshot.messages[0]!;
    const wire = await collect(retrieveMessage(snapshot.path, message));
    assert.deepEqual(wire, expected(await onDisk(snapshot, message)));
    assert.equal(wire.length, message.size);
  });

  it('sends exactly MessageInfo.size bytes for every message of any mailbox', async () => {
    const piece = fc.oneof(
      fc.constantFrom('\n', '\r\n', 'From ', '>', '>>From ', '\r', 'From x\n', '\n\nFrom y\n', 'Subject: s'),
      fc.uint8Array({ maxLength: 20 }).map((u) => Buffer.from(u).toString('latin1')),
      fc.integer({ min: 60_000, max: 140_000 }).map((n) => '>'.repeat(n)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 40 }), async (pieces) => {
        const snapshot = await mailbox(`From a Mon\n${pieces.join('')}`);
        for (const message of snapshot.messages) {
          const wire = await collect(retrieveMessage(snapshot.path, message));
          assert.equal(wire.length, message.size);
          assert.deepEqual(wire, expected(await onDisk(snapshot, message)));
        }
        await fs.rm(snapshot.path);
      }),
      { numRuns: 80 },
    );
  });
});

describe('MessageReader.next(into): pieces written into buffers the caller gives', () => {
  it('gives the same bytes as fresh pieces, with two buffers used in turn', async () => {
    // numbered lines over several windows, mboxrd quoting and a dot line in between
    const body = Array.from({ length: 40_000 }, (_, n) =>
      n % 997 === 0 ? '>From here' : `${n} .${'z'.repeat(n % 50)}`,
    );
    const snapshot = await mailbox(`From a Mon\nSubject: s\n\n.dot\n${body.join('\n')}\n\n`);
    const message = snapshot.messages[0]!;
    assert.ok(message.contentLength > 3 * WINDOW_BYTES);
    const fresh = await collect(retrieveMessage(snapshot.path, message, { dotStuff: true }));
    const outputs = [Buffer.alloc(OUTPUT_BYTES), Buffer.alloc(OUTPUT_BYTES)];
    const reader = retrieveMessage(snapshot.path, message, { dotStuff: true });
    const copies: Buffer[] = [];
    for (let i = 0; ; i = 1 - i) {
      const piece = await reader.next(outputs[i]!);
      if (piece === null) break;
      assert.equal(piece.buffer, outputs[i]!.buffer, 'the piece lies in the buffer given');
      copies.push(Buffer.from(piece));
    }
    assert.ok(copies.length > 3);
    assert.deepEqual(Buffer.concat(copies), fresh);
  });

  it('refuses a buffer too short for a whole window', async () => {
    const snapshot = await mailbox('From a Mon\nSubject: s\n\nbody\n');
    const reader = retrieveMessage(snapshot.path, snapshot.messages[0]!);
    await assert.rejects(reader.next(Buffer.alloc(OUTPUT_BYTES - 1)), RangeError);
    await reader.close();
  });
});

/** POP3's byte-stuffing of CRLF text, the simple way: one more "." on every line that starts with one. */
function dotStuffed(wire: Buffer): Buffer {
  return b(wire.toString('latin1').replace(/(^|\r\n)\./g, '$1..'));
}

/** Encodes `content` in pieces cut at `cuts`; returns the output and the octets counted before stuffing. */
function encodeInPieces(
  content: Buffer,
  cuts: number[],
  options: { dotStuff: boolean; bodyLines?: number },
): { out: Buffer; wireBytes: number } {
  const encoder = new WireEncoder(options);
  const parts: Buffer[] = [];
  const points = [...new Set(cuts.map((c) => c % (content.length + 1)))].sort((x, y) => x - y);
  let from = 0;
  for (const to of [...points, content.length]) {
    const out = Buffer.alloc(encodedBound(to - from));
    parts.push(out.subarray(0, encoder.encode(content, from, to, out, 0)));
    from = to;
  }
  const last = Buffer.alloc(encodedBound(0));
  parts.push(last.subarray(0, encoder.finish(last, 0)));
  return { out: Buffer.concat(parts), wireBytes: encoder.wireBytes };
}

describe('WireEncoder: dot-stuffing and pieces', () => {
  it('doubles a leading dot on every line, and only there', async () => {
    const snapshot = await mailbox('From a Mon\n.a\nb.c\n..d\n.\n>From .e\n.\n\n');
    const wire = await collect(retrieveMessage(snapshot.path, snapshot.messages[0]!, { dotStuff: true }));
    assert.equal(wire.toString('latin1'), '..a\r\nb.c\r\n...d\r\n..\r\nFrom .e\r\n..\r\n');
  });

  it('gives the same bytes in any chunking, and counts the octets before stuffing', () => {
    const piece = fc.constantFrom('\n', '\r\n', '.', '..', '>', '>>From ', 'From ', '\r', 'x', 'Subject: s', '\n.\n');
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 40 }),
        fc.array(fc.nat(400), { maxLength: 6 }),
        fc.boolean(),
        (pieces, cuts, dotStuff) => {
          const content = b(pieces.join(''));
          const whole = encodeInPieces(content, [], { dotStuff });
          const plain = expected(content);
          assert.deepEqual(whole.out, dotStuff ? dotStuffed(plain) : plain);
          assert.equal(whole.wireBytes, plain.length);
          assert.deepEqual(encodeInPieces(content, cuts, { dotStuff }), whole);
          for (const bodyLines of [0, 2]) {
            assert.deepEqual(
              encodeInPieces(content, cuts, { dotStuff, bodyLines }).out,
              encodeInPieces(content, [], { dotStuff, bodyLines }).out,
            );
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('retrieveMessage: TOP', () => {
  const message = 'From a Mon\nSubject: x\nTo: y\n\nb1\n>From b2\nb3\nb4\n\n';

  it('TOP n 0: the header block and the blank line', async () => {
    assert.equal(await top(await mailbox(message), 0), 'Subject: x\r\nTo: y\r\n\r\n');
  });

  it('TOP n 3: and the first three body lines, unquoted', async () => {
    assert.equal(await top(await mailbox(message), 3), 'Subject: x\r\nTo: y\r\n\r\nb1\r\nFrom b2\r\nb3\r\n');
  });

  it('TOP with more lines than the body has: the whole message', async () => {
    const snapshot = await mailbox(message);
    assert.equal(await top(snapshot, 100), await retr(snapshot));
  });

  it('a message without a body: just the headers', async () => {
    const snapshot = await mailbox('From a Mon\nSubject: x\nTo: y');
    assert.equal(await top(snapshot, 0), 'Subject: x\r\nTo: y\r\n');
    assert.equal(await top(snapshot, 5), 'Subject: x\r\nTo: y\r\n');
  });

  it('CRLF on disk: the blank line still ends the headers', async () => {
    const snapshot = await mailbox('From a Mon\r\nSubject: x\r\n\r\nb1\r\nb2\r\n\r\n');
    assert.equal(await top(snapshot, 1), 'Subject: x\r\n\r\nb1\r\n');
  });

  it('refuses a negative or fractional line count', async () => {
    const snapshot = await mailbox(message);
    for (const bad of [-1, 1.5, Number.NaN]) {
      assert.throws(() => retrieveMessage(snapshot.path, snapshot.messages[0]!, { bodyLines: bad }), RangeError);
    }
  });
});

describe('retrieveMessage: errors and resources', () => {
  it('fails with MailboxChangedError when the file is shorter than the message', async () => {
    const snapshot = await mailbox('From a Mon\nSubject: x\n\nbody line\n\n');
    await fs.truncate(snapshot.path, 20);
    await assert.rejects(collect(retrieveMessage(snapshot.path, snapshot.messages[0]!)), MailboxChangedError);
  });

  it('fails when the mailbox is gone', async () => {
    const snapshot = await mailbox('From a Mon\nSubject: x\n\n');
    await fs.rm(snapshot.path);
    await assert.rejects(collect(retrieveMessage(snapshot.path, snapshot.messages[0]!)), { code: 'ENOENT' });
  });

  it('closes the file when done, after TOP stops early, when closed early; leaves a given handle open', async () => {
    const snapshot = await mailbox(`From a Mon\nSubject: x\n\n${'line\n'.repeat(100_000)}\n`);
    const openFds = (): number => readdirSync('/proc/self/fd').length;
    const before = openFds();
    await collect(retrieveMessage(snapshot.path, snapshot.messages[0]!));
    await collect(retrieveMessage(snapshot.path, snapshot.messages[0]!, { bodyLines: 2 }));
    const reader = retrieveMessage(snapshot.path, snapshot.messages[0]!);
    assert.ok((await reader.next()) !== null);
    await reader.close();
    assert.equal(await reader.next(), null);
    for await (const _chunk of retrieveMessage(snapshot.path, snapshot.messages[0]!)) break;
    assert.equal(openFds(), before);
    const handle = await fs.open(snapshot.path, 'r');
    try {
      const viaHandle = await collect(
        retrieveMessage(snapshot.path, snapshot.messages[0]!, { window: new FileWindow(handle) }),
      );
      assert.deepEqual(viaHandle, await collect(retrieveMessage(snapshot.path, snapshot.messages[0]!)));
      assert.equal((await handle.stat()).isFile(), true, 'the given handle stays open');
    } finally {
      await handle.close();
    }
    assert.equal(openFds(), before);
  });
});
