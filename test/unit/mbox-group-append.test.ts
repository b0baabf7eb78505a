// Unit tests for src/mbox/group-append.ts: appends that arrive together share a batch, and a
// mailbox kept open between batches is handed over at once to anyone else in the process.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, promises as fs, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { appendMessage, MailboxFullError, MailboxLockedError, type MessageToAppend } from '../../src/mbox/append.js';
import { GroupAppender } from '../../src/mbox/group-append.js';
import { acquireDotlock } from '../../src/mbox/lock.js';
import { eventually } from '../support/wait.js';

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-group-append-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function message(n: number): MessageToAppend {
  return {
    source: [Buffer.from(`Subject: m${n}\r\n\r\nbody ${n}\r\n`)],
    sender: 'a@example.org',
    date: new Date('2026-12-06T10:00:00Z'),
    addHeaders: [],
  };
}

/** How many threads libuv's pool has: UV_THREADPOOL_SIZE read as libuv reads it (atoi, 1 to 1024), else 4. */
function threadPoolSize(): number {
  const setting = process.env.UV_THREADPOOL_SIZE;
  if (setting === undefined) return 4;
  const threads = Number.parseInt(setting, 10);
  if (Number.isNaN(threads) || threads === 0) return 1;
  return threads < 0 || threads > 1024 ? 1024 : threads;
}

/**
 * Keeps every thread of libuv's pool blocked (each opening a FIFO for reading, which waits for a
 * writer) until the returned function opens it read-write (Linux: at once, and a writer): the
 * file work queued meanwhile waits for a thread.
 */
async function occupyThreadPool(fifo: string): Promise<() => Promise<void>> {
  execFileSync('mkfifo', [fifo]);
  const threads = threadPoolSize();
  const readers = Array.from({ length: threads }, () => fs.open(fifo, 'r'));
  return async () => {
    const writer = openSync(fifo, 'r+');
    try {
      for (const reader of await Promise.all(readers)) await reader.close();
    } finally {
      closeSync(writer);
    }
  };
}

async function subjects(mailbox: string): Promise<string[]> {
  return [...(await fs.readFile(mailbox, 'latin1')).matchAll(/^Subject: (\S+)$/gm)].map((m) => m[1]!);
}

describe('GroupAppender', () => {
  it('appends what arrives together in order, one fsync per batch, and frees the lock once idle', async () => {
    const mailbox = join(dir, 'together');
    const appender = new GroupAppender();
    const target = { mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 1000 };
    const results = await Promise.all(Array.from({ length: 10 }, (_, n) => appender.append(target, [message(n)])));
    assert.ok(results.every(([r]) => !(r instanceof Error)));
    assert.deepEqual(
      await subjects(mailbox),
      Array.from({ length: 10 }, (_, n) => `m${n}`),
    );
    const offsets = results.map(([r]) => (r as { offset: number }).offset);
    assert.deepEqual(
      offsets,
      [...offsets].sort((a, b) => a - b),
      'offsets follow the order of arrival',
    );
    // the mailbox stays locked a moment for more mail, then the lock goes by itself
    const lock = await acquireDotlock(mailbox, { timeoutMs: 5000 });
    await lock.release();
    await appender.close();
  });

  it('lets go of the lock by itself once no batch has come for a moment, however many came before', async () => {
    const mailbox = join(dir, 'linger');
    const appender = new GroupAppender();
    const target = { mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 1000 };
    for (let n = 0; n < 5; n++) {
      const [outcome] = await appender.append(target, [message(n)]);
      assert.ok(!(outcome instanceof Error));
      assert.ok(existsSync(`${mailbox}.lock`), 'held between batches');
    }
    // nobody asks for the lock: the lock file goes when the linger ends
    await eventually(() => !existsSync(`${mailbox}.lock`), 10_000, 'the lock file removed after the linger');
    assert.deepEqual(await subjects(mailbox), ['m0', 'm1', 'm2', 'm3', 'm4']);
    const [later] = await appender.append(target, [message(5)]);
    assert.ok(!(later instanceof Error), 'and it takes mail again');
    await appender.close();
    assert.ok(!existsSync(`${mailbox}.lock`));
  });

  it('a mailbox that cannot be opened fails only its own messages, and takes mail again once repaired', async () => {
    const broken = join(dir, 'broken');
    const good = join(dir, 'good');
    await fs.mkdir(broken); // a directory in the way: opening it for append fails with EISDIR
    const appender = new GroupAppender();
    const target = (mailboxPath: string) => ({ mailboxPath, sizeLimit: 0, lockTimeoutMs: 1000 });
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, n) => appender.append(target(n % 2 === 0 ? broken : good), [message(n)])),
    );
    results.forEach(([result], n) => {
      if (n % 2 === 0) assert.match(String(result), /EISDIR/, `message ${n}, for the broken mailbox`);
      else assert.ok(!(result instanceof Error), `message ${n}: ${String(result)}`);
    });
    assert.deepEqual(await subjects(good), ['m1', 'm3', 'm5', 'm7', 'm9']);
    await fs.rmdir(broken);
    const [again] = await appender.append(target(broken), [message(10)]);
    assert.ok(!(again instanceof Error), String(again));
    await appender.close();
    assert.deepEqual(await subjects(broken), ['m10']);
  });

  it('a size limit changed while the mailbox is kept open applies to the next batch', async () => {
    const mailbox = join(dir, 'limit');
    const appender = new GroupAppender();
    const [first] = await appender.append({ mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 1000 }, [message(1)]);
    assert.ok(!(first instanceof Error));
    // still open (lingering); the limit is now below what the mailbox holds
    const [second] = await appender.append({ mailboxPath: mailbox, sizeLimit: 10, lockTimeoutMs: 1000 }, [message(2)]);
    assert.ok(second instanceof MailboxFullError, String(second));
    await appender.close();
    assert.deepEqual(await subjects(mailbox), ['m1']);
  });

  it('writes a lone message on the calling thread while writeInPlace says so, else in the thread pool', async () => {
    const mailbox = join(dir, 'in-place');
    let inPlace = true;
    const appender = new GroupAppender(() => inPlace);
    const target = { mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 1000 };
    // no loop turn from here to the second appendOne: the mailbox stays open (its linger cannot end)
    assert.ok(!((await appender.appendOne(target, message(1))) instanceof Error));
    const opened = statSync(mailbox).size;
    // the thread pool is kept busy: a write the file shows at once was made on this thread
    let releasePool = await occupyThreadPool(join(dir, 'in-place-1.fifo'));
    const written = appender.appendOne(target, message(2));
    const sizeOnReturn = statSync(mailbox).size;
    await releasePool();
    assert.ok(!((await written) instanceof Error));
    assert.ok(sizeOnReturn > opened, 'written before appendOne returned, with the thread pool busy');
    // asked per batch: now the write goes to the thread pool, and waits for it
    inPlace = false;
    releasePool = await occupyThreadPool(join(dir, 'in-place-2.fifo'));
    const queued = appender.appendOne(target, message(3));
    const sizeBeforePool = statSync(mailbox).size;
    await releasePool();
    assert.equal(sizeBeforePool, sizeOnReturn, 'nothing written while the thread pool was busy');
    assert.ok(!((await queued) instanceof Error));
    await appender.close();
    assert.equal(sizeOnReturn - opened, (await fs.stat(mailbox)).size - sizeOnReturn, 'all of the message was in');
    assert.deepEqual(await subjects(mailbox), ['m1', 'm2', 'm3']);
  });

  it('a steady stream of mail does not keep another part of the process from the lock', async () => {
    const mailbox = join(dir, 'stream');
    const appender = new GroupAppender();
    const target = { mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 10_000 };
    let stop = false;
    let sent = 0;
    const feeders = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const [result] = await appender.append(target, [message(sent++)]);
        assert.ok(!(result instanceof Error), String(result));
      }
    });
    try {
      await appender.append(target, [message(sent++)]);
      // a POP3 update waits for the lock while mail keeps coming: it must get it (not time out)
      const lock = await acquireDotlock(mailbox, { timeoutMs: 10_000 });
      // and really holds it: a writer that will not wait is refused
      await assert.rejects(
        appendMessage({ ...message(-1), mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 0 }),
        MailboxLockedError,
      );
      await lock.release();
    } finally {
      stop = true;
      await Promise.all(feeders);
    }
    await appender.close();
    const got = await subjects(mailbox);
    assert.equal(got.length, sent);
    assert.equal(new Set(got).size, sent, 'every message once');
  });
});
