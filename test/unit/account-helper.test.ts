// Unit tests for the root helper's protocol (src/accounts/helper-protocol.ts): framing, and the
// request validator that stands between the daemon and root (only a valid login, only
// spool_dir/<login>, only the secret files named at start, no extra fields, bounded sizes; no
// account below system_min_uid); the helper's secret file reads (secret-reader.ts); and for
// the daemon-side pieces around it: the account lookups' cache (system-accounts.ts), alias
// resolution over looked-up accounts (delivery/directory.ts), and the decoy timing of password
// checks (system-passwords.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  accountRefusal,
  encodeFrame,
  FrameError,
  FrameReader,
  MAX_ANSWER_FRAME,
  MAX_REQUEST_FRAME,
  validateRequest,
} from '../../src/accounts/helper-protocol.js';
import { parsePasswdLine, type SystemAccount, SystemAccounts } from '../../src/accounts/system-accounts.js';
import { SystemPasswords } from '../../src/accounts/system-passwords.js';
import { Directory } from '../../src/delivery/directory.js';

const SECRETS = ['/etc/mailsrv/users', '/etc/mailsrv/tls/key.pem'];
const SPOOL = { spoolDir: '/var/mail', accounts: true, secretFiles: SECRETS };
const FILE_ACCOUNTS = { ...SPOOL, accounts: false };
const auth = { id: 1, op: 'auth', user: 'alice', password: 'pw', rhost: '192.0.2.1' };
const mailbox = { id: 2, op: 'mailbox', user: 'alice', path: '/var/mail/alice' };

describe('validateRequest', () => {
  test('passes exactly the two request shapes', () => {
    assert.deepEqual(validateRequest(auth, SPOOL), auth);
    assert.deepEqual(validateRequest(mailbox, SPOOL), mailbox);
    assert.deepEqual(validateRequest({ ...mailbox, path: '/var/mail/./alice' }, SPOOL), mailbox);
  });

  test('passes a secret file only when the config named it at start, with accounts = "file" too', () => {
    const secret = { id: 3, op: 'secret', path: '/etc/mailsrv/users' };
    assert.deepEqual(validateRequest(secret, SPOOL), secret);
    assert.deepEqual(validateRequest(secret, FILE_ACCOUNTS), secret);
    const refused = 'path is not a secret file named by the config at start';
    for (const path of [
      '/etc/shadow',
      '/etc/mailsrv/users/../../shadow',
      '/etc/mailsrv/./users',
      '/etc/mailsrv/users/',
      'etc/mailsrv/users',
      '/etc/mailsrv/tls',
      '/etc/mailsrv/users\0',
      '',
      42,
      null,
    ]) {
      assert.equal(validateRequest({ ...secret, path }, FILE_ACCOUNTS), refused, String(path));
    }
    assert.equal(validateRequest({ ...secret, user: 'alice' }, SPOOL), 'unexpected fields');
    assert.equal(validateRequest({ id: 3, op: 'secret' }, SPOOL), 'unexpected fields');
  });

  test('refuses account requests with accounts = "file"', () => {
    for (const request of [auth, mailbox])
      assert.equal(validateRequest(request, FILE_ACCOUNTS), 'accounts = "file": no Unix account requests');
  });

  test('refuses names that are not valid logins', () => {
    for (const user of [
      '',
      '../etc/passwd',
      'a/b',
      '.hidden',
      '-rf',
      'Alice',
      'al ice',
      'al\0ice',
      'x'.repeat(65),
      7,
    ]) {
      assert.equal(validateRequest({ ...auth, user }, SPOOL), 'user is not a valid login name', String(user));
      assert.equal(validateRequest({ ...mailbox, user }, SPOOL), 'user is not a valid login name', String(user));
    }
  });

  test('refuses a mailbox path other than spool_dir/<user>', () => {
    for (const path of ['/etc/shadow', '/var/mail/bob', '/var/mail/alice/../bob', '/var/mailx/alice', 'alice', 1]) {
      assert.equal(validateRequest({ ...mailbox, path }, SPOOL), 'path is not spool_dir/<user>', String(path));
    }
  });

  test('refuses other ops, extra or missing fields, bad ids, oversized or NUL passwords, odd rhosts', () => {
    const cases: [unknown, string][] = [
      [null, 'not an object'],
      [[auth], 'not an object'],
      [{ ...auth, op: 'exec' }, 'unknown op'],
      [{ ...auth, uid: 0 }, 'unexpected fields'],
      [{ ...mailbox, mode: 0o4777 }, 'unexpected fields'],
      [{ ...auth, id: -1 }, 'bad id'],
      [{ ...auth, id: '1' }, 'bad id'],
      [{ ...auth, password: '' }, 'no password'],
      [{ ...auth, password: 'x'.repeat(513) }, 'password too long or with NUL'],
      [{ ...auth, password: 'a\0b' }, 'password too long or with NUL'],
      [{ ...auth, rhost: 'evil host' }, 'bad rhost'],
    ];
    for (const [request, reason] of cases)
      assert.equal(validateRequest(request, SPOOL), reason, JSON.stringify(request));
    const { rhost: _, ...withoutRhost } = auth;
    assert.equal(validateRequest(withoutRhost, SPOOL), 'unexpected fields');
  });

  test('an account must exist and have a uid of at least system_min_uid', () => {
    assert.equal(accountRefusal(null, 1000), 'no such account');
    assert.equal(accountRefusal({ uid: 0 }, 1000), 'uid 0 is below system_min_uid 1000');
    assert.equal(accountRefusal({ uid: 999 }, 1000), 'uid 999 is below system_min_uid 1000');
    assert.equal(accountRefusal({ uid: 1000 }, 1000), null);
  });
});

describe('frames', () => {
  test('a stream cut anywhere gives back the same values', () => {
    const values = [auth, mailbox, { id: 3, ok: true }];
    const bytes = Buffer.concat(values.map((v) => encodeFrame(v)));
    for (let cut = 0; cut <= bytes.length; cut++) {
      const reader = new FrameReader();
      assert.deepEqual([...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))], values);
    }
  });

  test('a zero or oversized length, or a body that is not JSON, is an error', () => {
    const header = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
    assert.throws(() => new FrameReader().push(header(0)), FrameError);
    assert.throws(() => new FrameReader().push(header(MAX_REQUEST_FRAME + 1)), FrameError);
    assert.throws(() => new FrameReader().push(Buffer.concat([header(3), Buffer.from('{x}')])), FrameError);
    assert.throws(() => encodeFrame({ big: 'x'.repeat(MAX_REQUEST_FRAME) }), FrameError);
    // answers may carry a secret file: larger, but bounded too
    const answer = encodeFrame({ id: 1, content: 'x'.repeat(MAX_REQUEST_FRAME) }, MAX_ANSWER_FRAME);
    assert.equal(new FrameReader(MAX_ANSWER_FRAME).push(answer).length, 1);
    assert.throws(() => new FrameReader().push(answer), FrameError);
    assert.throws(() => new FrameReader(MAX_ANSWER_FRAME).push(header(MAX_ANSWER_FRAME + 1)), FrameError);
  });
});

describe('account lookups', () => {
  test('a passwd line counts only for the exact login asked for', () => {
    assert.deepEqual(parsePasswdLine('alice:x:1001:100::/home/alice:/bin/sh\n', 'alice'), {
      login: 'alice',
      uid: 1001,
      gid: 100,
    });
    // getent passwd 1001 answers with the account of that uid
    assert.equal(parsePasswdLine('alice:x:1001:100::/home/alice:/bin/sh\n', '1001'), null);
    assert.equal(parsePasswdLine('alice:x:-1:100::/home/alice:/bin/sh\n', 'alice'), null);
    assert.equal(parsePasswdLine('alice:x:1001\n', 'alice'), null);
  });

  function accountsWith(table: Record<string, number>, now: () => number) {
    const asked: string[] = [];
    const lookup = async (login: string): Promise<SystemAccount | null> => {
      asked.push(login);
      return table[login] === undefined ? null : { login, uid: table[login]!, gid: 100 };
    };
    return { accounts: new SystemAccounts({ minUid: 1000, ttlMs: 1000, now }, lookup), asked };
  }

  test('answers are cached for the TTL, found or not; low uids are no account; one lookup per name', async () => {
    let clock = 0;
    const { accounts, asked } = accountsWith({ alice: 1001, daemon: 1 }, () => clock);
    const [a, b] = await Promise.all([accounts.find('Alice'), accounts.find('alice')]);
    assert.equal(a?.uid, 1001);
    assert.equal(b, a);
    assert.equal(await accounts.find('daemon'), null);
    assert.equal(await accounts.find('ghost'), null);
    assert.equal(await accounts.find('ghost'), null);
    assert.equal(await accounts.find('../x'), null);
    assert.deepEqual(asked, ['alice', 'daemon', 'ghost']);
    clock = 1000;
    assert.equal(accounts.known('alice'), undefined);
    await accounts.find('alice');
    assert.deepEqual(asked, ['alice', 'daemon', 'ghost', 'alice']);
  });

  test('aliases resolve over looked-up accounts: users, lists, the root fallback of postmaster', async () => {
    const { accounts } = accountsWith({ alice: 1001, bob: 1002, root: 0 }, () => 0);
    const { directory, problems } = await Directory.load(
      { usersFile: '/nonexistent', aliasesFile: '/dev/null' },
      () => true,
      accounts,
    );
    assert.equal(problems.length, 1, 'postmaster reaches no one: said at load');
    assert.deepEqual(await directory.resolve('alice'), { local: ['alice'], remote: [] });
    assert.equal(await directory.resolve('root'), null);
    assert.equal(await directory.resolve('nobody'), null);
    assert.deepEqual(await directory.resolve('postmaster'), { local: ['postmaster'], remote: [] });
    assert.equal(await directory.hasMailbox('bob'), true);
    assert.equal(await directory.hasMailbox('root'), false);
  });
});

describe('decoy timing of PAM checks', () => {
  test('a name that is no mail account takes as long as the recent real checks', async () => {
    let clock = 0;
    const waits: number[] = [];
    const helper = {
      authenticate: async (user: string) => {
        if (user !== 'alice') return { ok: false as const, checked: false };
        clock += 40; // a real PAM check
        return { ok: false as const, checked: true };
      },
    };
    const passwords = new SystemPasswords(
      helper,
      () => clock,
      async (ms) => {
        waits.push(ms);
        clock += ms;
      },
    );
    assert.equal(await passwords.verify('alice', 'x', '127.0.0.1'), false);
    assert.equal(passwords.decoyMs(), 40);
    const started = clock;
    assert.equal(await passwords.verify('ghost', 'x', '127.0.0.1'), false);
    assert.equal(clock - started, 40);
    assert.equal(await passwords.verify(null, 'x', '127.0.0.1'), false);
    assert.deepEqual(waits, [40, 40]);
  });
});
