// e2e: accounts = "system" with real Unix accounts made here (useradd, chpasswd: yescrypt, as
// Debian 12 hashes) and a PAM service file of this test's own. Mail to a login lands in
// spool_dir/<login>, made by the root helper as the account's, group mail, 0660, read by Python's
// mailbox module and shared with dotlockfile meanwhile; SMTP AUTH (swaks) and POP3 (curl, the raw
// client) log in with the Unix password; a wrong password, an unknown name and an account below
// system_min_uid look the same; a locked or expired account cannot log in; `mailsrv check` names
// a mailbox the daemon cannot use, with the fix; the helper worker refuses bad requests; a killed
// helper worker is started again.
// Skipped unless run as root (CI is).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { PAM_SERVICE_TEXT } from '../../src/accounts/pam-service.js';
import { resolveIdentity } from '../../src/privileges.js';
import {
  authPlain,
  cleanupAllTempDirs,
  type Daemon,
  DOMAIN,
  makePop3Env,
  Pop3Client,
  pythonMbox,
  RUN_AS_ROOT,
  runCli,
  SmtpClient,
  sendRaw,
  startDaemon,
  type TestEnv,
} from './harness.js';
import { startHelperWorker } from '../support/helper-worker.js';

const PREFIX = `msrvt${randomBytes(3).toString('hex')}`;
const PAM_SERVICE = `${PREFIX}-pam`;
const PAM_FILE = `/etc/pam.d/${PAM_SERVICE}`;
const PASSWORD = `Unix-${randomBytes(6).toString('hex')}`;

interface Account {
  login: string;
  uid: number;
}

/** Unused uids: a free block of 10 from a random start, checked through NSS. */
function freeUidBlock(): number {
  for (;;) {
    const base = 30_000 + Math.floor(Math.random() * 20_000);
    const taken = Array.from({ length: 10 }, (_, i) => base + i).some(
      (uid) => spawnSync('getent', ['passwd', String(uid)]).status === 0,
    );
    if (!taken) return base;
  }
}

const BASE_UID = RUN_AS_ROOT ? freeUidBlock() : 0;
const MIN_UID = BASE_UID + 5;
const alice: Account = { login: `${PREFIX}a`, uid: BASE_UID + 6 };
const bob: Account = { login: `${PREFIX}b`, uid: BASE_UID + 7 };
/** a real account with a password, but below system_min_uid: no mail user */
const low: Account = { login: `${PREFIX}l`, uid: BASE_UID + 1 };
const made: string[] = [];

function makeAccount(account: Account): void {
  execFileSync('useradd', ['-M', '-N', '-u', String(account.uid), '-s', '/usr/sbin/nologin', account.login]);
  made.push(account.login);
  execFileSync('chpasswd', { input: `${account.login}:${PASSWORD}\n` });
}

function shadowHash(login: string): string {
  const line = readFileSync('/etc/shadow', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${login}:`));
  return line?.split(':')[1] ?? '';
}

describe('accounts = "system"', { skip: RUN_AS_ROOT ? false : 'run as root to make Unix accounts' }, () => {
  let env: TestEnv & { pop3Port: number };
  let daemon: Daemon;
  const mail = RUN_AS_ROOT ? resolveIdentity('nobody', 'mail') : null;

  /** Sends one message to NAME@DOMAIN and waits until it is in each of `logins`' mailboxes. */
  async function deliver(name: string, subject: string, logins: string[]): Promise<void> {
    const message = `Subject: ${subject}\r\n\r\nbody\r\n`;
    const result = await sendRaw(env.port, { from: 'sender@client.test', to: [`${name}@${DOMAIN}`], message });
    assert.ok(result.queueId, JSON.stringify(result));
    await daemon.waitForLogs(
      (e) => e.msg === 'delivered' && e.queueId === result.queueId && logins.includes(String(e.user)),
      logins.length,
    );
  }

  before(async () => {
    for (const account of [alice, bob, low]) makeAccount(account);
    writeFileSync(PAM_FILE, PAM_SERVICE_TEXT, { mode: 0o644 });
    env = await makePop3Env({
      config: {
        accounts: 'system',
        system_min_uid: MIN_UID,
        pam_service: PAM_SERVICE,
        user: 'nobody',
        group: 'mail',
        // small, so that the failures below do not add up to long waits or a lockout
        auth: { failure_delay: '20ms', max_failures: 50 },
      },
      aliases: `postmaster: ${alice.login}\nroot: ${alice.login}\nteam: ${alice.login}, ${bob.login}\n`,
    });
    // as Debian's /var/mail: root, group mail, 2775
    chownSync(env.spoolDir, 0, mail!.gid);
    chmodSync(env.spoolDir, 0o2775);
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    for (const login of made) spawnSync('userdel', [login]);
    rmSync(PAM_FILE, { force: true });
    await cleanupAllTempDirs();
  });

  test('the test accounts have yescrypt hashes, as Debian 12 makes them', () => {
    assert.match(shadowHash(alice.login), /^\$y\$/);
  });

  test('mail to a login lands in spool_dir/<login>: the account, group mail, 0660; aliases on top', async () => {
    await deliver(alice.login, 'first', [alice.login]);
    const box = statSync(env.mailbox(alice.login));
    assert.equal(box.uid, alice.uid);
    assert.equal(box.gid, mail!.gid);
    assert.equal(box.mode & 0o7777, 0o660);
    await deliver('postmaster', 'to postmaster', [alice.login]);
    await deliver('team', 'to the team', [alice.login, bob.login]);
    assert.deepEqual(
      pythonMbox(env.mailbox(alice.login)).messages.map((m) => m.subject),
      ['first', 'to postmaster', 'to the team'],
    );
    assert.equal(statSync(env.mailbox(bob.login)).uid, bob.uid);
    assert.deepEqual(
      pythonMbox(env.mailbox(bob.login)).messages.map((m) => m.subject),
      ['to the team'],
    );
  });

  test('an unknown name and an account below system_min_uid are refused alike at RCPT', async () => {
    const { client } = await SmtpClient.connect(env.port);
    try {
      await client.cmd('EHLO client.test');
      await client.cmd('MAIL FROM:<someone@remote.test>');
      const replies = [];
      // root is an alias here (to alice); daemon and bin are accounts below system_min_uid
      for (const name of [`${PREFIX}nobody`, low.login, 'daemon', 'bin']) {
        const reply = await client.cmd(`RCPT TO:<${name}@example.test>`);
        replies.push(reply.raw.replace(name, 'NAME'));
      }
      assert.equal(new Set(replies).size, 1, replies.join('\n'));
      assert.match(replies[0]!, /^550 5\.1\.1 /);
    } finally {
      await client.quit();
    }
  });

  test("delivery waits while dotlockfile holds the lock, and another writer's message stays intact", async () => {
    const lock = `${env.mailbox(bob.login)}.lock`;
    execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
    let queueId: string | null;
    try {
      // another MDA appends meanwhile, under the lock it holds
      const other = 'From other@mda.test Sat Dec  5 10:00:00 2026\nSubject: from procmail\n\nother body\n\n';
      writeFileSync(env.mailbox(bob.login), other, { flag: 'a' });
      const message = 'Subject: while locked\r\n\r\nwaited\r\n';
      ({ queueId } = await sendRaw(env.port, { from: 'a@remote.test', to: [`${bob.login}@${DOMAIN}`], message }));
      assert.ok(queueId);
      // the queue's own attempt waits for the lock, gives up and defers: nothing was written
      await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === queueId);
    } finally {
      execFileSync('dotlockfile', ['-u', lock]);
    }
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueId);
    assert.deepEqual(
      pythonMbox(env.mailbox(bob.login)).messages.map((m) => m.subject),
      ['to the team', 'from procmail', 'while locked'],
    );
  });

  test('POP3 (curl) and SMTP AUTH (swaks) log in with the Unix password', async () => {
    const list = spawnSync(
      'curl',
      ['-sS', '--user', `${alice.login}:${PASSWORD}`, `pop3://127.0.0.1:${env.pop3Port}/`],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(list.status, 0, list.stderr);
    assert.equal(list.stdout.trim().split(/\r?\n/).length, pythonMbox(env.mailbox(alice.login)).count);
    const swaks = spawnSync(
      'swaks',
      [
        ...['--server', '127.0.0.1', '--port', String(env.port)],
        ...['--auth', 'PLAIN', '--auth-user', bob.login, '--auth-password', PASSWORD],
        ...['--from', `${bob.login}@example.test`, '--to', 'someone@remote.test', '--quit-after', 'RCPT'],
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(swaks.status, 0, swaks.stdout + swaks.stderr);
    assert.match(swaks.stdout, /235 2\.7\.0/);
  });

  test("a POP3 update rewrites the mailbox in place: it stays the account's, group mail, 0660", async () => {
    const box = env.mailbox(alice.login);
    const count = pythonMbox(box).count;
    const client = await Pop3Client.login(env.pop3Port, alice.login, PASSWORD, { localAddress: '127.0.4.1' });
    assert.match(await client.cmd('DELE 1'), /^\+OK/);
    assert.match(await client.quit(), /^\+OK/);
    assert.equal(pythonMbox(box).count, count - 1);
    const st = statSync(box);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [alice.uid, mail!.gid, 0o660]);
  });

  test('a wrong password, an unknown name, a low-uid account and a bad name get the same replies', async () => {
    const names = [alice.login, `${PREFIX}nobody`, low.login, 'root', 'Bad/Name'];
    const smtp: string[] = [];
    const pop3: string[] = [];
    // each attempt from its own address: the throttle's growing delay must not differ between them
    for (const [i, name] of names.entries()) {
      // the low-uid account's own password is right: it still must not tell
      const password = name === low.login ? PASSWORD : 'wrong-password';
      const { client } = await SmtpClient.connect(env.port, { localAddress: `127.0.1.${i + 1}` });
      await client.cmd('EHLO client.test');
      const reply = await client.cmd(`AUTH PLAIN ${authPlain(name, password)}`);
      smtp.push(reply.raw);
      await client.quit();
      const { client: pop } = await Pop3Client.connect(env.pop3Port, { localAddress: `127.0.2.${i + 1}` });
      pop3.push(`${await pop.cmd(`USER ${name}`)} / ${await pop.cmd(`PASS ${password}`)}`);
      await pop.quit();
    }
    assert.equal(new Set(smtp).size, 1, smtp.join('\n'));
    assert.match(smtp[0]!, /^535 /);
    assert.equal(new Set(pop3).size, 1, pop3.join('\n'));
    assert.match(pop3[0]!, /-ERR/);
  });

  test('a locked account (usermod -L) and an expired one (chage -E 0) cannot log in', async (t) => {
    let attempt = 0;
    const answer = async (login: string) => {
      const { client } = await Pop3Client.connect(env.pop3Port, { localAddress: `127.0.3.${++attempt}` });
      await client.cmd(`USER ${login}`);
      const reply = await client.cmd(`PASS ${PASSWORD}`);
      await client.quit();
      return reply;
    };
    execFileSync('usermod', ['-L', alice.login]);
    t.after(() => void spawnSync('usermod', ['-U', alice.login]));
    execFileSync('chage', ['-E', '0', bob.login]);
    t.after(() => void spawnSync('chage', ['-E', '-1', bob.login]));
    assert.match(await answer(alice.login), /^-ERR/);
    assert.match(await answer(bob.login), /^-ERR/);
    execFileSync('usermod', ['-U', alice.login]);
    execFileSync('chage', ['-E', '-1', bob.login]);
    assert.match(await answer(alice.login), /^\+OK/);
    assert.match(await answer(bob.login), /^\+OK/);
  });

  test('a 0600 mailbox: mail waits, `mailsrv check` names it with the fix and changes nothing', async () => {
    const box = env.mailbox(bob.login);
    chmodSync(box, 0o600); // as another MDA leaves it: the daemon (group mail) cannot open it
    const before = readFileSync(box);
    const message = 'Subject: after chmod\r\n\r\nwaits\r\n';
    const sent = await sendRaw(env.port, { from: 'a@remote.test', to: [`${bob.login}@${DOMAIN}`], message });
    assert.ok(sent.queueId, JSON.stringify(sent));
    await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === sent.queueId);
    const check = runCli(['check', '-c', env.configPath]);
    assert.equal(check.code, 1, check.stdout + check.stderr);
    const line = check.stderr.split('\n').find((l) => l.startsWith(`mailbox ${box}:`));
    assert.ok(line, check.stderr);
    const fix = `chown ${bob.login}:mail ${box} && chmod 0660 ${box}`;
    assert.ok(line.endsWith(fix), line);
    assert.equal(statSync(box).mode & 0o777, 0o600, 'check changed nothing');
    assert.deepEqual(readFileSync(box), before);
    execFileSync('sh', ['-c', fix]);
    const again = runCli(['check', '-c', env.configPath]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === sent.queueId);
    assert.equal(pythonMbox(box).messages.at(-1)?.subject, 'after chmod');
  });

  test('the helper worker, run as root on its own, refuses what it must and exits on garbage', async () => {
    const settings = {
      spoolDir: env.spoolDir,
      minUid: MIN_UID,
      pamService: PAM_SERVICE,
      mailGid: mail!.gid,
      accounts: true,
      secretFiles: [],
    };
    const worker = startHelperWorker(settings);
    const requests = [
      { id: 1, op: 'mailbox', user: low.login, path: `${env.spoolDir}/${low.login}` },
      { id: 2, op: 'mailbox', user: alice.login, path: '/etc/shadow' },
      { id: 3, op: 'mailbox', user: '../etc', path: `${env.spoolDir}/../etc` },
      { id: 4, op: 'auth', user: low.login, password: PASSWORD, rhost: '127.0.0.1' },
      { id: 5, op: 'chown', user: alice.login, path: '/etc/shadow' },
      { id: 6, op: 'auth', user: alice.login, password: PASSWORD, rhost: '127.0.0.1' },
    ];
    const answers = await worker.ask(requests);
    assert.match(String(answers.get(1)!.detail), /below system_min_uid/);
    assert.equal(answers.get(2)!.detail, 'path is not spool_dir/<user>');
    assert.equal(answers.get(3)!.detail, 'user is not a valid login name');
    assert.deepEqual(answers.get(4), { id: 4, ok: false, error: 'denied', checked: false });
    assert.equal(answers.get(5)!.detail, 'unknown op');
    assert.deepEqual(answers.get(6), { id: 6, ok: true });
    assert.throws(() => statSync(env.mailbox(low.login)), /ENOENT/);
    worker.process.stdin.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    assert.equal(await worker.exited, 2);
  });

  test('a killed helper worker is started again and logins work again', async () => {
    const started = daemon.find((e) => e.msg === 'root helper started');
    const pid = Number(started.at(-1)!.pid);
    process.kill(pid, 'SIGKILL');
    await daemon.waitForLog((e) => e.msg === 'root helper exited' && e.pid === pid);
    await daemon.waitForLogs((e) => e.msg === 'root helper started', started.length + 1);
    const client = await Pop3Client.login(env.pop3Port, alice.login, PASSWORD);
    await client.quit();
    // the daemon itself never became root again
    const status = readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8');
    assert.match(status, new RegExp(`^Uid:\\s+${mail!.uid}\\s+${mail!.uid}\\s`, 'm'));
  });
});
