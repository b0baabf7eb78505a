// E2E: nothing lost, nothing doubled. Concurrent load, kill -9 right after the 250,
// a mailbox locked by dotlockfile, stale locks, and a graceful SIGTERM.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import nodemailer from 'nodemailer';
import {
  crlf,
  type Daemon,
  DOMAIN,
  eventually,
  makeEnv,
  messageId,
  pythonMbox,
  queueIdOf,
  readMailbox,
  rfcDate,
  SmtpClient,
  startDaemon,
  type Reply,
  type TestEnv,
  envForTest,
} from './harness.js';

const addr = (user: string) => `${user}@${DOMAIN}`;

const setup = envForTest;

function message(subject: string, to: string): string {
  return crlf(
    'From: durable@client.test',
    `To: ${to}`,
    `Subject: ${subject}`,
    `Date: ${rfcDate()}`,
    `Message-ID: ${messageId()}`,
    '',
    `body of ${subject}`,
  );
}

/** Subjects of the messages stored in a mailbox (our parser), in order. */
function subjects(env: TestEnv, user: string): string[] {
  return readMailbox(env.mailbox(user)).messages.map(
    (m) => /^Subject: (.*)$/m.exec(m.original.toString('latin1'))?.[1] ?? '(none)',
  );
}

function countOf(list: string[], value: string): number {
  return list.filter((x) => x === value).length;
}

/** Opens a session up to the 354 after DATA. */
async function openData(port: number, to: string): Promise<SmtpClient> {
  const { client } = await SmtpClient.connect(port);
  assert.equal((await client.cmd('EHLO client.test')).code, 250);
  assert.equal((await client.cmd('MAIL FROM:<durable@client.test>')).code, 250);
  assert.equal((await client.cmd(`RCPT TO:<${to}>`)).code, 250);
  assert.equal((await client.cmd('DATA')).code, 354);
  return client;
}

describe('smtp durability', () => {
  test('50 concurrent nodemailer clients x 10 messages: exactly 500 stored, none duplicated', async (t) => {
    const CLIENTS = 50;
    // all from 127.0.0.1, a connection per message: no per-address limit (max_clients: 500)
    const { env, start } = await setup(t, { users: ['load'], config: { smtp: { max_connections_per_ip: 500 } } });
    const daemon = await start();
    const PER_CLIENT = 10;
    const expected = new Set<string>();
    const responses: string[] = [];
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        const transport = nodemailer.createTransport({
          host: '127.0.0.1',
          port: env.port,
          secure: false,
          ignoreTLS: true,
          name: `client${c}.test`,
        });
        try {
          for (let m = 0; m < PER_CLIENT; m++) {
            const subject = `load c${c} m${m}`;
            expected.add(subject);
            const info = await transport.sendMail({
              from: `sender${c}@client.test`,
              to: addr('load'),
              subject,
              text: `message ${m} of client ${c}\nFrom a line to quote\n`,
            });
            responses.push(String(info.response));
          }
        } finally {
          transport.close();
        }
      }),
    );
    assert.equal(responses.length, 500);
    const ids = responses.map((r) => queueIdOf(r));
    assert.ok(
      ids.every((id) => id !== null),
      'a 250 without a queue id',
    );
    assert.equal(new Set(ids).size, 500, 'queue ids are not unique');
    // once every entry is removed, nothing of them can be delivered again
    const accepted = new Set(ids);
    await daemon.waitForLogs(
      (e) => e.msg === 'removed' && accepted.has(e.queueId ?? ''),
      500,
      90_000,
      'every accepted message delivered and out of the queue',
    );
    const delivered = daemon.find((e) => e.msg === 'delivered' && e.user === 'load');
    assert.equal(delivered.length, 500, 'more than 500 delivered lines');
    assert.equal(new Set(delivered.map((e) => e.queueId)).size, 500, 'a queue id delivered twice');

    const py = pythonMbox(env.mailbox('load'));
    assert.equal(py.count, 500, `Python mailbox counts ${py.count}`);
    const pySubjects = py.messages.map((m) => m.subject ?? '');
    assert.equal(new Set(pySubjects).size, 500, 'duplicated subjects in the mailbox');
    assert.deepEqual(new Set(pySubjects), expected);
    const ours = subjects(env, 'load');
    assert.equal(ours.length, 500);
    assert.deepEqual(new Set(ours), expected);
    const deliveryIds = readMailbox(env.mailbox('load')).messages.map((m) => m.trace?.deliveryId);
    assert.equal(new Set(deliveryIds).size, 500, 'X-Delivery-ID values are not unique');
  });

  test('kill -9 right after the 250 (mailbox locked, so still queued): delivered once after restart', async (t) => {
    const { env, start } = await setup(t);
    let daemon = await start();
    const lock = `${env.mailbox('alice')}.lock`;
    execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
    let locked = true;
    t.after(() => {
      if (locked) spawnSync('dotlockfile', ['-u', lock]);
    });
    const client = await openData(env.port, addr('alice'));
    const end = await client.data(message('killed after 250', addr('alice')));
    await daemon.kill9();
    client.destroy();
    assert.equal(end.code, 250, end.raw);
    const queueId = queueIdOf(end)!;
    assert.equal(
      daemon.find((e) => e.msg === 'delivered' && e.queueId === queueId).length,
      0,
      'delivered despite the lock',
    );
    execFileSync('dotlockfile', ['-u', lock]);
    locked = false;
    daemon = await start();
    await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.queueId === queueId,
      10_000,
      `delivered ${queueId} after restart`,
    );
    await daemon.waitForLog((e) => e.msg === 'removed' && e.queueId === queueId);
    assert.deepEqual(subjects(env, 'alice'), ['killed after 250']);
    const mbox = readMailbox(env.mailbox('alice'));
    assert.match(mbox.messages[0]!.trace!.received, new RegExp(`id ${queueId}\\b`));
  });

  test('kill -9 right after the 250 with deliveries in flight: every accepted message stored once', async (t) => {
    const { env, start } = await setup(t, { users: ['bob'] });
    const accepted: string[] = [];
    let undeliveredAtKill = 0;
    for (let round = 0; round < 5; round++) {
      const daemon = await start();
      const { client } = await SmtpClient.connect(env.port);
      assert.equal((await client.cmd('EHLO client.test')).code, 250);
      // a burst: the daemon is appending earlier messages while the last 250 goes out
      const burst = round === 0 ? 1 : 15;
      for (let i = 0; i < burst; i++) {
        const subject = `round ${round} message ${i}`;
        assert.equal((await client.cmd('MAIL FROM:<durable@client.test>')).code, 250);
        assert.equal((await client.cmd(`RCPT TO:<${addr('bob')}>`)).code, 250);
        assert.equal((await client.cmd('DATA')).code, 354);
        const end = await client.data(message(subject, addr('bob')));
        if (i === burst - 1) await daemon.kill9();
        assert.equal(end.code, 250, end.raw);
        accepted.push(subject);
      }
      client.destroy();
      undeliveredAtKill += burst - daemon.find((e) => e.msg === 'delivered').length;
    }
    t.diagnostic(
      `${undeliveredAtKill} of ${accepted.length} accepted messages had no "delivered" line when the daemon was killed`,
    );
    const daemon = await start();
    await eventually(
      () => {
        const got = subjects(env, 'bob');
        return accepted.every((s) => got.includes(s));
      },
      15_000,
      `all ${accepted.length} accepted messages in bob's mailbox`,
    );
    assert.ok(daemon.running);
    // an empty queue delivers nothing more: a redelivery would have shown up by now
    await eventually(() => env.queued().length === 0, 15_000, 'the queue emptied');
    t.diagnostic(
      `after restart: ${daemon.find((e) => e.msg === 'delivered').length} delivered, ` +
        `${daemon.find((e) => /after restart/.test(e.msg)).length} found complete`,
    );
    const got = subjects(env, 'bob');
    for (const s of accepted) assert.equal(countOf(got, s), 1, `"${s}" stored ${countOf(got, s)} times`);
    assert.equal(got.length, accepted.length, `unexpected extra messages: ${JSON.stringify(got)}`);
    assert.equal(pythonMbox(env.mailbox('bob')).count, accepted.length);
  });

  // every acknowledged message stored exactly once, none torn
  test('kill -9 in the middle of group commits (10 clients at once)', async (t) => {
    const { env, start } = await setup(t, { users: ['gc'] });
    const sent = new Set<string>();
    const acked = new Set<string>();
    const daemons: Daemon[] = [];
    for (let round = 0; round < 4; round++) {
      const daemon = await start();
      daemons.push(daemon);
      let ackedThisRound = 0;
      let killed = false;
      const clients = Array.from({ length: 10 }, async (_, c) => {
        for (let i = 0; !killed; i++) {
          const subject = `round ${round} client ${c} message ${i}`;
          let client: SmtpClient | undefined;
          try {
            ({ client } = await SmtpClient.connect(env.port));
            assert.equal((await client.cmd('EHLO client.test')).code, 250);
            assert.equal((await client.cmd('MAIL FROM:<durable@client.test>')).code, 250);
            assert.equal((await client.cmd(`RCPT TO:<${addr('gc')}>`)).code, 250);
            assert.equal((await client.cmd('DATA')).code, 354);
            sent.add(subject);
            const end = await client.data(message(subject, addr('gc')));
            if (end.code === 250) {
              acked.add(subject);
              ackedThisRound += 1;
            }
          } catch {
            // the daemon died under this client: whatever it had not acknowledged may or may not be stored
          } finally {
            client?.destroy();
          }
        }
      });
      // batches are being written all the time by now; each round kills at another point
      await eventually(
        () => ackedThisRound >= 30 + 17 * round,
        60_000,
        `${30 + 17 * round} messages acknowledged in round ${round}`,
      );
      await daemon.kill9();
      killed = true;
      await Promise.all(clients);
    }
    // started (and "ready") only after the interrupted batches are cut off
    const daemon = await start();
    daemons.push(daemon);
    const cut = daemons.flatMap((d) => d.find((e) => /unfinished append/.test(String(e.reason)))).length;
    const stored = readMailbox(env.mailbox('gc')).messages;
    const got = stored.map((m) => /^Subject: (.*)$/m.exec(m.original.toString('latin1'))?.[1] ?? '(none)');
    t.diagnostic(
      `${acked.size} acknowledged, ${got.length} stored, ${sent.size} sent; ` +
        `${cut} unfinished batches cut off at restart`,
    );
    for (const subject of acked)
      assert.equal(countOf(got, subject), 1, `acknowledged "${subject}" stored ${countOf(got, subject)} times`);
    for (const subject of got) {
      assert.ok(sent.has(subject), `"${subject}" was never sent`);
      assert.equal(countOf(got, subject), 1, `"${subject}" stored twice`);
    }
    stored.forEach((m, i) => {
      assert.ok(m.original.toString('latin1').endsWith(`body of ${got[i]}\n`), `message ${i} ("${got[i]}") is torn`);
    });
    assert.equal(pythonMbox(env.mailbox('gc')).count, stored.length, 'Python reads the same number of messages');
    assert.ok(daemon.running);
  });

  test('a dotlockfile lock delays delivery (deferred, retried) and nothing is lost once it is released', async (t) => {
    const { env, start } = await setup(t);
    const daemon = await start();
    const lock = `${env.mailbox('carol')}.lock`;
    execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
    let locked = true;
    t.after(() => {
      if (locked) spawnSync('dotlockfile', ['-u', lock]);
    });
    const client = await openData(env.port, addr('carol'));
    const end = await client.data(message('waits for the lock', addr('carol')));
    await client.quit();
    assert.equal(end.code, 250, end.raw);
    const queueId = queueIdOf(end)!;
    const deferred = await daemon.waitForLog(
      (e) => e.msg === 'deferred' && e.queueId === queueId,
      8000,
      `deferred ${queueId}`,
    );
    assert.equal(deferred.to, addr('carol'));
    assert.ok(typeof deferred.reason === 'string' && deferred.reason.length > 0, 'deferred without a reason');
    await daemon.waitForLogs(
      (e) => e.msg === 'deferred' && e.queueId === queueId,
      2,
      8000,
      'a second deferral (retry)',
    );
    assert.equal(
      daemon.find((e) => e.msg === 'delivered' && e.queueId === queueId).length,
      0,
      'delivered while locked',
    );
    assert.equal(readMailbox(env.mailbox('carol')).messages.length, 0, 'written while locked');
    assert.equal(readFileSync(lock, 'latin1'), '0\n', 'the held dotlockfile lock was broken or changed');

    execFileSync('dotlockfile', ['-u', lock]);
    locked = false;
    await daemon.waitForLog(
      (e) => e.msg === 'delivered' && e.queueId === queueId,
      10_000,
      `delivered ${queueId} after unlock`,
    );
    await daemon.waitForLog((e) => e.msg === 'removed' && e.queueId === queueId);
    assert.deepEqual(subjects(env, 'carol'), ['waits for the lock']);
    // the daemon keeps a mailbox locked for a moment after an append, in case more mail follows
    await eventually(() => !existsSync(lock), 5000, 'the daemon lets go of its own lock');
  });

  test('a dotlockfile lock taken before the daemon starts is respected, not cleared as stale', async (t) => {
    const env = await makeEnv();
    const lock = `${env.mailbox('alice')}.lock`;
    execFileSync('dotlockfile', ['-l', '-r', '0', lock]);
    let locked = true;
    let daemon: Daemon | undefined;
    t.after(async () => {
      if (locked) spawnSync('dotlockfile', ['-u', lock]);
      await daemon?.kill9();
      await env.cleanup();
    });
    daemon = await startDaemon(env);
    assert.ok(existsSync(lock), 'the daemon removed a live dotlockfile lock at startup');
    const client = await openData(env.port, addr('alice'));
    const end = await client.data(message('locked before start', addr('alice')));
    await client.quit();
    assert.equal(end.code, 250, end.raw);
    const queueId = queueIdOf(end)!;
    await daemon.waitForLog((e) => e.msg === 'deferred' && e.queueId === queueId, 8000, 'deferred while locked');
    assert.equal(readMailbox(env.mailbox('alice')).messages.length, 0, 'written while locked');
    execFileSync('dotlockfile', ['-u', lock]);
    locked = false;
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueId, 10_000, 'delivered after unlock');
    assert.deepEqual(subjects(env, 'alice'), ['locked before start']);
  });

  test('stale locks (dead holder pid, or no pid and older than 5 minutes) are broken and logged', async (t) => {
    const { env, start } = await setup(t);
    const daemon = await start();
    const dead = spawnSync('true').pid!;
    const deadLock = `${env.mailbox('alice')}.lock`;
    writeFileSync(deadLock, `${dead}\n`);
    const oldLock = `${env.mailbox('bob')}.lock`;
    writeFileSync(oldLock, '0\n');
    const tenMinutesAgo = new Date(Date.now() - 10 * 60 * 1000);
    utimesSync(oldLock, tenMinutesAgo, tenMinutesAgo);
    const staleBefore = daemon.find((e) => /stale/i.test(e.msg)).length;
    for (const user of ['alice', 'bob']) {
      const client = await openData(env.port, addr(user));
      const end = await client.data(message(`stale lock of ${user}`, addr(user)));
      await client.quit();
      assert.equal(end.code, 250, end.raw);
      await daemon.waitForLog(
        (e) => e.msg === 'delivered' && e.queueId === queueIdOf(end),
        10_000,
        `delivery to ${user} past a stale lock`,
      );
      assert.deepEqual(subjects(env, user), [`stale lock of ${user}`]);
    }
    assert.ok(
      daemon.find((e) => /stale/i.test(e.msg)).length >= staleBefore + 2,
      'breaking a stale lock was not logged',
    );
    await eventually(
      () => !existsSync(deadLock) && !existsSync(oldLock),
      5000,
      'both locks gone (the stale ones broken, ours released)',
    );
  });

  test('SIGHUP reloads users and aliases without dropping open connections', async (t) => {
    const { env, start } = await setup(t, { users: ['alice'] });
    const daemon = await start();
    const { client: open } = await SmtpClient.connect(env.port);
    t.after(() => open.destroy());
    assert.equal((await open.cmd('EHLO kept-open.test')).code, 250);
    assert.equal((await open.cmd('MAIL FROM:<hup@client.test>')).code, 250);
    const before = await open.cmd(`RCPT TO:<${addr('newbie')}>`);
    assert.equal(before.code, 550, before.raw);

    const alice = readFileSync(env.usersFile, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('alice:'))!;
    writeFileSync(env.usersFile, `${readFileSync(env.usersFile, 'utf8')}${alice.replace(/^alice/, 'newbie')}\n`);
    writeFileSync(env.aliasesFile, `${readFileSync(env.aliasesFile, 'utf8')}helpers: newbie\n`);
    daemon.child.kill('SIGHUP');
    await eventually(
      async () => {
        const { client } = await SmtpClient.connect(env.port);
        try {
          await client.cmd('EHLO probe.test');
          await client.cmd('MAIL FROM:<probe@client.test>');
          return (await client.cmd(`RCPT TO:<helpers@${DOMAIN}>`)).code === 250;
        } finally {
          await client.quit();
        }
      },
      8000,
      'the new alias accepted after SIGHUP',
      200,
    );
    assert.ok(daemon.running, 'the daemon died on SIGHUP');
    // the connection opened before the reload still works, and sees the new user
    const after = await open.cmd(`RCPT TO:<${addr('newbie')}>`);
    assert.equal(after.code, 250, after.raw);
    assert.equal((await open.cmd('DATA')).code, 354);
    const end = await open.data(message('after reload', addr('newbie')));
    assert.equal(end.code, 250, end.raw);
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueIdOf(end) && e.user === 'newbie');
    assert.deepEqual(subjects(env, 'newbie'), ['after reload']);
  });

  test('SIGHUP reloads the config file too (mynetworks)', async (t) => {
    const { env, start } = await setup(t, { users: ['alice'] });
    const daemon = await start();
    const relay = async () => {
      const { client } = await SmtpClient.connect(env.port);
      try {
        await client.cmd('EHLO client.test');
        await client.cmd('MAIL FROM:<hup@client.test>');
        return await client.cmd('RCPT TO:<someone@remote.test>');
      } finally {
        await client.quit();
      }
    };
    assert.equal((await relay()).code, 554);
    await env.writeConfig({ ...env.config, mynetworks: ['127.0.0.0/8'] });
    daemon.child.kill('SIGHUP');
    let last: Reply | null = null;
    try {
      await eventually(
        async () => {
          last = await relay();
          return last.code === 250;
        },
        5000,
        'relay allowed after mynetworks changed and SIGHUP',
        200,
      );
    } catch {
      assert.fail(
        'after SIGHUP with mynetworks = ["127.0.0.0/8"], RCPT to a remote domain from 127.0.0.1 still gets: ' +
          (last as Reply | null)?.raw,
      );
    }
    assert.ok(daemon.running);
  });

  test('SIGTERM: idle sessions closed, a message in DATA finished or refused with 4xx, exit code 0', async (t) => {
    const { env, start } = await setup(t);
    let daemon = await start();
    const { client: idle } = await SmtpClient.connect(env.port);
    assert.equal((await idle.cmd('EHLO idle.test')).code, 250);
    const inData = await openData(env.port, addr('alice'));
    const msg = message('in data during SIGTERM', addr('alice'));
    inData.write(msg.slice(0, 60));
    daemon.child.kill('SIGTERM');
    await daemon.waitForLog((e) => /^stopping/.test(e.msg), 10_000, 'the stop begun');
    inData.write(`${msg.slice(60)}.\r\n`);
    let end: Reply;
    try {
      end = await inData.read();
    } catch (err) {
      assert.fail(`the client in DATA got no reply after SIGTERM: ${(err as Error).message}`);
    }
    assert.ok(
      end.code === 250 || (end.code >= 400 && end.code < 500),
      `reply at the end of DATA during shutdown: ${end.raw}`,
    );
    t.diagnostic(`end of DATA during shutdown: ${end.raw}`);
    const code = await daemon.stop(20_000);
    assert.equal(code, 0, `exit code after SIGTERM\n${daemon.output()}`);
    assert.equal(daemon.exitSignal, null);
    // the idle client was told (421) or at least disconnected
    const last = await idle.read(2000).catch(() => null);
    assert.ok(last === null || last.code === 421, `idle client got ${last?.raw}`);
    await eventually(() => idle.closed, 2000, 'idle connection closed');
    idle.destroy();
    inData.destroy();
    assert.ok(daemon.find((e) => e.msg === 'stopped' || /stop/i.test(e.msg)).length > 0, 'no stop log line');
    if (end.code === 250) {
      const queueId = queueIdOf(end)!;
      if (!daemon.find((e) => e.msg === 'delivered' && e.queueId === queueId).length) {
        daemon = await start();
        await daemon.waitForLog(
          (e) => e.msg === 'delivered' && e.queueId === queueId,
          10_000,
          'delivery after restart',
        );
        assert.equal(await daemon.stop(), 0);
      }
      assert.deepEqual(subjects(env, 'alice'), ['in data during SIGTERM']);
    }
  });
});
