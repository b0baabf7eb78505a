// `mailsrv check` validates the config and everything it points at, as the daemon will use it:
// the listen addresses (check-ports.ts), the directories, the users and aliases files, the TLS
// certificate and key (loaded by the daemon's own code, then checked for expiry, names and
// permissions), the DKIM keys (a local domain without one is a warning: its mail goes out
// unsigned) and, run as root, whether the config and aliases files the daemon re-reads on SIGHUP
// are readable by the user it drops to, and whether its root helper can re-read the secret files
// (no symlinks); with accounts = "system", the accounts side too (check-accounts.ts).
// Errors exit 1; warnings are printed and do not fail. `mailsrv config` prints the effective
// config with every default filled in (like `postconf`).
import { X509Certificate } from 'node:crypto';
import type { Stats } from 'node:fs';
import { access, constants, readFile, realpath, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'smol-toml';
import { parseUsersFile } from '../auth/users.js';
import { localDomainMatcher } from '../config/domains.js';
import { ConfigError, configPath, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { checkAliases, parseAliases } from '../delivery/aliases.js';
import { keyFile, loadDkimKeys } from '../dkim/keys.js';
import { secretFilesOf } from '../daemon/loaded.js';
import { PrivilegeError, resolveIdentity, startedAsRoot, type Identity } from '../privileges.js';
import { loadTlsCredentials, TlsFileError, type TlsCredentials } from '../tls/credentials.js';
import { checkSystemAccounts } from './check-accounts.js';
import { checkListenPorts } from './check-ports.js';
import { loadConfigOrExit } from './load-config.js';

/** A certificate expiring sooner than this is worth a warning. */
const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

interface Findings {
  /** what stops mailsrv from working as configured: exit 1 */
  errors: string[];
  /** what works now but will bite later */
  warnings: string[];
}

export function registerCheckCommands(program: Command): void {
  program
    .command('check')
    .description(
      'validate the config, users and aliases files, TLS files, directories and permissions; ' +
        'exit 1 on any error (warnings do not fail)',
    )
    .option('-c, --config <file>', 'config file')
    .action(async (opts: { config?: string }) => {
      const path = configPath(opts.config);
      const findings: Findings = { errors: [], warnings: [] };
      try {
        await checkEverything(loadConfig(path), path, findings);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        findings.errors.push(...err.problems);
      }
      for (const error of findings.errors) process.stderr.write(`${error}\n`);
      for (const warning of findings.warnings) process.stderr.write(`warning: ${warning}\n`);
      const warnings = findings.warnings.length === 0 ? '' : counted(findings.warnings.length, 'warning');
      if (findings.errors.length > 0) {
        process.stderr.write(
          `mailsrv check: ${counted(findings.errors.length, 'problem')} found${warnings && `, ${warnings}`}\n`,
        );
        process.exit(1);
      }
      process.stdout.write(`mailsrv check: ${path} is OK${warnings && ` (${warnings})`}\n`);
    });

  program
    .command('config')
    .description('print the effective config, defaults filled in')
    .option('-c, --config <file>', 'config file')
    .action((opts: { config?: string }) => {
      const config = loadConfigOrExit(opts.config);
      process.stdout.write(`# effective config of ${configPath(opts.config)}\n${stringify(config)}\n`);
    });
}

function counted(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

async function checkEverything(config: Config, configFile: string, findings: Findings): Promise<void> {
  for (const [key, dir] of [
    ['spool_dir', config.spool_dir],
    ['state_dir', config.state_dir],
  ] as const) {
    findings.errors.push(...(await checkDirectory(key, dir)));
  }
  findings.errors.push(...(await checkListenPorts(config)));
  await checkUsersAndAliases(config, findings);
  await checkTls(config, findings);
  await checkDkimKeys(config, findings);
  await checkReadableAfterDrop(config, configFile, findings);
}

/** A directory must exist and be writable, or be creatable in a writable parent. */
async function checkDirectory(key: string, dir: string): Promise<string[]> {
  try {
    if (!(await stat(dir)).isDirectory()) return [`key '${key}': ${dir} is not a directory`];
    await access(dir, constants.W_OK);
    return [];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return [`key '${key}': ${dir} is not writable`];
    try {
      await access(dirname(dir), constants.W_OK);
      return [];
    } catch {
      return [`key '${key}': ${dir} does not exist and cannot be created`];
    }
  }
}

async function checkUsersAndAliases(config: Config, findings: Findings): Promise<void> {
  if (config.accounts === 'system') {
    const aliasesText = await readOptional(config.aliases_file, 'aliases_file', findings);
    const aliases = parseAliases(aliasesText ?? '', config.aliases_file);
    findings.errors.push(...aliases.problems);
    await checkSystemAccounts(config, aliases.aliases, daemonIdentityOrNull(config), findings);
    return;
  }
  const usersText = await readOptional(config.users_file, 'users_file', findings);
  // unreadable (reported): the aliases cannot be judged against users nobody can see
  if (usersText === null) return;
  const users = parseUsersFile(usersText ?? '', config.users_file);
  findings.errors.push(...users.problems);
  const aliasesText = await readOptional(config.aliases_file, 'aliases_file', findings);
  const aliases = parseAliases(aliasesText ?? '', config.aliases_file);
  findings.errors.push(...aliases.problems);
  const aliasProblems = checkAliases(
    { has: (name: string) => users.users.has(name) },
    aliases.aliases,
    localDomainMatcher(config),
  );
  if (users.users.size === 0 && aliasProblems.length > 0) {
    // a fresh installation (`mailsrv init`): one line saying what to do, not one per alias
    findings.errors.push(
      `${config.users_file}: no users yet, so postmaster and the other local aliases reach no one: ` +
        `add a user with \`mailsrv user add NAME\`, then a line "root: NAME" in ${config.aliases_file}`,
    );
  } else {
    findings.errors.push(...aliasProblems.map((problem) => `${config.aliases_file}: ${problem}`));
  }
}

/** The file's text; undefined when it does not exist; null when it cannot be read (an error is recorded). */
async function readOptional(file: string, key: string, findings: Findings): Promise<string | undefined | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    findings.errors.push(`key '${key}': cannot read ${file}: ${(err as Error).message}`);
    return null;
  }
}

/**
 * The certificate and key as the daemon loads them (readable, a certificate, the key that
 * belongs to it), then what clients would refuse (expired, not yet valid, not for `hostname`)
 * or what exposes the key (readable by every user).
 */
async function checkTls(config: Config, findings: Findings): Promise<void> {
  if (config.tls.key !== '') await checkKeyNotPublic(config.tls.key, findings);
  let credentials: TlsCredentials | null;
  try {
    credentials = await loadTlsCredentials(config.tls);
  } catch (err) {
    if (!(err instanceof TlsFileError)) throw err;
    findings.errors.push(`key '${err.key}': ${err.file}: ${err.reason}`);
    return;
  }
  if (credentials === null) return; // tls.cert = "": TLS is off
  const file = config.tls.cert;
  const certificate = new X509Certificate(credentials.cert);
  const now = Date.now();
  const validFrom = new Date(certificate.validFrom);
  const daysLeft = Math.floor((credentials.validTo.getTime() - now) / DAY_MS);
  if (credentials.validTo.getTime() <= now) {
    findings.errors.push(
      `key 'tls.cert': ${file}: the certificate expired on ${utc(credentials.validTo)}: clients refuse it; renew it`,
    );
  } else if (validFrom.getTime() > now) {
    findings.errors.push(
      `key 'tls.cert': ${file}: the certificate is not valid before ${utc(validFrom)}: ` +
        'clients refuse it; is the system clock right?',
    );
  } else if (daysLeft < EXPIRY_WARNING_DAYS) {
    findings.warnings.push(
      `key 'tls.cert': ${file}: the certificate expires on ${utc(credentials.validTo)} ` +
        `(in ${counted(daysLeft, 'day')}): renew it`,
    );
  }
  if (certificate.checkHost(config.hostname) === undefined) {
    findings.warnings.push(
      `key 'tls.cert': ${file} is for ${namesOf(certificate)}, not for hostname "${config.hostname}": ` +
        'clients that check the name will refuse it',
    );
  }
}

/** Every DKIM key as the daemon loads it: one it cannot use is an error, a domain without one a warning. */
async function checkDkimKeys(config: Config, findings: Findings): Promise<void> {
  const { unsigned, problems } = await loadDkimKeys(config);
  findings.errors.push(...problems.map((problem) => `key 'dkim.keys_dir': ${problem}`));
  for (const domain of unsigned) {
    findings.warnings.push(
      `key 'dkim.keys_dir': ${domain} has no DKIM key (${keyFile(config.dkim.keys_dir, domain, 'rsa')}): ` +
        `its mail is sent unsigned and large receivers junk or refuse it; mailsrv dkim keygen ${domain}`,
    );
  }
}

/** A private key readable by every user on the box is no longer private. */
async function checkKeyNotPublic(file: string, findings: Findings): Promise<void> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch {
    return; // missing or unreadable: loading it says so
  }
  if ((mode & 0o004) !== 0) {
    findings.errors.push(
      `key 'tls.key': ${file} is readable by every user (mode ${octal(mode)}): ` +
        `a private key must not be; chmod o-rwx ${file}`,
    );
  }
}

function namesOf(certificate: X509Certificate): string {
  return (
    certificate.subjectAltName ?? certificate.subject.split('\n').find((part) => part.startsWith('CN=')) ?? 'no name'
  );
}

function utc(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

/**
 * Started as root, the daemon reads its files as root, drops to `user`/`group` (no other
 * groups), and re-reads the config and aliases as that user on SIGHUP: each must be readable
 * then. The secret files (users file, TLS, DKIM keys, relayhost password) its root helper
 * re-reads, which refuses a name that leads elsewhere through a symlink (README, "Privileges").
 * The user and group must exist, as `mailsrv start` requires.
 */
async function checkReadableAfterDrop(config: Config, configFile: string, findings: Findings): Promise<void> {
  if (!startedAsRoot()) return;
  let identity: Identity;
  try {
    identity = resolveIdentity(config.user, config.group);
  } catch (err) {
    if (!(err instanceof PrivilegeError)) throw err;
    findings.errors.push(err.message);
    return;
  }
  const files: [key: string | null, file: string][] = [
    [null, configFile],
    ['aliases_file', config.aliases_file],
  ];
  if (config.relay.ca_file !== '') files.push(['relay.ca_file', config.relay.ca_file]);
  for (const [key, file] of files) {
    const denial = await readDenial(file, identity);
    if (denial === null) continue;
    findings.warnings.push(
      `${key === null ? '' : `key '${key}': `}${file} ` +
        `is not readable by user ${identity.user}/group ${identity.group}, ` +
        `as whom mailsrv re-reads it on SIGHUP: ${denial}`,
    );
  }
  for (const file of secretFilesOf(config)) {
    const real = await realpath(file).catch(() => file); // a missing file is reported by the other checks
    if (real === file) continue;
    findings.warnings.push(
      `${file} leads to ${real} through a symlink, which the root helper does not follow: on SIGHUP ` +
        `mailsrv reads it as user ${identity.user}/group ${identity.group}; name ${real} in the config instead`,
    );
  }
}

/** Run as root: who the daemon will run as (null when not root, or when that user or group is missing). */
function daemonIdentityOrNull(config: Config): Identity | null {
  if (!startedAsRoot()) return null;
  try {
    return resolveIdentity(config.user, config.group);
  } catch {
    return null; // checkReadableAfterDrop reports it
  }
}

/** Why `identity` cannot read `file` (with the fix), or null when it can or the file does not exist. */
async function readDenial(file: string, identity: Identity): Promise<string | null> {
  let real: string;
  try {
    real = await realpath(file);
  } catch {
    return null; // a missing file is reported (or allowed) by the other checks
  }
  // the directories on the way to the name and, through a symlink, to the file itself
  for (const dir of new Set([...ancestors(resolve(file)), ...ancestors(real)])) {
    if (!permits(await stat(dir), identity, 0o1))
      return `directory ${dir} is not searchable by them; chgrp ${identity.group} ${dir}; chmod g+x ${dir}`;
  }
  if (!permits(await stat(real), identity, 0o4)) return `chgrp ${identity.group} ${real}; chmod 0640 ${real}`;
  return null;
}

/** The directories above an absolute path, from the root down. */
function ancestors(path: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(path); !dirs.includes(dir); dir = dirname(dir)) dirs.unshift(dir);
  return dirs;
}

/** Whether the permission bits grant `bit` (4 read, 1 search) to `identity`, as the kernel decides without ACLs. */
function permits(info: Stats, identity: Identity, bit: number): boolean {
  const shift = info.uid === identity.uid ? 6 : info.gid === identity.gid ? 3 : 0;
  return ((info.mode >> shift) & bit) !== 0;
}
