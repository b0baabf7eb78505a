// The aliases file: parsing (comments, continuation lines, unsupported targets with file:line
// problems) and recipient resolution (recursion, loops, self-reference, local-domain
// addresses, postmaster), plus the consistency checks `mailsrv check` prints.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { checkAliases, loadAliases, parseAliases, resolveRecipient, type Aliases } from '../../src/delivery/aliases.js';

const users = (...names: string[]) => ({ has: (name: string) => names.includes(name) });
const local = (domain: string) => ['example.org', 'mail.example.org'].includes(domain.toLowerCase());
const aliasesOf = (text: string): Aliases => {
  const { aliases, problems } = parseAliases(text, 'aliases');
  assert.deepEqual(problems, []);
  return aliases;
};

test('parseAliases: entries, comments, blank lines and continuation lines', () => {
  const text = [
    '# system aliases', // 1
    'Postmaster: root', // 2
    'root:   kate,', // 3
    '        bob', // 4
    '', // 5
    'staff: kate, "John Doe"@Example.ORG,', // 6
    '  # a comment inside an entry', // 7
    '\tcarol@remote.example , \\kate', // 8
    '"quoted-name": kate\r', // 9
  ].join('\n');
  const { aliases, problems } = parseAliases(text, 'aliases');
  assert.deepEqual(problems, []);
  assert.deepEqual(
    [...aliases],
    [
      ['postmaster', ['root']],
      ['root', ['kate', 'bob']],
      ['staff', ['kate', '"John Doe"@example.org', 'carol@remote.example', '\\kate']],
      ['quoted-name', ['kate']],
    ],
  );
});

test('parseAliases reports unsupported targets and bad lines with file:line', () => {
  const text = [
    '  orphan', // 1
    'log: |/usr/bin/logger, kate', // 2
    'lists: :include:/etc/mail/list', // 3
    'archive: /var/archive,', // 4
    '  "|/bin/cat"', // 5
    'no colon here', // 6
    '  continuation of the bad line', // 7
    '../evil: kate', // 8
    '  bob', // 9
    'log: bob', // 10
    'weird: kate@, a b', // 11
  ].join('\n');
  const { aliases, problems } = parseAliases(text, 'aliases');
  assert.deepEqual([...aliases], [['log', ['kate']]]);
  const expected = [
    /^aliases:1: continuation line without an alias/,
    /^aliases:2: command target "\|\/usr\/bin\/logger" is not supported/,
    /^aliases:3: ":include:\/etc\/mail\/list": :include: is not supported/,
    /^aliases:3: alias "lists" has no usable target/,
    /^aliases:4: file target "\/var\/archive" is not supported/,
    /^aliases:5: command target "\\"\|\/bin\/cat\\"" is not supported/,
    /^aliases:4: alias "archive" has no usable target/,
    /^aliases:6: expected "name: target, target"/,
    /^aliases:8: bad alias name "\.\.\/evil"/,
    /^aliases:10: duplicate alias "log"/,
    /^aliases:11: bad target "kate@"/,
    /^aliases:11: bad target "a b"/,
    /^aliases:11: alias "weird" has no usable target/,
  ];
  assert.equal(problems.length, expected.length, problems.join('\n'));
  expected.forEach((pattern, i) => {
    assert.match(problems[i]!, pattern);
  });
});

test('loadAliases: a missing file has no aliases', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-aliases-'));
  try {
    assert.deepEqual(await loadAliases(join(dir, 'aliases')), { aliases: new Map(), problems: [] });
    await assert.rejects(loadAliases(dir), /cannot read aliases file/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('resolveRecipient: users, unknown and hostile names', () => {
  const aliases = aliasesOf('');
  assert.deepEqual(resolveRecipient('Kate', users('kate'), aliases, local), { local: ['kate'], remote: [] });
  assert.equal(resolveRecipient('nobody', users('kate'), aliases, local), null);
  for (const name of ['../kate', 'kate/..', '.', '', 'kate\0']) {
    assert.equal(resolveRecipient(name, users('kate', '.', '..'), aliases, local), null, JSON.stringify(name));
  }
});

test('resolveRecipient: recursive expansion, deduplicated, local-domain addresses are local', () => {
  const aliases = aliasesOf(
    [
      'staff: admins, kate, Carol@Remote.Example, carol@remote.example',
      'admins: bob, kate@Example.ORG, help@mail.example.org',
      'help: bob, dave',
      'kate: \\kate, kate@elsewhere.example',
    ].join('\n'),
  );
  assert.deepEqual(resolveRecipient('STAFF', users('kate', 'bob', 'dave'), aliases, local), {
    local: ['bob', 'kate', 'dave'],
    remote: ['kate@elsewhere.example', 'Carol@remote.example', 'carol@remote.example'],
  });
});

test('resolveRecipient: a name in its own expansion goes to the user of that name (Postfix)', () => {
  const aliases = aliasesOf('kate: kate, kate@elsewhere.example\nbob: team\nteam: bob, kate');
  assert.deepEqual(resolveRecipient('kate', users('kate'), aliases, local), {
    local: ['kate'],
    remote: ['kate@elsewhere.example'],
  });
  assert.deepEqual(resolveRecipient('bob', users('bob', 'kate'), aliases, local), {
    local: ['bob', 'kate'],
    remote: ['kate@elsewhere.example'],
  });
});

test('resolveRecipient: an alias hides the user of the same name unless it names it', () => {
  const aliases = aliasesOf('kate: bob');
  assert.deepEqual(resolveRecipient('kate', users('kate', 'bob'), aliases, local), { local: ['bob'], remote: [] });
});

test('resolveRecipient: loops without a user reach no one, and do not hang', () => {
  const aliases = aliasesOf('a: b\nb: c@example.org\nc: a, a@example.org');
  assert.equal(resolveRecipient('a', users(), aliases, local), null);
  // b is an alias that does not name itself, so the user b gets nothing; a loop back to a
  // delivers to the user a.
  assert.equal(resolveRecipient('a', users('b'), aliases, local), null);
  assert.deepEqual(resolveRecipient('a', users('a', 'b'), aliases, local), { local: ['a'], remote: [] });
});

test('resolveRecipient: chains deeper than 20 stop, and wide graphs stay fast', () => {
  const chain = (length: number) =>
    aliasesOf(`${Array.from({ length }, (_, i) => `a${i}: a${i + 1}`).join('\n')}\na${length}: kate`);
  assert.deepEqual(resolveRecipient('a0', users('kate'), chain(15), local), { local: ['kate'], remote: [] });
  assert.equal(resolveRecipient('a0', users('kate'), chain(40), local), null);

  // 30 levels, each alias naming both aliases of the next level: 2^30 paths, 60 aliases, 120
  // targets. Walking each alias once looks up about as many targets; walking paths would not end.
  const lines = Array.from({ length: 30 }, (_, i) => [
    `x${i}: x${i + 1}, y${i + 1}`,
    `y${i}: x${i + 1}, y${i + 1}`,
  ]).flat();
  const wide = aliasesOf(lines.join('\n'));
  let lookups = 0;
  wide.get = (name) => {
    lookups += 1;
    if (lookups > 10_000) throw new Error('more than 10,000 alias lookups: the graph is walked path by path');
    return Map.prototype.get.call(wide, name);
  };
  assert.equal(resolveRecipient('x0', users(), wide, local), null);
  assert.ok(lookups <= 2 * 120, `${lookups} alias lookups for 120 targets`);
});

test('resolveRecipient: postmaster always resolves, through root when not defined', () => {
  const viaRoot = aliasesOf('root: kate, admin@remote.example');
  assert.deepEqual(resolveRecipient('PostMaster', users('kate'), viaRoot, local), {
    local: ['kate'],
    remote: ['admin@remote.example'],
  });
  assert.deepEqual(resolveRecipient('postmaster', users('root'), aliasesOf(''), local), {
    local: ['root'],
    remote: [],
  });
  assert.deepEqual(resolveRecipient('postmaster', users('postmaster', 'kate'), viaRoot, local), {
    local: ['postmaster'],
    remote: [],
  });
  assert.deepEqual(
    resolveRecipient('postmaster', users('kate'), aliasesOf('postmaster: bob\nroot: kate'), local),
    null,
  );
  assert.equal(resolveRecipient('postmaster', users('kate'), aliasesOf(''), local), null);
});

test('checkAliases reports an unresolvable postmaster, unknown targets and dead aliases', () => {
  assert.deepEqual(checkAliases(users('kate'), aliasesOf('postmaster: kate\nlist: kate, x@remote.example')), []);
  const problems = checkAliases(
    users('kate'),
    aliasesOf('staff: kate, ghost, \\staff, nobody@example.org, x@remote.example\nloop1: loop2\nloop2: loop1'),
    local,
  );
  assert.deepEqual(problems, [
    'postmaster does not resolve to any user, so its mail goes to the mailbox spool_dir/postmaster: ' +
      'add a "postmaster: USER" alias (or "root: USER")',
    'alias "staff": target "ghost" is not a known user or alias: ' +
      'add the user "ghost" or a line "ghost: USER" to the aliases',
    'alias "staff": target "\\staff" is not a known user: add the user "staff"',
    'alias "staff": target "nobody@example.org" is not a known user or alias: ' +
      'add the user "nobody" or a line "nobody: USER" to the aliases',
    'alias "loop1" reaches no user or address: an alias loop',
    'alias "loop2" reaches no user or address: an alias loop',
  ]);
});

test('checkAliases names a missing root alias once, with the aliases it strands (mailsrv init, then no root:)', () => {
  const problems = checkAliases(
    users('alice'),
    aliasesOf('postmaster: root\nabuse: postmaster\nMAILER-DAEMON: postmaster\nlist: alice, abuse'),
    local,
  );
  assert.deepEqual(problems, [
    'alias "postmaster": target "root" is not a known user or alias, so postmaster, abuse, mailer-daemon reach ' +
      "no user (postmaster's mail goes to the mailbox spool_dir/postmaster): " +
      'add the user "root" or a line "root: USER" to the aliases',
  ]);
});

test('property: resolution terminates on any alias graph and only returns existing users', () => {
  const name = fc.constantFrom('a', 'b', 'c', 'd', 'kate', 'bob', 'postmaster', 'root');
  const target = fc.oneof(
    name,
    name.map((n) => `\\${n}`),
    name.map((n) => `${n}@example.org`),
    fc.constant('x@remote.example'),
  );
  fc.assert(
    fc.property(
      fc.dictionary(name, fc.array(target, { minLength: 1, maxLength: 4 })),
      fc.subarray(['kate', 'bob', 'a', 'root']),
      name,
      (graph, userNames, start) => {
        const aliases: Aliases = new Map(Object.entries(graph));
        const db = users(...userNames);
        const result = resolveRecipient(start, db, aliases, local);
        if (result === null) return;
        assert.ok(result.local.length + result.remote.length > 0);
        for (const user of result.local) assert.ok(db.has(user));
        assert.equal(new Set(result.local).size, result.local.length);
        assert.deepEqual(result.remote, result.remote.length ? ['x@remote.example'] : []);
      },
    ),
  );
});
