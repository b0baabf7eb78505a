// User names: what normalizeUsername accepts, lowercases and rejects; nothing it accepts
// can name a path outside the spool directory.
import assert from 'node:assert/strict';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { normalizeUsername, USERNAME_MAX_LENGTH, USERNAME_PATTERN } from '../../src/auth/username.js';

test('valid names are accepted and lowercased', () => {
  assert.equal(normalizeUsername('kate'), 'kate');
  assert.equal(normalizeUsername('Kate.Smith'), 'kate.smith');
  assert.equal(normalizeUsername('POSTMASTER'), 'postmaster');
  assert.equal(normalizeUsername('0day_user-2'), '0day_user-2');
  assert.equal(normalizeUsername('a'.repeat(USERNAME_MAX_LENGTH)), 'a'.repeat(USERNAME_MAX_LENGTH));
});

test('hostile and malformed names are rejected', () => {
  const bad = [
    '',
    '.',
    '..',
    '../x',
    '../../etc/passwd',
    'a/b',
    '/etc',
    'x/..',
    '.hidden',
    '-rf',
    '_x',
    'a\0b',
    'a\nb',
    'a b',
    ' kate',
    'kate ',
    'kate@example.org',
    'a:b',
    'ké',
    'kate\\x',
    '\u212Aate', // KELVIN SIGN, which toLowerCase() turns into an ASCII "k"
    'İ',
    'a'.repeat(USERNAME_MAX_LENGTH + 1),
  ];
  for (const name of bad) assert.equal(normalizeUsername(name), null, JSON.stringify(name));
});

test('property: any accepted name is a plain, lowercase file name inside the spool', () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[A-Za-z0-9._/-]{0,70}$/)),
      (input) => {
        const name = normalizeUsername(input);
        if (name === null) return;
        assert.ok(!name.includes('/') && !name.includes('\0'));
        assert.ok(name !== '.' && name !== '..' && !name.startsWith('.'));
        assert.match(name, USERNAME_PATTERN);
        assert.equal(normalizeUsername(name), name);
        assert.equal(basename(join('/var/mail', name)), name);
        assert.equal(join('/var/mail', name), `/var/mail/${name}`);
      },
    ),
    { numRuns: 2000 },
  );
});

test('property: every name built from the allowed alphabet is accepted, case-insensitively', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), (input) => {
      assert.equal(normalizeUsername(input), input.toLowerCase());
    }),
  );
});
