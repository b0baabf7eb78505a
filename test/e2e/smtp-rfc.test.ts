// What RFC 5321 requires of every SMTP server, checked on the running daemon: MAIL and RCPT
// parameters of extensions it does not offer are refused with 555 (4.1.1.11), and postmaster
// is always accepted (4.5.1), even when no alias names anyone for it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DOMAIN, envForTest, readMailbox, sendRaw, smtpDialog } from './harness.js';

describe('RFC 5321 musts', () => {
  test('unsupported MAIL and RCPT parameters get 555 5.5.4; the offered ones are taken', async (t) => {
    const { start, env } = await envForTest(t);
    await start();
    const replies = await smtpDialog(env.port, [
      'EHLO client.test',
      'MAIL FROM:<a@client.test> FOO=BAR',
      'MAIL FROM:<a@client.test> RET=HDRS',
      'MAIL FROM:<a@client.test> SIZE=100 BODY=8BITMIME AUTH=<>',
      `RCPT TO:<alice@${DOMAIN}> NOTIFY=NEVER`,
      `RCPT TO:<alice@${DOMAIN}> XFOO`,
      `RCPT TO:<alice@${DOMAIN}>`,
    ]);
    const codes = replies.slice(2).map((r) => `${r.code} ${r.lines[r.lines.length - 1]}`);
    assert.deepEqual(codes, [
      '555 5.5.4 Unsupported option: FOO=BAR',
      '555 5.5.4 Unsupported option: RET=HDRS',
      '250 2.1.0 Accepted',
      '555 5.5.4 Unsupported option: NOTIFY=NEVER',
      '555 5.5.4 Unsupported option: XFOO',
      '250 2.1.5 Accepted',
    ]);
  });

  test('postmaster without an alias: accepted, delivered to spool_dir/postmaster, and the start warns', async (t) => {
    const { start, env } = await envForTest(t, { aliases: '# no aliases\n' });
    const daemon = await start();
    assert.ok(
      daemon.logs.some((l) => l.msg === 'users or aliases file problem' && /postmaster/.test(String(l.problem))),
      'the start-up log warns that postmaster reaches no user',
    );
    for (const to of [`postmaster@${DOMAIN}`, `PostMaster@${DOMAIN.toUpperCase()}`, 'postmaster']) {
      const message = `From: a@client.test\r\nSubject: to ${to}\r\n\r\nhello\r\n`;
      const result = await sendRaw(env.port, { from: 'a@client.test', to: [to], message });
      assert.equal(result.rcpt[0]?.code, 250, `RCPT TO:<${to}>: ${JSON.stringify(result.rcpt[0])}`);
      assert.equal(result.end?.code, 250, `message to ${to}`);
    }
    await daemon.waitForLogs((l) => l.msg === 'delivered' && l.user === 'postmaster', 3, 10_000, 'delivered');
    const stored = readMailbox(env.mailbox('postmaster'));
    assert.equal(stored.messages.length, 3, 'all three messages are in spool_dir/postmaster');
  });
});
