// The users file: parsing with problems and line numbers, case-insensitive lookups, and the
// add/passwd/del edits, which keep comments and other lines and replace the file atomically
// with mode 0600.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { verifyPassword } from '../../src/auth/password.js';
import { normalizeUsername } from '../../src/auth/username.js';
import { addUser, deleteUser, loadUsers, parseUsersFile, setPassword, UsersFileError } from '../../src/auth/users.js';

const ARGON =
  '{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$6BuVd3LVICGjG3o15By0iQ$4e4VQHosXGw0uVrkpMA0idQRxBUGhRK3lpPciwY0vIE';
const BCRYPT = '{BLF-CRYPT}$2y$05$wUWcgUqKW7UPfYsh84GXluAGB6MyWyfhlpUS43K7tqId//Q4tx4nq';

let dir: string;
let counter = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailsrv-users-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh directory holding a users file with `text` (or none), and the file's path. */
async function usersFile(text: string | null): Promise<{ path: string; folder: string }> {
  const folder = join(dir, String(++counter));
  await mkdir(folder);
  const path = join(folder, 'users');
  if (text !== null) await writeFile(path, text, { mode: 0o644 });
  return { path, folder };
}

test('parseUsersFile reads users and reports each bad line with file:line', () => {
  const text = [
    '# mail users', // 1
    `kate:${ARGON}`, // 2
    `Bob:${BCRYPT}:1000:1000::/home/bob:/bin/sh`, // 3
    '', // 4
    `../evil:${ARGON}`, // 5
    'nohash', // 6
    'empty:', // 7
    'weird:{MD5-CRYPT}$1$abc$def', // 8
    'plain:secret', // 9
    `KATE:${BCRYPT}`, // 10
    '   # indented comment', // 11
  ].join('\n');
  const { users, problems } = parseUsersFile(text, 'users');
  assert.deepEqual([...users.keys()], ['kate', 'bob', 'nohash', 'empty', 'weird', 'plain']);
  assert.equal(users.get('kate'), ARGON);
  assert.equal(users.get('bob'), BCRYPT);
  assert.equal(problems.length, 6);
  assert.match(problems[0]!, /^users:5: bad user name "\.\.\/evil"/);
  assert.match(problems[1]!, /^users:6: user "nohash" has no password hash/);
  assert.match(problems[2]!, /^users:7: user "empty" has no password hash/);
  assert.match(problems[3]!, /^users:8: user "weird" has unknown password scheme \{MD5-CRYPT\}/);
  assert.match(problems[4]!, /^users:9: password hash of user "plain" has no \{SCHEME\} prefix/);
  assert.match(problems[5]!, /^users:10: duplicate user "kate"; the first entry is used/);
});

test('CRLF line ends are read like LF ones', () => {
  const { users, problems } = parseUsersFile(`# x\r\nkate:${ARGON}\r\n`, 'users');
  assert.deepEqual(problems, []);
  assert.equal(users.get('kate'), ARGON);
});

test('property: parsing never throws and only keeps valid, normalized names', () => {
  const line = fc.oneof(
    fc.string(),
    fc.constantFrom('# comment', '', `kate:${ARGON}`, 'a:b:c', ':', '::', `../x:${ARGON}`),
    fc.tuple(fc.string(), fc.string()).map(([name, hash]) => `${name}:${hash}`),
  );
  fc.assert(
    fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
      const { users } = parseUsersFile(lines.join('\n'), 'users');
      for (const name of users.keys()) assert.equal(normalizeUsername(name), name);
    }),
  );
});

test('loadUsers: lookups are case-insensitive and hostile names find nothing', async () => {
  const { path } = await usersFile(`# users\nkate:${ARGON}\nBob:${BCRYPT}:extra\n`);
  const db = await loadUsers(path);
  assert.equal(db.has('kate'), true);
  assert.equal(db.has('KATE'), true);
  assert.equal(db.hashOf('Bob'), BCRYPT);
  assert.equal(db.has('../kate'), false);
  assert.equal(db.hashOf('nobody'), undefined);
  assert.deepEqual(db.names(), ['kate', 'bob']);
  assert.deepEqual(db.problems, []);
});

test('loadUsers: a missing file is an empty db, an unreadable one an error', async () => {
  const { path, folder } = await usersFile(null);
  const db = await loadUsers(path);
  assert.deepEqual(db.names(), []);
  assert.equal(db.has('kate'), false);
  await assert.rejects(
    loadUsers(folder),
    (err: Error) => err instanceof UsersFileError && /cannot read users file/.test(err.message),
  );
});

test('addUser creates the file, mode 0600, with an {ARGON2ID} hash that verifies', async () => {
  const { path, folder } = await usersFile(null);
  assert.equal(await addUser(path, 'Kate', 'pw one'), 'kate');
  const text = await readFile(path, 'utf8');
  assert.match(text, /^kate:\{ARGON2ID\}\$argon2id\$[^\n]+\n$/);
  assert.ok(!text.includes('pw one'));
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  const db = await loadUsers(path);
  assert.equal(await verifyPassword(db.hashOf('kate')!, 'pw one'), true);
  assert.deepEqual(await readdir(folder), ['users']);
});

// the file is replaced, its mode kept less the world bits
test('edits keep comments, blank lines, other users and extra fields', async () => {
  const original = [
    '# mail users',
    '',
    `kate:${ARGON}`,
    '# bob is the admin',
    `Bob:${BCRYPT}:1000:1000::/home/bob`,
    `carol:${ARGON}`, // no final newline
  ].join('\n');
  const { path, folder } = await usersFile(original);
  await chmod(path, 0o644);
  const inode = (await stat(path)).ino;

  await addUser(path, 'dave', 'dave pw');
  let text = await readFile(path, 'utf8');
  assert.ok(text.startsWith(`${original}\ndave:{ARGON2ID}$argon2id$`), text);
  assert.equal(
    (await stat(path)).mode & 0o777,
    0o640,
    'the group (the daemon, after mailsrv init) keeps reading it; others lose it',
  );
  assert.notEqual((await stat(path)).ino, inode, 'a new file is renamed over the old one');

  await setPassword(path, 'BOB', 'new bob pw');
  text = await readFile(path, 'utf8');
  const bobLine = text.split('\n').find((line) => line.startsWith('Bob:'))!;
  assert.match(bobLine, /^Bob:\{ARGON2ID\}\$argon2id\$[^:]+:1000:1000::\/home\/bob$/);
  assert.ok(text.startsWith(`# mail users\n\nkate:${ARGON}\n# bob is the admin\nBob:`));
  assert.equal(await verifyPassword((await loadUsers(path)).hashOf('bob')!, 'new bob pw'), true);

  await deleteUser(path, 'kate');
  text = await readFile(path, 'utf8');
  assert.ok(text.startsWith('# mail users\n\n# bob is the admin\nBob:'), text);
  assert.deepEqual((await loadUsers(path)).names(), ['bob', 'carol', 'dave']);
  assert.deepEqual(await readdir(folder), ['users'], 'no temp file is left behind');
});

test('deleteUser removes every line of a duplicated user', async () => {
  const { path } = await usersFile(`kate:${ARGON}\nbob:${BCRYPT}\nKate:${BCRYPT}\n`);
  await deleteUser(path, 'kate');
  assert.equal(await readFile(path, 'utf8'), `bob:${BCRYPT}\n`);
});

test('edits refuse bad names, existing and missing users, and empty passwords', async () => {
  const { path } = await usersFile(`kate:${ARGON}\n`);
  const fails = (pattern: RegExp) => (err: Error) => err instanceof UsersFileError && pattern.test(err.message);
  await assert.rejects(addUser(path, 'KATE', 'pw'), fails(/^user "kate" already exists in /));
  for (const name of ['../x', '..', '.x', 'a/b', '', 'a\0b', 'a:b']) {
    await assert.rejects(addUser(path, name, 'pw'), fails(/^bad user name /), JSON.stringify(name));
  }
  await assert.rejects(addUser(path, 'bob', ''), fails(/empty password/));
  await assert.rejects(setPassword(path, 'bob', 'pw'), fails(/^no such user "bob" in /));
  await assert.rejects(setPassword(path, 'kate', ''), fails(/empty password/));
  await assert.rejects(deleteUser(path, 'bob'), fails(/^no such user "bob"/));
  const missing = (await usersFile(null)).path;
  await assert.rejects(deleteUser(missing, 'kate'), fails(/^no such user "kate"/));
  await assert.rejects(setPassword(missing, 'kate', 'pw'), fails(/^no such user "kate"/));
  assert.equal(await readFile(path, 'utf8'), `kate:${ARGON}\n`, 'failed edits change nothing');
});

// each reads and replaces the file under its lock
test('edits at the same time all land, and no lock is left', async () => {
  const path = join(dir, 'concurrent-users');
  const names = ['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal'];
  await addUser(path, 'zed', 'pw');
  await Promise.all([...names.map((name) => addUser(path, name, `${name}-pw`)), deleteUser(path, 'zed')]);
  const users = await loadUsers(path);
  assert.deepEqual(users.names().sort(), names);
  assert.ok(!(await readdir(dir)).some((name) => name.startsWith('concurrent-users.lock')), 'the lock is released');
});
