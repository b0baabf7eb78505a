// A throw-away environment for one daemon: config file (any key overridable), users (all with
// PASSWORD), aliases, spool and state directories, a test certificate; removed afterwards. Two
// envs may share one spool (`sharedSpool`): two daemons as two nodes on one shared file system.
import { chown, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { chmodSync, chownSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash } from '@node-rs/argon2';
import { stringify } from 'smol-toml';
import { resolveIdentity } from '../../../src/privileges.js';
import { isQueueId } from '../../../src/queue/id.js';
import { generateSelfSigned, type SelfSignedPem } from '../../../src/tls/selfsigned.js';
import { DAEMON_USER, DOMAIN, HOSTNAME, PASSWORD } from './constants.js';
import { freePort } from './net.js';

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
  /**
   * the spool_dir of another env, used instead of one of its own (state_dir stays this env's
   * own); that env's cleanup removes it
   */
  sharedSpool?: string;
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
  const spoolDir = options.sharedSpool ?? join(dir, 'spool');
  const stateDir = join(dir, 'state');
  const usersFile = join(dir, 'users');
  const aliasesFile = join(dir, 'aliases');
  const configPath = join(dir, 'mailsrv.toml');
  if (options.sharedSpool === undefined) await mkdir(spoolDir);
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
    dkim: { keys_dir: join(dir, 'dkim') },
    delivery: { retry: ['200ms'], lock_timeout: '200ms' },
    // the inbound checks ask DNS: only the tests of the checks turn them on (with their own DNS server)
    checks: { spf: 'off', dkim: 'off', dmarc: 'off' },
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

/** Removes leftover temp dirs of this process (for an `after` hook). */
export async function cleanupAllTempDirs(): Promise<void> {
  if (process.env.KEEP_E2E) return;
  await Promise.all([...tempDirs].map((d) => rm(d, { recursive: true, force: true })));
  tempDirs.clear();
}

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

/**
 * Writes a mailbox file as another mail program would leave it for the daemon: owned by the
 * daemon's user (when the tests run as root), mode 0600. The daemon refuses a mailbox that
 * another account owns or that group or others may write.
 */
export function writeMailbox(path: string, content: string | Buffer): void {
  writeFileSync(path, content, { mode: 0o600 });
  chmodSync(path, 0o600);
  if (DAEMON_USER) {
    const { uid, gid } = resolveIdentity(DAEMON_USER.user, DAEMON_USER.group);
    chownSync(path, uid, gid);
  }
}
