// Unit tests for src/queue/drop-dir.ts, the drop directory and its files: what writeDropFile
// leaves (atomically, readable by the daemon's user whatever the umask, nothing on failure), what
// openDropFile accepts from an untrusted writer (and every kind of file or content it refuses),
// LF→CRLF conversion at any chunking, and the directory modes prepareDropDir sets.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { isSafeAddress } from '../../src/message/address.js';
import { CrlfConverter } from '../../src/message/crlf.js';
import { statePaths } from '../../src/paths.js';
import {
  isDropFileName,
  DropFileFormatError,
  MAX_ENVELOPE_LINE,
  openDropFile,
  prepareDropDir,
  writeDropFile,
} from '../../src/queue/drop-dir.js';
import { splitAt } from '../support/chunks.js';

const envelope = { sender: 'root@mx.test', recipients: ['alice@example.test', 'bob@example.test'] };
const message = 'Subject: hi\r\n\r\nbody\r\n';

const tempDirs: string[] = [];
after(() => Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-maildrop-'));
  tempDirs.push(dir);
  return dir;
}

/** A file with raw content under a final name. */
async function planted(dir: string, content: string | Buffer): Promise<string> {
  const path = join(dir, '2386Z6F820YWQVRB-ba33aa275e4fbbf8');
  await writeFile(path, content);
  return path;
}

async function refusal(path: string, sizeLimit = 1_000_000): Promise<string> {
  try {
    const file = await openDropFile(path, sizeLimit);
    await file.close();
  } catch (err) {
    assert.ok(err instanceof DropFileFormatError, `not a DropFileFormatError: ${(err as Error).stack}`);
    return err.message;
  }
  return assert.fail(`${path} was accepted`);
}

describe('writeDropFile', () => {
  test('leaves one file under a final name: envelope line, then message; mode 0644 whatever the umask', async () => {
    const dir = await freshDir();
    const old = process.umask(0o077);
    let name: string;
    try {
      name = await writeDropFile(dir, envelope, Readable.from([Buffer.from(message)]));
    } finally {
      process.umask(old);
    }
    assert.ok(isDropFileName(name), name);
    assert.deepEqual(await readdir(dir), [name]);
    const content = await readFile(join(dir, name), 'utf8');
    assert.equal(
      content,
      `{"v":1,"sender":"root@mx.test","recipients":["alice@example.test","bob@example.test"]}\n${message}`,
    );
    assert.equal((await stat(join(dir, name))).mode & 0o777, 0o644);
  });

  test('a message stream that fails leaves nothing behind', async () => {
    const dir = await freshDir();
    const failing = Readable.from(
      (async function* () {
        yield Buffer.from('Subject: x\r\n');
        throw new Error('message too big');
      })(),
    );
    await assert.rejects(writeDropFile(dir, envelope, failing), /message too big/);
    assert.deepEqual(await readdir(dir), []);
  });

  test('an envelope a reader would refuse is never written', async () => {
    const dir = await freshDir();
    for (const bad of [
      { sender: 'a b@c.test', recipients: ['x@y.test'] },
      { sender: 'a@b.test', recipients: [] },
      { sender: 'a@b.test', recipients: ['x@y.test\r\nRCPT TO:<z@evil.test>'] },
      { sender: 'a@b.test', recipients: ['nodomain'] },
    ]) {
      await assert.rejects(
        writeDropFile(dir, bad, Readable.from([Buffer.from(message)])),
        DropFileFormatError,
        JSON.stringify(bad),
      );
    }
    assert.deepEqual(await readdir(dir), []);
  });
});

describe('openDropFile', () => {
  test('reads back what writeDropFile wrote: envelope, owner, size and the message', async () => {
    const dir = await freshDir();
    const name = await writeDropFile(
      dir,
      { sender: '', recipients: ['alice@example.test'] },
      Readable.from([Buffer.from(message)]),
    );
    const file = await openDropFile(join(dir, name), 1000);
    try {
      assert.equal(file.sender, '');
      assert.deepEqual(file.recipients, ['alice@example.test']);
      assert.equal(file.uid, process.getuid!());
      assert.equal(file.size, Buffer.byteLength(message));
      assert.equal(await text(file.openMessage()), message);
      assert.equal(await text(file.openMessage()), message, 'the message can be read twice');
    } finally {
      await file.close();
    }
  });

  test('a bare LF in the file (written by hand) reaches the queue as CRLF; the size is the one on disk', async () => {
    const dir = await freshDir();
    const path = await planted(dir, `{"v":1,"sender":"a@b.test","recipients":["c@d.test"]}\nSubject: x\n\n.\nbody\r\n`);
    const file = await openDropFile(path, 1000);
    try {
      assert.equal(await text(file.openMessage()), 'Subject: x\r\n\r\n.\r\nbody\r\n');
      assert.equal(file.size, 'Subject: x\n\n.\nbody\r\n'.length);
    } finally {
      await file.close();
    }
  });

  test('refuses content no writer of ours makes', async () => {
    const dir = await freshDir();
    const recipients1001 = JSON.stringify(Array.from({ length: 1001 }, (_, i) => `u${i}@d.test`));
    const cases: [string | Buffer, RegExp][] = [
      ['no line end at all', /no envelope line/],
      [`{"v":1,"sender":"a@b.test","recipients":["c@d.test"]}\n`, /no message/],
      [`{"v":1,"sender":"a@b.test","recipients":["c@d.test"]\nx\r\n`, /not JSON/],
      [`[1,2]\nx\r\n`, /not a JSON object/],
      [`{"v":2,"sender":"a@b.test","recipients":["c@d.test"]}\nx\r\n`, /version 2/],
      [`{"v":1,"sender":"a@b.test","recipients":["c@d.test"],"uid":0}\nx\r\n`, /exactly v, sender and recipients/],
      [`{"v":1,"sender":"a@b.test"}\nx\r\n`, /exactly v, sender and recipients/],
      [`{"v":1,"sender":"a@b.test\\r\\nX: y","recipients":["c@d.test"]}\nx\r\n`, /bad sender/],
      [`{"v":1,"sender":5,"recipients":["c@d.test"]}\nx\r\n`, /bad sender/],
      [`{"v":1,"sender":"a@b.test","recipients":[]}\nx\r\n`, /no recipients/],
      [`{"v":1,"sender":"a@b.test","recipients":"c@d.test"}\nx\r\n`, /no recipients/],
      [`{"v":1,"sender":"a@b.test","recipients":["c@d.test",7]}\nx\r\n`, /bad recipient/],
      [`{"v":1,"sender":"a@b.test","recipients":["<c@d.test>"]}\nx\r\n`, /bad recipient/],
      [`{"v":1,"sender":"a@b.test","recipients":${recipients1001}}\nx\r\n`, /too many recipients/],
      [
        Buffer.concat([
          Buffer.from('{"v":1,"sender":"a@b.test","recipients":["c@d.test"],"x":"'),
          Buffer.from([0xff, 0xfe]),
          Buffer.from('"}\nx\r\n'),
        ]),
        /not JSON in UTF-8/,
      ],
      [
        `{"v":1,"sender":"a@b.test","recipients":["c@d.test"],"pad":"${'x'.repeat(MAX_ENVELOPE_LINE)}"}\nx\r\n`,
        /no envelope line within/,
      ],
    ];
    for (const [content, reason] of cases) {
      const path = await planted(dir, content);
      assert.match(await refusal(path), reason, String(content).slice(0, 120));
    }
  });

  test('refuses a message over the size limit without reading it', async () => {
    const dir = await freshDir();
    const path = await planted(dir, `{"v":1,"sender":"a@b.test","recipients":["c@d.test"]}\n${'x'.repeat(101)}`);
    assert.match(await refusal(path, 100), /message too big \(101 bytes, limit 100\)/);
    await (await openDropFile(path, 101)).close();
  });

  test('refuses a symbolic link, a hard link to another file, a FIFO and a directory', async () => {
    const dir = await freshDir();
    const good = join(await freshDir(), 'secret');
    await writeFile(good, `{"v":1,"sender":"a@b.test","recipients":["c@d.test"]}\nsecret\r\n`);
    const symbolic = join(dir, '2386Z6F820YWQVRB-0000000000000001');
    await symlink(good, symbolic);
    assert.match(await refusal(symbolic), /symbolic link/);
    const hard = join(dir, '2386Z6F820YWQVRB-0000000000000002');
    await link(good, hard);
    assert.match(await refusal(hard), /2 links/);
    const fifo = join(dir, '2386Z6F820YWQVRB-0000000000000003');
    execFileSync('mkfifo', [fifo]);
    assert.match(await refusal(fifo), /not a regular file/);
    const directory = join(dir, '2386Z6F820YWQVRB-0000000000000004');
    await mkdir(directory);
    assert.match(await refusal(directory), /not a regular file/);
  });
});

describe('names, addresses and line ends', () => {
  test('final names: a queue id, "-", 16 hex digits; temp names are not final', () => {
    assert.ok(isDropFileName('2386Z6F820YWQVRB-ba33aa275e4fbbf8'));
    for (const name of [
      'tmp-08a120db011792258b84349ffd4dbd94',
      '2386Z6F820YWQVRB',
      '2386Z6F820YWQVRB-BA33AA275E4FBBF8',
      '2386Z6F820YWQVRA-ba33aa275e4fbbf8',
      '../2386Z6F820YWQVRB-ba33aa275e4fbb',
      '.',
      '',
    ]) {
      assert.equal(isDropFileName(name), false, name);
    }
  });

  test('safe addresses: local@domain without spaces, controls, brackets or quotes', () => {
    for (const good of ['a@b', 'first.last+tag@example.org', 'jörg@bücher.example', 'MAILER-DAEMON@mx.test'])
      assert.ok(isSafeAddress(good), good);
    for (const bad of [
      '',
      'a',
      '@b',
      'a@',
      'a@b@c',
      'a b@c',
      'a@b\r\n',
      'a\0@b',
      '<a@b>',
      '"a"@b',
      'a@[1.2.3.4]',
      'a,b@c',
      '-f@b',
      `${'x'.repeat(65)}@b`,
    ]) {
      assert.equal(isSafeAddress(bad), false, JSON.stringify(bad));
    }
  });

  test('CrlfConverter: bare LF gets a CR, CRLF and lone CR stay, at any chunking', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', '\n', '\r', '\r\n', '.', 'From '), { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (parts, cuts) => {
          const input = parts.join('');
          const expected = input.replace(/(?<!\r)\n/g, '\r\n');
          const converter = new CrlfConverter();
          const output = splitAt(input, cuts)
            .map((chunk) => converter.convert(Buffer.from(chunk, 'latin1')).toString('latin1'))
            .join('');
          assert.equal(output, expected);
        },
      ),
    );
  });
});

describe('prepareDropDir', () => {
  test('state_dir 0711, maildrop 1733 (created, or repaired when it exists)', async () => {
    const state = await freshDir();
    const dir = await prepareDropDir(state, null);
    assert.equal(dir, statePaths(state).dropDir);
    assert.equal((await stat(state)).mode & 0o7777, 0o711);
    assert.equal((await stat(dir)).mode & 0o7777, 0o1733);
    execFileSync('chmod', ['0700', dir]);
    await prepareDropDir(state, null);
    assert.equal((await stat(dir)).mode & 0o7777, 0o1733);
  });

  test("refuses a symbolic link in the maildrop's place and leaves its target alone", async () => {
    const state = await freshDir();
    const target = await freshDir();
    execFileSync('chmod', ['0700', target]);
    await symlink(target, statePaths(state).dropDir);
    await assert.rejects(prepareDropDir(state, null), /ELOOP|ENOTDIR/);
    assert.equal((await lstat(target)).mode & 0o7777, 0o700);
  });

  test("as root: the maildrop is given to the daemon's user and group", {
    skip: process.getuid?.() !== 0 && 'needs root',
  }, async () => {
    const state = await freshDir();
    const dir = await prepareDropDir(state, { uid: 65534, gid: 65534 });
    const info = await stat(dir);
    assert.deepEqual([info.uid, info.gid], [65534, 65534]);
  });
});
