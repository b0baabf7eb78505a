// Unit tests for src/filesystem-kind.ts: statfs types of network file systems are told from
// local ones; a directory that cannot be looked at does not count as local.
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOnLocalFilesystem, networkFilesystemName } from '../../src/filesystem-kind.js';

test('network file system types are named, local ones are not', () => {
  assert.equal(networkFilesystemName(0x6969), 'nfs');
  assert.equal(networkFilesystemName(0x65735546), 'fuse');
  // a type past 2^31 read as a signed 32-bit number is the same type
  assert.equal(networkFilesystemName(0xff534d42 | 0), 'cifs');
  assert.equal(networkFilesystemName(0xef53), null, 'ext4');
  assert.equal(networkFilesystemName(0x01021994), null, 'tmpfs');
});

test('a local directory is local; one that does not exist is not taken for local', () => {
  assert.equal(isOnLocalFilesystem(tmpdir()), true);
  assert.equal(isOnLocalFilesystem('/dev/shm'), true);
  assert.equal(isOnLocalFilesystem(join(tmpdir(), 'no-such-directory-here', 'x')), false);
});
