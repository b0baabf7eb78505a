// E2E: what the SMTP side accepts and refuses (README, "SMTP"): replies, relay control, open-relay
// address forms, size limits, recipient limits, mailbox quota, command order and syntax.
// Clients connect from 127.0.0.1 (outside mynetworks) unless they bind 127.0.0.2 (inside).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  crlf,
  type Daemon,
  DOMAIN,
  eventually,
  expectedMboxrd,
  freePort,
  logsSoFar,
  makeEnv,
  messageId,
  parseMbox,
  queueIdOf,
  readMailbox,
  rfcDate,
  sendRaw,
  SmtpClient,
  smtpDialog,
  startDaemon,
  type TestEnv,
  writeMailbox,
} from './harness.js';

const INSIDE = '127.0.0.2';
const SIZE_LIMIT = 100_000;
const MAILBOX_LIMIT = 150_000;
const USERS = ['alice', 'bob', 'full', 'nearly', 'sub', 'outside', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6'];

/** A valid one-message mbox of exactly `size` bytes. */
function mboxOfSize(size: number): Buffer {
  const head = 'From old@client.test Mon Jan  5 10:00:00 2026\nSubject: old mail\n\n';
  const target = size - head.length - 1; // body lines, then the blank separator line
  let body = '';
  while (body.length < target) {
    const n = Math.min(72, target - body.length);
    body += `${'x'.repeat(n - 1)}\n`;
  }
  const text = `${head}${body}\n`;
  assert.equal(text.length, size);
  return Buffer.from(text, 'latin1');
}

describe('smtp policy', () => {
  let env: TestEnv;
  let daemon: Daemon;
  const addr = (user: string) => `${user}@${DOMAIN}`;
  const simple = (subject: string, extra: string[] = []) =>
    crlf(
      'From: policy@client.test',
      `Subject: ${subject}`,
      `Date: ${rfcDate()}`,
      `Message-ID: ${messageId()}`,
      ...extra,
      '',
      'body',
    );
  const queuedCount = () => daemon.find((e) => e.msg === 'queued').length;

  before(async () => {
    env = await makeEnv({
      users: USERS,
      config: { message_size_limit: SIZE_LIMIT, mailbox_size_limit: MAILBOX_LIMIT, smtp: { max_recipients: 5 } },
    });
    writeMailbox(env.mailbox('full'), mboxOfSize(MAILBOX_LIMIT - 1));
    writeMailbox(env.mailbox('nearly'), mboxOfSize(100_000));
    daemon = await startDaemon(env);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    if (env) await env.cleanup();
  });

  test('greeting and EHLO capabilities', async () => {
    const [greeting, ehlo] = await smtpDialog(env.port, ['EHLO client.test']);
    assert.match(greeting!.raw, /^220 mx\.test\.local ESMTP mailsrv(\s|$)/);
    assert.equal(ehlo!.code, 250);
    assert.match(ehlo!.lines[0]!, /^mx\.test\.local\b/);
    const caps = ehlo!.lines.slice(1).map((l) => l.toUpperCase());
    for (const cap of ['PIPELINING', `SIZE ${SIZE_LIMIT}`, '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES']) {
      assert.ok(caps.includes(cap), `EHLO does not advertise ${cap}: ${ehlo!.raw}`);
    }
    assert.ok(!caps.includes('STARTTLS'), 'STARTTLS advertised without a certificate');
  });

  test('NOOP, RSET, HELP, VRFY (no disclosure), QUIT', async () => {
    const [, , noop, rset, help, vrfy, vrfyUnknown] = await smtpDialog(env.port, [
      'EHLO client.test',
      'NOOP',
      'RSET',
      'HELP',
      `VRFY ${addr('alice')}`,
      `VRFY nobody@${DOMAIN}`,
    ]);
    assert.equal(noop!.code, 250);
    assert.equal(rset!.code, 250);
    assert.equal(help!.code, 214);
    assert.equal(vrfy!.code, 252, vrfy!.raw);
    assert.equal(vrfyUnknown!.code, 252, `VRFY must not disclose unknown users: ${vrfyUnknown!.raw}`);
    const { client } = await SmtpClient.connect(env.port);
    const quit = await client.cmd('QUIT');
    assert.equal(quit.code, 221);
    client.destroy();
  });

  test('commands ending in a bare LF are accepted', async () => {
    const { client } = await SmtpClient.connect(env.port);
    try {
      client.write('EHLO client.test\n');
      assert.equal((await client.read()).code, 250);
      client.write('MAIL FROM:<lf@client.test>\n');
      assert.equal((await client.read()).code, 250);
      client.write(`RCPT TO:<${addr('alice')}>\n`);
      assert.equal((await client.read()).code, 250);
      client.write('RSET\n');
      assert.equal((await client.read()).code, 250);
    } finally {
      await client.quit();
    }
  });

  test('unknown local user: 550 5.1.1; user names match case-insensitively; postmaster always accepted', async () => {
    const [, , , unknown, upper, bare, pm] = await smtpDialog(env.port, [
      'EHLO client.test',
      'MAIL FROM:<x@client.test>',
      `RCPT TO:<nobody@${DOMAIN}>`,
      `RCPT TO:<ALICE@${DOMAIN.toUpperCase()}>`,
      'RCPT TO:<postmaster>',
      `RCPT TO:<postmaster@${DOMAIN}>`,
    ]);
    assert.equal(unknown!.code, 550, unknown!.raw);
    assert.match(unknown!.lines[0]!, /^5\.1\.1 /);
    assert.equal(upper!.code, 250, `upper-case user refused: ${upper!.raw}`);
    assert.equal(bare!.code, 250, `RCPT TO:<postmaster> refused: ${bare!.raw}`);
    assert.equal(pm!.code, 250, pm!.raw);
  });

  test('unknown command 500 5.5.2; wrong order 503 5.5.1; bad syntax 501', async () => {
    const [, , unknownCmd, rcptFirst, dataFirst, mail, nested, dataNoRcpt, badMail] = await smtpDialog(env.port, [
      'EHLO client.test',
      'FROBNICATE now',
      `RCPT TO:<${addr('alice')}>`,
      'DATA',
      'MAIL FROM:<x@client.test>',
      'MAIL FROM:<y@client.test>',
      'DATA',
      'MAIL FROM:broken<',
    ]);
    assert.equal(unknownCmd!.code, 500, unknownCmd!.raw);
    assert.match(unknownCmd!.lines[0]!, /^5\.5\.2 /);
    assert.equal(rcptFirst!.code, 503, rcptFirst!.raw);
    assert.match(rcptFirst!.lines[0]!, /^5\.5\.1 /);
    assert.equal(dataFirst!.code, 503, dataFirst!.raw);
    assert.match(dataFirst!.lines[0]!, /^5\.5\.1 /);
    assert.equal(mail!.code, 250);
    assert.equal(nested!.code, 503, `nested MAIL: ${nested!.raw}`);
    assert.equal(dataNoRcpt!.code, 503, `DATA without RCPT: ${dataNoRcpt!.raw}`);
    assert.equal(badMail!.code, 501, `bad MAIL syntax: ${badMail!.raw}`);
    // the bad syntax case should not be taken as a nested MAIL either
    const [, , badMail2] = await smtpDialog(env.port, ['EHLO client.test', 'MAIL FROM:<unterminated@client.test']);
    assert.equal(badMail2!.code, 501, badMail2!.raw);
    assert.match(badMail2!.lines[0]!, /^5\.5\.4 |^5\.1\.7 /);
  });

  test('relay from outside mynetworks: 554 5.7.1 Relay access denied, nothing queued', async () => {
    const before = queuedCount();
    const { client } = await SmtpClient.connect(env.port);
    try {
      await client.cmd('EHLO client.test');
      assert.equal((await client.cmd('MAIL FROM:<x@client.test>')).code, 250);
      const rcpt = await client.cmd('RCPT TO:<bob@remote.test>');
      assert.equal(rcpt.raw, '554 5.7.1 <bob@remote.test>: Relay access denied');
      const data = await client.cmd('DATA');
      assert.ok(data.code >= 500, `DATA with no accepted recipient: ${data.raw}`);
    } finally {
      await client.quit();
    }
    await logsSoFar(daemon, env.port);
    assert.equal(queuedCount(), before);
  });

  test('relay from inside mynetworks is accepted (250) and queued', async () => {
    const r = await sendRaw(env.port, {
      localAddress: INSIDE,
      from: 'inside@client.test',
      to: ['bob@remote.test'],
      message: simple('relay inside'),
    });
    assert.equal(r.rcpt[0]!.code, 250, `relay from ${INSIDE}: ${r.rcpt[0]!.raw}`);
    assert.equal(r.end?.code, 250, r.end?.raw);
    const queued = await daemon.waitForLog((e) => e.msg === 'queued' && e.queueId === r.queueId);
    assert.equal(queued.nrcpt, 1);
  });

  const openRelayForms = [
    `user%remote.test@${DOMAIN}`,
    `@${DOMAIN}:user@remote.test`,
    `"user@remote.test"@${DOMAIN}`,
    `remote.test!user@${DOMAIN}`,
    `user%remote.test@${DOMAIN.toUpperCase()}`,
    `"user%remote.test"@${DOMAIN}`,
    `user@remote.test@${DOMAIN}`,
  ];

  test('open-relay address forms are refused from outside mynetworks, alone: nothing queued', async () => {
    const before = queuedCount();
    for (const form of openRelayForms) {
      const { client } = await SmtpClient.connect(env.port);
      try {
        await client.cmd('EHLO client.test');
        assert.equal((await client.cmd('MAIL FROM:<x@client.test>')).code, 250);
        const rcpt = await client.cmd(`RCPT TO:<${form}>`);
        assert.ok(rcpt.code >= 500, `RCPT TO:<${form}> accepted from outside mynetworks: ${rcpt.raw}`);
        const data = await client.cmd('DATA');
        if (data.code === 354) {
          const end = await client.data(simple('open relay'));
          assert.fail(`DATA accepted for RCPT TO:<${form}>; end of data: ${end.raw}`);
        }
      } finally {
        await client.quit();
      }
    }
    await logsSoFar(daemon, env.port);
    assert.equal(queuedCount(), before, 'a message was queued');
  });

  test('open-relay address forms next to a valid recipient: delivered only to the local user', async () => {
    for (const form of openRelayForms.slice(0, 4)) {
      const r = await sendRaw(env.port, {
        from: 'mixed@client.test',
        to: [addr('outside'), form],
        message: simple(`mixed ${form}`),
      });
      assert.equal(r.rcpt[0]!.code, 250);
      assert.ok(r.rcpt[1]!.code >= 500, `RCPT TO:<${form}> accepted: ${r.rcpt[1]!.raw}`);
      assert.equal(r.end?.code, 250, r.end?.raw);
      const queueId = r.queueId!;
      const queued = await daemon.waitForLog((e) => e.msg === 'queued' && e.queueId === queueId);
      assert.equal(queued.nrcpt, 1, `queued for more than the local user: ${JSON.stringify(queued)}`);
      await daemon.waitForLog((e) => e.msg === 'removed' && e.queueId === queueId, 10_000, `removed ${queueId}`);
      const attempts = daemon.find(
        (e) => e.queueId === queueId && (e.msg === 'delivered' || e.msg === 'deferred' || e.msg === 'bounced'),
      );
      assert.deepEqual(
        attempts.map((e) => `${e.msg}:${e.user}`),
        ['delivered:outside'],
        JSON.stringify(attempts),
      );
    }
    assert.equal(readMailbox(env.mailbox('outside')).messages.length, 4);
  });

  test('MAIL FROM SIZE= over the limit: 552 5.3.4 at once; at the limit: 250', async () => {
    const [, ehlo, over, rset, at] = await smtpDialog(env.port, [
      'EHLO client.test',
      `MAIL FROM:<big@client.test> SIZE=${SIZE_LIMIT + 1}`,
      'RSET',
      `MAIL FROM:<big@client.test> SIZE=${SIZE_LIMIT}`,
    ]);
    assert.equal(ehlo!.code, 250);
    assert.equal(over!.code, 552, over!.raw);
    assert.match(over!.lines[0]!, /^5\.3\.4 /);
    assert.equal(rset!.code, 250);
    assert.equal(at!.code, 250, at!.raw);
  });

  test('body over message_size_limit: 552 5.3.4 at the end of DATA, nothing stored; the session goes on', async () => {
    const before = queuedCount();
    const mboxBefore = readMailbox(env.mailbox('alice')).raw;
    const big = simple('too big') + `${'y'.repeat(98)}\r\n`.repeat(1500); // ~150 KB
    const { client } = await SmtpClient.connect(env.port);
    try {
      await client.cmd('EHLO client.test');
      assert.equal((await client.cmd('MAIL FROM:<big@client.test>')).code, 250);
      assert.equal((await client.cmd(`RCPT TO:<${addr('alice')}>`)).code, 250);
      assert.equal((await client.cmd('DATA')).code, 354);
      const end = await client.data(big);
      assert.equal(end.code, 552, end.raw);
      assert.match(end.lines[0]!, /^5\.3\.4 /);
      // the same session can still send a message that fits
      assert.equal((await client.cmd('MAIL FROM:<small@client.test>')).code, 250);
      assert.equal((await client.cmd(`RCPT TO:<${addr('alice')}>`)).code, 250);
      assert.equal((await client.cmd('DATA')).code, 354);
      const fits = simple('fits') + `${'z'.repeat(98)}\r\n`.repeat(900); // ~90 KB, under the limit
      const ok = await client.data(fits);
      assert.equal(ok.code, 250, ok.raw);
      await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueIdOf(ok));
    } finally {
      await client.quit();
    }
    assert.equal(queuedCount(), before + 1, 'the oversized message was queued');
    const after = readMailbox(env.mailbox('alice'));
    assert.ok(after.raw.subarray(0, mboxBefore.length).equals(mboxBefore), 'earlier mailbox content changed');
    const added = after.messages.slice(parseMbox(mboxBefore).length);
    assert.equal(added.length, 1);
    assert.ok(!after.raw.toString('latin1').includes('Subject: too big'), 'the oversized message reached the mailbox');
  });

  test('max_recipients: the 6th RCPT gets 452 4.5.3, the first 5 are delivered', async () => {
    const users = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'];
    const r = await sendRaw(env.port, {
      from: 'many@client.test',
      to: users.map(addr),
      message: simple('many recipients'),
    });
    assert.deepEqual(
      r.rcpt.map((x) => x.code),
      [250, 250, 250, 250, 250, 452],
      r.rcpt.map((x) => x.raw).join('\n'),
    );
    assert.match(r.rcpt[5]!.lines[0]!, /^4\.5\.3 /);
    assert.equal(r.end?.code, 250);
    const queueId = r.queueId!;
    for (const user of users.slice(0, 5)) {
      await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === queueId && e.user === user);
    }
    await daemon.waitForLog((e) => e.msg === 'removed' && e.queueId === queueId);
    assert.equal(existsSync(env.mailbox('r6')), false, 'the refused 6th recipient got the message');
  });

  test('mailbox over mailbox_size_limit: 552 5.2.2 and nothing written', async () => {
    const fullBefore = readFileSync(env.mailbox('full'));
    const r = await sendRaw(env.port, {
      from: 'quota@client.test',
      to: [addr('full')],
      message: simple('to the full mailbox'),
    });
    const refusal = r.rcpt[0]!.code === 250 ? r.end : r.rcpt[0]!;
    assert.equal(refusal?.code, 552, `full mailbox: rcpt ${r.rcpt[0]!.raw}, end ${r.end?.raw}`);
    assert.match(refusal!.lines[0]!, /^5\.2\.2 /);

    // room for a small message but not for this one: refused at the end of DATA
    const nearlyBefore = readFileSync(env.mailbox('nearly'));
    const tooMuch = simple('does not fit') + `${'q'.repeat(98)}\r\n`.repeat(600); // ~60 KB > 150 KB - 100 KB
    const r2 = await sendRaw(env.port, { from: 'quota@client.test', to: [addr('nearly')], message: tooMuch });
    assert.equal(r2.rcpt[0]!.code, 250, `nearly-full mailbox refused at RCPT: ${r2.rcpt[0]!.raw}`);
    assert.equal(r2.end?.code, 552, `message that does not fit: ${r2.end?.raw}`);
    assert.match(r2.end!.lines[0]!, /^5\.2\.2 /);

    // a message that fits is still delivered
    const r3 = await sendRaw(env.port, {
      from: 'quota@client.test',
      to: [addr('nearly')],
      message: simple('fits in quota'),
    });
    assert.equal(r3.end?.code, 250, r3.end?.raw);
    // the refused messages were never queued, so nothing of them can be delivered later
    await daemon.waitForLog((e) => e.msg === 'removed' && e.queueId === r3.queueId);
    assert.deepEqual(
      daemon.find((e) => e.msg === 'queued' && e.from === 'quota@client.test').map((e) => e.queueId),
      [r3.queueId],
    );
    assert.ok(readFileSync(env.mailbox('full')).equals(fullBefore), 'the full mailbox was written to');
    const nearlyAfter = readFileSync(env.mailbox('nearly'));
    assert.ok(nearlyAfter.subarray(0, nearlyBefore.length).equals(nearlyBefore));
    const added = readMailbox(env.mailbox('nearly')).messages.slice(1);
    assert.equal(added.length, 1);
    assert.match(added[0]!.original.toString('latin1'), /Subject: fits in quota/);
  });

  test('submitted mail (mynetworks) without Message-ID and Date gets them; MX mail is stored unchanged', async () => {
    const bare = crlf('From: sub@client.test', `To: ${addr('sub')}`, 'Subject: no ids', '', 'body');
    const inside = await sendRaw(env.port, {
      localAddress: INSIDE,
      from: 'sub@client.test',
      to: [addr('sub')],
      message: bare,
    });
    assert.equal(inside.end?.code, 250);
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === inside.queueId);
    const outside = await sendRaw(env.port, { from: 'sub@client.test', to: [addr('sub')], message: bare });
    assert.equal(outside.end?.code, 250);
    await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === outside.queueId);
    const [fromInside, fromOutside] = readMailbox(env.mailbox('sub')).messages;
    assert.ok(fromInside && fromOutside);
    const insideHeaders = fromInside.original.toString('latin1').split('\n\n')[0]!;
    assert.match(
      insideHeaders,
      /^Message-ID: <[^>]+@[^>]+>$/im,
      `no Message-ID added to submitted mail:\n${insideHeaders}`,
    );
    assert.match(insideHeaders, /^Date: \S/im, `no Date added to submitted mail:\n${insideHeaders}`);
    assert.equal(fromOutside.original.toString('latin1'), expectedMboxrd(bare).toString('latin1'));
  });
});

describe('smtp connection limits', () => {
  let env: TestEnv;
  let daemon: Daemon;

  before(async () => {
    env = await makeEnv({ config: { smtp: { max_clients: 3, timeout: '2s', greet_pause: '400ms' } } });
    daemon = await startDaemon(env);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    if (env) await env.cleanup();
  });

  test('smtp.max_clients: the connection over the limit gets 421, a freed slot is usable again', async () => {
    const open: SmtpClient[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const { client, greeting } = await SmtpClient.connect(env.port);
        open.push(client);
        assert.equal(greeting.code, 220);
      }
      const { client: extra, greeting } = await SmtpClient.connect(env.port);
      open.push(extra);
      assert.equal(greeting.code, 421, `4th connection with max_clients = 3: ${greeting.raw}`);
      await open[0]!.quit();
      // the slot is free once the server has seen the client go
      await eventually(
        async () => {
          const { client, greeting: g } = await SmtpClient.connect(env.port);
          client.destroy();
          return g.code === 220;
        },
        10_000,
        'a slot after one client quit',
        100,
      );
    } finally {
      for (const c of open) c.destroy();
    }
  });

  test('smtp.timeout: an idle client is told 421 and disconnected', async () => {
    // the previous test's connections may not all be closed on the server's side yet (max_clients = 3)
    let client: SmtpClient | undefined;
    await eventually(
      async () => {
        const { client: c, greeting } = await SmtpClient.connect(env.port);
        if (greeting.code === 220) client = c;
        else c.destroy();
        return client !== undefined;
      },
      10_000,
      'a free connection slot',
      100,
    );
    assert.ok(client, 'no free connection slot');
    try {
      assert.equal((await client.cmd('EHLO idle.test')).code, 250);
      const started = Date.now();
      const reply = await client.read(10_000);
      const waited = Date.now() - started;
      assert.equal(reply.code, 421, reply.raw);
      assert.ok(waited >= 1500, `idle timeout after ${waited} ms with timeout = "2s"`);
      await client.waitClosed();
    } finally {
      client.destroy();
    }
  });

  test('smtp.greet_pause: strangers wait for the greeting, early talkers get 421; mynetworks do not', async () => {
    const started = Date.now();
    const { client: patient, greeting } = await SmtpClient.connect(env.port);
    patient.destroy();
    assert.equal(greeting.code, 220);
    // at least half the pause: a timer may end a little early by the clock read here
    assert.ok(Date.now() - started >= 200, `greeting after ${Date.now() - started} ms with greet_pause = "400ms"`);

    const early = new Socket();
    const replies: string[] = [];
    early.setEncoding('latin1').on('data', (chunk: string) => replies.push(chunk));
    await new Promise<void>((resolve) => early.connect(env.port, '127.0.0.1', resolve));
    early.write('EHLO early.test\r\n');
    await eventually(() => /^421 /m.test(replies.join('')), 10_000, 'the 421 for the early talker');
    early.destroy();

    // a mynetworks client is not paused: talking at once is no offence there (an early talker
    // from outside got 421 above)
    const inside = new Socket();
    const insideReplies: string[] = [];
    inside.setEncoding('latin1').on('data', (chunk: string) => insideReplies.push(chunk));
    await new Promise<void>((resolve) =>
      inside.connect({ port: env.port, host: '127.0.0.1', localAddress: '127.0.0.2' }, resolve),
    );
    inside.write('EHLO inside.test\r\n');
    await eventually(
      () => /^250 /m.test(insideReplies.join('')),
      10_000,
      'the EHLO reply to a mynetworks client that talked at once',
    );
    inside.destroy();
    assert.match(insideReplies.join(''), /^220 [\s\S]*^250[ -]/m, `mynetworks client got: ${insideReplies.join('')}`);
  });
});

describe('submission port without AUTH', () => {
  let env: TestEnv;
  let daemon: Daemon;
  let submissionPort: number;

  before(async () => {
    submissionPort = await freePort();
    env = await makeEnv({ config: { smtp: { submission: [`127.0.0.1:${submissionPort}`] } } });
    daemon = await startDaemon(env);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    if (env) await env.cleanup();
  });

  test('refuses MAIL with 530 5.7.0, even for a local user and from mynetworks', async () => {
    for (const localAddress of [undefined, INSIDE]) {
      const replies = await smtpDialog(
        submissionPort,
        ['EHLO client.test', 'MAIL FROM:<a@client.test>', `RCPT TO:<alice@${DOMAIN}>`, 'QUIT'],
        localAddress ? { localAddress } : {},
      );
      assert.equal(replies[0]!.code, 220);
      assert.match(replies[2]!.raw, /^530 5\.7\.0 /, `MAIL on the submission port: ${replies[2]!.raw}`);
      assert.notEqual(replies[3]!.code, 250);
    }
    assert.equal(daemon.find((e) => e.msg === 'queued').length, 0);
  });
});
