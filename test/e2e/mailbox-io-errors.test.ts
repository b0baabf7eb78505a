// One user's mailbox file fails (a real EIO from a shut-down disk, EACCES, EROFS, a directory in
// the way): mail for that user is accepted into the queue and deferred with the reason logged,
// POP3 refuses that mailbox cleanly, everyone else's mail and POP3 go on, no mailbox is damaged,
// and once the mailbox is repaired a queue flush delivers each deferred message exactly once.
// Needs root (mounts, files the daemon's account cannot open); the EIO case also a loop device.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  type Daemon,
  DOMAIN,
  eventually,
  makePop3Env,
  Pop3Client,
  PYTHON,
  readMailbox,
  RUN_AS_ROOT,
  sendRaw,
  startDaemon,
  writeMailbox,
} from './harness.js';

/** One way a mailbox breaks, and how the administrator repairs it. */
interface Breakage {
  user: string;
  /** what the 'deferred' log line's reason says */
  reason: RegExp;
  /** makes the mailbox `box` (which holds earlier mail) fail; runs while the daemon runs */
  break(box: string, pop3Port: number): void | Promise<void>;
  /** POP3 for this user while it is broken: a clean refusal */
  checkPop3(pop3Port: number): Promise<void>;
  repair(box: string): void;
}

const HEALTHY = ['erin', 'frank'];
const EARLIER = (user: string) =>
  `From someone@client.test Thu Nov 26 10:00:00 2026\nSubject: earlier mail for ${user}\n\nhello\n\n`;

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  assert.equal(result.status, 0, `${command} ${args.join(' ')}: ${result.stderr}`);
}

function subjects(path: string): string[] {
  return readMailbox(path).messages.map((m) => /^Subject: (.*?)\r?$/m.exec(m.original.toString())?.[1] ?? '?');
}

async function send(port: number, to: string[], subject: string): Promise<void> {
  const message = `From: a@client.test\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`;
  const sent = await sendRaw(port, { from: 'a@client.test', to: to.map((u) => `${u}@${DOMAIN}`), message });
  assert.equal(sent.end?.code, 250, `${subject}: ${sent.end?.raw}`);
}

/** The login's answer to PASS, for a mailbox that must not be served now. */
async function loginReply(pop3Port: number, user: string): Promise<string> {
  const { client } = await Pop3Client.connect(pop3Port);
  assert.match(await client.cmd(`USER ${user}`), /^\+OK/);
  const reply = await client.cmd('PASS secret-pw');
  await client.quit();
  return reply;
}

/** Asserts that `user` logs in and sees every message of `box`, the last one as stored. */
async function checkHealthyPop3(pop3Port: number, user: string, box: string): Promise<void> {
  const stored = subjects(box);
  const client = await Pop3Client.login(pop3Port, user);
  assert.match(await client.cmd('STAT'), new RegExp(`^\\+OK ${stored.length} `));
  const last = await client.message(`RETR ${stored.length}`);
  assert.ok(last.body.toString().includes(`\r\nSubject: ${stored.at(-1)}\r\n`), `${user}'s last message`);
  assert.match(await client.quit(), /^\+OK/);
}

/**
 * The whole story for these breakages: break them with the daemon running, send to everyone,
 * check the deferrals, the healthy mailboxes and POP3, repair, flush, check every mailbox.
 */
async function provePerMailboxFailure(
  t: { after: (fn: () => Promise<void> | void) => void },
  breakages: Breakage[],
  cleanup: () => void,
): Promise<void> {
  const broken = breakages.map((b) => b.user);
  const env = await makePop3Env({ users: [...broken, ...HEALTHY] });
  let daemon: Daemon | null = null;
  t.after(async () => {
    await daemon?.kill9();
    cleanup();
    await env.cleanup();
  });
  for (const user of [...broken, ...HEALTHY]) writeMailbox(env.mailbox(user), EARLIER(user));
  daemon = await startDaemon(env);
  for (const b of breakages) await b.break(env.mailbox(b.user), env.pop3Port);

  // one message to each broken mailbox alone (offered directly, then queued), one to everyone
  // (queued), and a stream to the healthy ones alongside
  const healthyRound = (round: number) =>
    HEALTHY.flatMap((user) => [1, 2, 3].map((n) => send(env.port, [user], `${user} ${round}.${n}`)));
  await Promise.all([
    ...broken.map((user) => send(env.port, [user], `${user} alone`)),
    send(env.port, [...broken, ...HEALTHY], 'to everyone'),
    ...healthyRound(1),
  ]);
  for (const b of breakages) {
    const fallback = await daemon.waitForLog(
      (l) => l.msg === 'mailbox unavailable: queued for later delivery' && l.user === b.user,
      20_000,
      `${b.user}'s message queued instead of delivered at once`,
    );
    assert.match(String(fallback.reason), b.reason);
    const deferred = await daemon.waitForLogs(
      (l) => l.msg === 'deferred' && l.user === b.user,
      2,
      20_000,
      `deferrals for ${b.user}`,
    );
    for (const line of deferred) assert.match(String(line.reason), b.reason, `${b.user}'s deferral names the failure`);
  }
  // mail for the others still flows while those mailboxes fail
  await Promise.all(healthyRound(2));
  for (const user of HEALTHY) {
    await daemon.waitForLogs((l) => l.msg === 'delivered' && l.user === user, 7, 20_000, `deliveries to ${user}`);
  }
  const healthyExpected = (user: string) => [
    `earlier mail for ${user}`,
    ...[1, 2, 3].map((n) => `${user} 1.${n}`),
    ...[1, 2, 3].map((n) => `${user} 2.${n}`),
    'to everyone',
  ];
  for (const user of HEALTHY) {
    assert.deepEqual(subjects(env.mailbox(user)).sort(), healthyExpected(user).sort(), `${user}'s mailbox`);
  }

  for (const b of breakages) await b.checkPop3(env.pop3Port);
  for (const user of HEALTHY) await checkHealthyPop3(env.pop3Port, user, env.mailbox(user));
  assert.equal(daemon.running, true, 'the daemon is still running');

  for (const b of breakages) b.repair(env.mailbox(b.user));
  daemon.child.kill('SIGUSR2'); // mailsrv queue flush
  for (const user of broken) {
    await daemon.waitForLogs((l) => l.msg === 'delivered' && l.user === user, 2, 20_000, `deliveries to ${user}`);
  }
  await eventually(() => env.queued().length === 0, 20_000, 'the queue empties');
  for (const user of broken) {
    const stored = subjects(env.mailbox(user));
    assert.equal(stored[0], `earlier mail for ${user}`, `${user}'s earlier mail is intact`);
    assert.deepEqual(stored.slice(1).sort(), [`${user} alone`, 'to everyone'].sort(), `${user}: each message once`);
  }
  for (const user of HEALTHY) {
    assert.deepEqual(subjects(env.mailbox(user)).sort(), healthyExpected(user).sort(), `${user}: nothing twice`);
  }
  assert.equal(await daemon.stop(), 0);
}

describe('mailbox I/O errors', { skip: !RUN_AS_ROOT && 'needs root: mounts, files the daemon cannot open' }, () => {
  test('EACCES, EROFS and a directory in the way: that mailbox is deferred, others flow', async (t) => {
    const mounted: string[] = [];
    let owner = { uid: 0, gid: 0 };
    const breakages: Breakage[] = [
      {
        user: 'alice', // root's file, mode 0000: the daemon's account may not open it
        reason: /EACCES/,
        break(box) {
          owner = statSync(box);
          chownSync(box, 0, 0);
          chmodSync(box, 0o000);
        },
        async checkPop3(port) {
          assert.match(await loginReply(port, 'alice'), /^-ERR \[SYS\/TEMP\] /);
        },
        repair(box) {
          chownSync(box, owner.uid, owner.gid);
          chmodSync(box, 0o600);
        },
      },
      {
        user: 'bob', // a read-only bind mount of the one file
        reason: /EROFS/,
        break(box) {
          run('mount', ['--bind', box, box]);
          mounted.push(box);
          run('mount', ['-o', 'remount,bind,ro', box]);
        },
        async checkPop3(port) {
          // reading works; the update cannot be written
          const client = await Pop3Client.login(port, 'bob');
          assert.match(await client.cmd('DELE 1'), /^\+OK/);
          assert.match(await client.quit(), /^-ERR \[SYS\/TEMP\] /);
        },
        repair(box) {
          run('umount', [box]);
          mounted.splice(mounted.indexOf(box), 1);
        },
      },
      {
        user: 'carol', // a directory where the mailbox should be
        reason: /EISDIR/,
        break(box) {
          rmSync(box);
          mkdirSync(box);
        },
        async checkPop3(port) {
          assert.equal(await loginReply(port, 'carol'), '-ERR [SYS/PERM] Mailbox is not a regular file');
        },
        repair(box) {
          rmSync(box, { recursive: true });
          writeMailbox(box, EARLIER('carol'));
        },
      },
    ];
    await provePerMailboxFailure(t, breakages, () => {
      for (const path of mounted) spawnSync('umount', ['-l', path]);
    });
  });

  test('EIO from a failed disk: that mailbox is deferred, others flow', async (t) => {
    const disk = mkdtempSync(join(tmpdir(), 'mailsrv-eio-'));
    const mountPoint = join(disk, 'mnt');
    mkdirSync(mountPoint);
    const image = join(disk, 'ext4.img');
    run('truncate', ['-s', '8M', image]);
    run('mkfs.ext4', ['-q', '-F', image]);
    const mounted = spawnSync('mount', ['-o', 'loop', image, mountPoint], { encoding: 'utf8' });
    if (mounted.status !== 0) {
      rmSync(disk, { recursive: true, force: true });
      t.skip(`needs a loop device for a disk that fails: ${mounted.stderr.trim()}`);
      return;
    }
    const binds: string[] = [];
    let before: Pop3Client | null = null;
    const eio: Breakage = {
      user: 'dave', // his mailbox on its own disk, which then fails: every access gets EIO
      reason: /EIO/,
      async break(box, pop3Port) {
        const onDisk = join(mountPoint, 'dave');
        copyFileSync(box, onDisk);
        const { uid, gid } = statSync(box);
        chownSync(onDisk, uid, gid);
        chmodSync(onDisk, 0o600);
        run('mount', ['--bind', onDisk, box]);
        binds.push(box);
        before = await Pop3Client.login(pop3Port, 'dave'); // a session from before the failure
        shutDownDisk(mountPoint);
      },
      async checkPop3(port) {
        const old = before!;
        assert.match(await old.cmd('LIST 1'), /^\+OK 1 /, 'what the session learnt before, it still knows');
        assert.match(await old.cmd('RETR 1'), /^-ERR \[SYS\/TEMP\] /);
        assert.match(await old.cmd('DELE 1'), /^\+OK/);
        assert.match(await old.quit(), /^-ERR \[SYS\/TEMP\] /, 'the update cannot be written');
        assert.match(await loginReply(port, 'dave'), /^-ERR \[SYS\/TEMP\] /);
      },
      repair(box) {
        run('umount', [box]);
        binds.splice(binds.indexOf(box), 1);
        spawnSync('umount', ['-l', mountPoint]);
      },
    };
    await provePerMailboxFailure(t, [eio], () => {
      before?.destroy();
      for (const path of binds) spawnSync('umount', ['-l', path]);
      spawnSync('umount', ['-l', mountPoint]);
      rmSync(disk, { recursive: true, force: true });
    });
  });
});

/** Shuts the ext4 file system at `mountPoint` down as after a fatal device error (EXT4_IOC_SHUTDOWN). */
function shutDownDisk(mountPoint: string): void {
  const ioctl =
    'import fcntl, os, struct, sys\n' +
    'fd = os.open(sys.argv[1], os.O_RDONLY)\n' +
    'fcntl.ioctl(fd, 0x8004587D, struct.pack("I", 2))  # EXT4_IOC_SHUTDOWN, EXT4_GOING_FLAGS_NOLOGFLUSH\n';
  run(PYTHON, ['-c', ioctl, mountPoint]);
}
