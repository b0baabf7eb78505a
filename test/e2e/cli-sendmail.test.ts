// E2E: `mailsrv sendmail` as cron, mail(1), git send-email and scripts call it: recipients from
// the command line and (-t) the headers, Bcc removed, -f / null sender, "." handling with and
// without -i, LF input stored as CRLF, From/Date/Message-ID added when missing, Postfix's other
// options accepted and ignored; every refusal exits 1 with one line on stderr and leaves nothing
// in the maildrop; an unprivileged user can drop mail there but not list it; bin/mailsrv linked
// as `sendmail` / `mailq` acts as those commands; the daemon picks dropped mail up at start and
// while it runs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { rm, symlink } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { prepareDropDir } from '../../src/queue/drop-dir.js';
import { resolveIdentity } from '../../src/privileges.js';
import {
  cannotRunAs,
  DAEMON_USER,
  DOMAIN,
  escapeRegex,
  HOSTNAME,
  makeEnv,
  MAILSRV_BIN,
  readMailbox,
  REPO_ROOT,
  runCli,
  startDaemon,
  type TestEnv,
} from './harness.js';

/** An unprivileged local user other than the daemon's (which is `nobody` in these tests). */
const LOCAL_USER = { name: 'daemon', uid: 1, gid: 1 };
const RFC5322_DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$/;

interface Dropped {
  envelope: { v: number; sender: string; recipients: string[] };
  /** the message as stored (latin1) */
  message: string;
  /** the header block, unfolded field by field */
  headers: string[];
}

/** The daemon's user and group, as prepareDropDir gets them from the daemon (null: not root). */
function daemonOwner(): { uid: number; gid: number } | null {
  return DAEMON_USER ? resolveIdentity(DAEMON_USER.user, DAEMON_USER.group) : null;
}

/** A test env whose maildrop is prepared as the daemon prepares it at start. */
async function maildropEnv(): Promise<TestEnv> {
  const env = await makeEnv();
  await prepareDropDir(env.stateDir, daemonOwner());
  return env;
}

function maildrop(env: TestEnv): string {
  return join(env.stateDir, 'maildrop');
}

function dropped(env: TestEnv): Dropped[] {
  return readdirSync(maildrop(env)).map((name) => {
    const raw = readFileSync(join(maildrop(env), name), 'latin1');
    const nl = raw.indexOf('\n');
    const message = raw.slice(nl + 1);
    const headerBlock = message.slice(0, message.indexOf('\r\n\r\n') + 2);
    return {
      envelope: JSON.parse(raw.slice(0, nl)) as Dropped['envelope'],
      message,
      headers: headerBlock
        .replace(/\r\n(?=[ \t])/g, '')
        .split('\r\n')
        .filter((l) => l !== ''),
    };
  });
}

function only(env: TestEnv): Dropped {
  const files = dropped(env);
  assert.equal(files.length, 1, `expected one maildrop file, found ${files.length}`);
  return files[0]!;
}

function header(file: Dropped, name: string): string[] {
  return file.headers
    .filter((h) => h.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((h) => h.slice(name.length + 1).trim());
}

/** Asserts exit 1 with exactly one line on stderr matching `reason`, and an empty maildrop. */
function assertRefused(env: TestEnv, result: ReturnType<typeof runCli>, reason: RegExp): void {
  assert.equal(result.code, 1, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  assert.match(result.stderr, /^mailsrv: [^\n]*\n$/, `not one line: ${JSON.stringify(result.stderr)}`);
  assert.match(result.stderr, reason);
  assert.deepEqual(readdirSync(maildrop(env)), [], 'something was left in the maildrop');
}

const login = userInfo().username;

describe('mailsrv sendmail', () => {
  let env: TestEnv;
  const sendmail = (args: string[], input = 'Subject: test\n\nbody\n') =>
    runCli(['sendmail', '-c', env.configPath, ...args], { input });

  before(async () => {
    env = await maildropEnv();
  });
  afterEach(async () => {
    for (const name of readdirSync(maildrop(env))) await rm(join(maildrop(env), name));
  });
  after(async () => {
    await env?.cleanup();
  });

  test('as cron calls it (-FCronDaemon -i -B8BITMIME -oem root): LF stored as CRLF, From/Date/Message-ID added', () => {
    const r = sendmail(
      ['-FCronDaemon', '-i', '-B8BITMIME', '-oem', 'root'],
      'Subject: Cron <root@host> run-parts\nContent-Type: text/plain\n\noutput line\n.\nlast line\n',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '', 'sendmail is silent on success');
    const file = only(env);
    assert.deepEqual(file.envelope, { v: 1, sender: `${login}@${HOSTNAME}`, recipients: [`root@${HOSTNAME}`] });
    assert.doesNotMatch(file.message, /(?<!\r)\n/, 'a bare LF was stored');
    assert.ok(file.message.endsWith('\r\n\r\noutput line\r\n.\r\nlast line\r\n'), JSON.stringify(file.message));
    assert.deepEqual(header(file, 'From'), [`CronDaemon <${login}@${HOSTNAME}>`]);
    assert.match(header(file, 'Date')[0] ?? '', RFC5322_DATE);
    assert.match(header(file, 'Message-ID')[0] ?? '', new RegExp(`^<[0-9A-Z]{16}@${HOSTNAME.replace(/\./g, '\\.')}>$`));
    assert.deepEqual(header(file, 'Subject'), ['Cron <root@host> run-parts']);
  });

  test('-t: recipients from To, Cc and Bcc plus the command line, each once; Bcc is removed', () => {
    const r = sendmail(
      ['-t', 'extra@example.org'],
      [
        'To: Alice <alice@example.test>, bob',
        'Cc: carol@example.test,',
        '  "Dave, D." <dave@example.test>',
        'Bcc: hidden@example.test, ALICE@example.test',
        'Subject: team',
        '',
        'hello',
        '',
      ].join('\n'),
    );
    assert.equal(r.code, 0, r.stderr);
    const file = only(env);
    assert.deepEqual(file.envelope.recipients, [
      'extra@example.org',
      'alice@example.test',
      `bob@${HOSTNAME}`,
      'carol@example.test',
      'dave@example.test',
      'hidden@example.test',
    ]);
    assert.deepEqual(header(file, 'Bcc'), []);
    assert.doesNotMatch(file.message, /hidden@example\.test/);
    assert.deepEqual(header(file, 'To'), ['Alice <alice@example.test>, bob']);
  });

  // -f "" and -f "<>" are the null sender; -r and -fADDR work as -f
  test('-f sets the envelope sender and the added From:', () => {
    const cases: [string[], string, string][] = [
      [['-f', 'Robot <robot@example.test>'], 'robot@example.test', 'robot@example.test'],
      [['-fbounces@example.test'], 'bounces@example.test', 'bounces@example.test'],
      [['-r', 'backup'], `backup@${HOSTNAME}`, `backup@${HOSTNAME}`],
      [['-f', ''], '', `${login}@${HOSTNAME}`],
      [['-f', '<>'], '', `${login}@${HOSTNAME}`],
    ];
    for (const [options, sender, from] of cases) {
      const r = sendmail([...options, 'alice@example.test']);
      assert.equal(r.code, 0, `${options.join(' ')}: ${r.stderr}`);
      const file = only(env);
      assert.equal(file.envelope.sender, sender, options.join(' '));
      assert.deepEqual(header(file, 'From'), [from], options.join(' '));
      rmAll(env);
    }
  });

  test('headers the message has are kept as they are, never added twice', () => {
    const message =
      'From: Me <me@example.test>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n' +
      'Message-ID: <mine@example.test>\nSubject: s\n\nb\n';
    const r = sendmail(['-F', 'Ignored Name', 'alice@example.test'], message);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(only(env).message, message.replace(/\n/g, '\r\n'));
  });

  test('a -F name with non-ASCII characters is MIME-encoded, one with specials quoted', () => {
    assert.equal(sendmail(['-F', 'Jörg Müller', 'alice@example.test']).code, 0);
    assert.deepEqual(header(only(env), 'From'), [`=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <${login}@${HOSTNAME}>`]);
    rmAll(env);
    assert.equal(sendmail(['-F', 'Backup, nightly', 'alice@example.test']).code, 0);
    assert.deepEqual(header(only(env), 'From'), [`"Backup, nightly" <${login}@${HOSTNAME}>`]);
  });

  test('without -i a line holding only "." ends the message; with -i or -oi it is kept', () => {
    const input = 'Subject: dots\n\nbefore\n..twice\n.\nafter\n';
    assert.equal(sendmail(['alice@example.test'], input).code, 0);
    assert.ok(only(env).message.endsWith('\r\n\r\nbefore\r\n..twice\r\n'), only(env).message);
    rmAll(env);
    for (const option of ['-i', '-oi']) {
      assert.equal(sendmail([option, 'alice@example.test'], input).code, 0);
      assert.ok(
        only(env).message.endsWith('\r\n\r\nbefore\r\n..twice\r\n.\r\nafter\r\n'),
        `${option}: ${only(env).message}`,
      );
      rmAll(env);
    }
  });

  test('as git send-email calls it: -i -f SENDER -- RECIPIENTS, several in one argument', () => {
    const r = sendmail(
      ['-i', '-f', 'dev@example.test', '--', 'Alice <alice@example.test>, bob@example.test', 'carol@example.test'],
      'From: dev@example.test\nSubject: [PATCH] x\n\ndiff\n',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(only(env).envelope, {
      v: 1,
      sender: 'dev@example.test',
      recipients: ['alice@example.test', 'bob@example.test', 'carol@example.test'],
    });
  });

  test('Postfix options that mean nothing here are accepted (-odi -oem -om -bm -v -N never -Vx -h 5 -L x)', () => {
    const r = sendmail([
      '-odi',
      '-oem',
      '-om',
      '-bm',
      '-v',
      '-N',
      'never',
      '-Vx',
      '-h',
      '5',
      '-L',
      'x',
      'alice@example.test',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(only(env).envelope.recipients, ['alice@example.test']);
  });

  test('no recipients: exit 1 "no recipients", nothing queued (with and without -t)', () => {
    assertRefused(env, sendmail([]), /no recipients/);
    assertRefused(env, sendmail(['-t'], 'Subject: nobody\n\nbody\n'), /no recipients/);
    assertRefused(env, sendmail(['-t'], 'To: undisclosed-recipients:;\nSubject: s\n\nbody\n'), /no recipients/);
  });

  test('a message over message_size_limit: exit 1 "message too big", nothing left in the maildrop', () => {
    const big = `Subject: big\n\n${'x'.repeat(200)}\n`.repeat(600); // 120 kB, the limit is 100 kB
    assertRefused(env, sendmail(['alice@example.test'], big), /message too big \(limit 100000 bytes\)/);
  });

  test('bad arguments and addresses: exit 1 with one line naming the problem', () => {
    assertRefused(env, sendmail(['-z', 'alice@example.test']), /unknown option -z/);
    assertRefused(env, sendmail(['-bs']), /-bs is not supported/);
    assertRefused(env, sendmail(['-B9BIT', 'alice@example.test']), /-B takes 8BITMIME or 7BIT/);
    assertRefused(env, sendmail(['alice@example.test', '-f']), /bad recipient address "-f"/);
    assertRefused(env, sendmail(['-f']), /option -f needs a value/);
    assertRefused(env, sendmail(['--verbose', 'alice@example.test']), /unknown option --verbose/);
    assertRefused(env, sendmail(['-f', 'a b@example.test', 'alice@example.test']), /bad sender address/);
    assertRefused(env, sendmail(['not an address']), /bad recipient address "not an address"/);
    assertRefused(env, sendmail(['alice@example.test\r\nRCPT TO:<x@evil.test>']), /bad recipient address/);
    assertRefused(env, sendmail(['-F', 'Evil\r\nBcc: x@evil.test', 'alice@example.test']), /bad full name/);
    assertRefused(env, sendmail(['-t'], 'To: someone odd here\n\nbody\n'), /bad recipient address "someone odd here"/);
  });

  test('-bi and -I do nothing (aliases are read directly); -bp lists the queue; -q without a daemon fails', () => {
    for (const option of ['-bi', '-I']) {
      const r = sendmail([option]);
      assert.equal(r.code, 0, r.stderr);
    }
    const list = sendmail(['-bp']);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(list.stdout, 'queue is empty\n');
    const flush = sendmail(['-q']);
    assert.equal(flush.code, 1);
    assert.match(flush.stderr, /mailsrv is not running/);
    assert.deepEqual(readdirSync(maildrop(env)), []);
  });

  test('linked as `sendmail` it is `mailsrv sendmail`; as `mailq`, `mailsrv queue`', async () => {
    for (const name of ['sendmail', 'mailq']) await symlink(MAILSRV_BIN, join(env.dir, name));
    const options = {
      cwd: REPO_ROOT,
      encoding: 'utf8' as const,
      env: { PATH: process.env.PATH ?? '', MAILSRV_CONFIG: env.configPath },
    };
    const sent = spawnSync(process.execPath, [join(env.dir, 'sendmail'), '-i', 'alice@example.test'], {
      ...options,
      input: 'Subject: linked\n\nx\n',
    });
    assert.equal(sent.status, 0, sent.stderr);
    assert.deepEqual(header(only(env), 'Subject'), ['linked']);
    const listed = spawnSync(process.execPath, [join(env.dir, 'mailq')], options);
    assert.equal(listed.status, 0, listed.stderr);
    assert.equal(listed.stdout, 'queue is empty\n');
  });

  test('an unprivileged user can drop mail into the maildrop but cannot list it', {
    skip: cannotRunAs(LOCAL_USER.uid, LOCAL_USER.gid) ?? false,
  }, () => {
    const asUser = (command: string, args: string[], input?: string) =>
      spawnSync(command, args, {
        cwd: REPO_ROOT,
        input,
        encoding: 'utf8',
        uid: LOCAL_USER.uid,
        gid: LOCAL_USER.gid,
        env: { PATH: process.env.PATH ?? '' },
      });
    const sent = asUser(
      process.execPath,
      [MAILSRV_BIN, 'sendmail', '-c', env.configPath, 'alice@example.test'],
      'Subject: from a user\n\nhi\n',
    );
    assert.equal(sent.status, 0, sent.stderr);
    const [name] = readdirSync(maildrop(env));
    const info = spawnSync('stat', ['-c', '%u %a', join(maildrop(env), name!)], { encoding: 'utf8' }).stdout.trim();
    assert.equal(
      info,
      `${LOCAL_USER.uid} 644`,
      'owned by the user, readable by the daemon through its group or "other"',
    );
    assert.deepEqual(only(env).envelope, {
      v: 1,
      sender: `${LOCAL_USER.name}@${HOSTNAME}`,
      recipients: ['alice@example.test'],
    });
    const listing = asUser('ls', [maildrop(env)]);
    assert.notEqual(listing.status, 0, `the maildrop is listable by others: ${listing.stdout}`);
    const rename = asUser('mv', [join(maildrop(env), name!), join(maildrop(env), 'stolen')]);
    assert.equal(rename.status, 0, 'the owner may still rename its own file (sticky directory)');
    const deleteOthers = asUser('rm', ['-f', join(maildrop(env), 'stolen')]);
    assert.equal(deleteOthers.status, 0);
  });

  test('the maildrop does not exist (mailsrv never started): exit 1 naming it', async () => {
    const bare = await makeEnv();
    try {
      const r = runCli(['sendmail', '-c', bare.configPath, 'alice@example.test'], { input: 'Subject: x\n\ny\n' });
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(
          `^mailsrv: cannot write to the maildrop ${escapeRegex(join(bare.stateDir, 'maildrop'))}: it does not exist`,
        ),
      );
    } finally {
      await bare.cleanup();
    }
  });
});

describe('mailsrv sendmail and the daemon', () => {
  test('mail dropped while the daemon is down is delivered when it starts, while it runs at once', async (t) => {
    const env = await maildropEnv();
    t.after(() => env.cleanup());
    const down = runCli(['sendmail', '-c', env.configPath, '-f', 'cron@example.test', `alice@${DOMAIN}`], {
      input: 'Subject: while down\n\nqueued before the start\n',
    });
    assert.equal(down.code, 0, down.stderr);
    const daemon = await startDaemon(env);
    t.after(() => daemon.kill9());
    await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.user === 'alice',
      10_000,
      'the maildrop message delivered',
    );
    const up = runCli(['sendmail', '-c', env.configPath, `bob@${DOMAIN}`], {
      input: 'Subject: while up\n\nqueued at once\n',
    });
    assert.equal(up.code, 0, up.stderr);
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.user === 'bob', 5000, 'the second message delivered');
    assert.deepEqual(readdirSync(maildrop(env)), []);
    const [message] = readMailbox(env.mailbox('alice')).messages;
    assert.match(message!.fromLine, /^From cron@example\.test /);
    assert.match(message!.original.toString('latin1'), /^Subject: while down\n[\s\S]*\n\nqueued before the start\n$/);
  });
});

function rmAll(env: TestEnv): void {
  for (const name of readdirSync(maildrop(env))) spawnSync('rm', ['-f', join(maildrop(env), name)]);
}
