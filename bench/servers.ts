// The servers a benchmark run talks to, behind one shape (Endpoint): mailsrv started by the
// bench on a temp directory (SMTP and POP3 in one daemon, with the event-loop lag preload),
// the reference servers started by bench/reference/*.sh (Postfix for SMTP, Dovecot for POP3),
// and any HOST:PORT given on the command line. Each endpoint knows where its mailboxes are
// (so the bench can watch deliveries and place POP3 mailboxes) and how to find its processes
// (for the memory figure).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { chown, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { daemonUserConfig } from './daemon-user.js';
import { freePort } from '../test/e2e/harness/net.js';
import { listenerPid, sleep } from './util.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(HERE, '..');
/** the password of every bench user, on every server */
export const PASSWORD = 'bench';
/** the POP3 mailboxes' owners (their mailbox files are named so) */
export const POP3_USERS = ['big', 'small'] as const;

export interface LoopLag {
  p50: number;
  p99: number;
  max: number;
}

export interface Endpoint {
  /** shown in the tables: mailsrv, postfix, dovecot or HOST:PORT */
  name: string;
  host: string;
  port: number;
  /** the pid at the top of the server's processes, for the memory figure (undefined: unknown) */
  rootPid(): Promise<number | undefined>;
  /** event-loop lag, mailsrv only */
  lag?: { reset(): Promise<void>; read(): Promise<LoopLag | undefined> };
}

export interface SmtpEndpoint extends Endpoint {
  rcpt: string;
  /** the recipient's mbox, to time deliveries end to end */
  mbox?: string;
}

export interface Pop3Endpoint extends Endpoint {
  /** puts a copy of `source` in place as `user`'s mailbox; undefined: the mailboxes are there already */
  install?(user: string, source: string): Promise<void>;
  /** removes what the server keeps about `user`'s mailbox (index), for a cold open */
  forget?(user: string): Promise<void>;
  /** restarts the server, so nothing is left in its memory either (a cold open) */
  restart?(): Promise<void>;
  /** the mailbox files, for evicting them from the page cache */
  mailboxPath?(user: string): string;
}

/** An already running server named on the command line (--target / --compare). */
export function externalEndpoint(host: string, port: number): Endpoint {
  return { name: `${host}:${port}`, host, port, rootPid: () => listenerPid(port) };
}

async function waitForPort(host: string, port: number, until: () => string | null, timeoutMs = 20_000): Promise<void> {
  const { createConnection } = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const failed = until();
    if (failed) throw new Error(failed);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host, port });
      s.once('data', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing answers on ${host}:${port}`);
    await sleep(100);
  }
}

export type PasswordScheme = 'argon2id' | 'sha512-crypt';

/**
 * The password hash every server gets for every bench user, so logins cost the same work:
 * Argon2id with mailsrv's parameters (what `mailsrv user add` writes), or SHA512-CRYPT
 * (5,000 rounds, a few ms) to see what opening the mailbox costs without the hash.
 */
async function passwordHash(scheme: PasswordScheme): Promise<string> {
  if (scheme === 'sha512-crypt') {
    const salt = Math.random().toString(36).slice(2, 10);
    const result = spawnSync('openssl', ['passwd', '-6', '-salt', salt, PASSWORD], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`openssl passwd -6: ${result.stderr.trim()}`);
    return `{SHA512-CRYPT}${result.stdout.trim()}`;
  }
  const { hash } = await import('@node-rs/argon2');
  return `{ARGON2ID}${await hash(PASSWORD, { algorithm: 2, memoryCost: 65536, timeCost: 2, parallelism: 1 })}`;
}

// ------------------------------------------------------------------ mailsrv

export interface Mailsrv {
  smtp: SmtpEndpoint;
  pop3: Pop3Endpoint;
  dir: string;
  stop(): Promise<void>;
}

const cleanups = new Set<() => void>();
process.on('exit', () => {
  for (const cleanup of cleanups) cleanup();
});

/**
 * The config of a mailsrv whose inbound checks apply to the bench's clients: mynetworks leaves
 * out 127.0.0.1 (local delivery needs no relay permission), every check is on, and all lookups
 * go to the bench's own DNS server (bench/checks-dns.ts).
 */
export interface ChecksOn {
  /** "127.0.0.1:PORT", for dns_servers */
  dnsServer: string;
  /** the one DNSBL zone checked */
  dnsbl: string;
}

/**
 * Starts mailsrv (the build in dist/, through its launcher bin/mailsrv as an installation runs
 * it) on a temp directory, SMTP and POP3 on free loopback ports, each taking `maxClients`
 * sessions, and messages up to 100 MiB. Every loopback client is in mynetworks, so no inbound
 * check applies to the bench, unless `checks` is given.
 */
export async function startMailsrv(scheme: PasswordScheme, maxClients = 1000, checks?: ChecksOn): Promise<Mailsrv> {
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-bench-'));
  const spool = join(dir, 'spool');
  const state = join(dir, 'state');
  await mkdir(spool, { mode: 0o775 });
  const hashed = await passwordHash(scheme);
  await writeFile(join(dir, 'users'), ['bench', ...POP3_USERS].map((user) => `${user}:${hashed}\n`).join(''));
  await writeFile(join(dir, 'aliases'), 'postmaster: bench\n');
  const smtpPort = await freePort();
  const pop3Port = await freePort();
  const lagFile = join(dir, 'lag.json');
  const daemonUser = await daemonUserConfig(dir); // as root: the daemon runs as nobody, who owns dir
  const owner = daemonUser
    ? spawnSync('stat', ['-c', '%u:%g', dir], { encoding: 'utf8' }).stdout.trim().split(':').map(Number)
    : undefined;
  await writeFile(
    join(dir, 'mailsrv.toml'),
    `${daemonUser}hostname = "bench.test"\ndomains = ["bench.test"]\n` +
      `spool_dir = "${spool}"\nstate_dir = "${state}"\n` +
      `users_file = "${dir}/users"\naliases_file = "${dir}/aliases"\n` +
      `mailbox_size_limit = 0\nmessage_size_limit = ${100 * 1024 * 1024}\n` +
      (checks
        ? `mynetworks = ["127.0.0.99/32"]\ndns_servers = ["${checks.dnsServer}"]\n`
        : 'mynetworks = ["127.0.0.0/8"]\n') +
      `[smtp]\nlisten = ["127.0.0.1:${smtpPort}"]\n` +
      `submission = []\nmax_clients = ${maxClients}\n` +
      // outside mynetworks the per-address limit applies: the whole load comes from 127.0.0.1
      (checks ? `max_connections_per_ip = ${maxClients}\n` : '') +
      `[pop3]\nlisten = ["127.0.0.1:${pop3Port}"]\nmax_clients = ${maxClients}\n` +
      '[tls]\ncert = ""\n[log]\nlevel = "warn"\n' +
      (checks ? `[checks]\nspf = "tag"\ndkim = "tag"\ndmarc = "enforce"\ndnsbl = ["${checks.dnsbl}"]\n` : ''),
  );

  let child: ChildProcess | undefined;
  let exited: string | null = null;
  const kill = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const cleanup = () => {
    kill();
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.add(cleanup);

  const launch = async () => {
    exited = null;
    const preload = join(HERE, 'loop-lag.mjs');
    // the launcher's own node options (its #! line) apply; the preload comes through NODE_OPTIONS
    child = spawn(join(ROOT, 'bin/mailsrv'), ['start', '-c', join(dir, 'mailsrv.toml')], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`.trim(),
        MAILSRV_BENCH_LAG_FILE: lagFile,
      },
    });
    child.once('exit', (code, signal) => (exited = `mailsrv exited (${signal ?? code})`));
    await waitForPort('127.0.0.1', smtpPort, () => exited);
    await waitForPort('127.0.0.1', pop3Port, () => exited);
  };
  const stopDaemon = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
    await gone;
    clearTimeout(timer);
  };
  await launch();

  const rootPid = async () => child?.pid;
  const lag = {
    async reset() {
      await writeFile(`${lagFile}.reset`, '');
      for (let i = 0; i < 40 && existsSync(`${lagFile}.reset`); i++) await sleep(25);
    },
    async read(): Promise<LoopLag | undefined> {
      const asked = Date.now();
      for (let i = 0; i < 40; i++) {
        try {
          const stats = JSON.parse(await readFile(lagFile, 'utf8')) as LoopLag & { at: number; count: number };
          if (stats.at > asked) return stats.count > 0 ? { p50: stats.p50, p99: stats.p99, max: stats.max } : undefined;
        } catch {
          // not written yet
        }
        await sleep(25);
      }
      return undefined;
    },
  };
  const smtp: SmtpEndpoint = {
    name: 'mailsrv',
    host: '127.0.0.1',
    port: smtpPort,
    rootPid,
    lag,
    rcpt: 'bench@bench.test',
    mbox: join(spool, 'bench'),
  };
  const pop3: Pop3Endpoint = {
    name: 'mailsrv',
    host: '127.0.0.1',
    port: pop3Port,
    rootPid,
    lag,
    async install(user, source) {
      const target = join(spool, user);
      await copyFile(source, target);
      if (owner) await chown(target, owner[0]!, owner[1]!);
    },
    async forget(user) {
      const index = join(state, 'index');
      for (const name of await readdir(index).catch(() => [] as string[]))
        if (name.startsWith(`${user}.`)) await rm(join(index, name), { force: true });
    },
    async restart() {
      await stopDaemon();
      await launch();
    },
    mailboxPath: (user) => join(spool, user),
  };
  return {
    smtp,
    pop3,
    dir,
    async stop() {
      await stopDaemon();
      cleanups.delete(cleanup);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ------------------------------------------------------------------ the reference servers

function script(name: string, args: string[]): string {
  const result = spawnSync(join(HERE, 'reference', name), args, {
    encoding: 'utf8',
    timeout: 120_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (result.status !== 0)
    throw new Error(
      `bench/reference/${name} ${args.join(' ')}: ${(result.stderr || result.error?.message || '').trim()}`,
    );
  return result.stdout.trim();
}

/** Can this process start Postfix and Dovecot (root, packages installed)? A reason when not. */
export function referenceUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'the reference servers need root';
  if (!existsSync('/usr/sbin/postfix')) return 'Postfix is not installed (apt-get install postfix)';
  if (!existsSync('/usr/sbin/dovecot')) return 'Dovecot is not installed (apt-get install dovecot-pop3d)';
  return null;
}

/** Postfix on a free loopback port, delivering to /var/mail/bench (bench/reference/postfix.sh). */
export async function startPostfix(): Promise<{ smtp: SmtpEndpoint; stop(): Promise<void> }> {
  const port = await freePort();
  const stopIt = () => void spawnSync(join(HERE, 'reference', 'postfix.sh'), ['stop']);
  cleanups.add(stopIt);
  const mbox = script('postfix.sh', ['start', String(port)]);
  return {
    smtp: {
      name: 'postfix',
      host: '127.0.0.1',
      port,
      rcpt: 'bench@bench.test',
      mbox,
      rootPid: () => listenerPid(port),
    },
    async stop() {
      script('postfix.sh', ['stop']);
      cleanups.delete(stopIt);
    },
  };
}

/**
 * Dovecot POP3 on a free loopback port, its mailboxes and indexes under a temp directory
 * (bench/reference/dovecot.sh).
 */
export async function startDovecot(scheme: PasswordScheme): Promise<{ pop3: Pop3Endpoint; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'dovecot-bench-'));
  const hashed = await passwordHash(scheme);
  await writeFile(join(dir, 'users'), POP3_USERS.map((user) => `${user}:${hashed}\n`).join(''));
  const stopIt = () => {
    spawnSync(join(HERE, 'reference', 'dovecot.sh'), ['stop', dir]);
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.add(stopIt);
  const start = () => script('dovecot.sh', ['start', String(port), dir]);
  start();
  const owner = spawnSync('stat', ['-c', '%u:%g', join(dir, 'spool')], { encoding: 'utf8' })
    .stdout.trim()
    .split(':')
    .map(Number);
  const pop3: Pop3Endpoint = {
    name: 'dovecot',
    host: '127.0.0.1',
    port,
    rootPid: () => listenerPid(port),
    async install(user, source) {
      const target = join(dir, 'spool', user);
      await copyFile(source, target);
      await chown(target, owner[0]!, owner[1]!);
    },
    async forget(user) {
      await rm(join(dir, 'index', user), { recursive: true, force: true });
    },
    async restart() {
      script('dovecot.sh', ['stop', dir]);
      start();
    },
    mailboxPath: (user) => join(dir, 'spool', user),
  };
  return {
    pop3,
    async stop() {
      stopIt();
      cleanups.delete(stopIt);
    },
  };
}
