// The SMTP load: N messages of a given size, one message per connection (as MTAs send them),
// over C concurrent sessions, to any SMTP host:port. It measures
//   - accepted: until the load generator had its last 250 after DATA;
//   - delivered: until every message is in the recipient's mbox, found by counting the From_
//     lines of what the file grew by, and the mailbox's dotlock released (end to end: the
//     figure that counts);
//   - latency per message: connect to the 250 after DATA.
// The load generator is Postfix's smtp-source (its own test tool) when installed. It reports no
// latencies, so a probe client sends one message every 50 ms beside it and those are the latency
// samples. Without smtp-source a built-in client makes the same load, and every message is a
// sample.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, truncate } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { sleep } from './util.js';

export const SMTP_SOURCE = '/usr/sbin/smtp-source';

export interface SmtpLoadOptions {
  host: string;
  port: number;
  messages: number;
  connections: number;
  /** payload octets of each message (smtp-source -l), headers not included */
  size: number;
  from: string;
  rcpt: string;
  /** the recipient's mbox: when given, the run waits until every message is in it */
  mbox?: string;
  generator: 'smtp-source' | 'node';
  /** a delivery that makes no progress for this long fails the run */
  stallMs: number;
}

export interface SmtpLoadResult {
  generator: string;
  /** messages sent by the load and by the latency probe */
  messages: number;
  payloadBytes: number;
  acceptedSeconds: number;
  /** until all were in the mbox (undefined without --mbox) */
  deliveredSeconds: number | undefined;
  /** ms, connect → 250 after DATA */
  latencies: number[];
}

// ------------------------------------------------------------------ the mbox

/**
 * Counts the messages appended to an mbox file, reading only what it grew by since the last
 * look: a message is a "From " line at the start of the file or after a newline (mboxrd and
 * Postfix quote body lines that would look like one).
 */
export class MboxCounter {
  private offset = 0;
  private count = 0;
  private carry = Buffer.from('\n');
  private readonly pattern = Buffer.from('\nFrom ');

  constructor(readonly path: string) {}

  /** Empties the mailbox (keeping its owner and mode) and starts counting from zero. */
  async reset(): Promise<void> {
    if (existsSync(this.path)) await truncate(this.path, 0);
    this.offset = 0;
    this.count = 0;
    this.carry = Buffer.from('\n');
  }

  async poll(): Promise<number> {
    let file;
    try {
      file = await open(this.path, 'r');
    } catch {
      return this.count;
    }
    try {
      const { size } = await file.stat();
      if (size < this.offset) {
        this.offset = 0;
        this.count = 0;
        this.carry = Buffer.from('\n');
      }
      const chunk = Buffer.allocUnsafe(1 << 20);
      while (this.offset < size) {
        const { bytesRead } = await file.read(chunk, 0, Math.min(chunk.length, size - this.offset), this.offset);
        if (bytesRead === 0) break;
        const data = Buffer.concat([this.carry, chunk.subarray(0, bytesRead)]);
        // the carry (5 bytes) cannot hold the 6-byte pattern alone: nothing is counted twice
        for (let at = data.indexOf(this.pattern); at >= 0; at = data.indexOf(this.pattern, at + 1)) this.count += 1;
        this.carry = Buffer.from(data.subarray(Math.max(0, data.length - (this.pattern.length - 1))));
        this.offset += bytesRead;
      }
    } finally {
      await file.close();
    }
    return this.count;
  }

  /** Waits until `expected` messages are in and no writer holds the dotlock. */
  async waitFor(expected: number, stallMs: number): Promise<void> {
    let last = -1;
    let lastChange = Date.now();
    for (;;) {
      const count = await this.poll();
      if (count >= expected && !existsSync(`${this.path}.lock`)) return;
      if (count !== last) {
        last = count;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > stallMs) {
        throw new Error(
          `${this.path}: ${count} of ${expected} messages ` +
            `after ${Math.round((Date.now() - lastChange) / 1000)} s without progress`,
        );
      }
      await sleep(count >= expected ? 2 : 20);
    }
  }
}

// ------------------------------------------------------------------ the built-in client

/** A message as smtp-source sends it: a few headers, then `size` octets of numbered X lines. */
export function makeMessage(size: number, from: string, rcpt: string, n: number): string {
  let text =
    `From: <${from}>\r\nTo: <${rcpt}>\r\nDate: ${new Date().toUTCString()}\r\n` +
    `Message-Id: <${n}.${Date.now()}@load.bench.test>\r\n\r\n`;
  let left = size;
  for (let line = 1; left > 0; line++) {
    const width = Math.max(1, Math.min(78, left - 2));
    text += `${`${line}${'X'.repeat(78)}`.slice(0, width)}\r\n`;
    left -= width + 2;
  }
  return `${text}.\r\n`;
}

/**
 * One SMTP session for one message: connect, EHLO, MAIL, RCPT, DATA, QUIT. Resolves the ms until the 250 after
 * DATA.
 */
export function sendOne(
  host: string,
  port: number,
  from: string,
  rcpt: string,
  message: string,
  timeoutMs = 60_000,
): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket: Socket = createConnection({ host, port });
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    const steps: [string, string | null][] = [
      ['220', 'EHLO load.bench.test\r\n'],
      ['250', `MAIL FROM:<${from}>\r\n`],
      ['250', `RCPT TO:<${rcpt}>\r\n`],
      ['250', 'DATA\r\n'],
      ['354', message],
      ['250', 'QUIT\r\n'],
      ['221', null],
    ];
    let step = 0;
    let buffer = '';
    let latency = 0;
    const timer = setTimeout(() => fail(new Error(`${host}:${port}: no reply within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.on('error', fail);
    socket.on('close', () =>
      step < steps.length ? fail(new Error(`${host}:${port}: connection closed at step ${step}`)) : undefined,
    );
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (;;) {
        const m = /^(\d{3}) .*\r?\n/m.exec(buffer);
        if (!m) return;
        buffer = buffer.slice(m.index + m[0].length);
        const [code, next] = steps[step]!;
        if (m[1] !== code) return fail(new Error(`${host}:${port}: expected ${code}, got ${m[0].trim()}`));
        if (step === 5) latency = performance.now() - started;
        step += 1;
        if (next === null) {
          clearTimeout(timer);
          socket.destroy();
          return resolve(latency);
        }
        socket.write(next);
      }
    });
  });
}

// ------------------------------------------------------------------ the load

function runSmtpSource(o: SmtpLoadOptions): Promise<void> {
  const argv = [
    '-s',
    String(o.connections),
    '-m',
    String(o.messages),
    '-l',
    String(o.size),
    '-f',
    o.from,
    '-t',
    o.rcpt,
    '-M',
    'load.bench.test',
    `${o.host}:${o.port}`,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(SMTP_SOURCE, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`smtp-source ${argv.join(' ')}: exit ${signal ?? code}: ${stderr.trim().slice(0, 500)}`)),
    );
  });
}

async function runNodeLoad(o: SmtpLoadOptions, latencies: number[]): Promise<void> {
  const message = makeMessage(o.size, o.from, o.rcpt, 0);
  let next = 0;
  await Promise.all(
    Array.from({ length: o.connections }, async () => {
      while (next < o.messages) {
        next += 1;
        latencies.push(await sendOne(o.host, o.port, o.from, o.rcpt, message));
      }
    }),
  );
}

export async function runSmtpLoad(o: SmtpLoadOptions): Promise<SmtpLoadResult> {
  const counter = o.mbox ? new MboxCounter(o.mbox) : undefined;
  await counter?.reset();
  const latencies: number[] = [];
  let probeSent = 0;
  let done = false;
  const started = performance.now();
  let probe: Promise<void> = Promise.resolve();
  let acceptedAt = 0;
  if (o.generator === 'smtp-source') {
    const message = makeMessage(o.size, o.from, o.rcpt, 0);
    // the pause between probes ends with the load, so the end-to-end time holds no idle wait
    let endPause = () => {};
    probe = (async () => {
      while (!done) {
        latencies.push(await sendOne(o.host, o.port, o.from, o.rcpt, message));
        probeSent += 1;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 50);
          endPause = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    })();
    try {
      await runSmtpSource(o);
      acceptedAt = performance.now();
    } finally {
      done = true;
      endPause();
      await probe.catch(() => undefined);
    }
  } else {
    await runNodeLoad(o, latencies);
    acceptedAt = performance.now();
  }
  await probe;
  const acceptedSeconds = (acceptedAt - started) / 1000;
  const total = o.messages + probeSent;
  let deliveredSeconds: number | undefined;
  if (counter) {
    await counter.waitFor(total, o.stallMs);
    deliveredSeconds = (performance.now() - started) / 1000;
  }
  return {
    generator: o.generator,
    messages: total,
    payloadBytes: total * o.size,
    acceptedSeconds,
    deliveredSeconds,
    latencies,
  };
}
