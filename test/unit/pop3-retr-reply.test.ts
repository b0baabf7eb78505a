// Unit tests for src/pop3/retr-reply.ts: a whole RETR reply is the status line, the message as
// the streaming reader sends it (dot-stuffed) and the terminator; replies built one after
// another into shared blocks stay intact; a file that no longer holds the message is refused;
// retrHeld builds a reply only from what the file window already holds, the same bytes as retr.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MailboxChangedError, type MailboxSnapshot } from '../../src/mbox/mailbox.js';
import { FileWindow, retrieveMessage } from '../../src/mbox/retrieve.js';
import { scanMailbox } from '../../src/mbox/scan.js';
import { WHOLE_REPLY_MAX, WholeReplies } from '../../src/pop3/retr-reply.js';

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'retr-reply-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function mailbox(file: string): Promise<MailboxSnapshot> {
  counter++;
  const path = join(dir, `user${counter}`);
  await fs.writeFile(path, Buffer.from(file, 'latin1'));
  return scanMailbox(path, { indexDir: join(dir, `index${counter}`) });
}

async function streamed(snapshot: MailboxSnapshot, i: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of retrieveMessage(snapshot.path, snapshot.messages[i]!, { dotStuff: true }))
    chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function withWindow<T>(path: string, use: (window: FileWindow) => Promise<T>): Promise<T> {
  const window = new FileWindow(await fs.open(path, 'r'));
  try {
    return await use(window);
  } finally {
    await window.close();
  }
}

describe('WholeReplies', () => {
  it('builds status, dot-stuffed message and terminator, the same bytes the streaming path sends', async () => {
    const piece = fc.constantFrom(
      '\n',
      '\r\n',
      '.',
      '>From ',
      'From x\n',
      '\n\nFrom y\n',
      'Subject: s',
      'body',
      '\n.\n',
    );
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 60 }), async (pieces) => {
        const snapshot = await mailbox(`From a Mon\n${pieces.join('')}`);
        const replies = await withWindow(snapshot.path, async (window) => {
          const whole = new WholeReplies();
          const out: Buffer[] = [];
          for (const [i, info] of snapshot.messages.entries())
            out.push(await whole.retr(window, snapshot.path, info, `+OK ${i + 1}`));
          return out;
        });
        // checked after all were built: the shared block must not overwrite earlier replies
        for (const [i, reply] of replies.entries()) {
          assert.deepEqual(
            reply,
            Buffer.concat([Buffer.from(`+OK ${i + 1}\r\n`), await streamed(snapshot, i), Buffer.from('.\r\n')]),
          );
        }
      }),
      { numRuns: 60 },
    );
  });

  it('fills many blocks for a long run of messages', async () => {
    const body = 'line of text\n'.repeat(600); // ~7.8 KB, so 60 messages need several 128 KiB blocks
    const snapshot = await mailbox(
      Array.from({ length: 60 }, (_, n) => `From a Mon\nSubject: ${n}\n\n${body}\n`).join(''),
    );
    const replies = await withWindow(snapshot.path, async (window) => {
      const whole = new WholeReplies();
      const out: Buffer[] = [];
      for (const info of snapshot.messages) out.push(await whole.retr(window, snapshot.path, info, '+OK'));
      return out;
    });
    for (const [i, reply] of replies.entries())
      assert.deepEqual(
        reply,
        Buffer.concat([Buffer.from('+OK\r\n'), await streamed(snapshot, i), Buffer.from('.\r\n')]),
      );
  });

  it('retrHeld: nothing until the window holds the message, then the reply retr gives, no read', async () => {
    const body = 'line of text\n.stuffed\n'.repeat(400); // ~8.8 KB a message: ~30 fit in the 256 KiB window
    const snapshot = await mailbox(
      Array.from({ length: 80 }, (_, n) => `From a Mon\nSubject: ${n}\n\n${body}\n`).join(''),
    );
    const { messages, path } = snapshot;
    await withWindow(path, async (window) => {
      const held = new WholeReplies();
      assert.equal(held.retrHeld(window, path, messages[0]!, '+OK'), null, 'nothing read yet');
      // a read at message 0 brings the next messages into the window, not all 80
      const first = await new WholeReplies().retr(window, path, messages[0]!, '+OK');
      assert.deepEqual(held.retrHeld(window, path, messages[0]!, '+OK'), first);
      let n = 1;
      for (let reply = held.retrHeld(window, path, messages[n]!, '+OK'); reply !== null; n++) {
        assert.deepEqual(
          reply,
          Buffer.concat([Buffer.from('+OK\r\n'), await streamed(snapshot, n), Buffer.from('.\r\n')]),
        );
        reply = held.retrHeld(window, path, messages[n + 1]!, '+OK');
      }
      assert.ok(n > 20 && n < 40, `the window held messages 0 to ${n - 1}`);
      assert.ok(messages[n]!.contentOffset + messages[n]!.contentLength > messages[0]!.contentOffset + 256 * 1024);
    });
  });

  it('refuses a message the file no longer holds as scanned, and one too large', async () => {
    const snapshot = await mailbox('From a Mon\nSubject: x\n\nbody line\n\nFrom b Tue\nSubject: y\n\nmore\n\n');
    const [first, second] = snapshot.messages;
    // same length, another octet count: one more line end
    const file = await fs.readFile(snapshot.path);
    file[file.indexOf('body') + 4] = 0x0a;
    await fs.writeFile(snapshot.path, file);
    await withWindow(snapshot.path, async (window) => {
      await assert.rejects(new WholeReplies().retr(window, snapshot.path, first!, '+OK'), MailboxChangedError);
      await assert.rejects(
        new WholeReplies().retr(window, snapshot.path, { ...second!, contentLength: WHOLE_REPLY_MAX + 1 }, '+OK'),
        RangeError,
      );
    });
    await fs.truncate(snapshot.path, second!.contentOffset + 2);
    await withWindow(snapshot.path, async (window) => {
      await assert.rejects(new WholeReplies().retr(window, snapshot.path, second!, '+OK'), MailboxChangedError);
    });
  });
});
