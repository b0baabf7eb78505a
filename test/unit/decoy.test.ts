// Unit tests for src/auth/decoy.ts: the decoy hash takes the users file's argon2 parameters (or
// those of new passwords), is a hash argon2 really checks (a malformed one would be refused at
// once, which timing would tell), and is made without hashing anything.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verify as argon2Verify } from '@node-rs/argon2';
import { DecoyHashes } from '../../src/auth/decoy.js';
import { ARGON2ID_PARAMS } from '../../src/auth/password.js';
import type { UserDb } from '../../src/auth/users.js';

function usersWithHashes(hashes: Record<string, string>): UserDb {
  const map = new Map(Object.entries(hashes));
  return { has: (name) => map.has(name), hashOf: (name) => map.get(name), names: () => [...map.keys()], problems: [] };
}

const PHC = /^\{ARGON2ID\}\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$/;

test("the decoy has the first {ARGON2ID} hash's parameters, and argon2 checks a password against it", async () => {
  const users = usersWithHashes({
    bob: '{SHA512-CRYPT}$6$salt$abc',
    alice: '{ARGON2ID}$argon2id$v=19$m=1024,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$3kCXvvHUXTVGJI1cNqcl8mCeGAmMKaTqCkUGXSVvRrg',
  });
  const decoy = new DecoyHashes().for(users);
  const m = PHC.exec(decoy);
  assert.ok(m, decoy);
  assert.deepEqual(m.slice(1, 4).map(Number), [1024, 3, 2]);
  // a parse error would throw: a real argon2 computation answers false
  assert.equal(await argon2Verify(decoy.slice('{ARGON2ID}'.length), 'any password'), false);
});

test("without an {ARGON2ID} hash in the file the decoy has new passwords' parameters; one decoy per file", () => {
  const decoys = new DecoyHashes();
  const users = usersWithHashes({ bob: '{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui' });
  const decoy = decoys.for(users);
  assert.deepEqual(PHC.exec(decoy)!.slice(1, 4).map(Number), [ARGON2ID_PARAMS.m, ARGON2ID_PARAMS.t, ARGON2ID_PARAMS.p]);
  assert.equal(decoys.for(users), decoy);
  assert.notEqual(decoys.for(usersWithHashes({})), decoy, 'a reloaded users file gets its own random decoy');
});

test('parameters out of bounds are not copied', () => {
  const users = usersWithHashes({
    eve:
      '{ARGON2ID}$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$' +
      '3kCXvvHUXTVGJI1cNqcl8mCeGAmMKaTqCkUGXSVvRrg',
  });
  assert.deepEqual(PHC.exec(new DecoyHashes().for(users))!.slice(1, 4).map(Number), [
    ARGON2ID_PARAMS.m,
    ARGON2ID_PARAMS.t,
    ARGON2ID_PARAMS.p,
  ]);
});
