// POP3 load generator and benchmark. Logs in twice per mailbox (the first session, with no
// index, and a second one that finds it), then lists (LIST, UIDL) and retrieves every message,
// and prints a table: login+STAT latency cold and warm, LIST/UIDL time, RETR messages/s and
// MB/s, per-RETR latency percentiles and, when it started mailsrv itself, the daemon's peak RSS.
//
//   npx tsx bench/pop3-bench.ts                           # starts mailsrv on a temp dir
//   npx tsx bench/pop3-bench.ts --messages 100000 --size 10240    # ~1 GB mbox
//   npx tsx bench/pop3-bench.ts --mbox-size 1g            # ~1 GiB of 10 KiB messages
//   npx tsx bench/pop3-bench.ts --target 127.0.0.1:110 --user alice --pass secret
//   options: --messages 20000 --size 4096 (octets of one message as RETR sends it)
//            --connections 1 (C mailboxes of N/C messages, one session each, run at once;
//              against --target give C users: --user a,b,c --pass pa,pb,pc or one shared --pass)
//            --drop-cache (evict the generated mbox from the page cache before the cold login)
//            --retr N (retrieve only the first N messages of each mailbox; default all)
//            --dele (mark every retrieved message deleted; QUIT then removes them: this
//              changes the mailbox, so against --target it is off unless asked for)
//            --timeout 300s (per command) --max-time 60m (the whole run)
//
// Traffic goes only to 127.0.0.1 (own daemon) or to the --target given. The daemon is killed
// and the temp dir removed on every way out (normal end, error, SIGINT/SIGTERM).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { daemonUserConfig } from './daemon-user.js';

const { values: args } = parseArgs({
  options: {
    target: { type: 'string' },
    user: { type: 'string' },
    pass: { type: 'string' },
    messages: { type: 'string' },
    size: { type: 'string' },
    'mbox-size': { type: 'string' },
    connections: { type: 'string' },
    retr: { type: 'string' },
    dele: { type: 'boolean', default: false },
    'drop-cache': { type: 'boolean', default: false },
    timeout: { type: 'string', default: '300s' },
    'max-time': { type: 'string', default: '60m' },
  },
});

// ------------------------------------------------------------------ options

function parseBytes(text: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(text.trim());
  if (!m) throw new Error(`--${name}: expected a size such as 4096, 10k, 512m or 1g (got ${JSON.stringify(text)})`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * unit);
}

function parseMs(text: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`--${name}: expected a duration such as 500ms, 30s, 10m (got ${JSON.stringify(text)})`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer (got ${JSON.stringify(text)})`);
  return n;
}

const MIN_SIZE = 512;
const size = args.size !== undefined ? parseBytes(args.size, 'size') : args['mbox-size'] !== undefined ? 10 * 1024 : 4096;
const messages =
  args.messages !== undefined
    ? positiveInt(args.messages, 'messages')
    : args['mbox-size'] !== undefined
      ? Math.max(1, Math.round(parseBytes(args['mbox-size'], 'mbox-size') / size))
      : 20_000;
const commandTimeoutMs = parseMs(args.timeout, 'timeout');
const maxTimeMs = parseMs(args['max-time'], 'max-time');
const retrLimit = args.retr !== undefined ? positiveInt(args.retr, 'retr') : Infinity;

// ------------------------------------------------------------------ POP3 client

const CRLF = Buffer.from('\r\n', 'latin1');
/** end of a multi-line reply: the CRLF of its last line (or of the status line), ".", CRLF */
const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
/** longest status line accepted */
const MAX_STATUS = 64 * 1024;

interface Reply {
  ok: boolean;
  /** the status line without CRLF */
  status: string;
  /** bytes of the whole reply: status line, body, terminator */
  bytes: number;
  /** the whole reply, when asked for (keep) */
  data: Buffer | null;
}

interface Pending {
  multi: boolean;
  keep: boolean;
  /** bytes of the status line received so far (until its CRLF arrives) */
  head: Buffer | null;
  status: string | null;
  bytes: number;
  chunks: Buffer[];
  /** the last up to 4 bytes scanned, to find a terminator split across chunks */
  tail: Buffer;
  resolve: (reply: Reply) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A minimal POP3 client over a raw socket: one command at a time, one reply. Multi-line replies
 * are not split into lines: each chunk is searched for CRLF.CRLF (with the last 4 bytes of the
 * previous chunk, for a terminator split between chunks) and only counted unless kept.
 */
class Pop3Client {
  private pending: Pending | null = null;
  /** bytes that arrived while no command was waiting (nothing, with a well-behaved server) */
  private rest: Buffer = EMPTY;
  private failure: Error | null = null;

  private constructor(
    private readonly socket: Socket,
    readonly label: string,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new Error(`${label}: ${err.message}`)));
    socket.on('close', () => this.fail(new Error(`${label}: connection closed by the server`)));
  }

  /** Connects and reads the greeting. */
  static async open(host: string, port: number, label: string): Promise<Pop3Client> {
    const socket = createConnection({ host, port });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`${label}: connect to ${host}:${port} timed out`));
      }, commandTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', reject);
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const client = new Pop3Client(socket, label);
    const greeting = await client.command(null);
    if (!greeting.ok) {
      client.close();
      throw new Error(`${label}: greeting ${greeting.status}`);
    }
    return client;
  }

  /** Sends a command (null: none, just read a reply) and waits for its whole reply. */
  command(line: string | null, multi = false, keep = false): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error(`${this.label}: a command is already waiting`));
    const promise = new Promise<Reply>((resolve, reject) => {
      const shown = line === null ? 'greeting' : line.startsWith('PASS ') ? 'PASS' : line;
      const timer = setTimeout(() => this.fail(new Error(`${this.label}: no complete reply to ${shown} within ${commandTimeoutMs} ms`)), commandTimeoutMs);
      this.pending = { multi, keep, head: null, status: null, bytes: 0, chunks: [], tail: EMPTY, resolve, reject, timer };
    });
    if (line !== null) this.socket.write(`${line}\r\n`);
    if (this.rest.length > 0) {
      const rest = this.rest;
      this.rest = EMPTY;
      this.feed(rest);
    }
    return promise;
  }

  /** A command whose reply must be +OK: throws on -ERR. */
  async expectOk(line: string, multi = false, keep = false): Promise<Reply> {
    const reply = await this.command(line, multi, keep);
    if (!reply.ok) throw new Error(`${this.label}: ${line.startsWith('PASS ') ? 'PASS' : line} → ${reply.status}`);
    return reply;
  }

  async quit(): Promise<Reply> {
    const reply = await this.command('QUIT');
    this.close();
    return reply;
  }

  close(): void {
    this.failure ??= new Error(`${this.label}: closed`);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.pending) return this.feed(chunk);
    this.rest = this.rest.length === 0 ? chunk : Buffer.concat([this.rest, chunk]);
    if (this.rest.length > MAX_STATUS) this.fail(new Error(`${this.label}: ${this.rest.length} unexpected bytes from the server`));
  }

  private feed(input: Buffer): void {
    const p = this.pending;
    if (!p) return;
    let chunk = input;
    if (p.status === null) {
      const buf = p.head ? Buffer.concat([p.head, chunk]) : chunk;
      const eol = buf.indexOf(CRLF);
      if (eol < 0) {
        if (buf.length > MAX_STATUS) return this.fail(new Error(`${this.label}: status line longer than ${MAX_STATUS} bytes`));
        p.head = buf;
        return;
      }
      p.head = null;
      p.status = buf.toString('latin1', 0, eol);
      if (!p.multi || !p.status.startsWith('+OK')) {
        p.bytes = eol + 2;
        if (p.keep) p.chunks.push(buf.subarray(0, eol + 2));
        return this.complete(buf.subarray(eol + 2));
      }
      // the terminator's first CRLF may be the status line's own (an empty listing)
      p.bytes = eol;
      if (p.keep) p.chunks.push(buf.subarray(0, eol));
      chunk = buf.subarray(eol);
    }
    let end = -1;
    if (p.tail.length > 0) {
      const joint = Buffer.concat([p.tail, chunk.subarray(0, TERMINATOR.length - 1)]);
      const at = joint.indexOf(TERMINATOR);
      if (at >= 0) end = at + TERMINATOR.length - p.tail.length;
    }
    if (end < 0) {
      const at = chunk.indexOf(TERMINATOR);
      if (at >= 0) end = at + TERMINATOR.length;
    }
    if (end < 0) {
      p.bytes += chunk.length;
      if (p.keep) p.chunks.push(chunk);
      const keepTail = TERMINATOR.length - 1;
      p.tail = chunk.length >= keepTail ? chunk.subarray(chunk.length - keepTail) : Buffer.concat([p.tail, chunk]).subarray(-keepTail);
      return;
    }
    p.bytes += end;
    if (p.keep) p.chunks.push(chunk.subarray(0, end));
    this.complete(chunk.subarray(end));
  }

  private complete(leftover: Buffer): void {
    const p = this.pending!;
    this.pending = null;
    clearTimeout(p.timer);
    if (leftover.length > 0) this.rest = leftover;
    const status = p.status!;
    p.resolve({ ok: status.startsWith('+OK'), status, bytes: p.bytes, data: p.keep ? Buffer.concat(p.chunks) : null });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const p = this.pending;
    this.pending = null;
    this.socket.destroy();
    if (p) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }
}

/** Lines of a kept multi-line reply, without the status line and the terminator. */
function countListingLines(data: Buffer): number {
  let lines = -2; // the status line and the "." line
  for (let at = data.indexOf(CRLF); at >= 0; at = data.indexOf(CRLF, at + 2)) lines += 1;
  return lines;
}

// ------------------------------------------------------------------ mbox generation

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ';
/** body lines on disk: 70 characters + LF (72 octets on the wire, with CRLF) */
const LINE_CHARS = 70;
const WRITE_BATCH = 4 * 1024 * 1024;
const FROM_LINE = Buffer.from('From bench@load.test Thu Jan  1 00:00:00 2026\n', 'latin1');
const BASE_DATE = Date.UTC(2026, 0, 1);

/** `lines` body lines of 70 characters and LF, none starting with "From ", "." or ">". */
function bodyLines(lines: number): Buffer {
  const thrice = ALPHABET.repeat(3);
  let text = '';
  for (let i = 0; i < lines; i++) {
    const k = i % ALPHABET.length;
    text += `${thrice.slice(k, k + LINE_CHARS)}\n`;
  }
  return Buffer.from(text, 'latin1');
}

/**
 * Writes an mboxrd mailbox of `count` messages whose RETR size (CRLF line ends) is exactly
 * `octets` each, in batches: memory stays at one batch whatever the mailbox size.
 * Returns the bytes written.
 */
async function writeMbox(path: string, user: string, count: number, octets: number, runId: string): Promise<number> {
  const maxLines = Math.ceil(octets / (LINE_CHARS + 2)) + 1;
  const lines = bodyLines(maxLines);
  const last = Buffer.from(ALPHABET.repeat(2).slice(0, LINE_CHARS + 2), 'latin1');
  const LF = Buffer.from('\n', 'latin1');
  const file = await open(path, 'wx', 0o600);
  let written = 0;
  try {
    let batch: Buffer[] = [];
    let batched = 0;
    for (let n = 1; n <= count; n++) {
      const date = new Date(BASE_DATE + n * 1000).toUTCString().replace('GMT', '+0000');
      const header =
        `Return-Path: <bench@load.test>\n` +
        `Received: from load.test (localhost [127.0.0.1]) by bench.test with SMTP id B${runId}N${n} for <${user}@bench.test>; ${date}\n` +
        `From: POP3 Bench <bench@load.test>\nTo: <${user}@bench.test>\nSubject: pop3 bench message ${n}\nDate: ${date}\n` +
        `Message-ID: <${n}.${runId}@bench.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n`;
      const headerLines = header.split('\n').length - 1;
      // wire octets: every LF becomes CRLF
      const remaining = octets - (header.length + headerLines);
      if (remaining < 3) throw new Error(`--size ${octets} is too small for the headers (${header.length + headerLines} octets)`);
      const full = Math.floor((remaining - 3) / (LINE_CHARS + 2));
      const lastChars = remaining - 2 - full * (LINE_CHARS + 2); // 1..72
      const parts = [FROM_LINE, Buffer.from(header, 'latin1'), lines.subarray(0, full * (LINE_CHARS + 1)), last.subarray(0, lastChars), LF, LF];
      for (const part of parts) {
        batch.push(part);
        batched += part.length;
      }
      if (batched >= WRITE_BATCH || n === count) {
        const data = Buffer.concat(batch, batched);
        await file.write(data, 0, data.length);
        written += data.length;
        batch = [];
        batched = 0;
      }
    }
  } finally {
    await file.close();
  }
  return written;
}

// ------------------------------------------------------------------ the daemon

interface OwnServer {
  dir: string;
  port: number;
  pid: number;
  child: ChildProcess;
  mailboxes: { user: string; pass: string; path: string; count: number }[];
  mboxBytes: number;
  generateSeconds: number;
}

let ownDir: string | undefined;
let ownChild: ChildProcess | undefined;

/** Synchronous last-resort cleanup: runs on every exit, normal or not. */
process.on('exit', () => {
  if (ownChild && ownChild.exitCode === null && ownChild.signalCode === null) ownChild.kill('SIGKILL');
  if (ownDir) rmSync(ownDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    console.error(`pop3-bench: ${signal}, stopping`);
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}
setTimeout(() => {
  console.error(`pop3-bench: still running after --max-time ${args['max-time']}, giving up`);
  process.exit(2);
}, maxTimeMs).unref();

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function startMailsrv(connections: number): Promise<OwnServer> {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-pop3-bench-'));
  ownDir = dir;
  const spool = join(dir, 'spool');
  await mkdir(spool, { mode: 0o775 });
  const { hash } = await import('@node-rs/argon2');
  const pass = 'bench';
  const hashed = `{ARGON2ID}${await hash(pass, { algorithm: 2 })}`;
  const users = Array.from({ length: connections }, (_, i) => (i === 0 ? 'bench' : `bench${i + 1}`));
  await writeFile(join(dir, 'users'), users.map((user) => `${user}:${hashed}\n`).join(''));
  await writeFile(join(dir, 'aliases'), 'postmaster: bench\n');

  const runId = Date.now().toString(36);
  const mailboxes: OwnServer['mailboxes'] = [];
  let mboxBytes = 0;
  const generateStarted = performance.now();
  for (let i = 0; i < connections; i++) {
    const count = Math.floor(messages / connections) + (i < messages % connections ? 1 : 0);
    const path = join(spool, users[i]!);
    mboxBytes += await writeMbox(path, users[i]!, count, size, runId);
    mailboxes.push({ user: users[i]!, pass, path, count });
  }
  const generateSeconds = (performance.now() - generateStarted) / 1000;

  const port = await freeLoopbackPort();
  const daemonUser = await daemonUserConfig(dir);
  await writeFile(
    join(dir, 'mailsrv.toml'),
    `${daemonUser}hostname = "bench.test"\nspool_dir = "${spool}"\nstate_dir = "${dir}/state"\nusers_file = "${dir}/users"\n` +
      `aliases_file = "${dir}/aliases"\nmailbox_size_limit = 0\n[smtp]\nlisten = []\nsubmission = []\n` +
      `[pop3]\nlisten = ["127.0.0.1:${port}"]\nmax_clients = ${Math.max(200, connections + 10)}\n` +
      `[tls]\ncert = ""\n[log]\nlevel = "warn"\n`,
  );
  const launcher = fileURLToPath(new URL('../bin/mailsrv', import.meta.url));
  const child = spawn(process.execPath, [launcher, 'start', '-c', join(dir, 'mailsrv.toml')], { stdio: ['ignore', 'ignore', 'inherit'] });
  ownChild = child;
  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = `mailsrv exited (${signal ?? code})`));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(exited);
    try {
      const probe = await Pop3Client.open('127.0.0.1', port, 'probe');
      await probe.quit().catch(() => undefined);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error('mailsrv did not start within 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { dir, port, pid: child.pid!, child, mailboxes, mboxBytes, generateSeconds };
}

async function stopMailsrv(own: OwnServer): Promise<void> {
  const { child } = own;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await rm(own.dir, { recursive: true, force: true });
  ownDir = undefined;
}

async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) * 1024;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) total += (await stat(join(dir, name))).size;
  return total;
}

// ------------------------------------------------------------------ the sessions

interface Mailbox {
  user: string;
  pass: string;
  /** messages the bench generated (own daemon), to check STAT against */
  expected?: number;
}

const ms = (from: number) => performance.now() - from;

/** Connect, USER, PASS, STAT: the time until STAT is answered, and what STAT says. */
async function login(host: string, port: number, box: Mailbox, label: string) {
  const started = performance.now();
  const client = await Pop3Client.open(host, port, label);
  await client.expectOk(`USER ${box.user}`);
  await client.expectOk(`PASS ${box.pass}`);
  const loginMs = ms(started);
  const stat = await client.expectOk('STAT');
  const statMs = ms(started);
  const m = /^\+OK (\d+) (\d+)/.exec(stat.status);
  if (!m) throw new Error(`${label}: STAT → ${stat.status}`);
  const count = Number(m[1]);
  if (box.expected !== undefined && count !== box.expected) throw new Error(`${label}: STAT says ${count} messages, ${box.expected} were generated`);
  return { client, loginMs, statMs, count, octets: Number(m[2]) };
}

interface SessionResult {
  coldMs: number;
  warmMs: number;
  warmLoginMs: number;
  count: number;
  octets: number;
  listMs: number;
  listLines: number;
  uidlMs: number;
  uidlLines: number;
  /** ms per RETR, in order */
  latencies: Float64Array;
  retrBytes: number;
  retrStarted: number;
  retrEnded: number;
  quitMs: number;
  quitStatus: string;
}

/** Measures everything but RETR for one mailbox; RETR starts when `go` resolves (all sessions at once). */
async function runMailbox(host: string, port: number, box: Mailbox, exact: boolean, go: Promise<void>, ready: () => void): Promise<SessionResult> {
  const label = `${box.user}@${host}:${port}`;
  const cold = await login(host, port, box, `${label} #1`);
  await cold.client.quit();
  const warm = await login(host, port, box, `${label} #2`);
  const { client } = warm;
  try {
    let started = performance.now();
    const list = await client.expectOk('LIST', true, true);
    const listMs = ms(started);
    started = performance.now();
    const uidl = await client.expectOk('UIDL', true, true);
    const uidlMs = ms(started);
    const listLines = countListingLines(list.data!);
    const uidlLines = countListingLines(uidl.data!);
    if (listLines !== warm.count || uidlLines !== warm.count) {
      throw new Error(`${label}: STAT says ${warm.count} messages, LIST lists ${listLines}, UIDL ${uidlLines}`);
    }

    ready();
    await go;
    const toRetrieve = Math.min(warm.count, retrLimit);
    const latencies = new Float64Array(toRetrieve);
    let retrBytes = 0;
    const retrStarted = performance.now();
    for (let n = 1; n <= toRetrieve; n++) {
      const t = performance.now();
      const reply = await client.expectOk(`RETR ${n}`, true);
      latencies[n - 1] = ms(t);
      retrBytes += reply.bytes;
      // body octets: the reply minus its status line and the "." line; dot-stuffing only adds
      const body = reply.bytes - reply.status.length - 2 - 3;
      const announced = /^\+OK (\d+)/.exec(reply.status);
      if (announced && (exact ? body !== Number(announced[1]) : body < Number(announced[1]))) {
        throw new Error(`${label}: RETR ${n} announced ${announced[1]} octets and sent ${body}`);
      }
      if (args.dele) await client.expectOk(`DELE ${n}`);
    }
    const retrEnded = performance.now();
    started = performance.now();
    const quit = await client.quit();
    const quitMs = ms(started);
    return {
      coldMs: cold.statMs,
      warmMs: warm.statMs,
      warmLoginMs: warm.loginMs,
      count: warm.count,
      octets: warm.octets,
      listMs,
      listLines,
      uidlMs,
      uidlLines,
      latencies,
      retrBytes,
      retrStarted,
      retrEnded,
      quitMs,
      quitStatus: quit.status,
    };
  } finally {
    client.close();
  }
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** "12.3 ms", or with several sessions "max 12.3 ms, median 10.1 ms". */
function spread(values: number[]): string {
  if (values.length === 1) return `${values[0]!.toFixed(1)} ms`;
  const sorted = [...values].sort((a, b) => a - b);
  return `max ${sorted[sorted.length - 1]!.toFixed(1)} ms, median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ms (${values.length} sessions)`;
}

const MB = 1e6;
const MiB = 1024 * 1024;

async function main(): Promise<void> {
  let host: string;
  let port: number;
  let boxes: Mailbox[];
  let own: OwnServer | undefined;
  let connections: number;
  if (args.target) {
    const m = /^(.+):(\d+)$/.exec(args.target);
    if (!m) throw new Error('--target: expected host:port');
    host = m[1]!.replace(/^\[(.*)\]$/, '$1');
    port = Number(m[2]);
    if (!args.user || args.pass === undefined) throw new Error('--target needs --user and --pass');
    const users = args.user.split(',');
    const passes = args.pass.split(',');
    if (passes.length !== 1 && passes.length !== users.length) throw new Error('--pass: give one password or one per --user');
    connections = args.connections !== undefined ? positiveInt(args.connections, 'connections') : users.length;
    if (connections !== users.length) throw new Error(`--connections ${connections} needs ${connections} users (one session per mailbox): --user a,b,c`);
    boxes = users.map((user, i) => ({ user, pass: passes.length === 1 ? passes[0]! : passes[i]! }));
  } else {
    connections = args.connections !== undefined ? positiveInt(args.connections, 'connections') : 1;
    if (size < MIN_SIZE) throw new Error(`--size must be at least ${MIN_SIZE}`);
    if (connections > messages) throw new Error('--connections cannot exceed --messages');
    own = await startMailsrv(connections);
    host = '127.0.0.1';
    port = own.port;
    boxes = own.mailboxes.map(({ user, pass, count }) => ({ user, pass, expected: count }));
    if (args['drop-cache']) {
      for (const { path } of own.mailboxes) {
        const dd = spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: ['ignore', 'ignore', 'inherit'] });
        if (dd.status !== 0) throw new Error(`dd could not drop ${path} from the page cache`);
      }
    }
  }

  try {
    let releaseGo!: () => void;
    const go = new Promise<void>((resolve) => (releaseGo = resolve));
    let readyCount = 0;
    let rssAfterLogin: number | undefined;
    const ready = () => {
      readyCount += 1;
      if (readyCount < boxes.length) return;
      if (!own) return releaseGo();
      void peakRss(own.pid)
        .then((rss) => (rssAfterLogin = rss))
        .finally(releaseGo);
    };
    const results = await Promise.all(boxes.map((box) => runMailbox(host, port, box, own !== undefined, go, ready)));

    const retrieved = results.reduce((sum, r) => sum + r.latencies.length, 0);
    const retrBytes = results.reduce((sum, r) => sum + r.retrBytes, 0);
    const mailboxOctets = results.reduce((sum, r) => sum + r.octets, 0);
    const retrSeconds = (Math.max(...results.map((r) => r.retrEnded)) - Math.min(...results.map((r) => r.retrStarted))) / 1000;
    const sorted = new Float64Array(retrieved);
    let at = 0;
    for (const r of results) {
      sorted.set(r.latencies, at);
      at += r.latencies.length;
    }
    sorted.sort();

    const rows: [string, string][] = [
      ['target', `${host}:${port}${own ? ' (mailsrv started by the bench)' : ''}`],
      [
        'mailbox',
        `${results.reduce((s, r) => s + r.count, 0)} messages, ${(mailboxOctets / MB).toFixed(1)} MB (STAT octets) in ${boxes.length} mailbox(es)` +
          (own ? `; ${messages} × ${size} octets generated` : ''),
      ],
    ];
    if (own) {
      rows.push(['mbox on disk', `${(own.mboxBytes / MB).toFixed(1)} MB, written in ${own.generateSeconds.toFixed(1)} s${args['drop-cache'] ? '; evicted from the page cache before login' : '; in the page cache'}`]);
    }
    rows.push(
      [own ? 'login+STAT cold' : 'login+STAT 1st', `${spread(results.map((r) => r.coldMs))}${own ? ' (first session: no index yet)' : ''}`],
      [own ? 'login+STAT warm' : 'login+STAT 2nd', `${spread(results.map((r) => r.warmMs))} (second session; until PASS answered: ${spread(results.map((r) => r.warmLoginMs))})`],
      ['LIST', `${spread(results.map((r) => r.listMs))} (${results.reduce((s, r) => s + r.listLines, 0)} lines)`],
      ['UIDL', `${spread(results.map((r) => r.uidlMs))} (${results.reduce((s, r) => s + r.uidlLines, 0)} lines)`],
    );
    if (retrieved === 0) {
      rows.push(['RETR', 'no messages']);
    } else {
      rows.push(
        ['RETR', `${retrieved} messages, ${(retrBytes / MB).toFixed(1)} MB in ${retrSeconds.toFixed(2)} s over ${boxes.length} connection(s), one command at a time${args.dele ? ', each followed by DELE' : ''}`],
        ['RETR throughput', `${(retrieved / retrSeconds).toFixed(0)} msg/s, ${(retrBytes / MB / retrSeconds).toFixed(1)} MB/s (${(retrBytes / MiB / retrSeconds).toFixed(1)} MiB/s)`],
      );
      for (const p of [50, 95, 99]) rows.push([`RETR latency p${p}`, `${percentile(sorted, p).toFixed(3)} ms`]);
      rows.push(['RETR latency max', `${sorted[sorted.length - 1]!.toFixed(3)} ms`]);
    }
    rows.push(['QUIT', `${spread(results.map((r) => r.quitMs))} (${results[0]!.quitStatus})`]);
    if (own) {
      const indexBytes = await dirBytes(join(own.dir, 'state', 'index'));
      rows.push(['index', `${indexBytes >= MiB ? `${(indexBytes / MiB).toFixed(1)} MiB` : `${(indexBytes / 1024).toFixed(1)} KiB`} in state_dir/index`]);
      if (rssAfterLogin !== undefined) rows.push(['peak RSS before RETR', `${(rssAfterLogin / MiB).toFixed(1)} MiB (mailsrv, after the logins, LIST and UIDL)`]);
      rows.push(['peak RSS', `${((await peakRss(own.pid)) / MiB).toFixed(1)} MiB (mailsrv, VmHWM at the end)`]);
    }
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
  } finally {
    if (own) await stopMailsrv(own);
  }
}

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error(`pop3-bench: ${(err as Error).message}`);
  process.exit(1);
}
