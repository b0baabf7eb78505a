// E2E: POP3 and the mailbox file: UIDLs (unique for identical deliveries; stable across
// sessions, a restart, the deletion of another message and new deliveries), what QUIT, RSET and
// a dropped connection do to the file, SMTP deliveries during a session, a mailbox written by
// Postfix (mboxo, no X-Delivery-ID) and another POP3 server's X-UIDL, and a 40 MB message
// streamed to a client that pauses (the daemon must never read far ahead of it).
import assert from 'node:assert/strict';
import { createHash, type Hash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  crlf,
  deliverOverSmtp,
  eventually,
  makePop3Env,
  PASSWORD,
  Pop3Client,
  pop3Wire,
  readMailbox,
  startDaemon,
  type Daemon,
  type TestEnv,
  writeMailbox,
  note,
} from './harness.js';

function subjects(path: string): string[] {
  return readMailbox(path).messages.map((m) => /^Subject: (.*)$/m.exec(m.body.toString('latin1'))?.[1] ?? '(none)');
}

describe('pop3 and the mailbox', () => {
  let env: TestEnv & { pop3Port: number };
  let daemon: Daemon;
  const daemons: Daemon[] = [];
  const start = async () => {
    daemon = await startDaemon(env);
    daemons.push(daemon);
  };

  before(async () => {
    env = await makePop3Env({
      users: ['alice', 'bob', 'carol', 'dave', 'erin', 'big', 'frank'],
      config: { message_size_limit: 1_000_000 },
    });
    await start();
  });

  after(async () => {
    for (const d of daemons) await d.kill9();
    await env?.cleanup();
  });

  test('UIDLs: unique for identical deliveries; stable across sessions, restarts, deletions, new mail', async () => {
    const same = crlf(
      'From: twin@client.test',
      'Subject: twin',
      'Date: Tue, 24 Nov 2026 10:00:00 +0000',
      'Message-ID: <twin@client.test>',
      '',
      'same bytes',
    );
    await deliverOverSmtp(daemon, env, 'bob', same);
    await deliverOverSmtp(daemon, env, 'bob', same);
    await deliverOverSmtp(daemon, env, 'bob', note('third'));

    let client = await Pop3Client.login(env.pop3Port, 'bob');
    const first = await client.uidls();
    assert.equal(first.size, 3);
    assert.equal(new Set(first.values()).size, 3, 'identical messages get different UIDLs');
    await client.quit();

    client = await Pop3Client.login(env.pop3Port, 'bob');
    assert.deepEqual(await client.uidls(), first, 'same UIDLs in the next session');
    await client.quit();

    assert.equal(await daemon.stop(), 0);
    await start();
    client = await Pop3Client.login(env.pop3Port, 'bob');
    assert.deepEqual(await client.uidls(), first, 'same UIDLs after a restart');
    assert.match(await client.cmd('DELE 1'), /^\+OK/);
    assert.match(await client.quit(), /^\+OK/);

    await deliverOverSmtp(daemon, env, 'bob', note('fourth'));
    client = await Pop3Client.login(env.pop3Port, 'bob');
    const later = await client.uidls();
    assert.deepEqual(
      [...later.values()].slice(0, 2),
      [first.get(2), first.get(3)],
      'the others keep their UIDLs after a deletion',
    );
    assert.equal(later.size, 3);
    assert.ok(![...first.values()].includes(later.get(3)!), 'the new message has a new UIDL');
    await client.quit();
  });

  test('DELE + dropped connection keeps; DELE + RSET + QUIT keeps; DELE + QUIT removes (in place)', async () => {
    const box = env.mailbox('carol');
    for (const s of ['c1', 'c2', 'c3']) await deliverOverSmtp(daemon, env, 'carol', note(s));
    const before = statSync(box);

    let client = await Pop3Client.login(env.pop3Port, 'carol');
    assert.match(await client.cmd('DELE 1'), /^\+OK/);
    assert.match(await client.cmd('DELE 3'), /^\+OK/);
    client.destroy();
    await daemon.waitForLog((e) => e.msg === 'connection dropped without QUIT: nothing deleted' && e.user === 'carol');
    assert.deepEqual(subjects(box), ['c1', 'c2', 'c3']);

    client = await Pop3Client.login(env.pop3Port, 'carol');
    assert.match(await client.cmd('DELE 1'), /^\+OK/);
    assert.match(await client.cmd('RSET'), /^\+OK maildrop has 3 messages/);
    assert.match(await client.quit(), /^\+OK/);
    assert.deepEqual(subjects(box), ['c1', 'c2', 'c3']);

    client = await Pop3Client.login(env.pop3Port, 'carol');
    const wire3 = pop3Wire(box, 3);
    assert.match(await client.cmd('DELE 2'), /^\+OK/);
    assert.match(await client.quit(), /^\+OK .*1 messages? deleted/);
    await client.waitClosed();
    assert.deepEqual(subjects(box), ['c1', 'c3']);
    const afterQuit = statSync(box);
    assert.equal(afterQuit.ino, before.ino, 'the update compacts in place: same inode');
    assert.equal(afterQuit.mode, before.mode);

    client = await Pop3Client.login(env.pop3Port, 'carol');
    assert.deepEqual((await client.message('RETR 2')).body, wire3);
    assert.match(await client.quit(), /^\+OK/);
  });

  test('mail delivered over SMTP during a session that deletes others survives its QUIT', async () => {
    const box = env.mailbox('erin');
    await deliverOverSmtp(daemon, env, 'erin', note('e1'));
    await deliverOverSmtp(daemon, env, 'erin', note('e2'));
    const client = await Pop3Client.login(env.pop3Port, 'erin');
    assert.match(await client.cmd('STAT'), /^\+OK 2 /);
    assert.match(await client.cmd('DELE 1'), /^\+OK/);
    // delivery does not wait for the session
    const during = await deliverOverSmtp(daemon, env, 'erin', note('during'));
    assert.deepEqual(
      daemon.find((e) => e.msg === 'deferred' && e.queueId === during),
      [],
      'the delivery waited for the session',
    );
    assert.deepEqual(subjects(box), ['e1', 'e2', 'during']);
    assert.match(await client.cmd('STAT'), /^\+OK 1 /, 'the session keeps its own view');
    assert.match(await client.quit(), /^\+OK/);
    await client.waitClosed();
    assert.deepEqual(subjects(box), ['e2', 'during']);

    const next = await Pop3Client.login(env.pop3Port, 'erin');
    assert.match(await next.cmd('STAT'), /^\+OK 2 /);
    assert.deepEqual((await next.message('RETR 2')).body, pop3Wire(box, 2));
    await next.quit();
  });

  test('a big update (its copy goes on after QUIT is answered): the next session and SIGTERM wait for it', async () => {
    // 2,000 messages of ~10 KiB: the update's copy is longer than the daemon waits for before QUIT's answer
    const box = env.mailbox('frank');
    const body = `${'x'.repeat(99)}\n`.repeat(100);
    const message = (n: number) => `From sender@example.org  Tue Nov 24 10:00:00 2026\nSubject: big ${n}\n\n${body}\n`;
    writeMailbox(box, Array.from({ length: 2000 }, (_, n) => message(n)).join(''));
    const before = statSync(box);
    assert.ok(before.size > 16 * 1024 * 1024);
    const deleteFirst = async (count: number) => {
      const client = await Pop3Client.login(env.pop3Port, 'frank');
      assert.match(await client.cmd('STAT'), new RegExp(`^\\+OK ${count} `));
      assert.match(await client.cmd('DELE 1'), /^\+OK/);
      assert.match(await client.quit(), /^\+OK .*1 messages? deleted/);
    };

    await deleteFirst(2000);
    const next = await Pop3Client.login(env.pop3Port, 'frank');
    assert.match(await next.cmd('STAT'), /^\+OK 1999 /, 'the next session sees the update done');
    assert.match((await next.message('TOP 1 0')).body.toString('latin1'), /^Subject: big 1\r?$/m);
    await next.quit();
    await daemon.waitForLog((e) => e.msg === 'mailbox updated' && e.user === 'frank');

    // stopped right after the answer: the daemon finishes the copy before it exits
    await deleteFirst(1999);
    assert.equal(await daemon.stop(), 0);
    assert.equal(
      daemon.find((e) => e.msg === 'mailbox updated' && e.user === 'frank').length,
      2,
      'the second update was finished before the exit',
    );
    assert.equal(statSync(box).size, before.size - Buffer.byteLength(message(0)) - Buffer.byteLength(message(1)));
    assert.equal(statSync(box).ino, before.ino, 'in place');
    assert.deepEqual(readdirSync(join(env.stateDir, 'journal')), [], 'no journal left for the next start');
    await start();
  });

  test('served right: a Postfix mboxo mailbox (no X-Delivery-ID), an X-UIDL of another POP3 server', async () => {
    const box = env.mailbox('dave');
    const postfixMessage = (id: string, queue: string) =>
      [
        'From sender@example.org  Tue Nov 24 10:00:00 2026',
        'Return-Path: <sender@example.org>',
        'X-Original-To: dave@example.test',
        'Delivered-To: dave@example.test',
        'Received: from client.example.org (client.example.org [192.0.2.1])',
        `\tby mx.example.test (Postfix) with ESMTP id ${queue}`,
        '\tfor <dave@example.test>; Tue, 24 Nov 2026 10:00:00 +0000 (UTC)',
        'From: Sender <sender@example.org>',
        'Subject: from postfix',
        'Date: Tue, 24 Nov 2026 10:00:00 +0000',
        `Message-ID: <${id}@example.org>`,
        '',
        'Hello Dave,',
        '>From the start, Postfix quoted this line.',
        '.a line with a dot',
        '',
        'after a blank line',
        '', // the separator line Postfix writes after each message
        '',
      ].join('\n');
    const qpopper = [
      'From old@example.org Mon Nov 23 09:00:00 2026',
      'Subject: kept from qpopper',
      'Status: RO',
      'X-UIDL: 8c1a2e9f0b7d3c4a',
      '',
      'old mail',
      '',
      '',
    ].join('\n');
    // the same Message-ID twice (one message delivered twice by Postfix: other queue id)
    writeMailbox(box, postfixMessage('same', '4Xa1') + postfixMessage('same', '4Xb2') + qpopper);

    const client = await Pop3Client.login(env.pop3Port, 'dave');
    const sizes = await client.sizes();
    assert.equal(sizes.size, 3);
    for (const n of [1, 2, 3]) {
      const wire = pop3Wire(box, n);
      const retr = await client.message(`RETR ${n}`);
      assert.equal(retr.body.length, sizes.get(n), `RETR ${n} sends the LIST size`);
      assert.deepEqual(retr.body, wire);
    }
    const first = (await client.message('RETR 1')).body.toString('latin1');
    assert.ok(
      first.includes(
        '\r\nFrom the start, Postfix quoted this line.\r\n.a line with a dot\r\n\r\nafter a blank line\r\n',
      ),
      first,
    );
    assert.ok(first.endsWith('after a blank line\r\n'), 'the separator line is not part of the message');
    const uidls = await client.uidls();
    assert.equal(new Set(uidls.values()).size, 3, 'two deliveries of one message get different UIDLs');
    assert.equal(uidls.get(3), '8c1a2e9f0b7d3c4a', 'X-UIDL honoured');
    assert.deepEqual(
      (await client.message('TOP 3 0')).body.toString('latin1'),
      'Subject: kept from qpopper\r\nStatus: RO\r\nX-UIDL: 8c1a2e9f0b7d3c4a\r\n\r\n',
    );
    await client.quit();

    const again = await Pop3Client.login(env.pop3Port, 'dave');
    assert.deepEqual(await again.uidls(), uidls, 'stable across sessions');
    await again.quit();
  });

  test('a 40 MB message to a client that pauses: streamed, never far ahead of the client, and complete', async () => {
    const box = env.mailbox('big');
    // numbered lines of 77 octets: a piece sent twice, or overwritten before it went out, shows
    const lineOf = (n: number) => `${String(n).padStart(10, '0')}${'x'.repeat(66)}`;
    const count = Math.ceil((40 * 1024 * 1024) / 77);
    const lines = Array.from({ length: count }, (_, n) => lineOf(n));
    const head = 'From big@example.org Tue Nov 24 10:00:00 2026\nSubject: big\nMessage-ID: <big@example.org>\n\n';
    writeMailbox(box, `${head}${lines.join('\n')}\n\n`);
    const wireHead = 'Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n';
    const expectedSize = wireHead.length + count * 78;
    const expectedReply = createHash('sha256')
      .update(`+OK ${expectedSize} octets\r\n${wireHead}`)
      .update(`${lines.join('\r\n')}\r\n.\r\n`)
      .digest('hex');

    const socket = new Socket();
    await new Promise<void>((resolve, reject) =>
      socket.connect(env.pop3Port, '127.0.0.1', resolve).once('error', reject),
    );
    let received = 0;
    let tail = '';
    let text = '';
    // how far the daemon has read ahead of what the client got, at each chunk the client gets
    let readBefore: number | null = null;
    let readAhead = 0;
    let body: Hash | null = null;
    const onData = (chunk: Buffer) => {
      body?.update(chunk);
      received += chunk.length;
      if (received < 4096) text += chunk.toString('latin1');
      tail = (tail + chunk.toString('latin1')).slice(-5);
      if (readBefore !== null) readAhead = Math.max(readAhead, daemon.io().read - readBefore - received);
    };
    socket.on('data', onData);
    socket.write(`USER big\r\nPASS ${PASSWORD}\r\nLIST 1\r\n`);
    await eventually(() => (text.match(/\r\n/g) ?? []).length >= 4, 10_000, 'login and LIST replies');
    const listed = Number(/\+OK 1 (\d+)\r\n/.exec(text)![1]);
    assert.equal(listed, expectedSize);

    // the client reads nothing until the message is under way, then all of it
    socket.pause();
    const before = daemon.io();
    socket.write('RETR 1\r\n');
    await eventually(() => daemon.io().written - before.written >= 64 * 1024, 10_000, 'the message under way', 5);
    received = 0;
    tail = '';
    body = createHash('sha256');
    readBefore = before.read;
    socket.resume();
    await eventually(() => tail === '\r\n.\r\n', 30_000, 'the whole message');
    const statusLength = `+OK ${expectedSize} octets\r\n`.length;
    assert.equal(received, statusLength + expectedSize + 3, 'octets sent = LIST size (+ status and terminator)');
    const replyHash = body?.digest('hex');
    body = null; // QUIT's answer is not part of it
    assert.equal(replyHash, expectedReply, 'the reply, byte for byte');
    // a daemon that held the message in memory, or read it faster than the client took it, would be far ahead
    assert.ok(
      readAhead < 20 * 1024 * 1024,
      `the daemon read ${Math.round(readAhead / 1024 / 1024)} MB ahead of a client of a 40 MB RETR`,
    );
    socket.end('QUIT\r\n');
  });
});
