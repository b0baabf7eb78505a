// E2E: `mailsrv queue` reads the queue directly, daemon running or not: an empty queue, a
// message deferred because its mailbox is locked (id, size, age, sender, the recipient still
// waiting, its state and last error; the delivered one is not shown), --json; `queue delete`
// removes an entry and refuses bad or unknown ids, `delete ALL` empties the queue; `queue flush`
// without a daemon fails; users other than root and the daemon's cannot read the queue; with the
// daemon running, flush retries at once and delete makes it forget the entry (and only that).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { QueueStore } from '../../src/queue/store.js';
import {
  cannotRunAs,
  crlf,
  DOMAIN,
  envForTest,
  MAILSRV_BIN,
  queueIdOf,
  REPO_ROOT,
  runCli,
  sendRaw,
  type TestEnv,
} from './harness.js';

const HEADER_LINE = '-Queue ID------- --Size-- -Age- -Sender/Recipient-------';

interface JsonEntry {
  id: string;
  arrivalTime: string;
  ageSeconds: number;
  size: number;
  sender: string;
  recipients: {
    address: string;
    state: string;
    attempts: number;
    nextAttemptAt: string | null;
    lastError: string | null;
  }[];
}

const setup = envForTest;

function queue(env: TestEnv, ...args: string[]) {
  return runCli(['queue', ...args, '-c', env.configPath]);
}

/** Bytes of the message in queue file `id` (after its envelope line). */
function storedSize(env: TestEnv, id: string): number {
  const path = join(env.stateDir, 'queue', id);
  return statSync(path).size - (readFileSync(path, 'latin1').indexOf('\n') + 1);
}

/** Queue entries made directly with the store, for the tests that need no delivery. */
async function queueEntries(env: TestEnv, count: number): Promise<string[]> {
  const store = new QueueStore(env.stateDir);
  await store.init();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const pending = store.begin({
      sender: '',
      receivedAt: Date.now() - 2 * 3600_000,
      client: { ip: '127.0.0.1', helo: 'h', protocol: 'ESMTP', hostname: '', submitted: false },
      recipients: [{ address: `alice@${DOMAIN}`, target: { kind: 'local', user: 'alice' } }],
    });
    await pending.write(Readable.from([Buffer.from(`Subject: ${i}\r\n\r\nx\r\n`)]));
    ids.push((await pending.commit()).envelope.id);
  }
  return ids;
}

function queueFiles(env: TestEnv): string[] {
  return readdirSync(join(env.stateDir, 'queue'))
    .filter((name) => name !== 'corrupt')
    .sort();
}

describe('mailsrv queue', () => {
  test('an empty queue: "queue is empty" before the daemon ever ran and after; --json: []', async (t) => {
    const { env, start } = await setup(t);
    for (const args of [[], ['list']]) {
      const r = queue(env, ...args);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'queue is empty\n');
    }
    const daemon = await start();
    await daemon.stop();
    assert.equal(queue(env).stdout, 'queue is empty\n');
    const json = queue(env, '--json');
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), []);
  });

  // id, size, age, sender, the waiting recipient, its state and last error; delete removes it
  test('a message deferred by a locked mailbox: listed with all it waits for', async (t) => {
    const { env, start } = await setup(t, { config: { delivery: { retry: ['1h'] } } });
    const lock = `${env.mailbox('alice')}.lock`;
    execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
    t.after(async () => void spawnSync('dotlockfile', ['-u', lock]));
    const daemon = await start();
    const sent = await sendRaw(env.port, {
      from: 'sender@client.test',
      to: [`alice@${DOMAIN}`, `bob@${DOMAIN}`],
      message: crlf('From: sender@client.test', 'Subject: waits', '', 'body'),
    });
    const id = queueIdOf(sent.end)!;
    assert.ok(id, JSON.stringify(sent.end));
    await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === id, 10_000, 'alice deferred');
    await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.queueId === id && e.user === 'bob',
      10_000,
      'bob delivered',
    );
    const size = storedSize(env, id);

    const expectListing = (stdout: string) => {
      const lines = stdout.split('\n');
      assert.equal(lines[0], HEADER_LINE, stdout);
      assert.match(lines[1]!, new RegExp(`^${id} {1,8}${size} {1,5}\\d+s sender@client\\.test$`), stdout);
      assert.equal(lines[2], `    alice@${DOMAIN}  deferred, 1 attempt, next attempt in 59m`, stdout);
      assert.equal(lines[3], '        4.2.0 mailbox of alice is locked by another program', stdout);
      assert.deepEqual(lines.slice(4), ['', `1 message, ${size} bytes`, ''], stdout);
      assert.doesNotMatch(stdout, /bob@/, 'a delivered recipient is listed');
    };
    const running = queue(env);
    assert.equal(running.code, 0, running.stderr);
    expectListing(running.stdout);

    const json = queue(env, 'list', '--json');
    assert.equal(json.code, 0, json.stderr);
    const [entry] = JSON.parse(json.stdout) as JsonEntry[];
    assert.equal(entry!.id, id);
    assert.equal(entry!.size, size);
    assert.equal(entry!.sender, 'sender@client.test');
    assert.ok(entry!.ageSeconds >= 0 && entry!.ageSeconds < 60, String(entry!.ageSeconds));
    assert.deepEqual(
      entry!.recipients.map(({ address, state, attempts, lastError }) => ({ address, state, attempts, lastError })),
      [
        {
          address: `alice@${DOMAIN}`,
          state: 'deferred',
          attempts: 1,
          lastError: '4.2.0 mailbox of alice is locked by another program',
        },
      ],
    );
    assert.ok(Date.parse(entry!.recipients[0]!.nextAttemptAt!) > Date.now() + 3500_000);

    await daemon.stop();
    const stopped = queue(env);
    assert.equal(stopped.code, 0, stopped.stderr);
    expectListing(stopped.stdout);

    const deleted = queue(env, 'delete', id);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, `${id}: deleted\n1 message deleted\n`);
    assert.deepEqual(queueFiles(env), []);
    assert.equal(queue(env).stdout, 'queue is empty\n');
    const again = queue(env, 'delete', id);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, `mailsrv: no such message in the queue: ${id}\n`);
  });

  test('queue delete refuses bad ids before touching anything, and names unknown ones', async (t) => {
    const { env } = await setup(t);
    const [first, second] = await queueEntries(env, 2);
    const before = queueFiles(env);
    for (const bad of ['../queue', 'short', `${first}.progress`, first!.toLowerCase(), '']) {
      const r = queue(env, 'delete', first!, bad);
      assert.equal(r.code, 1, bad);
      assert.match(r.stderr, /^mailsrv: not a queue id: /, bad);
      assert.ok(r.stderr.includes(JSON.stringify(bad)), r.stderr);
      assert.deepEqual(queueFiles(env), before, `changed by a refused delete of ${JSON.stringify(bad)}`);
    }
    const unknown = '0000000000000000';
    const r = queue(env, 'delete', unknown, second!);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, `${second}: deleted\n1 message deleted\n`);
    assert.equal(r.stderr, `mailsrv: no such message in the queue: ${unknown}\n`);
    assert.deepEqual(queueFiles(env), [first]);
  });

  test('queue delete ALL removes every message; an entry being received (.tmp) is left alone', async (t) => {
    const { env } = await setup(t);
    const ids = await queueEntries(env, 3);
    const receiving = join(env.stateDir, 'queue', '0000000000000000.tmp');
    await writeFile(receiving, 'being received');
    const r = queue(env, 'delete', 'ALL');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      `${ids
        .sort()
        .map((id) => `${id}: deleted\n`)
        .join('')}3 messages deleted\n`,
    );
    assert.deepEqual(queueFiles(env), ['0000000000000000.tmp']);
    assert.equal(queue(env).stdout, 'queue is empty\n');
  });

  test('the listing shows the null sender as <> and ages in hours', async (t) => {
    const { env } = await setup(t);
    const [id] = await queueEntries(env, 1);
    const r = queue(env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [HEADER_LINE, `${id}       17    2h <>`, `    alice@${DOMAIN}  pending`, '', '1 message, 17 bytes', ''].join(
        '\n',
      ),
    );
  });

  test('queue flush without a running daemon: exit 1 "mailsrv is not running" (a stale pid file too)', async (t) => {
    const { env } = await setup(t);
    const r = queue(env, 'flush');
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'mailsrv: mailsrv is not running\n');
    const dead = spawnSync('true').pid!;
    await writeFile(join(env.stateDir, 'mailsrv.pid'), `${dead}\n`);
    const stale = queue(env, 'flush');
    assert.equal(stale.code, 1);
    assert.equal(stale.stderr, 'mailsrv: mailsrv is not running\n');
  });

  test('another user cannot read the queue and is told who can', { skip: cannotRunAs(1, 1) ?? false }, async (t) => {
    const { env, start } = await setup(t);
    const daemon = await start(); // the queue directory now belongs to the daemon's user, 0700
    await daemon.stop();
    const r = spawnSync(process.execPath, [MAILSRV_BIN, 'queue', '-c', env.configPath], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      uid: 1,
      gid: 1,
      env: { PATH: process.env.PATH ?? '' },
    });
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /^mailsrv: cannot use the queue .*permission denied.*run this as root or as that user\n$/);
  });
});

describe('mailsrv queue and the running daemon', () => {
  test('queue flush: deferred mail is retried at once and the daemon keeps running', async (t) => {
    const { env, start } = await setup(t, { config: { delivery: { retry: ['1h'] } } });
    const lock = `${env.mailbox('alice')}.lock`;
    execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
    t.after(async () => void spawnSync('dotlockfile', ['-u', lock]));
    const daemon = await start();
    const sent = await sendRaw(env.port, {
      from: 'sender@client.test',
      to: [`alice@${DOMAIN}`],
      message: crlf('Subject: flush me', '', 'body'),
    });
    const id = queueIdOf(sent.end)!;
    await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === id, 10_000, 'deferred');
    execFileSync('dotlockfile', ['-u', lock]);
    const r = queue(env, 'flush');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^mailsrv \(pid \d+\) is retrying the deferred mail now\n$/);
    await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.queueId === id,
      5000,
      'delivered right after the flush, not in an hour',
    );
    assert.ok(daemon.running, 'the daemon died of the signal');
  });

  test('queue delete with the daemon running: it forgets the entry, the others keep their retry times', async (t) => {
    const { env, start } = await setup(t, { config: { delivery: { retry: ['1h'] } } });
    const lock = `${env.mailbox('alice')}.lock`;
    execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
    t.after(async () => void spawnSync('dotlockfile', ['-u', lock]));
    const daemon = await start();
    const ids: string[] = [];
    for (const subject of ['delete me', 'keep me']) {
      const sent = await sendRaw(env.port, {
        from: 'sender@client.test',
        to: [`alice@${DOMAIN}`],
        message: crlf(`Subject: ${subject}`, '', 'body'),
      });
      const id = queueIdOf(sent.end)!;
      await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === id, 10_000, 'deferred');
      ids.push(id);
    }
    const [deleted, kept] = ids as [string, string];
    const before = (JSON.parse(queue(env, '--json').stdout) as JsonEntry[]).find((e) => e.id === kept)!;
    const r = queue(env, 'delete', deleted);
    assert.equal(r.code, 0, r.stderr);
    await daemon.waitForLog((e) => e.msg === 'removed by queue delete' && e.queueId === deleted, 10_000, 'forgotten');
    const handled = await daemon.waitForLog((e) => e.msg === 'queue signal handled', 10_000, 'signal handled');
    assert.deepEqual([handled.flush, handled.forgotten, handled.retried], [false, 1, 0], 'a delete is no flush');
    assert.ok(daemon.running, 'the daemon died of the signal');
    assert.ok(!existsSync(join(env.stateDir, 'queue', `${deleted}.progress`)), 'the progress file came back');
    const after = JSON.parse(queue(env, '--json').stdout) as JsonEntry[];
    assert.deepEqual(
      after.map((e) => e.id),
      [kept],
    );
    assert.deepEqual(after[0]!.recipients, before.recipients, 'the other message was retried or rescheduled');

    // a flush afterwards retries the one left, at once
    execFileSync('dotlockfile', ['-u', lock]);
    assert.equal(queue(env, 'flush').code, 0);
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === kept, 10_000, 'delivered after the flush');
    const deliveredDeleted = daemon.find((e) => e.msg === 'delivered' && e.queueId === deleted);
    assert.equal(deliveredDeleted.length, 0, 'deleted, yet delivered');
  });
});
