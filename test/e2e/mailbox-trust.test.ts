// A mailbox file someone else made in the spool directory (another account's, or writable by
// anyone) never captures a user's mail: delivery is deferred and logged, nothing is appended,
// and POP3 refuses to serve it; once the administrator removes it, mail flows again.
import assert from 'node:assert/strict';
import { chmodSync, chownSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { DOMAIN, makePop3Env, Pop3Client, RUN_AS_ROOT, sendRaw, startDaemon } from './harness.js';

const PLANTED = 'From attacker@evil.test Thu Nov 26 10:00:00 2026\nSubject: planted\n\nmine now\n\n';

describe('mailbox trust', { skip: !RUN_AS_ROOT && 'needs root to plant a file owned by another account' }, () => {
  test('a planted mailbox (another owner, mode 0666): SMTP defers, POP3 refuses; removed, mail flows', async (t) => {
    const pop3 = await makePop3Env();
    t.after(() => pop3.cleanup());
    const box = pop3.mailbox('alice');
    writeFileSync(box, PLANTED);
    chownSync(box, 1, 1); // Debian's account `daemon`: not the user mailsrv runs as
    chmodSync(box, 0o666);
    const daemon = await startDaemon(pop3);
    t.after(() => daemon.kill9());

    const message = `From: a@client.test\r\nSubject: for alice\r\n\r\nhello\r\n`;
    const sent = await sendRaw(pop3.port, { from: 'a@client.test', to: [`alice@${DOMAIN}`], message });
    assert.equal(sent.end?.code, 250, 'accepted into the queue');
    const deferred = await daemon.waitForLog((l) => l.msg === 'deferred' && l.user === 'alice', 10_000, 'deferred');
    assert.match(String(deferred.reason), /unsafe mailbox file: owned by uid 1/);
    assert.equal(readFileSync(box, 'latin1'), PLANTED, 'nothing was appended to the planted file');

    const { client } = await Pop3Client.connect(pop3.pop3Port);
    assert.equal(await client.cmd('USER alice'), '+OK send PASS');
    assert.equal(await client.cmd('PASS secret-pw'), '-ERR [SYS/PERM] Mailbox file is unsafe, ask the administrator');
    await client.quit();

    rmSync(box);
    daemon.child.kill('SIGUSR2'); // mailsrv queue flush
    await daemon.waitForLog((l) => l.msg === 'delivered' && l.user === 'alice', 10_000, 'delivered after removal');
    assert.match(readFileSync(box, 'latin1'), /Subject: for alice/);
  });
});
