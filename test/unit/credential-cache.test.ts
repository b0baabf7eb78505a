// Unit tests for src/auth/credential-cache.ts: what a remembered login matches (user, stored
// hash, password, users file), its TTL, its size bound, and that it keeps no plaintext.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CredentialCache } from '../../src/auth/credential-cache.js';
import type { UserDb } from '../../src/auth/users.js';

function db(): UserDb {
  return { has: () => true, hashOf: () => undefined, names: () => [], problems: [] };
}

const HASH = '{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA';

test('a remembered login matches only the same user, stored hash and password', () => {
  const users = db();
  const cache = new CredentialCache({ ttlMs: 60_000 });
  assert.equal(cache.has(users, 'alice', HASH, 'pw'), false);
  cache.remember(users, 'alice', HASH, 'pw');
  assert.equal(cache.has(users, 'alice', HASH, 'pw'), true);
  assert.equal(cache.has(users, 'alice', HASH, 'pw2'), false, 'another password');
  assert.equal(cache.has(users, 'bob', HASH, 'pw'), false, 'another user');
  assert.equal(cache.has(users, 'alice', `${HASH}x`, 'pw'), false, 'a changed password hash');
});

test('a new users file (SIGHUP) forgets every entry', () => {
  const cache = new CredentialCache({ ttlMs: 60_000 });
  const before = db();
  cache.remember(before, 'alice', HASH, 'pw');
  assert.equal(cache.has(db(), 'alice', HASH, 'pw'), false);
  assert.equal(cache.size, 0);
  assert.equal(cache.has(before, 'alice', HASH, 'pw'), false, 'not even once the old file comes back');
});

test('entries expire after the TTL; a TTL of 0 remembers nothing and forgets all', () => {
  let now = 1_000;
  const users = db();
  const cache = new CredentialCache({ ttlMs: 500, now: () => now });
  cache.remember(users, 'alice', HASH, 'pw');
  now += 499;
  assert.equal(cache.has(users, 'alice', HASH, 'pw'), true);
  now += 1;
  assert.equal(cache.has(users, 'alice', HASH, 'pw'), false);
  cache.remember(users, 'alice', HASH, 'pw');
  cache.setTtl(0);
  assert.equal(cache.has(users, 'alice', HASH, 'pw'), false);
  cache.remember(users, 'alice', HASH, 'pw');
  assert.equal(cache.size, 0);
});

test('at most maxEntries entries, the oldest forgotten first', () => {
  const users = db();
  const cache = new CredentialCache({ ttlMs: 60_000, maxEntries: 2 });
  for (const name of ['a', 'b', 'c']) cache.remember(users, name, HASH, 'pw');
  assert.equal(cache.size, 2);
  assert.equal(cache.has(users, 'a', HASH, 'pw'), false);
  assert.equal(cache.has(users, 'b', HASH, 'pw'), true);
  assert.equal(cache.has(users, 'c', HASH, 'pw'), true);
});

test('no plaintext password is kept', () => {
  const users = db();
  const cache = new CredentialCache({ ttlMs: 60_000 });
  cache.remember(users, 'alice', HASH, 'hunter2-secret');
  const entries = (cache as unknown as { entries: Map<string, number> }).entries;
  for (const key of entries.keys()) assert.ok(!key.includes('hunter2') && !key.includes('alice'), key);
});
