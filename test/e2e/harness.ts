// End-to-end test harness: builds a throw-away environment (config, users, aliases, spool
// and state directories), starts the real daemon from dist/ (`node bin/mailsrv start`),
// follows its JSON log, and talks to it over raw sockets and with Python's `mailbox`.
// Every daemon started here is killed when the test process exits, whatever happens.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hash } from '@node-rs/argon2';
import { stringify } from 'smol-toml';
import { resolveIdentity } from '../../src/privileges.js';
import { isQueueId } from '../../src/queue/id.js';
import { generateSelfSigned, type SelfSignedPem } from '../../src/tls/selfsigned.js';
import { eventually } from '../support/eventually.js';

export { eventually, sleep } from '../support/eventually.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI_ENTRY = join(REPO_ROOT, 'dist', 'cli', 'main.js');
export const MAILSRV_BIN = join(REPO_ROOT, 'bin', 'mailsrv');
export const PYTHON = '/usr/bin/python3';
export const HOSTNAME = 'mx.test.local';
export const DOMAIN = 'example.test';
export const PASSWORD = 'secret-pw';

/**
 * Run as root (CI), every daemon drops to `nobody` as a real installation drops to `mail`; the
 * files tests create for it (mailboxes, locks, certificates) must then be usable by that user, so
 * this process creates them world-readable and -writable. A test never needs that as another user.
 */
export const RUN_AS_ROOT = process.getuid?.() === 0;
export const DAEMON_USER = RUN_AS_ROOT ? { user: 'nobody', group: 'nogroup' } : null;
if (RUN_AS_ROOT) process.umask(0);

/**
 * Why a test cannot run mailsrv as the unprivileged user `uid` (root only), or null if it can:
 * a checkout below a directory only root may enter (`mktemp -d`) keeps everyone else out of
 * bin/ and dist/.
 */
export function cannotRunAs(uid: number, gid: number): string | null {
  if (!RUN_AS_ROOT) return 'needs root to run as another user';
  const probe = spawnSync('test', ['-r', join(REPO_ROOT, 'dist', 'cli', 'main.js')], { uid, gid });
  return probe.status === 0
    ? null
    : `uid ${uid} cannot read this checkout (${REPO_ROOT}): it lies below a directory only root may enter`;
}

/** Throws a clear error when the daemon has not been built. */
export function requireBuild(): void {
  if (!existsSync(CLI_ENTRY)) {
    throw new Error(`${CLI_ENTRY} is missing: run \`npm run build\` before the e2e tests`);
  }
}

// ---------------------------------------------------------------- environment

export type ConfigTree = { [key: string]: ConfigValue };
export type ConfigValue = string | number | boolean | string[] | ConfigTree;

export interface EnvOptions {
  /** deep-merged over the base test config (any key, any depth) */
  config?: ConfigTree;
  /** user names (all get PASSWORD); default: alice, bob, carol */
  users?: string[];
  /** full text of the aliases file; default: postmaster → alice */
  aliases?: string;
  /** writes a self-signed certificate for HOSTNAME (cert.pem, key.pem) and sets tls.cert/tls.key */
  tls?: boolean;
}

export interface TestEnv {
  dir: string;
  configPath: string;
  spoolDir: string;
  stateDir: string;
  usersFile: string;
  aliasesFile: string;
  /** the MX listener port */
  port: number;
  config: ConfigTree;
  /** with `tls: true`: the certificate (PEM), for clients' `ca`, and the files */
  tls: { cert: string; certFile: string; keyFile: string } | null;
  mailbox(user: string): string;
  /** the ids of the messages in the queue now */
  queued(): string[];
  /** rewrites the config file (e.g. before a restart) */
  writeConfig(config: ConfigTree): Promise<void>;
  cleanup(): Promise<void>;
}

/** A TCP port nobody listens on right now (listen on 0, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function isTree(value: unknown): value is ConfigTree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function deepMerge(base: ConfigTree, over: ConfigTree): ConfigTree {
  const out: ConfigTree = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const old = out[key];
    out[key] = isTree(old) && isTree(value) ? deepMerge(old, value) : value;
  }
  return out;
}

let cachedHash: Promise<string> | undefined;
/** One argon2id hash of PASSWORD, shared by every test user (hashing costs ~50 ms). */
export function passwordHash(): Promise<string> {
  cachedHash ??= hash(PASSWORD, { algorithm: 2 }).then((h) => `{ARGON2ID}${h}`);
  return cachedHash;
}

let cachedCertificate: Promise<SelfSignedPem> | undefined;
/** One self-signed certificate for HOSTNAME per test process, written into `dir`. */
export async function writeTestCertificate(dir: string): Promise<{ cert: string; certFile: string; keyFile: string }> {
  cachedCertificate ??= generateSelfSigned(HOSTNAME, 30);
  const { cert, key } = await cachedCertificate;
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  await writeFile(certFile, cert);
  await writeFile(keyFile, key);
  return { cert, certFile, keyFile };
}

const tempDirs = new Set<string>();

export async function makeEnv(options: EnvOptions = {}): Promise<TestEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-e2e-'));
  tempDirs.add(dir);
  // mkdtemp makes it 0700: the daemon's user must get in (see RUN_AS_ROOT)
  await chmod(dir, 0o755);
  const spoolDir = join(dir, 'spool');
  const stateDir = join(dir, 'state');
  const usersFile = join(dir, 'users');
  const aliasesFile = join(dir, 'aliases');
  const configPath = join(dir, 'mailsrv.toml');
  await mkdir(spoolDir);
  await mkdir(stateDir);
  const port = await freePort();
  const base: ConfigTree = {
    hostname: HOSTNAME,
    domains: [DOMAIN],
    spool_dir: spoolDir,
    state_dir: stateDir,
    users_file: usersFile,
    aliases_file: aliasesFile,
    mynetworks: ['127.0.0.2/32'],
    message_size_limit: 100000,
    mailbox_size_limit: 0,
    smtp: { listen: [`127.0.0.1:${port}`], submission: [], max_recipients: 100 },
    pop3: { listen: [] },
    tls: { cert: '', key: '' },
    delivery: { retry: ['200ms'], lock_timeout: '200ms' },
    log: { level: 'info' },
    ...(DAEMON_USER ?? {}),
  };
  const tls = options.tls ? await writeTestCertificate(dir) : null;
  if (tls) base.tls = { cert: tls.certFile, key: tls.keyFile };
  const config = deepMerge(base, options.config ?? {});
  const users = options.users ?? ['alice', 'bob', 'carol'];
  const h = await passwordHash();
  await writeFile(usersFile, `# test users\n${users.map((u) => `${u}:${h}\n`).join('')}`);
  await writeFile(aliasesFile, options.aliases ?? 'postmaster: alice\n');
  if (DAEMON_USER) {
    // as `mailsrv init` does for the daemon's group: `mailsrv user add` keeps owner and group
    const { uid, gid } = resolveIdentity(DAEMON_USER.user, DAEMON_USER.group);
    await chown(usersFile, uid, gid);
  }
  const writeConfig = async (c: ConfigTree) => writeFile(configPath, `${stringify(c)}\n`);
  await writeConfig(config);
  return {
    dir,
    configPath,
    spoolDir,
    stateDir,
    usersFile,
    aliasesFile,
    port,
    config,
    tls,
    mailbox: (user) => join(spoolDir, user),
    queued: () => (existsSync(join(stateDir, 'queue')) ? readdirSync(join(stateDir, 'queue')).filter(isQueueId) : []),
    writeConfig,
    cleanup: async () => {
      if (process.env.KEEP_E2E) return;
      tempDirs.delete(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- daemon

export interface LogEntry {
  msg: string;
  level?: number;
  queueId?: string;
  sessionId?: string;
  to?: string;
  user?: string;
  reason?: string;
  [key: string]: unknown;
}

const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export class Daemon {
  readonly logs: LogEntry[] = [];
  stdout = '';
  stderr = '';
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;
  private listeners = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    liveChildren.add(child);
    let partial = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.stdout += chunk;
      partial += chunk;
      for (let nl = partial.indexOf('\n'); nl !== -1; nl = partial.indexOf('\n')) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.trim() === '') continue;
        try {
          this.logs.push(JSON.parse(line) as LogEntry);
        } catch {
          this.logs.push({ msg: '(not json)', line });
        }
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    // 'close', not 'exit': by then all the daemon wrote is read, so its logs are complete
    this.exited = new Promise((resolveExit) => {
      child.once('close', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        liveChildren.delete(child);
        resolveExit();
        this.notify();
      });
    });
  }

  get running(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** stdout + stderr, for failure messages */
  output(): string {
    return `--- stdout ---\n${this.stdout.slice(-6000)}\n--- stderr ---\n${this.stderr.slice(-4000)}`;
  }

  find(predicate: (entry: LogEntry) => boolean): LogEntry[] {
    return this.logs.filter(predicate);
  }

  /** Resolves with the first log entry (already seen or future) matching, or rejects after timeoutMs. */
  waitForLog(predicate: (entry: LogEntry) => boolean, timeoutMs = 10_000, what = 'log line'): Promise<LogEntry> {
    return this.waitForLogs(predicate, 1, timeoutMs, what).then((entries) => entries[0]!);
  }

  /** Resolves once `count` entries match. */
  waitForLogs(
    predicate: (entry: LogEntry) => boolean,
    count: number,
    timeoutMs = 10_000,
    what = 'log lines',
  ): Promise<LogEntry[]> {
    return new Promise((resolveWait, reject) => {
      const check = () => {
        const found = this.logs.filter(predicate);
        if (found.length >= count) {
          done();
          resolveWait(found);
          return true;
        }
        if (!this.running) {
          done();
          reject(
            new Error(
              `daemon exited (code ${this.exitCode}, signal ${this.exitSignal}) while waiting for ` +
                `${count} ${what} (have ${found.length})\n${this.output()}`,
            ),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        const found = this.logs.filter(predicate).length;
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${count} ${what} (have ${found})\n${this.output()}`),
        );
      }, timeoutMs);
      const listener = () => void check();
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
      check();
    });
  }

  /** SIGTERM, then the exit code (rejects if it does not exit within timeoutMs). */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    await withTimeout(
      this.exited,
      timeoutMs,
      `daemon did not exit within ${timeoutMs} ms of SIGTERM\n${this.output()}`,
    );
    return this.exitCode;
  }

  /** SIGKILL, waits for the exit. */
  async kill9(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  waitExit(): Promise<void> {
    return this.exited;
  }

  /** Bytes the daemon has read and written so far: files, sockets and its log alike (from /proc). */
  io(): { read: number; written: number } {
    const io = readFileSync(`/proc/${this.child.pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)![1]);
    return { read: field('rchar'), written: field('wchar') };
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}

/** The test process's environment without MAILSRV_CONFIG (every call passes -c). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.MAILSRV_CONFIG;
  return env;
}

/** An env for one test: every daemon started with `start()` is killed, and the env removed, when the test ends. */
export async function envForTest(
  t: { after: (fn: () => Promise<void> | void) => void },
  options: EnvOptions = {},
): Promise<{ env: TestEnv; start: () => Promise<Daemon> }> {
  const env = await makeEnv(options);
  const daemons: Daemon[] = [];
  t.after(async () => {
    for (const d of daemons) await d.kill9();
    await env.cleanup();
  });
  const start = async () => {
    const daemon = await startDaemon(env);
    daemons.push(daemon);
    return daemon;
  };
  return { env, start };
}

/** The source address of the connections logsSoFar makes (in no test's mynetworks). */
const MARKER_CLIENT = '127.0.0.99';

/**
 * Resolves once every line `daemon` logged before the call has been read here. The daemon logs
 * in order, so the 'connect' line of a connection made now comes after all of them: e.g. a
 * transaction's 'queued' line, logged before its last reply went out.
 */
export async function logsSoFar(daemon: Daemon, smtpPort: number): Promise<void> {
  const isMarker = (e: LogEntry) => e.msg === 'connect' && e.client === MARKER_CLIENT;
  const seen = daemon.find(isMarker).length;
  const socket = await connectSocket(smtpPort, { localAddress: MARKER_CLIENT }, 10_000);
  try {
    await daemon.waitForLogs(isMarker, seen + 1, 10_000, 'the "connect" line of a marker connection');
  } finally {
    socket.destroy();
  }
}

/** Spawns `node bin/mailsrv start -c <config>` and resolves once it logs `ready`. */
export async function startDaemon(env: TestEnv | string, timeoutMs = 15_000): Promise<Daemon> {
  requireBuild();
  const configPath = typeof env === 'string' ? env : env.configPath;
  const child = spawn(process.execPath, [MAILSRV_BIN, 'start', '-c', configPath], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv(),
  });
  const daemon = new Daemon(child);
  try {
    await daemon.waitForLog((e) => e.msg === 'ready', timeoutMs, '"ready"');
  } catch (err) {
    await daemon.kill9();
    throw new Error(`daemon did not become ready: ${(err as Error).message}`);
  }
  return daemon;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/mailsrv ARGS...` to completion. */
export function runCli(args: string[], options: { input?: string; env?: Record<string, string> } = {}): CliResult {
  requireBuild();
  const result = spawnSync(process.execPath, [MAILSRV_BIN, ...args], {
    cwd: REPO_ROOT,
    input: options.input,
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...cleanEnv(), ...options.env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

// ---------------------------------------------------------------- raw SMTP client

export interface Reply {
  code: number;
  /** the text of each line after "ddd-" / "ddd " */
  lines: string[];
  /** every line joined with "\n", codes included */
  raw: string;
}

export interface ConnectOptions {
  host?: string;
  /** source address, e.g. 127.0.0.2 to be inside mynetworks */
  localAddress?: string;
  timeoutMs?: number;
}

/** A TCP connection to a loopback port, from `options.localAddress` when given. */
async function connectSocket(port: number, options: ConnectOptions, timeoutMs: number): Promise<Socket> {
  const socket = new Socket();
  await withTimeout(
    new Promise<void>((resolveConnect, reject) => {
      socket.once('error', reject);
      socket.connect(
        {
          port,
          host: options.host ?? '127.0.0.1',
          ...(options.localAddress ? { localAddress: options.localAddress } : {}),
        },
        () => {
          socket.off('error', reject);
          resolveConnect();
        },
      );
    }),
    timeoutMs,
    `cannot connect to port ${port}`,
  );
  return socket;
}

/**
 * What the raw SMTP and POP3 test clients share: a socket read as latin1 (one char = one byte),
 * cut into lines as they arrive (handed to `onLine`), and waiting for what those lines make,
 * with a timeout and a clear error when the server closes or the socket fails first.
 */
abstract class LineClient {
  private buffer = '';
  private waiter: (() => void) | null = null;
  private ended = false;
  private error: Error | null = null;

  protected constructor(
    readonly socket: Socket,
    readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl !== -1; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl).replace(/\r$/, '');
        this.buffer = this.buffer.slice(nl + 1);
        this.onLine(line);
      }
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', (err) => {
      this.error = err;
      this.wake();
    });
  }

  /** One complete line from the server, without its line end. */
  protected abstract onLine(line: string): void;

  get closed(): boolean {
    return this.ended;
  }

  /** Resolves with what `take` finds once something is there; `what` names it in errors ("SMTP reply"). */
  protected async waitFor<T>(take: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = take();
      if (found !== undefined) return found;
      const partial = JSON.stringify(this.buffer.slice(0, 200));
      if (this.error) throw new Error(`socket error while waiting for a ${what}: ${this.error.message}`);
      if (this.ended) throw new Error(`server closed the connection while a ${what} was awaited (partial: ${partial})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms (partial: ${partial})`);
      await new Promise<void>((resolveWait) => {
        const timer = setTimeout(() => {
          this.waiter = null;
          resolveWait();
        }, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolveWait();
        };
      });
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Resolves once the server has closed the connection (rejects after timeoutMs). */
  async waitClosed(timeoutMs = this.timeoutMs): Promise<void> {
    await eventually(() => this.ended, timeoutMs, 'server to close the connection', 10);
  }

  /** Writes raw bytes (a string is sent as latin1, one char = one byte). */
  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * A deliberately dumb SMTP client over a raw socket: writes exactly the bytes it is given
 * and parses replies (multi-line aware), so tests control dot-stuffing, pipelining and line ends.
 */
export class SmtpClient extends LineClient {
  private readonly replies: Reply[] = [];
  private pending: Reply | null = null;

  private constructor(socket: Socket, timeoutMs: number) {
    super(socket, timeoutMs);
  }

  /** Connects and reads the greeting. */
  static async connect(port: number, options: ConnectOptions = {}): Promise<{ client: SmtpClient; greeting: Reply }> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const client = SmtpClient.over(await connectSocket(port, options, timeoutMs), timeoutMs);
    const greeting = await client.read();
    return { client, greeting };
  }

  /** A client over a socket already connected (a TLS session after STARTTLS, an smtps connection). */
  static over(socket: Socket, timeoutMs = 10_000): SmtpClient {
    return new SmtpClient(socket, timeoutMs);
  }

  protected onLine(line: string): void {
    const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
    if (!m) {
      this.replies.push({ code: 0, lines: [line], raw: line });
      return;
    }
    const reply = this.pending ?? { code: Number(m[1]), lines: [], raw: '' };
    reply.lines.push(m[3]!);
    reply.raw += (reply.raw ? '\n' : '') + line;
    if (m[2] === '-') {
      this.pending = reply;
    } else {
      this.pending = null;
      this.replies.push(reply);
    }
  }

  /** Replies received and not read yet. */
  get unread(): number {
    return this.replies.length;
  }

  /** The next reply; rejects on timeout or if the server closes first. */
  read(timeoutMs = this.timeoutMs): Promise<Reply> {
    return this.waitFor(() => this.replies.shift(), timeoutMs, 'SMTP reply');
  }

  /** Reads `n` replies in order. */
  async readN(n: number, timeoutMs = this.timeoutMs): Promise<Reply[]> {
    const out: Reply[] = [];
    for (let i = 0; i < n; i++) out.push(await this.read(timeoutMs));
    return out;
  }

  /** Sends one command line (CRLF added) and reads its reply. */
  async cmd(line: string, timeoutMs = this.timeoutMs): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  /** Sends the message (dot-stuffed here unless `stuffed`) and the final CRLF.CRLF; returns the reply. */
  async data(message: Buffer | string, options: { stuffed?: boolean } = {}): Promise<Reply> {
    const body = typeof message === 'string' ? Buffer.from(message, 'latin1') : message;
    const wire = options.stuffed ? body : dotStuff(body);
    this.write(wire);
    const endsWithCrlf = wire.length >= 2 && wire[wire.length - 2] === 0x0d && wire[wire.length - 1] === 0x0a;
    this.write(endsWithCrlf ? '.\r\n' : '\r\n.\r\n');
    return this.read();
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      try {
        await this.cmd('QUIT', 3000);
      } catch {
        /* closing anyway */
      }
    }
    this.socket.destroy();
  }
}

/** RFC 5321 4.5.2: a line starting with "." gets one more "." (only after CRLF or at the start). */
export function dotStuff(message: Buffer): Buffer {
  const text = message.toString('latin1');
  return Buffer.from(text.replace(/(^|\r\n)\./g, '$1..'), 'latin1');
}

export interface Transaction {
  helo?: string;
  from: string;
  mailParams?: string;
  to: string[];
  message: Buffer | string;
  stuffed?: boolean;
  localAddress?: string;
}

export interface TransactionResult {
  greeting: Reply;
  ehlo: Reply;
  mail: Reply;
  rcpt: Reply[];
  data: Reply | null;
  end: Reply | null;
  queueId: string | null;
}

/** One complete transaction, step by step, over a raw socket; stops at the first refused step. */
export async function sendRaw(port: number, t: Transaction): Promise<TransactionResult> {
  const { client, greeting } = await SmtpClient.connect(port, t.localAddress ? { localAddress: t.localAddress } : {});
  try {
    const ehlo = await client.cmd(`EHLO ${t.helo ?? 'client.test'}`);
    const mail = await client.cmd(`MAIL FROM:<${t.from}>${t.mailParams ? ` ${t.mailParams}` : ''}`);
    const rcpt: Reply[] = [];
    let data: Reply | null = null;
    let end: Reply | null = null;
    if (mail.code === 250) {
      for (const to of t.to) rcpt.push(await client.cmd(`RCPT TO:<${to}>`));
      if (rcpt.some((r) => r.code === 250)) {
        data = await client.cmd('DATA');
        if (data.code === 354) end = await client.data(t.message, t.stuffed ? { stuffed: true } : {});
      }
    }
    return { greeting, ehlo, mail, rcpt, data, end, queueId: end ? queueIdOf(end) : null };
  } finally {
    await client.quit();
  }
}

/** Runs a list of command lines on a fresh connection: greeting + one reply per line. */
export async function smtpDialog(port: number, lines: string[], options: ConnectOptions = {}): Promise<Reply[]> {
  const { client, greeting } = await SmtpClient.connect(port, options);
  try {
    const replies = [greeting];
    for (const line of lines) replies.push(await client.cmd(line));
    return replies;
  } finally {
    await client.quit();
  }
}

/** The queue id named by `250 2.0.0 Ok: queued as ID`, or null. */
export function queueIdOf(reply: Reply | string | null | undefined): string | null {
  if (!reply) return null;
  const text = typeof reply === 'string' ? reply : reply.raw;
  return /queued as (\S+)/.exec(text)?.[1] ?? null;
}

// ---------------------------------------------------------------- messages and mailboxes

/** A message with CRLF line ends from lines. */
export function crlf(...lines: string[]): string {
  return lines.map((l) => `${l}\r\n`).join('');
}

/**
 * What mboxrd must store for a raw wire message (after dot-unstuffing): CRLF → LF,
 * `^>*From ` gets one more `>`, a final newline added if missing. (Independent of src/.)
 */
export function expectedMboxrd(message: Buffer | string): Buffer {
  let text = typeof message === 'string' ? message : message.toString('latin1');
  text = text.replace(/\r\n/g, '\n');
  if (!text.endsWith('\n')) text += '\n';
  text = text.replace(/^(>*From )/gm, '>$1');
  return Buffer.from(text, 'latin1');
}

export interface TraceHeaders {
  returnPath: string;
  deliveredTo: string;
  /** the Received field, unfolded lines joined with "\n" */
  received: string;
  deliveryId: string;
}

export interface StoredMessage {
  /** the From_ line without its LF */
  fromLine: string;
  /** everything after the From_ line, without the separator blank line */
  body: Buffer;
  /** the four added headers, when the body starts with them in the documented order */
  trace: TraceHeaders | null;
  /** body after the trace headers: the stored original message */
  original: Buffer;
}

export interface Mailbox {
  exists: boolean;
  raw: Buffer;
  messages: StoredMessage[];
}

/**
 * Splits an mbox the way the spec reads it: a message starts at a `From ` line at the top of
 * the file or after a blank line. Each message must end with one blank separator line.
 */
export function parseMbox(raw: Buffer): StoredMessage[] {
  const text = raw.toString('latin1');
  if (text.length === 0) return [];
  const starts: number[] = [];
  const re = /(^|\n\n)From /g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    starts.push(m.index + m[1]!.length);
    re.lastIndex = m.index + m[1]!.length + 1;
  }
  if (starts[0] !== 0) throw new Error(`mbox does not start with a From_ line: ${JSON.stringify(text.slice(0, 80))}`);
  return starts.map((start, i) => {
    const end = i + 1 < starts.length ? starts[i + 1]! : text.length;
    const chunk = text.slice(start, end);
    const nl = chunk.indexOf('\n');
    const fromLine = chunk.slice(0, nl);
    let body = chunk.slice(nl + 1);
    if (!body.endsWith('\n\n') && !(body === '\n')) {
      throw new Error(`message ${i + 1} does not end with a blank separator line: ${JSON.stringify(body.slice(-80))}`);
    }
    body = body.slice(0, -1);
    const { trace, rest } = splitTrace(body);
    return { fromLine, body: Buffer.from(body, 'latin1'), trace, original: Buffer.from(rest, 'latin1') };
  });
}

function splitTrace(body: string): { trace: TraceHeaders | null; rest: string } {
  const fields: { name: string; value: string }[] = [];
  let pos = 0;
  for (let i = 0; i < 4; i++) {
    const m = /^([A-Za-z-]+): ?((?:[^\n]*)(?:\n[ \t][^\n]*)*)\n/.exec(body.slice(pos));
    if (!m) return { trace: null, rest: body };
    fields.push({ name: m[1]!, value: m[2]! });
    pos += m[0].length;
  }
  const names = fields.map((f) => f.name.toLowerCase());
  if (names.join(',') !== 'return-path,delivered-to,received,x-delivery-id') return { trace: null, rest: body };
  return {
    trace: {
      returnPath: fields[0]!.value,
      deliveredTo: fields[1]!.value,
      received: fields[2]!.value,
      deliveryId: fields[3]!.value,
    },
    rest: body.slice(pos),
  };
}

export function readMailbox(path: string): Mailbox {
  if (!existsSync(path)) return { exists: false, raw: Buffer.alloc(0), messages: [] };
  const raw = readFileSync(path);
  return { exists: true, raw, messages: parseMbox(raw) };
}

export interface PyMessage {
  from_: string;
  subject: string | null;
  messageId: string | null;
  /** mailbox.mbox get_bytes(): the message without the From_ line */
  bytes: Buffer;
}

/** Parses the mbox with Debian's Python `mailbox.mbox` (an independent reader). */
export function pythonMbox(path: string): { count: number; messages: PyMessage[] } {
  // get_message() decodes the From_ line as ASCII and fails on a UTF-8 sender (SMTPUTF8), so
  // the From_ line is read through the same table of contents and the message parsed with email.
  const code = [
    'import mailbox, email, json, sys, base64',
    'mb = mailbox.mbox(sys.argv[1], create=False)',
    'out = []',
    'for key in mb.iterkeys():',
    '    raw = mb.get_bytes(key)',
    '    start, stop = mb._lookup(key)',
    '    mb._file.seek(start)',
    "    from_ = mb._file.readline().rstrip(b'\\r\\n')[5:].decode('utf-8', 'replace')",
    '    msg = email.message_from_bytes(raw)',
    "    subj = msg['Subject']",
    "    mid = msg['Message-ID']",
    "    out.append({'from_': from_, 'subject': None if subj is None else str(subj),",
    "                'messageId': None if mid is None else str(mid), 'bytes': base64.b64encode(raw).decode()})",
    "print(json.dumps({'count': len(out), 'messages': out}))",
  ].join('\n');
  const result = spawnSync(PYTHON, ['-c', code, path], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`python mailbox failed (${result.status}): ${result.stderr}`);
  const parsed = JSON.parse(result.stdout) as {
    count: number;
    messages: (Omit<PyMessage, 'bytes'> & { bytes: string })[];
  };
  return {
    count: parsed.count,
    messages: parsed.messages.map((m) => ({ ...m, bytes: Buffer.from(m.bytes, 'base64') })),
  };
}

/** `text` matched literally inside a RegExp. */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** A `Date:` header value in RFC 5322 form. */
export function rfcDate(date = new Date()): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

let messageCounter = 0;
/** A unique Message-ID. */
export function messageId(): string {
  messageCounter += 1;
  return `<e2e.${process.pid}.${Date.now()}.${messageCounter}@client.test>`;
}

/** Removes leftover temp dirs of this process (for an `after` hook). */
export async function cleanupAllTempDirs(): Promise<void> {
  if (process.env.KEEP_E2E) return;
  await Promise.all([...tempDirs].map((d) => rm(d, { recursive: true, force: true })));
  tempDirs.clear();
}

// ---------------------------------------------------------------- POP3

/** An env whose daemon also listens for POP3 on a free loopback port (pop3Port). */
export async function makePop3Env(options: EnvOptions = {}): Promise<TestEnv & { pop3Port: number }> {
  const pop3Port = await freePort();
  const config = deepMerge(
    { pop3: { listen: [`127.0.0.1:${pop3Port}`] }, auth: { failure_delay: '50ms' } },
    options.config ?? {},
  );
  const env = await makeEnv({ ...options, config });
  return Object.assign(env, { pop3Port });
}

/** Delivers one message to a local user over SMTP and waits until it is in the mailbox; returns the queue id. */
export async function deliverOverSmtp(
  daemon: Daemon,
  env: TestEnv,
  user: string,
  message: string | Buffer,
): Promise<string> {
  const result = await sendRaw(env.port, { from: 'sender@client.test', to: [`${user}@${DOMAIN}`], message });
  if (result.queueId === null)
    throw new Error(`SMTP refused the message: ${JSON.stringify(result.end ?? result.rcpt)}`);
  const queueId = result.queueId;
  await daemon.waitForLog(
    (e) => e.msg === 'delivered' && e.queueId === queueId && e.user === user,
    10_000,
    `delivered ${queueId} to ${user}`,
  );
  return queueId;
}

export interface Pop3MultiReply {
  /** the status line (`+OK ...` / `-ERR ...`) */
  status: string;
  /** the lines of a multi-line reply, dot-unstuffed, without the terminator (empty for -ERR) */
  lines: string[];
}

/**
 * A deliberately dumb POP3 client over a raw socket: every line is read as latin1 (one char =
 * one byte), so message bodies can be compared byte for byte; nothing is hidden (pipelining,
 * raw writes, dropping the connection are up to the test).
 */
export class Pop3Client extends LineClient {
  private readonly lines: string[] = [];

  private constructor(socket: Socket, timeoutMs: number) {
    super(socket, timeoutMs);
  }

  /** Connects and reads the greeting line. */
  static async connect(port: number, options: ConnectOptions = {}): Promise<{ client: Pop3Client; greeting: string }> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const client = Pop3Client.over(await connectSocket(port, options, timeoutMs), timeoutMs);
    return { client, greeting: await client.readLine() };
  }

  /** A client over a socket already connected (a TLS session after STLS, a pop3s connection). */
  static over(socket: Socket, timeoutMs = 10_000): Pop3Client {
    return new Pop3Client(socket, timeoutMs);
  }

  protected onLine(line: string): void {
    this.lines.push(line);
  }

  /** Connects and logs in with USER/PASS; throws unless both get +OK. */
  static async login(
    port: number,
    user: string,
    password = PASSWORD,
    options: ConnectOptions = {},
  ): Promise<Pop3Client> {
    const { client } = await Pop3Client.connect(port, options);
    const userReply = await client.cmd(`USER ${user}`);
    const passReply = await client.cmd(`PASS ${password}`);
    if (!userReply.startsWith('+OK') || !passReply.startsWith('+OK')) {
      client.destroy();
      throw new Error(`POP3 login as ${user} failed: ${userReply} / ${passReply}`);
    }
    return client;
  }

  /** Lines received and not read yet. */
  get unread(): number {
    return this.lines.length;
  }

  /** The next line (without CRLF); rejects on timeout or when the server closes first. */
  readLine(timeoutMs = this.timeoutMs): Promise<string> {
    return this.waitFor(() => this.lines.shift(), timeoutMs, 'POP3 line');
  }

  /** Sends one command (CRLF added) and reads its one-line reply. */
  async cmd(line: string, timeoutMs = this.timeoutMs): Promise<string> {
    this.write(`${line}\r\n`);
    return this.readLine(timeoutMs);
  }

  /** Reads a reply that is multi-line when it starts with +OK. */
  async readMulti(timeoutMs = this.timeoutMs): Promise<Pop3MultiReply> {
    const status = await this.readLine(timeoutMs);
    const lines: string[] = [];
    if (!status.startsWith('+OK')) return { status, lines };
    for (;;) {
      const line = await this.readLine(timeoutMs);
      if (line === '.') return { status, lines };
      lines.push(line.startsWith('.') ? line.slice(1) : line);
    }
  }

  /** Sends a command whose +OK reply is multi-line (CAPA, LIST, UIDL, RETR, TOP). */
  async multi(line: string, timeoutMs = this.timeoutMs): Promise<Pop3MultiReply> {
    this.write(`${line}\r\n`);
    return this.readMulti(timeoutMs);
  }

  /** RETR or TOP: the message bytes as the client gets them (unstuffed lines, each + CRLF). */
  async message(command: string, timeoutMs = this.timeoutMs): Promise<{ status: string; body: Buffer }> {
    const { status, lines } = await this.multi(command, timeoutMs);
    return { status, body: Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1') };
  }

  /** `UIDL` as a map from message number to uid. */
  async uidls(): Promise<Map<number, string>> {
    const { status, lines } = await this.multi('UIDL');
    if (!status.startsWith('+OK')) throw new Error(`UIDL failed: ${status}`);
    return new Map(lines.map((l) => [Number(l.split(' ')[0]), l.split(' ')[1]!]));
  }

  /** `LIST` as a map from message number to size. */
  async sizes(): Promise<Map<number, number>> {
    const { status, lines } = await this.multi('LIST');
    if (!status.startsWith('+OK')) throw new Error(`LIST failed: ${status}`);
    return new Map(lines.map((l) => [Number(l.split(' ')[0]), Number(l.split(' ')[1])]));
  }

  /** QUIT and its reply; the connection is closed afterwards. */
  async quit(): Promise<string> {
    try {
      return await this.cmd('QUIT');
    } finally {
      this.socket.end();
    }
  }
}

/**
 * What POP3 RETR must send for message `n` (1-based) of an mbox file, computed from the file with
 * parseMbox (independent of src/): CRLF line ends, one `>` removed from `^>+From ` lines.
 */
export function pop3Wire(path: string, n: number): Buffer {
  const message = readMailbox(path).messages[n - 1];
  if (message === undefined) throw new Error(`${path} has no message ${n}`);
  const body = message.body.toString('latin1');
  return Buffer.from(body.replace(/^>(>*From )/gm, '$1').replace(/\n/g, '\r\n'), 'latin1');
}

// ---------------------------------------------------------------- SMTP over TLS and AUTH

/** A TLS handshake on `socket` that verifies the server's certificate for HOSTNAME against `ca`. */
export async function tlsHandshake(socket: Socket, ca: string, timeoutMs = 10_000): Promise<TLSSocket> {
  const secure = tlsConnect({ socket, ca, servername: HOSTNAME });
  await withTimeout(
    new Promise<void>((resolveHandshake, reject) => {
      secure.once('error', reject);
      secure.once('secureConnect', () => {
        secure.off('error', reject);
        resolveHandshake();
      });
    }),
    timeoutMs,
    'TLS handshake did not complete',
  );
  return secure;
}

/**
 * Continues `client` over TLS once the server has said 220 to STARTTLS: the returned client
 * speaks over the TLS session, `client` is spent.
 */
export async function continueOverTls(client: SmtpClient, ca: string): Promise<SmtpClient> {
  return SmtpClient.over(await tlsHandshake(client.socket, ca, client.timeoutMs), client.timeoutMs);
}

/** STARTTLS (after EHLO) and the TLS handshake; throws unless the server says 220. */
export async function startTls(client: SmtpClient, ca: string): Promise<SmtpClient> {
  const reply = await client.cmd('STARTTLS');
  if (reply.code !== 220) throw new Error(`STARTTLS refused: ${reply.raw}`);
  return continueOverTls(client, ca);
}

/** Connects to an implicit-TLS port (smtps) and reads the greeting. */
export async function connectSmtpTls(
  port: number,
  ca: string,
  options: ConnectOptions = {},
): Promise<{ client: SmtpClient; greeting: Reply }> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const client = SmtpClient.over(
    await tlsHandshake(await connectSocket(port, options, timeoutMs), ca, timeoutMs),
    timeoutMs,
  );
  return { client, greeting: await client.read() };
}

/** The base64 initial response of AUTH PLAIN (RFC 4616: authzid NUL authcid NUL password). */
export function authPlain(user: string, password = PASSWORD, authzid = ''): string {
  return Buffer.from(`${authzid}\0${user}\0${password}`, 'utf8').toString('base64');
}

// ---------------------------------------------------------------- POP3 over TLS

/**
 * Continues `client` over TLS once the server has said +OK to STLS (verifying the certificate for
 * HOSTNAME against `ca`): the returned client speaks over the TLS session, `client` is spent.
 */
export async function pop3ContinueOverTls(client: Pop3Client, ca: string): Promise<Pop3Client> {
  return Pop3Client.over(await tlsHandshake(client.socket, ca, client.timeoutMs), client.timeoutMs);
}

/** STLS and the TLS handshake; throws unless the server says +OK. */
export async function pop3Stls(client: Pop3Client, ca: string): Promise<Pop3Client> {
  const reply = await client.cmd('STLS');
  if (!reply.startsWith('+OK')) throw new Error(`STLS refused: ${reply}`);
  return pop3ContinueOverTls(client, ca);
}

/** Connects to an implicit-TLS port (pop3s) and reads the greeting; `socket` shows the certificate. */
export async function connectPop3s(
  port: number,
  ca: string,
  options: ConnectOptions = {},
): Promise<{ client: Pop3Client; greeting: string; socket: TLSSocket }> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const socket = await tlsHandshake(await connectSocket(port, options, timeoutMs), ca, timeoutMs);
  const client = Pop3Client.over(socket, timeoutMs);
  return { client, greeting: await client.readLine(), socket };
}
