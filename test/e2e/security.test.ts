// Security regressions beside those of smtp-policy and smtp-delivery (open-relay address forms,
// <LF>.<LF>): the other ways to end DATA early (<CR>.<CR>, <LF>.<CRLF>) stay message content;
// IDN and uppercase domains neither open a relay nor hide a local one; header and log
// injection through HELO, MAIL FROM, RCPT TO, AUTH and POP3 USER (bare CR, NUL, line breaks in
// base64) changes no header and no log line; user names that try to be paths log in nowhere.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  authPlain,
  DOMAIN,
  envForTest,
  freePort,
  logsSoFar,
  Pop3Client,
  readMailbox,
  sendRaw,
  SmtpClient,
  type TestEnv,
  type Daemon,
} from './harness.js';

/** Every line the daemon wrote is one JSON object: nothing a client sent broke a log line. */
function assertLogLinesWhole(daemon: Daemon): void {
  for (const line of daemon.stdout.split('\n').filter((l) => l.trim() !== '')) {
    assert.doesNotThrow(() => JSON.parse(line), `a log line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`);
  }
}

async function smuggle(env: TestEnv, to: string, body: string): Promise<{ end: number; quit: number }> {
  const { client } = await SmtpClient.connect(env.port);
  try {
    await client.cmd('EHLO client.test');
    await client.cmd('MAIL FROM:<s@client.test>');
    assert.equal((await client.cmd(`RCPT TO:<${to}>`)).code, 250);
    assert.equal((await client.cmd('DATA')).code, 354);
    client.write(`Subject: smuggling\r\n\r\n${body}`);
    client.write('\r\n.\r\n');
    const end = await client.read();
    const quit = await client.cmd('QUIT');
    return { end: end.code, quit: quit.code };
  } finally {
    client.destroy();
  }
}

describe('security regressions', () => {
  test('<CR>.<CR> and <LF>.<CRLF> do not end DATA: the smuggled transaction stays content', async (t) => {
    const { env, start } = await envForTest(t, { users: ['alice', 'judy'] });
    const daemon = await start();
    const evil = (end: string) =>
      `line1${end}.${end}MAIL FROM:<evil@client.test>${end}RCPT TO:<judy@${DOMAIN}>${end}DATA${end}` +
      `Subject: smuggled${end}${end}evil${end}.${end}line2`;
    for (const [name, body] of [
      ['<CR>.<CR>', evil('\r')],
      ['<LF>.<CRLF>', `line1\n.\r\nMAIL FROM:<evil@client.test>\r\nRCPT TO:<judy@${DOMAIN}>\r\nDATA\r\nx`],
    ] as const) {
      const { end, quit } = await smuggle(env, `alice@${DOMAIN}`, body);
      assert.equal(end, 250, `${name}: one reply for the whole message`);
      assert.equal(quit, 221, `${name}: the next reply is QUIT's (no smuggled command ran)`);
    }
    await logsSoFar(daemon, env.port);
    assert.equal(readMailbox(env.mailbox('alice')).messages.length, 2);
    assert.equal(readMailbox(env.mailbox('judy')).exists, false, 'nothing reached judy');
  });

  test('IDN and uppercase domains: a remote IDN is no relay, an uppercase local domain is local', async (t) => {
    const { env, start } = await envForTest(t);
    await start();
    for (const to of ['user@bücher.test', 'user@xn--bcher-kva.test', 'user@BÜCHER.TEST']) {
      const r = await sendRaw(env.port, { from: 'a@client.test', to: [to], message: 'Subject: x\r\n\r\nx\r\n' });
      assert.ok(r.rcpt[0]!.code >= 500, `RCPT TO:<${to}> from outside mynetworks: ${r.rcpt[0]!.raw}`);
    }
    const local = await sendRaw(env.port, {
      from: 'a@client.test',
      to: [`ALICE@${DOMAIN.toUpperCase()}`],
      message: 'Subject: upper\r\n\r\nx\r\n',
    });
    assert.equal(local.end?.code, 250);
    assert.equal(readMailbox(env.mailbox('alice')).messages.length, 1);
  });

  test('CR, NUL and line breaks in HELO, MAIL FROM, RCPT TO, AUTH and POP3 USER inject nothing', async (t) => {
    const pop3Port = await freePort();
    const { env, start } = await envForTest(t, {
      config: {
        pop3: { listen: [`127.0.0.1:${pop3Port}`] },
        plaintext_auth_networks: ['127.0.0.0/8'],
        auth: { failure_delay: '10ms' },
      },
    });
    const daemon = await start();
    const { client } = await SmtpClient.connect(env.port);
    try {
      for (const line of ['EHLO evil.test\rX-Injected: helo', 'HELO a\0b']) {
        assert.ok((await client.cmd(line)).code >= 500, `refused: ${JSON.stringify(line)}`);
      }
      assert.equal((await client.cmd('EHLO client.test')).code, 250);
      for (const line of ['MAIL FROM:<a\rX-Injected: from@client.test>', 'MAIL FROM:<a\0b@client.test>']) {
        assert.ok((await client.cmd(line)).code >= 500, `refused: ${JSON.stringify(line)}`);
      }
      assert.equal((await client.cmd('MAIL FROM:<a@client.test>')).code, 250);
      const rcpt = await client.cmd(`RCPT TO:<alice\rX-Injected: rcpt@${DOMAIN}>`);
      assert.ok(rcpt.code >= 500, `refused: ${rcpt.raw}`);
      await client.cmd('RSET');
      const auth = await client.cmd(`AUTH PLAIN ${Buffer.from('\0alice\nX-Injected: auth\0wrong').toString('base64')}`);
      assert.ok(auth.code >= 500, `a username with a line break logs in nowhere: ${auth.raw}`);
      const plain = await client.cmd(`AUTH PLAIN ${authPlain('../../etc/passwd', 'x')}`);
      assert.ok(plain.code >= 500, plain.raw);
    } finally {
      await client.quit();
    }
    const { client: pop } = await Pop3Client.connect(pop3Port);
    try {
      for (const user of ['../../etc/passwd', 'alice\rX-Injected: user', '/etc/shadow', 'alice\0']) {
        await pop.cmd(`USER ${user}`);
        assert.match(await pop.cmd('PASS secret-pw'), /^-ERR/, `no login as ${JSON.stringify(user)}`);
      }
    } finally {
      await pop.quit();
    }
    await logsSoFar(daemon, env.port);
    assertLogLinesWhole(daemon);
    assert.equal(readMailbox(env.mailbox('alice')).exists, false);
  });
});
