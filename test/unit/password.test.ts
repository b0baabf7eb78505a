// Password schemes: hashes made by other tools (libsodium as Dovecot uses it, htpasswd,
// glibc crypt through Python, openssl passwd) verify with the right password and not with
// a wrong one; new hashes are Dovecot {ARGON2ID}; unknown or malformed hashes are false.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hashPassword, isSupportedScheme, schemeOf, verifyPassword } from '../../src/auth/password.js';

// Every vector is the password "secret".
const VECTORS: Record<string, string> = {
  // libsodium crypto_pwhash_str_alg with Dovecot's limits (what `doveadm pw -s ARGON2ID` makes)
  argon2id:
    '{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$6BuVd3LVICGjG3o15By0iQ$4e4VQHosXGw0uVrkpMA0idQRxBUGhRK3lpPciwY0vIE',
  // libsodium, argon2i "interactive" limits (`doveadm pw -s ARGON2I`)
  argon2i: '{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$xTwtkjgDOF5OGbxwBAHDeA$1lk5h3VRUbIZkG718NaV0u4yWXWwB/T50eGsSKOkVo8',
  // htpasswd -bnBC 5 "" secret
  bcrypt2y: '{BLF-CRYPT}$2y$05$wUWcgUqKW7UPfYsh84GXluAGB6MyWyfhlpUS43K7tqId//Q4tx4nq',
  // the same hash with the $2b$ and $2a$ prefixes (same algorithm)
  bcrypt2b: '{BLF-CRYPT}$2b$05$wUWcgUqKW7UPfYsh84GXluAGB6MyWyfhlpUS43K7tqId//Q4tx4nq',
  bcrypt2a: '{BLF-CRYPT}$2a$05$wUWcgUqKW7UPfYsh84GXluAGB6MyWyfhlpUS43K7tqId//Q4tx4nq',
  // python3: crypt.crypt('secret', crypt.mksalt(crypt.METHOD_SHA512, rounds=5000))
  sha512rounds5000:
    '{SHA512-CRYPT}$6$rounds=5000$rrTSsAbpnzWTcbeO$' +
    'ns5jvzC9kllCgFcSR/c6vq9pBgIKYDawJZfXHKDNs.Ieup3hc0GR.QZPut2cshrbrjhbrqlsNDnvR4dPpYWS80',
  // python3: crypt.crypt('secret', crypt.mksalt(crypt.METHOD_SHA512))
  sha512default:
    '{SHA512-CRYPT}$6$mMFIBGzY7J7gGQ5j$' +
    'lh0sawYOMRVvMDWGO.gSHiBU9QH2JS8PpQx2qn7Xc5KIn6rji/.gAM8NGkWEu.9QTX.w7GHrtbHSoxZAIk2mt.',
  // openssl passwd -6 secret
  sha512openssl:
    '{SHA512-CRYPT}$6$XgvcLAh9zeq9MOE.$' +
    'sKDQyfviAig.dyaezlgvp5pTr4fCXv9AgVYMetBhNZqplhN9GKFrb9HnTm85y.C3LeK2WnCyU0XMRyrhozHh9/',
  // python3, rounds=10000: more than 5000 rounds, so verified in a worker thread
  sha512rounds10000:
    '{SHA512-CRYPT}$6$rounds=10000$1R1.sYNVC.ZyBG7M$' +
    'q6BNDLRxlU5UF2jZY4MBQNGW36XgZB2g5c7pFQJKC/DTix/fCcBuSv9rlUvsdQQsmYFiNynr6p/VMRoa8Xo5.0',
};

for (const [label, stored] of Object.entries(VECTORS)) {
  test(`${label}: the right password verifies, wrong ones do not`, async () => {
    assert.equal(await verifyPassword(stored, 'secret'), true);
    assert.equal(await verifyPassword(stored, 'Secret'), false);
    assert.equal(await verifyPassword(stored, 'secret '), false);
    assert.equal(await verifyPassword(stored, ''), false);
  });
}

test('scheme names are matched case-insensitively, as Dovecot does', async () => {
  assert.equal(await verifyPassword(VECTORS.argon2id!.replace('{ARGON2ID}', '{argon2id}'), 'secret'), true);
  assert.equal(
    await verifyPassword(VECTORS.sha512openssl!.replace('{SHA512-CRYPT}', '{Sha512-Crypt}'), 'secret'),
    true,
  );
});

test('hashPassword makes a Dovecot {ARGON2ID} hash with a fresh salt that verifies', async () => {
  const first = await hashPassword('correct horse');
  const second = await hashPassword('correct horse');
  assert.match(first, /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  assert.notEqual(first, second);
  assert.equal(schemeOf(first), 'ARGON2ID');
  assert.equal(await verifyPassword(first, 'correct horse'), true);
  assert.equal(await verifyPassword(first, 'correct horse!'), false);
  assert.ok(!first.includes('correct'));
});

test('schemeOf names any scheme; only the four supported ones verify', async () => {
  assert.equal(schemeOf('{PLAIN}secret'), 'PLAIN');
  assert.equal(schemeOf('{ssha512}abc'), 'SSHA512');
  assert.equal(schemeOf('secret'), null);
  assert.equal(schemeOf(''), null);
  assert.equal(isSupportedScheme('PLAIN'), false);
  assert.equal(isSupportedScheme('BLF-CRYPT'), true);
  for (const stored of ['{PLAIN}secret', '{CLEARTEXT}secret', '{MD5-CRYPT}$1$abc$def', 'secret', '', '{}secret']) {
    assert.equal(await verifyPassword(stored, 'secret'), false, stored);
  }
});

test('malformed hashes and hashes that do not fit their scheme are false, not exceptions', async () => {
  const bad = [
    '{ARGON2ID}$argon2id$garbage',
    '{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$xTwtkjgDOF5OGbxwBAHDeA$1lk5h3VRUbIZkG718NaV0u4yWXWwB/T50eGsSKOkVo8',
    '{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$c29tZXNhbHQ$aaaa',
    '{BLF-CRYPT}$2y$garbage',
    '{BLF-CRYPT}$6$XgvcLAh9zeq9MOE.$' +
      'sKDQyfviAig.dyaezlgvp5pTr4fCXv9AgVYMetBhNZqplhN9GKFrb9HnTm85y.C3LeK2WnCyU0XMRyrhozHh9/',
    '{SHA512-CRYPT}$2y$05$wUWcgUqKW7UPfYsh84GXluAGB6MyWyfhlpUS43K7tqId//Q4tx4nq',
    '{SHA512-CRYPT}$6$',
    '{SHA512-CRYPT}$6$salt$short',
    '{SHA512-CRYPT}$6$rounds=abc$salt$hash',
    '{SHA512-CRYPT}$6$rounds=50000$salt$short',
  ];
  for (const stored of bad) assert.equal(await verifyPassword(stored, 'secret'), false, stored);
});

test('a costly SHA512-CRYPT hash does not block the event loop', async () => {
  // python3: crypt.crypt('secret', crypt.mksalt(crypt.METHOD_SHA512, rounds=200000)): about half a second of work
  const stored =
    '{SHA512-CRYPT}$6$rounds=200000$aYHMQyIYB4e6GuJi$' +
    'pvjYYaTpVMdRSrgpO.ivKmU2VgdnmL7MyFmxNf053qcBLeSVcpjaxeAemAvHUtuO9s0aQb7RorccvCAugG2Zw/';
  // a check on this thread would run from start to end in one go: a timer could not fire meanwhile
  let ticks = 0;
  const ticker = setInterval(() => {
    ticks += 1;
  }, 5);
  try {
    const [right, wrong] = await Promise.all([verifyPassword(stored, 'secret'), verifyPassword(stored, 'wrong')]);
    assert.equal(right, true);
    assert.equal(wrong, false);
  } finally {
    clearInterval(ticker);
  }
  assert.ok(ticks >= 3, `a 5 ms timer fired ${ticks} times while the two hashes were checked`);
});
