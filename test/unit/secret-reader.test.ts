// Unit tests for secret-reader.ts: the root helper's read of a secret file refuses a symlink as
// the file or anywhere on the way, anything but a regular file, and more than MAX_SECRET_BYTES;
// a missing file is null. The direct read (not started as root) follows symlinks.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MAX_SECRET_BYTES, readSecretDirectly, readSecretNoSymlinks } from '../../src/secret-reader.js';

describe('secret files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailsrv-secret-'));
    await mkdir(join(dir, 'real'));
    await writeFile(join(dir, 'real/key.pem'), 'secret\n');
    await writeFile(join(dir, 'shadow'), 'root:x:\n');
    await symlink(join(dir, 'shadow'), join(dir, 'real/link.pem'));
    await symlink(join(dir, 'real'), join(dir, 'linked-dir'));
    await writeFile(join(dir, 'big'), Buffer.alloc(MAX_SECRET_BYTES + 1));
    await writeFile(join(dir, 'just-fits'), Buffer.alloc(MAX_SECRET_BYTES));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads a regular file, and a missing one is null', async () => {
    assert.equal((await readSecretNoSymlinks(join(dir, 'real/key.pem')))?.toString(), 'secret\n');
    assert.equal((await readSecretNoSymlinks(join(dir, 'just-fits')))?.length, MAX_SECRET_BYTES);
    assert.equal(await readSecretNoSymlinks(join(dir, 'real/missing.pem')), null);
  });

  test('the helper refuses a symlink as the file or as a directory on the way', async () => {
    await assert.rejects(readSecretNoSymlinks(join(dir, 'real/link.pem')), /is a symlink/);
    await assert.rejects(readSecretNoSymlinks(join(dir, 'linked-dir/key.pem')), /through a symlink/);
  });

  test('a direct read follows symlinks, as for any config file', async () => {
    assert.equal((await readSecretDirectly(join(dir, 'real/link.pem')))?.toString(), 'root:x:\n');
  });

  test('anything but a regular file, or a file too large, is refused', async () => {
    for (const read of [readSecretNoSymlinks, readSecretDirectly]) {
      await assert.rejects(read(join(dir, 'big')), /larger than/);
      await assert.rejects(read(join(dir, 'fifo')), /not a regular file/);
      await assert.rejects(read(join(dir, 'real')), /not a regular file|EISDIR/);
    }
  });
});
