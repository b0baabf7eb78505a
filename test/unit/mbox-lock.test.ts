// Unit tests for src/mbox/lock.ts: dotlock creation, serialization, stale rules, dotlockfile interop.
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import {
  acquireDotlock,
  clearStaleLocks,
  lockPathOf,
  MailboxLockedError,
  type StaleLockInfo,
} from '../../src/mbox/lock.js';

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
  it('creates <mailbox>.lock holding our pid and removes it on release', async () => {
    const mbox = await newMailbox();
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    assert.equal(lock.path, `${mbox}.lock`);
    assert.equal(lockPathOf(mbox), lock.path);
    assert.equal(await fs.readFile(lock.path, 'utf8'), `${process.pid}\n`);
    assert.deepEqual(await leftovers(), [], 'temp file removed');
    await lock.release();
    await assert.rejects(fs.stat(lock.path), { code: 'ENOENT' });
    await lock.release(); // twice is harmless
  });

  it('serializes two concurrent acquirers', async () => {
    const mbox = await newMailbox();
    const first = await acquireDotlock(mbox, { timeoutMs: 1000 });
    let secondGot = false;
    const second = acquireDotlock(mbox, { timeoutMs: 5000 }).then((l) => {
      secondGot = true;
      return l;
    });
    await sleep(300);
    assert.equal(secondGot, false, 'second must wait');
    await first.release();
    const lock = await second;
    assert.equal(secondGot, true);
    await lock.release();
  });

  it('keeps many acquirers mutually exclusive', async () => {
    const mbox = await newMailbox();
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const lock = await acquireDotlock(mbox, { timeoutMs: 20000 });
        inside++;
        maxInside = Math.max(maxInside, inside);
        await sleep(20);
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
    const start = Date.now();
    const lock = await acquireDotlock(mbox, { timeoutMs: 5000, onStaleBroken: (i) => broken.push(i) });
    assert.ok(Date.now() - start < 1000);
    assert.equal(broken.length, 1);
    assert.equal(broken[0].path, `${mbox}.lock`);
    assert.match(broken[0].reason, new RegExp(`pid ${pid}`));
    await lock.release();
  });

  it('breaks a lock without a pid once it is older than 5 minutes', async () => {
    const mbox = await newMailbox();
    await fs.writeFile(`${mbox}.lock`, '0\n');
    await setMtime(`${mbox}.lock`, 301);
    const broken: StaleLockInfo[] = [];
    const lock = await acquireDotlock(mbox, { timeoutMs: 2000, onStaleBroken: (i) => broken.push(i) });
    assert.equal(broken.length, 1);
    assert.match(broken[0].reason, /older than 300 s/);
    await lock.release();
  });

  it('judges a lock with an impossible pid by its age', async () => {
    const mbox = await newMailbox();
    await fs.writeFile(`${mbox}.lock`, '99999999999\n');
    await assert.rejects(acquireDotlock(mbox, { timeoutMs: 100 }), MailboxLockedError);
    await setMtime(`${mbox}.lock`, 301);
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    await lock.release();
  });

  it('waits for a lock of a live process and times out with MailboxLockedError', async () => {
    const mbox = await newMailbox();
    const holder = liveProcess();
    try {
      await fs.writeFile(`${mbox}.lock`, `${holder.pid}\n`);
      await setMtime(`${mbox}.lock`, 3600); // a live holder's lock is valid whatever its age (liblockfile)
      const start = Date.now();
      await assert.rejects(acquireDotlock(mbox, { timeoutMs: 400 }), (err: unknown) => {
        assert.ok(err instanceof MailboxLockedError);
        assert.equal(err.path, `${mbox}.lock`);
        return true;
      });
      assert.ok(Date.now() - start >= 390);
      assert.equal(await fs.readFile(`${mbox}.lock`, 'utf8'), `${holder.pid}\n`, 'foreign lock untouched');
      assert.deepEqual(await leftovers(), [], 'temp file removed');
    } finally {
      holder.kill();
    }
  });

  it('treats a fresh directory lock (proper-lockfile) as locked, an old one as stale', async () => {
    const mbox = await newMailbox();
    await fs.mkdir(`${mbox}.lock`);
    await assert.rejects(acquireDotlock(mbox, { timeoutMs: 200 }), MailboxLockedError);
    await setMtime(`${mbox}.lock`, 400);
    const broken: StaleLockInfo[] = [];
    const lock = await acquireDotlock(mbox, { timeoutMs: 2000, onStaleBroken: (i) => broken.push(i) });
    assert.match(broken[0].reason, /directory/);
    assert.ok((await fs.lstat(lock.path)).isFile());
    await lock.release();
  });

  it('touches the lock every 60 s while held', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const mbox = await newMailbox();
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    await setMtime(lock.path, 600);
    t.mock.timers.tick(60_000);
    for (let i = 0; i < 50 && Date.now() - (await fs.stat(lock.path)).mtimeMs > 5000; i++)
      await new Promise((r) => setImmediate(r));
    assert.ok(Date.now() - (await fs.stat(lock.path)).mtimeMs < 5000, 'mtime refreshed');
    await lock.release();
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
    await assert.rejects(acquireDotlock(mbox, { timeoutMs: 300 }), MailboxLockedError);
    const pending = acquireDotlock(mbox, { timeoutMs: 5000 });
    await sleep(200);
    await execFileP('dotlockfile', ['-u', `${mbox}.lock`]);
    const lock = await pending;
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

  it('reads a lock carrying our append note like any other: held while we hold it, stale by its age once its holder is gone', async () => {
    const mbox = await newMailbox();
    const lock = await acquireDotlock(mbox, { timeoutMs: 1000 });
    await lock.noteCommittedSize(123);
    assert.match(await fs.readFile(`${mbox}.lock`, 'latin1'), new RegExp(`^${process.pid}\\nappend 0+123 `));
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
