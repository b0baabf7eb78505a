// Unit tests for src/mbox/append.ts: mbox content, truncate on failure, size limit, locking, Python reads it.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promises as fs, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import {
  appendMessage,
  appendMessages,
  MailboxFullError,
  MailboxIOError,
  mailboxSize,
  type AppendOptions,
  type AppendResult,
  type MessageToAppend,
} from '../../src/mbox/append.js';
import { acquireDotlock, isWanted, MailboxLockedError } from '../../src/mbox/lock.js';
import { eventually } from '../support/wait.js';

const execFileP = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const DATE = new Date('2026-11-25T11:54:57Z');

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-append-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let counter = 0;
const newPath = (): string => join(dir, `user${++counter}`);

function options(mailboxPath: string, message: string | Readable, extra: Partial<AppendOptions> = {}): AppendOptions {
  return {
    mailboxPath,
    source: typeof message === 'string' ? Readable.from([Buffer.from(message, 'latin1')]) : message,
    sender: 'alice@example.org',
    date: DATE,
    addHeaders: [],
    sizeLimit: 0,
    lockTimeoutMs: 2000,
    ...extra,
  };
}

/** A source that sends `bytes` of message and then fails, noting the mailbox size just before. */
function failingSource(bytes: number, mailboxPath: string, sizeAtFailure: number[]): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent === 0) {
        this.push('Subject: will fail\r\n\r\n');
        sent = 1;
      } else if (sent < bytes) {
        this.push(Buffer.alloc(16 * 1024, 0x61));
        sent += 16 * 1024;
      } else {
        setTimeout(() => {
          sizeAtFailure.push(statSync(mailboxPath).size);
          this.destroy(new Error('queue file read failed'));
        }, 10);
      }
    },
  });
}

interface PyMessage {
  from: string;
  subject: string | null;
  body: string;
}

async function pythonRead(path: string): Promise<PyMessage[]> {
  const script =
    'import mailbox, sys, json\n' +
    'm = mailbox.mbox(sys.argv[1])\n' +
    'print(json.dumps([{"from": x.get_from(), "subject": x["Subject"], "body": x.get_payload()[:200]} for x in m]))\n';
  const { stdout } = await execFileP(PYTHON, ['-c', script, path]);
  return JSON.parse(stdout) as PyMessage[];
}

describe('appendMessage', () => {
  it('writes From_ line, added headers and quoted body; creates the file 0600', async () => {
    const path = newPath();
    const first = await appendMessage(
      options(path, 'Subject: one\r\nStatus: RO\r\n\r\nhello\r\nFrom the start\r\n', {
        addHeaders: ['Return-Path: <alice@example.org>', 'Delivered-To: bob@example.org'],
      }),
    );
    const second = await appendMessage(options(path, 'Subject: two\r\n\r\nbye', { sender: '' }));
    const content = await fs.readFile(path, 'latin1');
    const one =
      'From alice@example.org Wed Nov 25 11:54:57 2026\n' +
      'Return-Path: <alice@example.org>\nDelivered-To: bob@example.org\nSubject: one\n\nhello\n>From the start\n\n';
    const two = 'From MAILER-DAEMON Wed Nov 25 11:54:57 2026\nSubject: two\n\nbye\n\n';
    assert.equal(content, one + two);
    assert.deepEqual(first, { offset: 0, bytes: one.length });
    assert.deepEqual(second, { offset: one.length, bytes: two.length });
    assert.equal((await fs.stat(path)).mode & 0o777, 0o600);
    assert.equal(await mailboxSize(path), content.length);
    assert.deepEqual(
      (await fs.readdir(dir)).filter((n) => n.startsWith(`user${counter}.`)),
      [],
      'no lock or temp files left',
    );

    const messages = await pythonRead(path);
    assert.equal(messages.length, 2);
    assert.equal(messages[0].from, 'alice@example.org Wed Nov 25 11:54:57 2026');
    assert.equal(messages[0].subject, 'one');
    assert.equal(messages[0].body, 'hello\n>From the start\n'); // Python reads mboxo: no unquoting
    assert.equal(messages[1].from, 'MAILER-DAEMON Wed Nov 25 11:54:57 2026');
    assert.equal(messages[1].body, 'bye\n');
  });

  it('reports 0 as the size of a missing mailbox', async () => {
    assert.equal(await mailboxSize(join(dir, 'nobody')), 0);
  });

  it('adds a blank line before its From_ line when the mailbox lacks one', async () => {
    for (const [existing, pad] of [
      ['From x@y Mon Jan  1 00:00:00 2024\nSubject: a\n\nbody', '\n\n'],
      ['From x@y Mon Jan  1 00:00:00 2024\nSubject: a\n\nbody\n', '\n'],
      ['\n', ''],
    ]) {
      const path = newPath();
      await fs.writeFile(path, existing);
      const result = await appendMessage(options(path, 'Subject: b\r\n\r\nnew\r\n'));
      const expected = `${existing}${pad}From alice@example.org Wed Nov 25 11:54:57 2026\nSubject: b\n\nnew\n\n`;
      assert.equal(await fs.readFile(path, 'latin1'), expected);
      assert.deepEqual(result, {
        offset: existing.length + pad.length,
        bytes: expected.length - existing.length - pad.length,
      });
      if (existing.startsWith('From')) assert.equal((await pythonRead(path)).length, 2);
    }
  });

  it('truncates back to the old size when the source fails mid-way', async () => {
    const path = newPath();
    await appendMessage(options(path, 'Subject: kept\r\n\r\nkept\r\n'));
    const before = await fs.readFile(path);
    const sizeAtFailure: number[] = [];
    await assert.rejects(
      appendMessage(options(path, failingSource(512 * 1024, path, sizeAtFailure))),
      (err: unknown) => {
        assert.ok(err instanceof MailboxIOError, String(err));
        assert.match(err.message, /queue file read failed/);
        return true;
      },
    );
    assert.ok(sizeAtFailure[0] > before.length + 256 * 1024, `partly written: ${sizeAtFailure[0]}`);
    assert.deepEqual(await fs.readFile(path), before);
    assert.equal((await pythonRead(path)).length, 1);
    // the lock was released: the next append works at once
    await appendMessage(options(path, 'Subject: next\r\n\r\nx\r\n', { lockTimeoutMs: 100 }));
    assert.equal((await pythonRead(path)).length, 2);
  });

  it('calls beforeWrite under the lock with the offset, and writes nothing if it fails', async () => {
    const path = newPath();
    await appendMessage(options(path, 'Subject: a\r\n\r\na'));
    const before = await fs.readFile(path);
    const seen: number[] = [];
    const result = await appendMessage(
      options(path, 'Subject: b\r\n\r\nb\r\n', {
        beforeWrite: async (offset) => {
          seen.push(offset);
          await assert.rejects(fs.link(path, `${path}.lock`), { code: 'EEXIST' }, 'lock held');
          assert.equal(await mailboxSize(path), before.length, 'nothing written yet');
        },
      }),
    );
    assert.deepEqual(seen, [before.length]);
    assert.equal(result.offset, before.length);
    assert.ok((await fs.readFile(path, 'latin1')).slice(result.offset).startsWith('From alice@example.org '));
    const now = await fs.readFile(path);
    await assert.rejects(
      appendMessage(
        options(path, 'Subject: c\r\n\r\nc\r\n', { beforeWrite: () => Promise.reject(new Error('queue busy')) }),
      ),
      MailboxIOError,
    );
    assert.deepEqual(await fs.readFile(path), now);
  });

  it('refuses a mailbox already at its limit without writing', async () => {
    const path = newPath();
    await appendMessage(options(path, 'Subject: a\r\n\r\nabc\r\n'));
    const before = await fs.readFile(path);
    await assert.rejects(
      appendMessage(options(path, 'Subject: b\r\n\r\nx\r\n', { sizeLimit: before.length })),
      MailboxFullError,
    );
    assert.deepEqual(await fs.readFile(path), before);
  });

  it('aborts, truncates and throws MailboxFullError when the message would pass the limit', async () => {
    const path = newPath();
    await appendMessage(options(path, 'Subject: a\r\n\r\nabc\r\n'));
    const before = await fs.readFile(path);
    const big = `Subject: big\r\n\r\n${'x'.repeat(200 * 1024)}\r\n`;
    await assert.rejects(
      appendMessage(options(path, big, { sizeLimit: before.length + 100 * 1024 })),
      (err: unknown) => {
        assert.ok(err instanceof MailboxFullError);
        assert.equal(err.path, path);
        return true;
      },
    );
    assert.deepEqual(await fs.readFile(path), before);
  });

  it('accepts a message that exactly fills the limit', async () => {
    const path = newPath();
    const msg = 'Subject: fit\r\n\r\nbody\r\n';
    const size = 'From alice@example.org Wed Nov 25 11:54:57 2026\nSubject: fit\n\nbody\n\n'.length;
    await appendMessage(options(path, msg, { sizeLimit: size }));
    assert.equal(await mailboxSize(path), size);
    await assert.rejects(appendMessage(options(newPath(), msg, { sizeLimit: size - 1 })), MailboxFullError);
  });

  it('throws MailboxLockedError while someone else holds the lock, and leaves the file alone', async () => {
    const path = newPath();
    await appendMessage(options(path, 'Subject: a\r\n\r\na\r\n'));
    const before = await fs.readFile(path);
    const lock = await acquireDotlock(path, { timeoutMs: 1000 });
    await assert.rejects(
      appendMessage(options(path, 'Subject: b\r\n\r\nb\r\n', { lockTimeoutMs: 300 })),
      MailboxLockedError,
    );
    assert.deepEqual(await fs.readFile(path), before);
    const pending = appendMessage(options(path, 'Subject: c\r\n\r\nc\r\n', { lockTimeoutMs: 5000 }));
    await eventually(() => isWanted(lock.path), 10_000, 'the append waiting for the lock', 5);
    await lock.release();
    await pending;
    assert.equal((await pythonRead(path)).length, 2);
  });

  it('refuses a symlinked mailbox', async () => {
    const target = newPath();
    await fs.writeFile(target, '');
    const link = newPath();
    await fs.symlink(target, link);
    await assert.rejects(appendMessage(options(link, 'Subject: a\r\n\r\na\r\n')), MailboxIOError);
    assert.equal(await fs.readFile(target, 'utf8'), '');
  });

  it('refuses a bad sender before locking anything', async () => {
    const path = newPath();
    await assert.rejects(appendMessage(options(path, 'Subject: a\r\n\r\na\r\n', { sender: 'a b@c' })), TypeError);
    await assert.rejects(fs.stat(path), { code: 'ENOENT' });
  });

  it('streams a 40 MB message (with a 10 MB line) in small memory', async () => {
    const path = newPath();
    const line = Buffer.from(`${'y'.repeat(998)}\r\n`);
    const block = Buffer.concat(Array.from({ length: 64 }, () => line));
    const longLine = Buffer.alloc(64 * 1024, 0x7a);
    function* message(): Generator<Buffer> {
      yield Buffer.from('Subject: big\r\n\r\nFrom start\r\n');
      for (let i = 0; i < 240; i++) yield block; // 15 MB of 1000-byte lines
      for (let i = 0; i < 160; i++) yield longLine; // one 10 MB line
      yield Buffer.from('\r\n');
      for (let i = 0; i < 240; i++) yield block;
    }
    const source = Readable.from(message(), { objectMode: false });
    let peak = 0;
    const base = process.memoryUsage().arrayBuffers;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    }, 5);
    try {
      const result = await appendMessage(options(path, source));
      assert.ok(result.bytes > 40 * 1000 * 1000, `wrote ${result.bytes}`);
    } finally {
      clearInterval(sampler);
    }
    assert.ok(peak < 32 * 1024 * 1024, `peak buffer memory ${Math.round(peak / 1024 / 1024)} MB`);
    const messages = await pythonRead(path);
    assert.equal(messages.length, 1);
    assert.ok(messages[0].body.startsWith('>From start\n'));
  });
});

/**
 * A message held in memory (as a small received one is): `Subject: <subject>` and `body`, in
 * the pieces it came in (cut in the middle of its body).
 */
function inMemory(subject: string, body: string): MessageToAppend {
  const raw = Buffer.from(`Subject: ${subject}\r\n\r\n${body}\r\n`, 'latin1');
  const cut = raw.length - Math.ceil(body.length / 2);
  return {
    source: [raw.subarray(0, cut), raw.subarray(cut)],
    sender: 'alice@example.org',
    date: DATE,
    addHeaders: [],
  };
}

/** The subjects of the messages in `path`, each read where its outcome says it is. */
async function subjectsAtOffsets(path: string, outcomes: (AppendResult | Error)[]): Promise<(string | Error)[]> {
  const file = await fs.readFile(path, 'latin1');
  return outcomes.map((outcome) => {
    if (outcome instanceof Error) return outcome;
    const text = file.slice(outcome.offset, outcome.offset + outcome.bytes);
    assert.match(text, /^From alice@example\.org /, 'the outcome starts at its From_ line');
    assert.ok(text.endsWith('\n\n'), 'and ends with its blank separator line');
    return /^Subject: (\S+)$/m.exec(text)![1]!;
  });
}

describe('appendMessages, a batch held in memory', () => {
  it('writes every message, each outcome delimiting its own, after what the mailbox held', async () => {
    const path = newPath();
    await fs.writeFile(path, 'From x@y Wed Nov 25 11:54:57 2026\nSubject: old\n\nno blank line at the end\n');
    const target = { mailboxPath: path, sizeLimit: 0, lockTimeoutMs: 2000 };
    const outcomes = await appendMessages(target, [
      inMemory('one', 'a'),
      inMemory('two', 'From b'),
      inMemory('three', 'c'),
    ]);
    assert.deepEqual(await subjectsAtOffsets(path, outcomes), ['one', 'two', 'three']);
    const last = outcomes[2] as AppendResult;
    assert.equal(await mailboxSize(path), last.offset + last.bytes, 'the mailbox ends with the last message');
    const read = await pythonRead(path);
    assert.deepEqual(
      read.map((m) => m.subject),
      ['old', 'one', 'two', 'three'],
    );
    assert.equal(read[2]!.body, '>From b\n', 'quoted as any other');
  });

  it('leaves out a message that would pass the size limit, and writes those before and after it', async () => {
    const path = newPath();
    const small = (s: string) => inMemory(s, 'x');
    const [one] = await appendMessages({ mailboxPath: newPath(), sizeLimit: 0, lockTimeoutMs: 2000 }, [small('a')]);
    const each = (one as AppendResult).bytes;
    const target = { mailboxPath: path, sizeLimit: 3 * each + 10, lockTimeoutMs: 2000 };
    const outcomes = await appendMessages(target, [
      small('a'),
      inMemory('big', 'y'.repeat(2 * each)),
      small('b'),
      small('c'),
      small('d'),
    ]);
    const subjects = await subjectsAtOffsets(path, outcomes);
    assert.deepEqual(
      subjects.slice(0, 4).map((s) => (s instanceof Error ? s.name : s)),
      ['a', 'MailboxFullError', 'b', 'c'],
    );
    assert.ok(subjects[4] instanceof MailboxFullError, 'the fourth small one no longer fits');
    assert.equal(await mailboxSize(path), 3 * each);
  });

  it('a write the disk cannot take is undone, then the messages go one by one: those that fit are delivered', {
    skip: process.getuid?.() !== 0 && 'needs root to mount a tmpfs',
  }, async (t) => {
    const disk = await fs.mkdtemp(join(tmpdir(), 'mbox-append-disk-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk], { encoding: 'utf8' });
    assert.equal(mounted.status, 0, `mount: ${mounted.stderr}`);
    t.after(async () => {
      spawnSync('umount', ['-l', disk]);
      await fs.rm(disk, { recursive: true, force: true });
    });
    const path = join(disk, 'box');
    const target = { mailboxPath: path, sizeLimit: 0, lockTimeoutMs: 2000 };
    // together they need more than the disk has; the first alone fits
    const outcomes = await appendMessages(target, [
      inMemory('fits', 'f'.repeat(20 * 1024)),
      inMemory('too-big', 'g'.repeat(60 * 1024)),
    ]);
    const [fits, tooBig] = await subjectsAtOffsets(path, outcomes);
    assert.equal(fits, 'fits');
    assert.ok(tooBig instanceof MailboxIOError, `the second: ${String(tooBig)}`);
    assert.match(tooBig.message, /ENOSPC|no space/i);
    const first = outcomes[0] as AppendResult;
    assert.equal(await mailboxSize(path), first.offset + first.bytes, 'nothing of the second is left');
  });
});
