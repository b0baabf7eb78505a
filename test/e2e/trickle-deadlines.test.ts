// E2E: clients that trickle a byte at a time cannot hold a session, though every byte restarts
// the idle timeout (here smtp.timeout and pop3.timeout = 4 s, a byte every 0.5 s): an SMTP
// command line must be complete within the idle timeout of its first byte (421 4.4.2), an SMTP
// message gets that plus a second per 500 bytes (421 4.4.2, nothing accepted), a POP3 command
// line as an SMTP one (-ERR, and the mailbox is free again). Each cut is logged with the client;
// honest clients on other connections, a slow but steady message included, are served meanwhile.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DOMAIN,
  HOSTNAME,
  makePop3Env,
  note,
  Pop3Client,
  sendRaw,
  SmtpClient,
  startDaemon,
  type Daemon,
  type TestEnv,
} from './harness.js';

const IDLE_TIMEOUT = '4s';
const IDLE_TIMEOUT_MS = 4000;
/** far below the idle timeout: only a deadline can end a trickling session */
const TRICKLE_MS = 500;
/** a guard for waits that end with a deadline (never asserted) */
const WAIT_MS = 60_000;
const CUT_SMTP = `421 4.4.2 ${HOSTNAME} Error: timeout exceeded`;

/**
 * Sends `text` a byte every TRICKLE_MS while the connection is open, until the test ends. The
 * returned `tick()` resolves when the next byte goes out: other clients pace themselves by it.
 */
function trickle(
  client: SmtpClient | Pop3Client,
  text: string,
  t: { after: (fn: () => void) => void },
): { tick: () => Promise<void> } {
  let sent = 0;
  const ticked: (() => void)[] = [];
  const timer = setInterval(() => {
    if (sent < text.length && !client.socket.destroyed) client.write(text[sent++]!);
    for (const wake of ticked.splice(0)) wake();
  }, TRICKLE_MS);
  // the ticks go on after the connection is cut (other clients still pace by them) until the test ends
  t.after(() => {
    clearInterval(timer);
    client.destroy();
  });
  return { tick: () => new Promise((resolve) => ticked.push(resolve)) };
}

/** Starts a daemon with SMTP and POP3 idle timeouts of 4 s; killed and removed when the test ends. */
async function daemonFor(t: {
  after: (fn: () => Promise<void>) => void;
}): Promise<{ env: TestEnv & { pop3Port: number }; daemon: Daemon }> {
  const env = await makePop3Env({ config: { smtp: { timeout: IDLE_TIMEOUT }, pop3: { timeout: IDLE_TIMEOUT } } });
  const daemon = await startDaemon(env);
  t.after(async () => {
    await daemon.kill9();
    await env.cleanup();
  });
  return { env, daemon };
}

async function timeoutLog(daemon: Daemon, deadline: 'command' | 'data') {
  return daemon.waitForLog(
    (e) => e.msg === 'timeout exceeded' && e.deadline === deadline,
    WAIT_MS,
    `a ${deadline} deadline`,
  );
}

describe('deadlines for trickling clients', { concurrency: true }, () => {
  test('smtp: a command line trickled a byte at a time gets 421 4.4.2; other clients are served', async (t) => {
    const { env, daemon } = await daemonFor(t);
    const { client: slow } = await SmtpClient.connect(env.port, { timeoutMs: WAIT_MS });
    assert.equal((await slow.cmd('EHLO trickle.test')).code, 250);
    const slowLine = trickle(slow, `MAIL FROM:<${'x'.repeat(2000)}`, t);

    const { client: unhurried } = await SmtpClient.connect(env.port);
    t.after(() => unhurried.destroy());
    const normal = await sendRaw(env.port, {
      from: 'a@client.test',
      to: [`alice@${DOMAIN}`],
      message: note('meanwhile'),
    });
    assert.equal(normal.end?.code, 250, 'another client is served');
    // a line that takes a while, but less than the idle timeout, is answered
    unhurried.write('NO');
    for (let i = 0; i < IDLE_TIMEOUT_MS / 4 / TRICKLE_MS; i++) await slowLine.tick();
    assert.equal((await unhurried.cmd('OP')).code, 250);

    assert.equal((await slow.read()).raw, CUT_SMTP);
    await slow.waitClosed();
    const logged = await timeoutLog(daemon, 'command');
    assert.equal(logged.client, '127.0.0.1');
    assert.ok((logged.elapsedMs as number) >= IDLE_TIMEOUT_MS, `cut after ${logged.elapsedMs} ms`);
  });

  test('smtp: a message trickled a byte at a time gets 421 4.4.2 and is not accepted; a steady one is', async (t) => {
    const { env, daemon } = await daemonFor(t);
    const { client: slow } = await SmtpClient.connect(env.port, { timeoutMs: WAIT_MS });
    for (const line of ['EHLO trickle.test', 'MAIL FROM:<a@client.test>', `RCPT TO:<alice@${DOMAIN}>`]) {
      assert.equal((await slow.cmd(line)).code, 250, line);
    }
    assert.equal((await slow.cmd('DATA')).code, 354);
    // complete lines: only the message's own deadline can end it
    const slowMessage = trickle(slow, 'Subject: slow\r\n\r\n'.padEnd(4000, 'x\r\n'), t);

    // 2,000 bytes every 0.5 s (8 times the least rate) for twice the idle timeout
    const { client: steady } = await SmtpClient.connect(env.port);
    t.after(() => steady.destroy());
    for (const line of ['EHLO steady.test', 'MAIL FROM:<b@client.test>', `RCPT TO:<bob@${DOMAIN}>`]) {
      assert.equal((await steady.cmd(line)).code, 250, line);
    }
    assert.equal((await steady.cmd('DATA')).code, 354);
    steady.write('Subject: steady\r\n\r\n');
    for (let sent = 0; sent < (2 * IDLE_TIMEOUT_MS) / TRICKLE_MS; sent++) {
      steady.write(`${'y'.repeat(1998)}\r\n`);
      await slowMessage.tick();
    }
    const end = await steady.cmd('.');
    assert.equal(end.code, 250, `a slow but steady message is accepted: ${end.raw}`);

    assert.equal((await slow.read()).raw, CUT_SMTP);
    await slow.waitClosed();
    const logged = await timeoutLog(daemon, 'data');
    assert.equal(logged.client, '127.0.0.1');
    assert.ok((logged.bytes as number) > 0 && (logged.elapsedMs as number) >= IDLE_TIMEOUT_MS, JSON.stringify(logged));
    await daemon.waitForLog((e) => e.msg === 'disconnect' && e.sessionId === logged.sessionId);
    assert.deepEqual(
      daemon.find((e) => e.msg === 'queued' && e.sessionId === logged.sessionId),
      [],
      'the cut message was never accepted',
    );
  });

  test('pop3: a command line trickled a byte at a time gets -ERR and the mailbox is free again', async (t) => {
    const { env, daemon } = await daemonFor(t);
    const slow = await Pop3Client.login(env.pop3Port, 'alice', undefined, { timeoutMs: WAIT_MS });
    trickle(slow, `LIST ${'1'.repeat(200)}`, t);

    const other = await Pop3Client.login(env.pop3Port, 'bob');
    t.after(() => other.destroy());
    assert.match(await other.cmd('STAT'), /^\+OK /, 'another client is served');

    assert.equal(await slow.readLine(), '-ERR Autologout; command line not completed in time');
    await slow.waitClosed();
    const logged = await timeoutLog(daemon, 'command');
    assert.equal(logged.client, '127.0.0.1');
    assert.equal(logged.user, 'alice');
    assert.ok((logged.elapsedMs as number) >= IDLE_TIMEOUT_MS, `cut after ${logged.elapsedMs} ms`);
    const again = await Pop3Client.login(env.pop3Port, 'alice');
    t.after(() => again.destroy());
    assert.match(await again.cmd('STAT'), /^\+OK /, "alice's mailbox was let go");
  });
});
