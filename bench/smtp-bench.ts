// SMTP load generator and benchmark. Sends N messages over C concurrent connections to any
// SMTP host:port and prints a table: messages/s, per-message latency percentiles (MAIL FROM
// to the 250 after DATA), and, when it started mailsrv itself, the daemon's peak RSS and
// how long until every message was in the mailbox.
//
//   npx tsx bench/smtp-bench.ts                              # starts mailsrv on a temp dir
//   npx tsx bench/smtp-bench.ts --target 127.0.0.1:25 --rcpt user@example.org
//   npx tsx bench/smtp-bench.ts --relay                      # outbound: mailsrv relays everything to
//                                                            # a local smarthost (an smtp-server sink)
//   options: --messages 2000 --connections 10 --size 1024 --per-connection 0 (0 = all on one
//            connection each; 1 = a new connection per message, like most MTAs)
import { spawn } from 'node:child_process';
import { daemonUserConfig } from './daemon-user.js';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';

const { values: args } = parseArgs({
  options: {
    target: { type: 'string' },
    rcpt: { type: 'string', default: 'bench@bench.test' },
    messages: { type: 'string', default: '2000' },
    connections: { type: 'string', default: '10' },
    size: { type: 'string', default: '1024' },
    'per-connection': { type: 'string', default: '0' },
    relay: { type: 'boolean', default: false },
  },
});
const total = Number(args.messages);
const connections = Number(args.connections);
const perConnection = Number(args['per-connection']);
const body = makeBody(Number(args.size));

/** A minimal SMTP client: one command, one (possibly multi-line) reply. */
class Client {
  private buffer = '';
  private waiting: ((line: string) => void) | undefined;
  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.deliver();
    });
  }

  static async open(host: string, port: number): Promise<Client> {
    const socket = createConnection({ host, port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = new Client(socket);
    await client.expect('220');
    await client.expect('250', 'EHLO bench.load.test\r\n');
    return client;
  }

  private deliver(): void {
    for (;;) {
      const match = /^(\d{3}) .*\r?\n/m.exec(this.buffer);
      if (!match || !this.waiting) return;
      const end = match.index + match[0].length;
      this.buffer = this.buffer.slice(end);
      const resolve = this.waiting;
      this.waiting = undefined;
      resolve(match[0]);
    }
  }

  async expect(code: string, command?: string): Promise<void> {
    const reply = new Promise<string>((resolve) => {
      this.waiting = resolve;
    });
    if (command !== undefined) this.socket.write(command);
    this.deliver();
    const line = await reply;
    if (!line.startsWith(code))
      throw new Error(`expected ${code} after ${JSON.stringify(command)}, got ${line.trim()}`);
  }

  async send(rcpt: string): Promise<number> {
    const started = process.hrtime.bigint();
    await this.expect('250', 'MAIL FROM:<bench@load.test>\r\n');
    await this.expect('250', `RCPT TO:<${rcpt}>\r\n`);
    await this.expect('354', 'DATA\r\n');
    await this.expect('250', body);
    return Number(process.hrtime.bigint() - started) / 1e6;
  }

  async quit(): Promise<void> {
    await this.expect('221', 'QUIT\r\n').catch(() => undefined);
    this.socket.destroy();
  }
}

function makeBody(size: number): string {
  const head = `From: bench@load.test\r\nTo: bench\r\nSubject: load test\r\n\r\n`;
  const line = 'The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n';
  let text = head;
  while (text.length < size) text += line;
  return `${text}.\r\n`;
}

/**
 * The smarthost of a --relay run: a bare SMTP responder that accepts everything and counts the
 * messages (smtp-server would add its fixed 100 ms greeting pause to every connection and
 * measure itself instead of mailsrv).
 */
async function startSink(): Promise<{ port: number; received: () => number; close: () => void }> {
  let received = 0;
  const server = createServer((socket) => {
    let buffer = '';
    let inData = false;
    socket.setEncoding('latin1');
    socket.on('error', () => undefined);
    socket.write('220 sink.bench.test ESMTP\r\n');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end < 0) return;
          buffer = buffer.slice(end + 5);
          inData = false;
          received += 1;
          socket.write('250 2.0.0 queued\r\n');
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) return;
        const command = buffer.slice(0, eol).toUpperCase();
        buffer = buffer.slice(eol + 2);
        if (command.startsWith('EHLO')) socket.write('250-sink.bench.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (command === 'DATA') {
          inData = true;
          // the terminator may follow a message that starts right away: look from its CRLF
          buffer = `\r\n${buffer}`;
          socket.write('354 go ahead\r\n');
        } else if (command === 'QUIT') socket.end('221 2.0.0 bye\r\n');
        else socket.write('250 2.0.0 ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return { port, received: () => received, close: () => server.close() };
}

async function startMailsrv(
  relayPort?: number,
): Promise<{ host: string; port: number; pid: number; spool: string; stop: () => void }> {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-bench-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const { hash } = await import('@node-rs/argon2');
  await writeFile(join(dir, 'users'), `bench:{ARGON2ID}${await hash('bench', { algorithm: 2 })}\n`);
  await writeFile(join(dir, 'aliases'), 'postmaster: bench\n');
  const daemonUser = await daemonUserConfig(dir);
  await writeFile(
    join(dir, 'mailsrv.toml'),
    `${daemonUser}hostname = "bench.test"\nspool_dir = "${dir}/spool"\nstate_dir = "${dir}/state"\n` +
      `users_file = "${dir}/users"\naliases_file = "${dir}/aliases"\nmailbox_size_limit = 0\n` +
      `mynetworks = ["127.0.0.0/8"]\n[smtp]\nlisten = ["127.0.0.1:${port}"]\nsubmission = []\n` +
      `max_clients = 1000\n[pop3]\nlisten = []\n[tls]\ncert = ""\n[log]\nlevel = "warn"\n` +
      (relayPort === undefined ? '' : `[relay]\nrelayhost = "127.0.0.1:${relayPort}"\n`),
  );
  const child = spawn(process.execPath, ['bin/mailsrv', 'start', '-c', join(dir, 'mailsrv.toml')], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  process.on('exit', () => child.kill('SIGKILL'));
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      (await Client.open('127.0.0.1', port)).quit();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error('mailsrv did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { host: '127.0.0.1', port, pid: child.pid!, spool: join(dir, 'spool'), stop: () => child.kill('SIGTERM') };
}

async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) * 1024;
}

async function countMessages(mailbox: string): Promise<number> {
  let count = 0;
  try {
    for await (const line of createInterface({ input: (await import('node:fs')).createReadStream(mailbox) })) {
      if (line.startsWith('From ')) count += 1;
    }
  } catch {
    return 0;
  }
  return count;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const sink = args.relay && !args.target ? await startSink() : undefined;
  const own = args.target ? undefined : await startMailsrv(sink?.port);
  const [host, portText] = args.target ? args.target.split(/:(?=\d+$)/) : [own!.host, String(own!.port)];
  const port = Number(portText);
  const rcpt = own ? (sink ? 'bench@remote.bench.test' : 'bench@bench.test') : args.rcpt!;
  const latencies: number[] = [];
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      let client: Client | undefined;
      let sentHere = 0;
      while (next < total) {
        next += 1;
        if (!client) client = await Client.open(host!, port);
        latencies.push(await client.send(rcpt));
        sentHere += 1;
        if (perConnection > 0 && sentHere % perConnection === 0) {
          await client.quit();
          client = undefined;
        }
      }
      await client?.quit();
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  const rows: [string, string][] = [
    ['target', `${host}:${port}${own ? ' (mailsrv started by the bench)' : ''}`],
    [
      'messages',
      `${total} × ${body.length} bytes over ${connections} connection(s), ${perConnection || 'all'} per connection`,
    ],
    ['accepted', `${(total / seconds).toFixed(0)} msg/s (${seconds.toFixed(2)} s)`],
  ];
  latencies.sort((a, b) => a - b);
  for (const p of [50, 95, 99]) rows.push([`latency p${p}`, `${percentile(latencies, p).toFixed(2)} ms`]);
  rows.push(['latency max', `${latencies[latencies.length - 1]!.toFixed(2)} ms`]);
  if (own) {
    const mailbox = join(own.spool, 'bench');
    const delivered = sink ? async () => sink.received() : () => countMessages(mailbox);
    while ((await delivered()) < total) await new Promise((r) => setTimeout(r, 200));
    const deliveredSeconds = (Date.now() - started) / 1000;
    const where = sink ? 'at the smarthost' : 'in the mbox';
    rows.push([
      'delivered',
      `${(total / deliveredSeconds).toFixed(0)} msg/s end to end ` +
        `(${deliveredSeconds.toFixed(2)} s until all ${total} ${where})`,
    ]);
    rows.push(['peak RSS', `${((await peakRss(own.pid)) / 1048576).toFixed(1)} MiB (mailsrv)`]);
    own.stop();
    sink?.close();
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
}

await main();
