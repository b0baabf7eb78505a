// The SMTP side of a stop (SIGTERM): a client that keeps sending its message may finish it and
// gets its 250; one that stalls in DATA gets 421 4.3.2 and its message is not stored (it was
// never accepted, so the client will send it again); the daemon exits with 0.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DOMAIN, envForTest, readMailbox, SmtpClient } from './harness.js';

/** A client inside DATA for `user`, with the first part of its message sent. */
async function inData(port: number, user: string, subject: string): Promise<SmtpClient> {
  const { client } = await SmtpClient.connect(port);
  assert.equal((await client.cmd('EHLO client.test')).code, 250);
  assert.equal((await client.cmd('MAIL FROM:<sender@client.test>')).code, 250);
  assert.equal((await client.cmd(`RCPT TO:<${user}@${DOMAIN}>`)).code, 250);
  assert.equal((await client.cmd('DATA')).code, 354);
  client.write(`From: sender@client.test\r\nSubject: ${subject}\r\n\r\nfirst line\r\n`);
  return client;
}

describe('smtp stop', () => {
  test('SIGTERM: a stalled client in DATA gets 421 4.3.2 (nothing stored), a sending one finishes', async (t) => {
    const { env, start } = await envForTest(t);
    const daemon = await start();
    const stalled = await inData(env.port, 'alice', 'stalled');
    const sending = await inData(env.port, 'bob', 'still sending');
    t.after(() => {
      stalled.destroy();
      sending.destroy();
    });

    daemon.child.kill('SIGTERM');
    await daemon.waitForLog((l) => /^stopping/.test(l.msg), 10_000, 'the stop to begin');
    // the sending client goes on once the stop has begun, and finishes its message
    for (let i = 0; i < 5; i++) sending.write(`line ${i}\r\n`);
    sending.write('last line\r\n.\r\n');
    const end = await sending.read(15_000);
    assert.equal(end.code, 250, `the client that kept sending: ${end.raw}`);

    const cut = await stalled.read(15_000);
    assert.equal(cut.code, 421, `the stalled client: ${cut.raw}`);
    assert.match(cut.raw, /^421 4\.3\.2 /);

    await daemon.waitExit();
    assert.equal(daemon.exitCode, 0, 'exit status after SIGTERM');
    assert.equal(readMailbox(env.mailbox('alice')).messages.length, 0, 'the stalled message is not stored');
    const bob = readMailbox(env.mailbox('bob')).raw.toString('latin1');
    assert.match(bob, /Subject: still sending\n[\s\S]*line 4\nlast line\n/, 'the finished message is stored whole');
  });
});
