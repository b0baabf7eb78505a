// Unit tests for src/mbox/lock.ts: dotlock creation, serialization, stale rules, dotlockfile interop.
// Waits, timeouts and the age of locks run on a fake clock: minutes pass without waiting.
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import {
  acquireDotlock,
  clearStaleLocks,
  lockPathOf,
  MailboxLockedError,
  type StaleLockInfo,
} from '../../src/mbox/lock.js';
import { thisNode } from '../../src/mbox/node.js';
import { eventually } from '../support/wait.js';
import { FakeClock } from '../support/fake-clock.js';

const execFileP = promisify(execFile);
const hasDotlockfile = spawnSync('dotlockfile', ['-h']).error === undefined;
const host = hostname().split('.')[0];

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-lock-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function newMailbox(): Promise<string> {
  const path = join(dir, `user${++counter}`);
  await fs.writeFile(path, '');
  return path;
}

/** A pid that certainly belonged to a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  assert.ok(child.pid);
  return child.pid;
}

function liveProcess(): ChildProcess {
  return spawn('sleep', ['60'], { stdio: 'ignore' });
}

async function setMtime(path: string, secondsAgo: number): Promise<void> {
  const t = new Date(Date.now() - secondsAgo * 1000);
  await fs.utimes(path, t, t);
}

async function leftovers(): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => /\.lock\./.test(n));
}

describe('acquireDotlock', () => {
  it('creates <mailbox>.lock holding our pid, host and node and removes it on release', async () => {
    const mbox = await newMailbox();
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    assert.equal(lock.path, `${mbox}.lock`);
    assert.equal(lockPathOf(mbox), lock.path);
    assert.equal(await fs.readFile(lock.path, 'utf8'), `${process.pid}\nhost ${host}\nnode ${thisNode()}\n`);
    assert.deepEqual(await leftovers(), [], 'temp file removed');
    await lock.release();
    await assert.rejects(fs.stat(lock.path), { code: 'ENOENT' });
    await lock.release(); // twice is harmless
  });

  it('serializes two concurrent acquirers', async () => {
    const mbox = await newMailbox();
    const first = await acquireDotlock(mbox, { timeoutMs: 1000 });
    const clock = new FakeClock();
    let secondGot = false;
    const second = acquireDotlock(mbox, { timeoutMs: 5000, clock }).then((l) => {
      secondGot = true;
      return l;
    });
    await clock.waitForTimer('the second acquirer to wait before its next try');
    assert.equal(secondGot, false, 'second must wait');
    await first.release();
    const lock = await clock.runUntilSettled(second, 'the second acquirer to try again');
    assert.equal(secondGot, true);
    await lock.release();
  });

  it('wakes a waiter in this process when the lock is let go of, before its sleep ends', async () => {
    const mbox = await newMailbox();
    const first = await acquireDotlock(mbox, { timeoutMs: 1000 });
    const clock = new FakeClock();
    const start = clock.now();
    const second = acquireDotlock(mbox, { timeoutMs: 5000, clock });
    await clock.waitForTimer('the second acquirer to sleep before its next try');
    await first.release();
    // time stands still: only the release can wake it
    let got: Awaited<typeof second> | null = null;
    void second.then((l) => {
      got = l;
    });
    await eventually(() => got !== null, 10_000, 'the second acquirer to be woken');
    const lock = await second;
    assert.equal(clock.now(), start);
    assert.equal(clock.pending, 1, 'its sleep was cancelled: only the held lock refresh is left');
    await lock.release();
    assert.equal(clock.pending, 0);
  });

  it('keeps many acquirers mutually exclusive', async () => {
    const mbox = await newMailbox();
    let inside = 0;
    let maxInside = 0;
    let trying = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        trying++;
        const lock = await acquireDotlock(mbox, { timeoutMs: 20000 });
        inside++;
        maxInside = Math.max(maxInside, inside);
        // the first holder keeps the lock until all eight are contending for it
        await eventually(() => trying === 8, 10_000, 'every acquirer to try');
        inside--;
        await lock.release();
      }),
    );
    assert.equal(maxInside, 1);
    assert.deepEqual(await leftovers(), []);
  });

  it('breaks a lock whose holder pid is dead, at once', async () => {
    const mbox = await newMailbox();
    const pid = await deadPid();
    await fs.writeFile(`${mbox}.lock`, `${pid}\n`);
    const broken: StaleLockInfo[] = [];
    const clock = new FakeClock();
    const start = clock.now();
    const acquiring = acquireDotlock(mbox, { timeoutMs: 5000, onStaleBroken: (i) => broken.push(i), clock });
    const lock = await clock.runUntilSettled(acquiring, 'the next try');
    assert.equal(clock.now(), start, 'waited before breaking it');
    assert.equal(broken.length, 1);
    assert.equal(broken[0].path, `${mbox}.lock`);
    assert.match(broken[0].reason, new RegExp(`pid ${pid}`));
    await lock.release();
  });

  it('breaks a lock without a pid once it is older than 5 minutes', async () => {
    const mbox = await newMailbox();
    await fs.writeFile(`${mbox}.lock`, '0\n');
    const madeAt = (await fs.stat(`${mbox}.lock`)).mtimeMs;
    const clock = new FakeClock(madeAt);
    const broken: StaleLockInfo[] = [];
    const options = { timeoutMs: 10 * 60_000, onStaleBroken: (i: StaleLockInfo) => broken.push(i), clock };
    const lock = await clock.runUntilSettled(acquireDotlock(mbox, options), 'the next try');
    assert.equal(broken.length, 1);
    assert.match(broken[0].reason, /older than 300 s/);
    const age = clock.now() - madeAt;
    assert.ok(age >= 300_000 && age <= 301_000, `broken at the age of ${age} ms, not in the second after 5 minutes`);
    await lock.release();
  });

  // nodes sharing the spool over NFS: a pid of another machine says nothing about this one's processes
  it('judges a lock of another host by its age only, whatever its pid is here', async () => {
    const mbox = await newMailbox();
    await fs.writeFile(`${mbox}.lock`, `${await deadPid()}\nhost other-node\n`);
    const clock = new FakeClock((await fs.stat(`${mbox}.lock`)).mtimeMs);
    const broken: StaleLockInfo[] = [];
    const options = { timeoutMs: 100, onStaleBroken: (i: StaleLockInfo) => broken.push(i), clock };
    await assert.rejects(clock.runUntilSettled(acquireDotlock(mbox, options), 'the next try'), MailboxLockedError);
    await clearStaleLocks(dir, (i) => broken.push(i));
    assert.equal(broken.length, 0, 'neither a waiter nor a daemon start breaks it');
    clock.advance(300_000);
    const lock = await clock.runUntilSettled(acquireDotlock(mbox, { ...options, timeoutMs: 1000 }), 'the next try');
    assert.equal(broken.length, 1);
    assert.match(broken[0]!.reason, /older than 300 s .*, held on host other-node/);
    await lock.release();
  });

  it('judges a lock with an impossible pid by its age', async () => {
    const mbox = await newMailbox();
    await fs.writeFile(`${mbox}.lock`, '99999999999\n');
    const clock = new FakeClock(Date.now());
    await assert.rejects(
      clock.runUntilSettled(acquireDotlock(mbox, { timeoutMs: 100, clock }), 'the next try'),
      MailboxLockedError,
    );
    clock.advance(300_000);
    const lock = await clock.runUntilSettled(acquireDotlock(mbox, { timeoutMs: 1000, clock }), 'the next try');
    await lock.release();
  });

  it('waits for a lock of a live process and times out with MailboxLockedError', async () => {
    const mbox = await newMailbox();
    const holder = liveProcess();
    try {
      await fs.writeFile(`${mbox}.lock`, `${holder.pid}\n`);
      await setMtime(`${mbox}.lock`, 240); // four minutes old: still within the 5 minutes
      const clock = new FakeClock(Date.now());
      const start = clock.now();
      const acquiring = acquireDotlock(mbox, { timeoutMs: 30_000, clock });
      await assert.rejects(clock.runUntilSettled(acquiring, 'the next try'), (err: unknown) => {
        assert.ok(err instanceof MailboxLockedError);
        assert.equal(err.path, `${mbox}.lock`);
        return true;
      });
      assert.equal(clock.now() - start, 30_000, 'gave up when the 30 s were over');
      assert.equal(await fs.readFile(`${mbox}.lock`, 'utf8'), `${holder.pid}\n`, 'foreign lock untouched');
      assert.deepEqual(await leftovers(), [], 'temp file removed');
    } finally {
      holder.kill();
    }
  });

  it('breaks a lock older than 5 minutes even though its pid runs (a hung holder, or a reused pid)', async () => {
    const mbox = await newMailbox();
    const holder = liveProcess();
    try {
      await fs.writeFile(`${mbox}.lock`, `${holder.pid}\n`);
      await setMtime(`${mbox}.lock`, 301);
      const broken: string[] = [];
      const lock = await acquireDotlock(mbox, { timeoutMs: 1000, onStaleBroken: (info) => broken.push(info.reason) });
      assert.equal(broken.length, 1);
      assert.match(broken[0]!, new RegExp(`older than 300 s .* though pid ${holder.pid} runs`));
      assert.equal((await fs.readFile(`${mbox}.lock`, 'utf8')).split('\n')[0], String(process.pid), 'ours now');
      await lock.release();
    } finally {
      holder.kill();
    }
  });

  it('treats a fresh directory lock (proper-lockfile) as locked, an old one as stale', async () => {
    const mbox = await newMailbox();
    await fs.mkdir(`${mbox}.lock`);
    const clock = new FakeClock(Date.now());
    await assert.rejects(
      clock.runUntilSettled(acquireDotlock(mbox, { timeoutMs: 200, clock }), 'the next try'),
      MailboxLockedError,
    );
    clock.advance(300_000);
    const broken: StaleLockInfo[] = [];
    const options = { timeoutMs: 2000, onStaleBroken: (i: StaleLockInfo) => broken.push(i), clock };
    const lock = await clock.runUntilSettled(acquireDotlock(mbox, options), 'the next try');
    assert.match(broken[0].reason, /directory/);
    assert.ok((await fs.lstat(lock.path)).isFile());
    await lock.release();
  });

  it('touches the lock every 60 s while held', async () => {
    const mbox = await newMailbox();
    const clock = new FakeClock(Date.now());
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000, clock });
    // the touch sets the mtime to the clock's time; a file system keeps it to well below a millisecond
    const mtime = async () => (await fs.stat(lock.path)).mtimeMs;
    const taken = clock.now();
    for (const minutes of [1, 2]) {
      await clock.runTimer(`the touch after ${minutes} min`, (at) => at > clock.now());
      await eventually(
        async () => Math.abs((await mtime()) - (taken + minutes * 60_000)) < 1,
        10_000,
        `mtime after ${minutes} min`,
        5,
      );
    }
    await lock.release();
    assert.equal(clock.pending, 0, 'still touching after the release');
  });

  it('does not remove a lock someone else took after breaking ours', async () => {
    const mbox = await newMailbox();
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    await fs.unlink(lock.path);
    await fs.writeFile(lock.path, '0\n');
    await lock.release();
    assert.equal(await fs.readFile(lock.path, 'utf8'), '0\n');
    await fs.unlink(lock.path);
  });

  it('fails with an I/O error (not MailboxLockedError) when the directory is missing', async () => {
    await assert.rejects(acquireDotlock(join(dir, 'missing', 'user'), { timeoutMs: 200 }), (err: unknown) => {
      assert.ok(!(err instanceof MailboxLockedError));
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOENT');
      return true;
    });
  });
});

describe('dotlockfile interoperability', {
  skip: hasDotlockfile ? false : 'dotlockfile (liblockfile-bin) not installed',
}, () => {
  it('waits while dotlockfile holds the lock and gets it once released', async () => {
    const mbox = await newMailbox();
    await execFileP('dotlockfile', ['-l', '-r', '0', `${mbox}.lock`]);
    const clock = new FakeClock(Date.now());
    await assert.rejects(
      clock.runUntilSettled(acquireDotlock(mbox, { timeoutMs: 300, clock }), 'the next try'),
      MailboxLockedError,
    );
    const pending = acquireDotlock(mbox, { timeoutMs: 5000, clock });
    await clock.waitForTimer('the acquirer to wait before its next try', (at) => at > clock.now());
    await execFileP('dotlockfile', ['-u', `${mbox}.lock`]);
    const lock = await clock.runUntilSettled(pending, 'the next try');
    await lock.release();
  });

  it('makes dotlockfile wait while we hold the lock', async () => {
    const mbox = await newMailbox();
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    for (const args of [
      ['-l', '-r', '0'],
      ['-p', '-l', '-r', '0'],
    ]) {
      await assert.rejects(execFileP('dotlockfile', [...args, `${mbox}.lock`]), (err: unknown) => {
        assert.notEqual((err as { code?: number }).code, 0);
        return true;
      });
    }
    await lock.release();
    await execFileP('dotlockfile', ['-l', '-r', '0', `${mbox}.lock`]);
    await execFileP('dotlockfile', ['-u', `${mbox}.lock`]);
  });

  // held while we hold it, stale by its age once its holder is gone
  it('reads a lock carrying our append note like any other', async () => {
    const mbox = await newMailbox();
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    lock.noteCommittedSize(123);
    assert.match(
      await fs.readFile(`${mbox}.lock`, 'latin1'),
      new RegExp(`^${process.pid}\\nhost ${host}\\nnode ${thisNode()}\\nappend 0+123 ${host} `),
    );
    await assert.rejects(execFileP('dotlockfile', ['-l', '-r', '0', `${mbox}.lock`]));
    await lock.release();
    // left by a dead mailsrv 10 minutes ago: dotlockfile takes it over
    await fs.writeFile(`${mbox}.lock`, `${await deadPid()}\nappend 0000000000000123 otherhost some-boot\n`);
    const tenMinutesAgo = new Date(Date.now() - 10 * 60 * 1000);
    await fs.utimes(`${mbox}.lock`, tenMinutesAgo, tenMinutesAgo);
    await execFileP('dotlockfile', ['-l', '-r', '2', `${mbox}.lock`]);
    assert.equal(await fs.readFile(`${mbox}.lock`, 'latin1'), '0\n', "the lock is dotlockfile's now");
    await execFileP('dotlockfile', ['-u', `${mbox}.lock`]);
  });
});

describe('clearStaleLocks', () => {
  it('removes locks and temp files of dead pids and of our own pid, keeps live ones', async () => {
    const spool = await fs.mkdtemp(join(dir, 'spool-'));
    const dead = await deadPid();
    const holder = liveProcess();
    try {
      const files: Record<string, string> = {
        'dead.lock': `${dead}\n`,
        'own.lock': `${process.pid}\n`,
        'live.lock': `${holder.pid}\n`,
        'nopid.lock': '0\n',
        [`dead.lock.${host}.${dead}.abc123`]: `${dead}\n`,
        [`live.lock.${host}.${holder.pid}.abc123`]: `${holder.pid}\n`,
        [`other.lock.otherhost.${dead}.abc123`]: `${dead}\n`,
        dead: 'a mailbox, not a lock',
      };
      for (const [name, content] of Object.entries(files)) await fs.writeFile(join(spool, name), content);
      await fs.mkdir(join(spool, 'olddir.lock'));
      await setMtime(join(spool, 'olddir.lock'), 600);
      await fs.mkdir(join(spool, 'newdir.lock'));

      const broken: StaleLockInfo[] = [];
      await clearStaleLocks(spool, (i) => broken.push(i));
      const left = (await fs.readdir(spool)).sort();
      assert.deepEqual(
        left,
        [
          'dead',
          'live.lock',
          `live.lock.${host}.${holder.pid}.abc123`,
          'newdir.lock',
          'nopid.lock',
          `other.lock.otherhost.${dead}.abc123`,
        ].sort(),
      );
      assert.equal(broken.length, 4);
    } finally {
      holder.kill();
    }
  });
});
