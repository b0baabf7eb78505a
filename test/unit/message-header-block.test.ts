// Unit tests for src/bounce/header-block.ts: reading a message only up to the end of its header block.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { headerLines, readHeaderBlock } from '../../src/message/header-block.js';
import { QueueStore } from '../../src/queue/store.js';

/** A stream of `chunks`, then (when `endless`) body chunks forever; counts the chunks it gave out. */
function source(chunks: string[], endless = false): Readable & { given: number } {
  let next = 0;
  const stream = new Readable({
    read() {
      stream.given++;
      if (next < chunks.length) this.push(Buffer.from(chunks[next++]!, 'latin1'));
      else this.push(endless ? Buffer.alloc(1024, 0x61) : null);
    },
  }) as Readable & { given: number };
  stream.given = 0;
  return stream;
}

const bytewise = (text: string): string[] => [...text];

describe('readHeaderBlock', () => {
  it('stops at the empty line of a CRLF message, without it, and destroys the stream', async () => {
    const stream = source(['Subject: hi\r\nFrom: a@b\r\n\r\nbody line\r\n'], true);
    const block = await readHeaderBlock(stream, 65536);
    assert.equal(block.toString('latin1'), 'Subject: hi\r\nFrom: a@b\r\n');
    assert.equal(stream.destroyed, true);
    assert.ok(stream.given <= 2, `read ${stream.given} chunks of an endless body`);
  });

  it('stops at the empty line of an LF message', async () => {
    const block = await readHeaderBlock(source(['Subject: hi\nReceived: x\n\tby y\n\nReceived: in body\n']), 65536);
    assert.equal(block.toString('latin1'), 'Subject: hi\nReceived: x\n\tby y\n');
  });

  it('finds the end when the chunks split the line ends, fed byte by byte', async () => {
    const stream = source(bytewise('A: 1\r\nB: 2\r\n\r\nbody'), true);
    assert.equal((await readHeaderBlock(stream, 65536)).toString('latin1'), 'A: 1\r\nB: 2\r\n');
    assert.equal(stream.destroyed, true);
    assert.equal(
      (await readHeaderBlock(source(bytewise('A: 1\nB: 2\n\nbody')), 65536)).toString('latin1'),
      'A: 1\nB: 2\n',
    );
  });

  it('returns a message without a body whole, with or without a final line end', async () => {
    assert.equal(
      (await readHeaderBlock(source(['Subject: a\r\n', 'X: b\r\n']), 65536)).toString('latin1'),
      'Subject: a\r\nX: b\r\n',
    );
    assert.equal(
      (await readHeaderBlock(source(['Subject: a\r\nX: b']), 65536)).toString('latin1'),
      'Subject: a\r\nX: b',
    );
  });

  it('returns an empty block for a message that starts with the empty line', async () => {
    assert.equal((await readHeaderBlock(source(['\r\nbody\r\n']), 65536)).length, 0);
    assert.equal((await readHeaderBlock(source(['\nbody\n']), 65536)).length, 0);
  });

  it('does not take a line with a lone CR for the empty line', async () => {
    const block = await readHeaderBlock(source(['A: 1\r\n\rX: 2\r\n\r\nbody']), 65536);
    assert.equal(block.toString('latin1'), 'A: 1\r\n\rX: 2\r\n');
  });

  it('stops at the cap with whole lines only when the header block has no end', async () => {
    const line = 'X-Filler: 0123456789\r\n'; // 22 bytes
    const stream = source([line.repeat(3), line.repeat(3)], true);
    const block = await readHeaderBlock(stream, 100);
    assert.equal(block.toString('latin1'), line.repeat(4)); // 88 bytes; the fifth line would end at 110
    assert.equal(stream.destroyed, true);
    // a cap that falls just after a line end keeps that line
    assert.equal((await readHeaderBlock(source([line.repeat(10)]), 44)).toString('latin1'), line.repeat(2));
  });

  it('reads the header block of a queued message through QueueStore.openMessage', async () => {
    const dir = await fs.mkdtemp(join(tmpdir(), 'bounce-header-block-'));
    try {
      const store = new QueueStore(dir);
      await store.init();
      const pending = store.begin({
        sender: 'a@example.org',
        receivedAt: Date.now(),
        client: { ip: '127.0.0.1', helo: 'x', protocol: 'ESMTP', hostname: '', submitted: false },
        recipients: [{ address: 'b@example.net', target: { kind: 'remote' } }],
      });
      await pending.write(Readable.from([Buffer.from(`Subject: queued\r\n\r\n${'body\r\n'.repeat(100_000)}`)]));
      const entry = await pending.commit();
      const stream = store.openMessage(entry);
      assert.equal((await readHeaderBlock(stream, 65536)).toString('latin1'), 'Subject: queued\r\n');
      assert.equal(stream.destroyed, true);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('headerLines', () => {
  it('splits CRLF and LF lines, keeps continuation lines, and stops at the empty line', () => {
    const lines = headerLines(Buffer.from('A: 1\r\n\tcont\nB: 2\r\n\r\nbody\r\n', 'latin1'));
    assert.deepEqual(
      lines.map((line) => line.toString('latin1')),
      ['A: 1', '\tcont', 'B: 2'],
    );
  });

  it('keeps a last line without a line end', () => {
    assert.deepEqual(
      headerLines(Buffer.from('A: 1\r\nB: 2')).map((line) => line.toString('latin1')),
      ['A: 1', 'B: 2'],
    );
  });
});
