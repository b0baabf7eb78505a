// E2E: 1,000 idle connections (500 SMTP, 500 POP3, all from 127.0.0.1, put in mynetworks so the
// per-address limit lets them in; max_clients raised to 2,000 so stress mode stays off) and
// slow clients trickling a byte a second into SMTP command lines, SMTP messages and POP3
// command lines: the daemon's memory stays bounded, and a fresh client from another address is
// greeted, sends a message and reads its mailbox over POP3 while every one of them is still
// held open. How long the fresh client waited is printed, never asserted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DOMAIN, makePop3Env, note, Pop3Client, sendRaw, SmtpClient, startDaemon } from './harness.js';

const IDLE_PER_PROTOCOL = 500;
/** slow clients of each kind: SMTP command line, SMTP message, POP3 command line */
const SLOW_PER_KIND = 20;
const TRICKLE_MS = 1000;
/** connections opened at once while the idle ones are set up */
const BATCH = 50;
const RSS_LIMIT_MB = 300;
/** outside the test's mynetworks, as any client on the Internet */
const FRESH_CLIENT = '127.0.0.3';
/** a guard for each step under this load (never asserted) */
const WAIT_MS = 60_000;

/** The resident memory of a process, in MiB (/proc/<pid>/status). */
function rssMb(pid: number): number {
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(kib, `no VmRSS for process ${pid}`);
  return Number(kib[1]) / 1024;
}

test('1,000 idle connections and slow clients: memory stays bounded and a fresh client is served', async (t) => {
  const env = await makePop3Env({
    config: {
      mynetworks: ['127.0.0.1/32', '127.0.0.2/32'],
      smtp: { max_clients: 2000 },
      pop3: { max_clients: 2000 },
    },
  });
  const daemon = await startDaemon(env);
  t.after(async () => {
    await daemon.kill9();
    await env.cleanup();
  });
  const pid = daemon.child.pid!;
  const rssAtStart = rssMb(pid);
  const held: (SmtpClient | Pop3Client)[] = [];
  const timers: NodeJS.Timeout[] = [];
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    for (const client of held) client.destroy();
  });
  const hold = <C extends SmtpClient | Pop3Client>(client: C): C => {
    held.push(client);
    return client;
  };
  const trickle = (client: SmtpClient | Pop3Client, text: string) => {
    let sent = 0;
    timers.push(setInterval(() => sent < text.length && client.write(text[sent++]!), TRICKLE_MS));
  };
  const idleSmtp = async () => {
    const { client, greeting } = await SmtpClient.connect(env.port, { timeoutMs: WAIT_MS });
    assert.equal(greeting.code, 220);
    return hold(client);
  };
  const idlePop3 = async () => {
    const { client, greeting } = await Pop3Client.connect(env.pop3Port, { timeoutMs: WAIT_MS });
    assert.equal(greeting, '+OK mailsrv ready');
    return hold(client);
  };
  const inBatches = async (count: number, open: () => Promise<unknown>) => {
    for (let opened = 0; opened < count; opened += BATCH) {
      await Promise.all(Array.from({ length: Math.min(BATCH, count - opened) }, open));
    }
  };

  const setupStarted = Date.now();
  await inBatches(IDLE_PER_PROTOCOL, idleSmtp);
  for (let i = 0; i < SLOW_PER_KIND; i++) {
    const command = await idleSmtp();
    assert.equal((await command.cmd('EHLO slow.test')).code, 250);
    trickle(command, `MAIL FROM:<${'x'.repeat(1000)}`);
    const message = await idleSmtp();
    for (const line of ['EHLO slow.test', 'MAIL FROM:<slow@client.test>', `RCPT TO:<alice@${DOMAIN}>`]) {
      assert.equal((await message.cmd(line)).code, 250, line);
    }
    assert.equal((await message.cmd('DATA')).code, 354);
    trickle(message, 'Subject: slow\r\n\r\n'.padEnd(2000, 'x\r\n'));
    trickle(await idlePop3(), `USER ${'y'.repeat(200)}`);
  }
  // POP3 clients must log in within 60 s of connecting: these come last
  await inBatches(IDLE_PER_PROTOCOL, idlePop3);
  t.diagnostic(`${held.length} connections opened and greeted in ${Date.now() - setupStarted} ms`);

  const freshAt = Date.now();
  const { client: fresh, greeting } = await SmtpClient.connect(env.port, {
    localAddress: FRESH_CLIENT,
    timeoutMs: WAIT_MS,
  });
  const greetedMs = Date.now() - freshAt;
  fresh.destroy();
  assert.equal(greeting.code, 220);
  const sent = await sendRaw(env.port, {
    localAddress: FRESH_CLIENT,
    from: 'fresh@client.test',
    to: [`bob@${DOMAIN}`],
    message: note('fresh'),
  });
  assert.equal(sent.end?.code, 250, `the fresh client's message: ${sent.end?.raw}`);
  await daemon.waitForLog((e) => e.msg === 'delivered' && e.queueId === sent.queueId, WAIT_MS);
  const pop3 = await Pop3Client.login(env.pop3Port, 'bob', undefined, { localAddress: FRESH_CLIENT });
  t.after(() => pop3.destroy());
  assert.match(await pop3.cmd('STAT'), /^\+OK 1 /, "the fresh client's message is in bob's mailbox");
  const servedMs = Date.now() - freshAt;

  const open = held.filter((client) => !client.closed).length;
  assert.equal(open, held.length, 'every idle and slow connection is still held open');
  const rss = rssMb(pid);
  t.diagnostic(
    `fresh client greeted after ${greetedMs} ms, message sent and read back over POP3 after ${servedMs} ms; ` +
      `daemon RSS ${rssAtStart.toFixed(0)} MiB at start, ${rss.toFixed(0)} MiB with ${open} connections held`,
  );
  assert.ok(rss < RSS_LIMIT_MB, `daemon RSS ${rss.toFixed(0)} MiB with ${open} connections held`);
});
