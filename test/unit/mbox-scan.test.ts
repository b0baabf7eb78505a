// Unit tests for src/mbox/scan.ts (with parser.ts, uidl.ts and the index files): message boundaries,
// wire sizes, UIDLs (popa3d values, uniqueness, stability), the index (reuse, rescans), bounded
// memory, and properties against a reference reader.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { appendMessage } from '../../src/mbox/append.js';
import { fromLine, MboxrdQuoter } from '../../src/mbox/format.js';
import { MailboxChangedError, type MailboxSnapshot, type MessageInfo } from '../../src/mbox/mailbox.js';
import { retrieveMessage } from '../../src/mbox/retrieve.js';
import { indexPathOf, saveIndex } from '../../src/mbox/index-store.js';
import { scanMailbox, type ScanStats } from '../../src/mbox/scan.js';

const execFileP = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const DATE = new Date('2026-11-25T11:54:57Z');

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-scan-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let counter = 0;
/** A fresh mailbox path and index directory. */
function fresh(): { path: string; indexDir: string } {
  counter++;
  return { path: join(dir, `user${counter}`), indexDir: join(dir, `index${counter}`) };
}

const newStats = (): ScanStats => ({ bytesRead: 0, reusedMessages: 0, mode: 'full' });
const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** A scan with no index to reuse (a fresh index directory each time). */
async function fullScan(path: string, upTo?: number): Promise<MailboxSnapshot> {
  return scanMailbox(path, { indexDir: join(dir, `full${++counter}`), upTo });
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** RETR output of every message of the snapshot. */
async function wires(snapshot: MailboxSnapshot): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const message of snapshot.messages) out.push(await collect(retrieveMessage(snapshot.path, message)));
  return out;
}

async function wireStrings(snapshot: MailboxSnapshot): Promise<string[]> {
  return (await wires(snapshot)).map((w) => w.toString('latin1'));
}

/** mboxrd form of a raw message, as append.ts writes it (From_ line, quoted body, separator). */
async function mboxrdEntry(message: Buffer, sender = 'alice@example.org', date = DATE): Promise<Buffer> {
  const out: Buffer[] = [b(fromLine(sender, date))];
  await pipeline(
    Readable.from([message]),
    new MboxrdQuoter(),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

/** The wire form RETR must give for a raw message written with MboxrdQuoter: CRLF line ends. */
function expectedWire(message: Buffer): Buffer {
  let s = message.toString('latin1');
  if (s.length > 0 && !s.endsWith('\n')) s += '\n';
  return b(s.replace(/\r?\n/g, '\r\n'));
}

// ---- a reference reader: the README's rules written the simple way (whole file in memory, line by line)

interface RefLine {
  start: number;
  end: number;
  hasLF: boolean;
}
interface RefMessage extends MessageInfo {
  wire: Buffer;
}

function refContent(file: Buffer, l: RefLine): Buffer {
  let end = l.hasLF ? l.end - 1 : l.end;
  if (l.hasLF && end > l.start && file[end - 1] === 0x0d) end--;
  return file.subarray(l.start, end);
}

function refUnquote(line: Buffer): Buffer {
  return /^>+From /.test(line.toString('latin1')) ? line.subarray(1) : line;
}

function popa3dHex(digest: Buffer): string {
  return Buffer.from([3, 2, 1, 0, 7, 6, 5, 4].map((i) => digest[i]!)).toString('hex');
}

/** popa3d's hash over raw header lines (with their line ends), as its mailbox.c does it. */
function refPopa3d(headerLines: Buffer[]): string {
  const hash = createHash('md5');
  let fixed = false;
  let received = false;
  for (const raw of headerLines) {
    const text = raw.toString('latin1');
    const lower = text.toLowerCase();
    if (text[0] !== ' ' && text[0] !== '\t') {
      if (lower.startsWith('received:')) {
        fixed = !received;
        received = true;
      } else {
        fixed =
          lower.startsWith('delivered-to:') ||
          (!received && (lower.startsWith('date:') || lower.startsWith('message-id:'))) ||
          (text.startsWith('X') && lower.startsWith('x-delivery-id:'));
      }
    }
    if (fixed) hash.update(raw);
  }
  return popa3dHex(hash.digest());
}

function refXuidl(headerContents: Buffer[]): string | null {
  const i = headerContents.findIndex((c) => c.toString('latin1').toLowerCase().startsWith('x-uidl:'));
  if (i < 0) return null;
  let value = headerContents[i]!.toString('latin1').slice(7);
  for (let j = i + 1; j < headerContents.length && /^[ \t]/.test(headerContents[j]!.toString('latin1')); j++) {
    value += headerContents[j]!.toString('latin1');
  }
  value = value.replace(/^[ \t]+|[ \t]+$/g, '');
  return /^[\x21-\x7e]{1,70}$/.test(value) ? value : null;
}

function refUnique(value: string, fromKey: Buffer, used: Set<string>): string {
  let uidl = value;
  for (let n = 1; used.has(uidl); n++) {
    uidl = createHash('md5')
      .update(value, 'latin1')
      .update(Buffer.from([0]))
      .update(fromKey)
      .update(Buffer.from([0]))
      .update(String(n))
      .digest('hex');
  }
  used.add(uidl);
  return uidl;
}

function referenceScan(file: Buffer): RefMessage[] {
  const lines: RefLine[] = [];
  for (let s = 0; s < file.length; ) {
    const nl = file.indexOf(0x0a, s);
    const end = nl === -1 ? file.length : nl + 1;
    lines.push({ start: s, end, hasLF: nl !== -1 });
    s = end;
  }
  const isBlank = (l: RefLine): boolean => l.hasLF && refContent(file, l).length === 0;
  const starts: number[] = [];
  let prevBlank = true;
  for (const [i, l] of lines.entries()) {
    if (prevBlank && file.subarray(l.start, Math.min(l.start + 5, l.end)).toString('latin1') === 'From ') {
      starts.push(i);
      prevBlank = false;
    } else {
      prevBlank = isBlank(l);
    }
  }
  const used = new Set<string>();
  return starts.map((first, k) => {
    const next = k + 1 < starts.length ? starts[k + 1]! : lines.length;
    const body = lines.slice(first + 1, next);
    if (body.length > 0 && isBlank(body[body.length - 1]!)) body.pop();
    const fromLineItself = lines[first]!;
    const offset = fromLineItself.start;
    const contentOffset = fromLineItself.hasLF ? fromLineItself.end : file.length;
    const contentEnd = body.length > 0 ? body[body.length - 1]!.end : contentOffset;
    const wire = Buffer.concat(body.flatMap((l) => [refUnquote(refContent(file, l)), b('\r\n')]));
    const blankAt = body.findIndex(isBlank);
    const header = blankAt < 0 ? body : body.slice(0, blankAt);
    const fromKey = refContent(file, fromLineItself).subarray(5, 5 + 1024);
    const value =
      refXuidl(header.map((l) => refContent(file, l))) ?? refPopa3d(header.map((l) => file.subarray(l.start, l.end)));
    return {
      offset,
      contentOffset,
      contentLength: contentEnd - contentOffset,
      spanLength: (next < lines.length ? lines[next]!.start : file.length) - offset,
      size: wire.length,
      uidl: refUnique(value, fromKey, used),
      wire,
    };
  });
}

/** Checks a scan against the reference reader, RETR output included. */
async function assertMatchesReference(snapshot: MailboxSnapshot, file: Buffer): Promise<void> {
  const ref = referenceScan(file);
  assert.deepEqual(
    snapshot.messages,
    ref.map(({ wire: _wire, ...info }) => info),
  );
  assert.deepEqual(
    await wires(snapshot),
    ref.map((m) => m.wire),
  );
}

async function pythonCount(path: string): Promise<number> {
  const { stdout } = await execFileP(PYTHON, [
    '-c',
    'import mailbox, sys\nprint(len(mailbox.mbox(sys.argv[1])))',
    path,
  ]);
  return Number(stdout.trim());
}

// ---- tests

describe('scanMailbox: messages and sizes', () => {
  it('takes a missing file as an empty mailbox with dev = ino = 0', async () => {
    const { path, indexDir } = fresh();
    assert.deepEqual(await scanMailbox(path, { indexDir }), { path, dev: 0, ino: 0, scannedSize: 0, messages: [] });
  });

  it('reads an empty file as no messages', async () => {
    const { path, indexDir } = fresh();
    await fs.writeFile(path, '');
    const snapshot = await scanMailbox(path, { indexDir });
    assert.equal(snapshot.messages.length, 0);
    assert.equal(snapshot.scannedSize, 0);
    assert.notEqual(snapshot.ino, 0);
  });

  it('records offsets, lengths, spans and sizes as mailbox.ts documents them', async () => {
    const { path } = fresh();
    const file = 'From a Mon\nSubject: 1\n\nbody\n\nFrom b Tue\nSubject: 2\n\n';
    await fs.writeFile(path, file);
    const snapshot = await fullScan(path);
    assert.equal(snapshot.scannedSize, file.length);
    assert.deepEqual(
      snapshot.messages.map(({ uidl: _uidl, ...rest }) => rest),
      [
        { offset: 0, contentOffset: 11, contentLength: 17, spanLength: 29, size: 20 },
        { offset: 29, contentOffset: 40, contentLength: 11, spanLength: 23, size: 12 },
      ],
    );
    assert.deepEqual(await wireStrings(snapshot), ['Subject: 1\r\n\r\nbody\r\n', 'Subject: 2\r\n']);
  });

  it('agrees with the reference reader on a file of many reads, lines cut at every read boundary', async () => {
    const { path } = fresh();
    // ~9 MB of mixed lines, so that the scan's reads end inside From_ lines, quoted lines, CRLFs and headers
    const pick = [
      'From x Mon',
      '',
      '>From y',
      '>>From z',
      'Received: r',
      'X-UIDL: u',
      ' fold',
      '\r',
      'Subject: s',
      'body text line',
    ];
    const parts: string[] = [];
    let seed = 7;
    for (let bytes = 0; bytes < 9_000_000; ) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const line =
        seed % 50 === 0 ? 'y'.repeat(70_000 + (seed % 5000)) : pick[seed % pick.length]! + 'q'.repeat(seed % 97);
      const text = `${seed % 3 === 0 ? '\n\nFrom a Tue\n' : ''}${line}${seed % 7 === 0 ? '\r\n' : '\n'}`;
      parts.push(text);
      bytes += text.length;
    }
    const file = b(parts.join(''));
    await fs.writeFile(path, file);
    await assertMatchesReference(await fullScan(path), file);
  });

  it('ignores garbage before the first From_ line', async () => {
    const { path } = fresh();
    await fs.writeFile(path, 'this is not a message\nFrom not-a-separator\n\nFrom a Mon\nSubject: x\n\nhi\n\n');
    const snapshot = await fullScan(path);
    assert.equal(snapshot.messages.length, 1);
    assert.equal(snapshot.messages[0]!.offset, 44);
    assert.deepEqual(await wireStrings(snapshot), ['Subject: x\r\n\r\nhi\r\n']);
  });

  it('starts a message only at a From_ line after a blank line (popa3d, mutt)', async () => {
    const { path } = fresh();
    await fs.writeFile(
      path,
      'From a Mon\nSubject: x\n\nline\nFrom inside a paragraph\nmore\n\nFrom b Tue\nSubject: y\n\n',
    );
    const snapshot = await fullScan(path);
    assert.deepEqual(await wireStrings(snapshot), [
      'Subject: x\r\n\r\nline\r\nFrom inside a paragraph\r\nmore\r\n',
      'Subject: y\r\n',
    ]);
  });

  it('strips one > from >From and >>From lines, and counts that in the size', async () => {
    const { path } = fresh();
    await fs.writeFile(path, 'From a Mon\n\n>From x\n>>From y\n>>>Fro\n> From z\n>\n\n');
    const snapshot = await fullScan(path);
    const [wire] = await wireStrings(snapshot);
    assert.equal(wire, '\r\nFrom x\r\n>From y\r\n>>>Fro\r\n> From z\r\n>\r\n');
    assert.equal(snapshot.messages[0]!.size, wire!.length);
  });

  it('reads CRLF line ends on disk: an existing CRLF counts 2 octets, not 3', async () => {
    const { path } = fresh();
    const file = 'From a Mon\r\nSubject: x\r\n\r\nbody\r\n>From y\r\n\r\nFrom b Tue\r\nSubject: y\r\n\r\nz\r\n\r\n';
    await fs.writeFile(path, file);
    const snapshot = await fullScan(path);
    assert.deepEqual(await wireStrings(snapshot), ['Subject: x\r\n\r\nbody\r\nFrom y\r\n', 'Subject: y\r\n\r\nz\r\n']);
    assert.deepEqual(
      snapshot.messages.map((m) => m.size),
      [28, 17],
    );
    await assertMatchesReference(snapshot, b(file));
  });

  it('adds CRLF to a last line without newline', async () => {
    const { path } = fresh();
    await fs.writeFile(path, 'From a Mon\nSubject: x\n\nno newline at the end');
    const snapshot = await fullScan(path);
    assert.deepEqual(await wireStrings(snapshot), ['Subject: x\r\n\r\nno newline at the end\r\n']);
    assert.equal(snapshot.messages[0]!.size, 37);
  });

  it('handles a From_ line without newline at the end of the file', async () => {
    const { path } = fresh();
    const file = 'From a Mon\nSubject: x\n\nFrom b Tue';
    await fs.writeFile(path, file);
    const snapshot = await fullScan(path);
    assert.equal(snapshot.messages.length, 2);
    assert.deepEqual(snapshot.messages[1], {
      ...snapshot.messages[1]!,
      offset: 23,
      contentOffset: 33,
      contentLength: 0,
      spanLength: 10,
      size: 0,
    });
    await assertMatchesReference(snapshot, b(file));
  });

  it('scans only [0, upTo)', async () => {
    const { path } = fresh();
    const first = 'From a Mon\nSubject: 1\n\n';
    await fs.writeFile(path, `${first}From b Tue\nSubject: 2\n\n`);
    const snapshot = await fullScan(path, first.length);
    assert.equal(snapshot.scannedSize, first.length);
    assert.equal(snapshot.messages.length, 1);
    assert.equal(snapshot.messages[0]!.spanLength, first.length);
  });

  it('reads a Postfix local (mboxo) mailbox; byte-identical deliveries get different UIDLs', async () => {
    const { path } = fresh();
    // what Postfix local writes: "From sender  asctime", its headers, >From-quoted body, a blank line
    const message =
      'From alice@example.org  Wed Nov 25 11:54:57 2026\n' +
      'Return-Path: <alice@example.org>\n' +
      'X-Original-To: bob@example.org\n' +
      'Delivered-To: bob@example.org\n' +
      'Received: by mail.example.org (Postfix, from userid 1000)\n' +
      '\tid 4F1C2123; Wed, 25 Nov 2026 11:54:57 +0000 (UTC)\n' +
      'Message-Id: <20261125115457.4F1C2123@mail.example.org>\n' +
      'Date: Wed, 25 Nov 2026 11:54:57 +0000 (UTC)\n' +
      'From: alice@example.org\n' +
      '\n' +
      'Hello,\n' +
      '>From the start of a line, as mboxo quotes it\n' +
      '\n';
    const file = message + message;
    await fs.writeFile(path, file);
    const snapshot = await fullScan(path);
    assert.equal(snapshot.messages.length, 2);
    const [one, two] = snapshot.messages;
    assert.notEqual(one!.uidl, two!.uidl);
    assert.match(one!.uidl, /^[0-9a-f]{16}$/);
    assert.match(two!.uidl, /^[0-9a-f]{32}$/);
    const [wire] = await wireStrings(snapshot);
    assert.ok(wire!.endsWith('Hello,\r\nFrom the start of a line, as mboxo quotes it\r\n'));
    await assertMatchesReference(snapshot, b(file));
    assert.deepEqual((await fullScan(path)).messages, snapshot.messages);
    assert.equal(await pythonCount(path), 2);
  });

  it('finds every message of a file read in many pieces, several of them in flight at once', async () => {
    const { path, indexDir } = fresh();
    // ~13 MB: more pieces than reads in flight, with messages straddling every piece boundary
    const messages: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const body = `${'z'.repeat(30 + ((i * 7919) % 120))}\n`.repeat(20 + ((i * 104729) % 80));
      messages.push(`From sender${i} Mon Dec  7 10:00:00 2026\nSubject: ${i}\n\n${body}\n`);
    }
    const file = b(messages.join(''));
    await fs.writeFile(path, file);
    const snapshot = await scanMailbox(path, { indexDir });
    assert.equal(snapshot.messages.length, 1500);
    await assertMatchesReference(snapshot, file);
    // a scan limited to a prefix that ends inside a piece stops there
    const half = Math.floor(file.length / 2);
    const copy = fresh().path;
    await fs.writeFile(copy, file.subarray(0, half));
    assert.deepEqual((await fullScan(path, half)).messages, (await fullScan(copy)).messages);
  });

  it('keeps memory bounded on a 50 MB message with a 10 MB line', async () => {
    const { path, indexDir } = fresh();
    const out = createWriteStream(path);
    const write = (chunk: string | Buffer): Promise<void> =>
      new Promise((resolve, reject) => out.write(chunk, (err) => (err ? reject(err) : resolve())));
    await write('From small Mon\nSubject: a\n\nhi\n\nFrom huge Tue\nSubject: huge\n\n');
    const line = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 10; i++) await write(line); // one 10 MB line
    await write('\n');
    const lines = Buffer.from(`${'b'.repeat(99)}\n`.repeat(10_000)); // ~1 MB of 100-byte lines
    for (let i = 0; i < 40; i++) await write(lines);
    await write('\nFrom last Wed\nSubject: c\n\n');
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const fileSize = (await fs.stat(path)).size;

    const base = process.memoryUsage().rss;
    let peak = base;
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 2);
    try {
      const snapshot = await scanMailbox(path, { indexDir });
      assert.equal(snapshot.messages.length, 3);
      const huge = snapshot.messages[1]!;
      assert.equal(huge.size, 'Subject: huge\n\n'.length + 2 + 10 * 1024 * 1024 + 2 + 400_000 * 101);
      let bytes = 0;
      for await (const chunk of retrieveMessage(path, huge)) bytes += (chunk as Buffer).length;
      assert.equal(bytes, huge.size);
    } finally {
      clearInterval(timer);
    }
    const growth = peak - base;
    assert.ok(
      growth < fileSize / 2,
      `rss grew by ${(growth / 1e6).toFixed(1)} MB for a ${(fileSize / 1e6).toFixed(0)} MB file`,
    );
  });
});

describe('scanMailbox: UIDL', () => {
  // Values printed by Debian's popa3d 1.0.3 (UIDL command) for this very mailbox, except the
  // fifth (popa3d gave it the first one's value again) and the sixth (popa3d ignores X-UIDL).
  const popa3dMailbox = [
    'Return-Path: <a@b>\nReceived: from x by y\n\tid 1; Wed, 1 Jan 2026\nReceived: second\nDate: d\n' +
      'Message-ID: <m@x>\nDelivered-To: bob@x\nX-Delivery-ID: abc\nSubject: one\n\nbody\n',
    'Date: early date\nmessage-id: <lower@x>\nDELIVERED-TO: upper\nReceived: r1\n (folded)\n' +
      'x-delivery-id: lowercase-x\nX-DELIVERY-ID: upper-X\nSubject: two\n\nbody2\n>From quoted\n',
    'Subject: nothing hashed\n\nno hashed headers\n',
    'Received : space before colon\nDelivered-To: a\nDelivered-To: b\n\n',
    'Received: from x by y\n\tid 1; Wed, 1 Jan 2026\nReceived: second\nDate: d\nMessage-ID: <m@x>\n' +
      'Delivered-To: bob@x\nX-Delivery-ID: abc\nSubject: one\n\nbody\n',
    'X-UIDL: qpopper123\nReceived: z\n\nb\n',
    `Received: ${'L'.repeat(200_000)}\nSubject: long\n\nx\n`,
  ];
  const popa3dFile = popa3dMailbox.map((m) => `From a@b  Wed Nov 25 11:54:57 2026\n${m}\n`).join('');

  it('gives the UIDLs popa3d gives, X-UIDL and duplicates aside', async () => {
    const { path } = fresh();
    await fs.writeFile(path, popa3dFile, 'latin1');
    const snapshot = await fullScan(path);
    const uidls = snapshot.messages.map((m) => m.uidl);
    assert.deepEqual(
      [uidls[0], uidls[1], uidls[2], uidls[3], uidls[6]],
      ['63150f42d10c33da', '11582e9f8b2218e2', 'd98c1dd404b2008f', '5c3a0d58efb3fef7', 'e2afffd7d029164b'],
    );
    const fromKey = b('a@b  Wed Nov 25 11:54:57 2026');
    assert.equal(uidls[4], refUnique('63150f42d10c33da', fromKey, new Set(['63150f42d10c33da'])));
    assert.equal(uidls[5], 'qpopper123');
    await assertMatchesReference(snapshot, b(popa3dFile));
  });

  it('honours X-UIDL (first field, unfolded, trimmed) only when it is 1-70 printable characters', async () => {
    const { path } = fresh();
    const messages = [
      'X-UIDL:   spaced-out   \nReceived: a\n\n',
      'X-UIDL:\n folded-value\nReceived: b\n\n',
      'x-uidl: lower-case-name\n\n',
      'X-UIDL: two words\nReceived: c\n\n',
      `X-UIDL: ${'x'.repeat(71)}\nReceived: d\n\n`,
      'X-UIDL: \nReceived: e\n\n',
      'Subject: s\n\nX-UIDL: in-the-body\n',
      'X-UIDL: first\nX-UIDL: second\n\n',
    ];
    const file = messages.map((m) => `From a Mon\n${m}\n`).join('');
    await fs.writeFile(path, file);
    const snapshot = await fullScan(path);
    const uidls = snapshot.messages.map((m) => m.uidl);
    assert.deepEqual(uidls.slice(0, 3), ['spaced-out', 'folded-value', 'lower-case-name']);
    for (const i of [3, 4, 5, 6]) assert.match(uidls[i]!, /^[0-9a-f]{16}$/, `message ${i + 1}`);
    assert.equal(uidls[7], 'first');
    await assertMatchesReference(snapshot, b(file));
  });

  it('makes a repeated X-UIDL unique too', async () => {
    const { path } = fresh();
    await fs.writeFile(path, 'From a Mon\nX-UIDL: same\n\nFrom a Mon\nX-UIDL: same\n\n');
    const uidls = (await fullScan(path)).messages.map((m) => m.uidl);
    assert.equal(uidls[0], 'same');
    assert.match(uidls[1]!, /^[0-9a-f]{32}$/);
  });

  it('keeps UIDLs across rescans, appends and the deletion of other messages', async () => {
    const { path, indexDir } = fresh();
    const distinct = (i: number): string => `Received: from host${i}\nSubject: ${i}\n\nbody ${i}\n`;
    const twin = 'Received: from twin\nSubject: twin\n\nsame\n';
    const entries = [distinct(1), twin, distinct(2), twin, distinct(3), twin].map((m) => `From a Mon\n${m}\n`);
    await fs.writeFile(path, entries.join(''));
    const before = (await scanMailbox(path, { indexDir })).messages.map((m) => m.uidl);
    assert.equal(new Set(before).size, 6);
    assert.deepEqual(
      (await fullScan(path)).messages.map((m) => m.uidl),
      before,
    );

    // another program deletes message 3 (and the later twin, message 6): the others keep theirs
    await fs.writeFile(path, [0, 1, 3, 4].map((i) => entries[i]).join(''));
    assert.deepEqual(
      (await fullScan(path)).messages.map((m) => m.uidl),
      [0, 1, 3, 4].map((i) => before[i]),
    );
    assert.deepEqual(
      (await scanMailbox(path, { indexDir })).messages.map((m) => m.uidl),
      [0, 1, 3, 4].map((i) => before[i]),
    );

    // new deliveries, a twin among them: old UIDLs stay, new ones are unique
    await fs.appendFile(path, `From a Mon\n${twin}\nFrom a Mon\n${distinct(4)}\n`);
    const afterAppend = (await scanMailbox(path, { indexDir })).messages.map((m) => m.uidl);
    assert.deepEqual(
      afterAppend.slice(0, 4),
      [0, 1, 3, 4].map((i) => before[i]),
    );
    assert.equal(new Set(afterAppend).size, 6);
    assert.deepEqual(
      (await fullScan(path)).messages.map((m) => m.uidl),
      afterAppend,
    );
  });

  it('numbers many identical twins in linear time (a mail loop)', async () => {
    const { path, indexDir } = fresh();
    const twins = 30_000;
    await fs.writeFile(
      path,
      'From loop@example.org Mon\nReceived: from loop\nSubject: again\n\nsame\n\n'.repeat(twins),
    );
    // the numbers taken are looked up as the twins are numbered: a few lookups each, not one per earlier twin
    const setHas = Set.prototype.has;
    const mapHas = Map.prototype.has;
    let lookups = 0;
    Set.prototype.has = function (this: Set<unknown>, value: unknown) {
      lookups += 1;
      return setHas.call(this, value);
    };
    Map.prototype.has = function (this: Map<unknown, unknown>, key: unknown) {
      lookups += 1;
      return mapHas.call(this, key);
    };
    let snapshot: Awaited<ReturnType<typeof scanMailbox>>;
    try {
      snapshot = await scanMailbox(path, { indexDir });
    } finally {
      Set.prototype.has = setHas;
      Map.prototype.has = mapHas;
    }
    assert.equal(new Set(snapshot.messages.map((m) => m.uidl)).size, twins);
    assert.ok(lookups < 10 * twins, `${lookups} set lookups for ${twins} twins`);
    await fs.appendFile(path, 'From loop@example.org Mon\nReceived: from loop\nSubject: again\n\nsame\n\n');
    const appended = await scanMailbox(path, { indexDir });
    assert.deepEqual(appended.messages.slice(0, twins), snapshot.messages);
    assert.deepEqual(appended, await fullScan(path));
  });

  it('tells twins apart by their From_ lines, so deleting one keeps the other', async () => {
    const { path } = fresh();
    const twin = 'Received: from twin\n\nsame\n';
    const entries = ['Mon', 'Tue', 'Wed'].map((day) => `From a ${day}\n${twin}\n`);
    await fs.writeFile(path, entries.join(''));
    const all = (await fullScan(path)).messages.map((m) => m.uidl);
    await fs.writeFile(path, entries[0]! + entries[2]!);
    assert.deepEqual(
      (await fullScan(path)).messages.map((m) => m.uidl),
      [all[0], all[2]],
    );
  });
});

describe('scanMailbox: index', () => {
  /** A mailbox of n messages with distinct headers, written as append.ts would. */
  async function writeMailbox(path: string, n: number, from = 0): Promise<void> {
    const entries: Buffer[] = [];
    for (let i = from; i < from + n; i++) {
      entries.push(
        await mboxrdEntry(
          b(`Received: from h${i}\r\nSubject: m${i}\r\n\r\n${`line ${i}\r\n`.repeat(10)}From here\r\n`),
        ),
      );
    }
    await fs.appendFile(path, Buffer.concat(entries));
  }

  it('reuses the index of an unchanged mailbox, reading only the fingerprints', async () => {
    const { path, indexDir } = fresh();
    await writeMailbox(path, 200);
    const first = await scanMailbox(path, { indexDir });
    const stats = newStats();
    const second = await scanMailbox(path, { indexDir, stats });
    assert.deepEqual(second, first);
    assert.equal(stats.mode, 'unchanged');
    assert.equal(stats.reusedMessages, 200);
    assert.ok(stats.bytesRead <= 2 * 4096, `read ${stats.bytesRead} bytes`);
    assert.equal((await fs.stat(indexPathOf(path, indexDir))).mode & 0o777, 0o600);
  });

  it('after an append reads only the last indexed message and the new part', async () => {
    const { path, indexDir } = fresh();
    await writeMailbox(path, 2000);
    const first = await scanMailbox(path, { indexDir });
    const oldSize = first.scannedSize;
    for (let i = 0; i < 10; i++) {
      await appendMessage({
        mailboxPath: path,
        source: Readable.from([b(`Subject: new ${i}\r\n\r\nnew\r\n`)]),
        sender: 'bob@example.org',
        date: DATE,
        addHeaders: [`Received: from new${i}`],
        sizeLimit: 0,
        lockTimeoutMs: 2000,
      });
    }
    const newSize = (await fs.stat(path)).size;
    const stats = newStats();
    const second = await scanMailbox(path, { indexDir, stats });
    assert.equal(stats.mode, 'appended');
    assert.equal(stats.reusedMessages, 1999);
    const last = first.messages[1999]!;
    assert.ok(
      stats.bytesRead <= newSize - oldSize + last.spanLength + 4 * 4096,
      `read ${stats.bytesRead} bytes of ${newSize}`,
    );
    assert.equal(second.messages.length, 2010);
    assert.deepEqual(second, await fullScan(path));
  });

  it('rescans a message that had no final newline once more is appended', async () => {
    const { path, indexDir } = fresh();
    await fs.writeFile(path, 'From a Mon\nSubject: x\n\nno newline');
    const first = await scanMailbox(path, { indexDir });
    await appendMessage({
      mailboxPath: path,
      source: Readable.from([b('Subject: y\r\n\r\nz\r\n')]),
      sender: 'bob@example.org',
      date: DATE,
      addHeaders: [],
      sizeLimit: 0,
      lockTimeoutMs: 2000,
    });
    const second = await scanMailbox(path, { indexDir });
    assert.deepEqual(second, await fullScan(path));
    assert.equal(second.messages[0]!.size, first.messages[0]!.size);
    assert.equal(second.messages[0]!.contentLength, first.messages[0]!.contentLength + 1);
  });

  it('rescans fully when the start changed at the same size, or the middle changed (mtime)', async () => {
    const { path, indexDir } = fresh();
    await writeMailbox(path, 100);
    const original = await fs.readFile(path);
    await scanMailbox(path, { indexDir });

    const startChanged = Buffer.from(original);
    startChanged.write('Received: from XX', startChanged.indexOf('Received: from h0'), 'latin1');
    await fs.writeFile(path, startChanged);
    const stats = newStats();
    const snapshot = await scanMailbox(path, { indexDir, stats });
    assert.equal(stats.mode, 'full');
    assert.ok(stats.bytesRead >= original.length);
    assert.deepEqual(snapshot, await fullScan(path));

    const middleChanged = Buffer.from(startChanged);
    middleChanged.write('Subject: XX', middleChanged.indexOf('Subject: m50'), 'latin1');
    const { mtime } = await fs.stat(path);
    await fs.writeFile(path, middleChanged);
    const later = new Date(mtime.getTime() + 1000);
    await fs.utimes(path, later, later);
    const stats2 = newStats();
    const snapshot2 = await scanMailbox(path, { indexDir, stats: stats2 });
    assert.equal(stats2.mode, 'full');
    assert.deepEqual(snapshot2, await fullScan(path));
  });

  it('rescans fully a shrunk or replaced mailbox', async () => {
    const { path, indexDir } = fresh();
    await writeMailbox(path, 20);
    await scanMailbox(path, { indexDir });
    const content = await fs.readFile(path);
    await fs.writeFile(path, content.subarray(0, content.length - 100));
    const stats = newStats();
    assert.deepEqual(await scanMailbox(path, { indexDir, stats }), await fullScan(path));
    assert.equal(stats.mode, 'full');

    await fs.writeFile(path, content);
    await scanMailbox(path, { indexDir });
    const stats2 = newStats();
    await fs.writeFile(`${path}.new`, content);
    await fs.rename(`${path}.new`, path);
    const snapshot = await scanMailbox(path, { indexDir, stats: stats2 });
    assert.equal(stats2.mode, 'full');
    assert.deepEqual(snapshot, await fullScan(path));
  });

  it('ignores a corrupt or inconsistent index', async () => {
    const { path, indexDir } = fresh();
    await writeMailbox(path, 10);
    const good = await scanMailbox(path, { indexDir });
    const indexPath = indexPathOf(path, indexDir);
    const file = await fs.readFile(indexPath);
    const flipped = Buffer.from(file);
    flipped[flipped.length - 20] ^= 1; // a UIDL byte: the checksum no longer matches
    const corrupt = [
      file.subarray(0, file.length - 7),
      flipped,
      b('MAILSRV-MBOX-INDEX 1\n{"path":'),
      b('garbage'),
      Buffer.alloc(0),
    ];
    for (const bad of corrupt) {
      await fs.writeFile(indexPath, bad);
      const stats = newStats();
      assert.deepEqual(await scanMailbox(path, { indexDir, stats }), good);
      assert.equal(stats.mode, 'full');
    }
    // intact, but inconsistent with itself: a message reaching past the scanned part
    const messages = good.messages.map((m, i) => (i === 9 ? { ...m, contentLength: m.contentLength + 1000 } : m));
    await saveIndex({ ...good, messages }, indexDir);
    const stats = newStats();
    assert.deepEqual(await scanMailbox(path, { indexDir, stats }), good);
    assert.equal(stats.mode, 'full');
  });

  it('reports an unwritable index and still returns the snapshot', async () => {
    const { path } = fresh();
    await writeMailbox(path, 3);
    const blocker = join(dir, `blocker${++counter}`);
    await fs.writeFile(blocker, 'a file where the index directory should be');
    const errors: Error[] = [];
    const snapshot = await scanMailbox(path, { indexDir: blocker, onIndexError: (err) => errors.push(err) });
    assert.equal(snapshot.messages.length, 3);
    assert.ok(errors.length > 0);
  });

  it('saveIndex: a rewritten mailbox opens from the saved index without a rescan', async () => {
    const { path, indexDir } = fresh();
    await writeMailbox(path, 5);
    const snapshot = await scanMailbox(path, { indexDir });
    // what expunge.ts does: rewrite the file in place without message 2, then save the new offsets
    const content = await fs.readFile(path);
    const removed = snapshot.messages[1]!;
    const handle = await fs.open(path, 'r+');
    const rest = content.subarray(removed.offset + removed.spanLength);
    await handle.write(rest, 0, rest.length, removed.offset);
    await handle.truncate(content.length - removed.spanLength);
    await handle.close();
    const messages = snapshot.messages
      .filter((m) => m !== removed)
      .map((m) =>
        m.offset < removed.offset
          ? m
          : { ...m, offset: m.offset - removed.spanLength, contentOffset: m.contentOffset - removed.spanLength },
      );
    const rewritten: MailboxSnapshot = {
      ...snapshot,
      scannedSize: snapshot.scannedSize - removed.spanLength,
      messages,
    };
    await saveIndex(rewritten, indexDir);
    const stats = newStats();
    assert.deepEqual(await scanMailbox(path, { indexDir, stats }), rewritten);
    assert.equal(stats.mode, 'unchanged');
    assert.deepEqual(rewritten.messages, (await fullScan(path)).messages);

    await assert.rejects(saveIndex({ ...rewritten, ino: rewritten.ino + 1 }, indexDir), MailboxChangedError);
    await assert.rejects(
      saveIndex({ ...rewritten, scannedSize: rewritten.scannedSize + 1 }, indexDir),
      MailboxChangedError,
    );
  });
});

describe('scanMailbox: properties', () => {
  const byteString = (min: number, max: number): fc.Arbitrary<string> =>
    fc
      .uint8Array({ minLength: min, maxLength: max })
      .map((bytes) => Buffer.from(bytes.filter((x) => x !== 0x0a && x !== 0x0d)).toString('latin1'));

  /** Message lines that exercise the reader: From_ lookalikes, quoting, blank lines, 8-bit bytes. */
  const messageLine = fc.oneof(
    fc.constantFrom(
      '',
      '',
      'From x',
      'From ',
      '>From y',
      '>>From z',
      '>>>',
      '>Fro',
      'From',
      'Received: r',
      'Date: d',
      'X-UIDL: u1',
      ' cont',
      '.',
    ),
    byteString(0, 40),
  );
  const message = fc
    .tuple(fc.array(messageLine, { maxLength: 12 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
    .map(([lines, eol, finalEol]) => b(lines.join(eol) + (finalEol && lines.length > 0 ? eol : '')));

  it('gives back exactly the messages written with fromLine + MboxrdQuoter', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(message, { maxLength: 8 }), async (messages) => {
        const { path } = fresh();
        await fs.writeFile(path, Buffer.concat(await Promise.all(messages.map((m) => mboxrdEntry(m)))));
        const snapshot = await fullScan(path);
        assert.deepEqual(await wires(snapshot), messages.map(expectedWire));
        assert.deepEqual(
          snapshot.messages.map((m) => m.size),
          messages.map((m) => expectedWire(m).length),
        );
        assert.equal(new Set(snapshot.messages.map((m) => m.uidl)).size, messages.length);
        await fs.rm(path);
      }),
      { numRuns: 150 },
    );
  });

  it('agrees with Python mailbox.mbox on the message count', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 12 }), async (messages) => {
        const { path } = fresh();
        await fs.writeFile(path, Buffer.concat(await Promise.all(messages.map((m) => mboxrdEntry(m)))));
        assert.equal((await fullScan(path)).messages.length, await pythonCount(path));
        await fs.rm(path);
      }),
      { numRuns: 8 },
    );
  });

  /** Raw files: any mix of lines, LF or CRLF, long lines across read and carry boundaries. */
  const rawLine = fc.oneof(
    { weight: 12, arbitrary: messageLine },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        'From a Mon',
        'From b Tue',
        'X-Delivery-ID: q',
        'x-delivery-id: q',
        'Delivered-To: u',
        'Message-ID: <i>',
        'X-UIDL:',
        '\tfold',
      ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom('x', '>', 'From ', 'Received: ', 'X-UIDL: ', '>>From '),
          fc.integer({ min: 60_000, max: 200_000 }),
        )
        .map(([start, n]) => (start === '>' ? `${'>'.repeat(n)}From z` : start + 'y'.repeat(n))),
    },
  );
  const rawFile = fc
    .tuple(fc.array(fc.tuple(rawLine, fc.constantFrom('\n', '\r\n', '\n')), { maxLength: 60 }), fc.boolean())
    .map(([lines, finalEol]) => {
      const text = lines.map(([line, eol], i) => line + (i < lines.length - 1 || finalEol ? eol : '')).join('');
      return b(text);
    });

  it('agrees with a reference reader on any file, and in two steps with the index', async () => {
    await fc.assert(
      fc.asyncProperty(rawFile, fc.double({ min: 0, max: 1, noNaN: true }), async (file, cutAt) => {
        const { path, indexDir } = fresh();
        await fs.writeFile(path, file);
        const full = await fullScan(path);
        await assertMatchesReference(full, file);

        const cut = Math.floor(cutAt * file.length);
        await fs.writeFile(path, file.subarray(0, cut));
        await scanMailbox(path, { indexDir });
        await fs.appendFile(path, file.subarray(cut));
        assert.deepEqual((await scanMailbox(path, { indexDir })).messages, full.messages);
        await fs.rm(path);
        await fs.rm(indexDir, { recursive: true, force: true });
      }),
      { numRuns: 60 },
    );
  });
});
