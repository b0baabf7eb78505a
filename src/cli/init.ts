// `mailsrv init [--dir DIR] [--hostname NAME] [--accounts file|system]`: a starter installation
// for this host in DIR (default /etc/mailsrv): mailsrv.toml, an empty users file, an aliases file
// routing postmaster, abuse and MAILER-DAEMON to root, and a self-signed certificate. With
// `--accounts system` (README, "Using the box's Unix accounts") the Unix accounts are the users:
// no users file, the box's /etc/aliases, and the PAM service file /etc/pam.d/mailsrv instead. It
// never overwrites: every file is created exclusively and whatever exists is kept (the
// certificate and its key as a pair), so running it again only fills in what is missing.
import { hostname as osHostname } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ConfigError, configPath, parseConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { PAM_SERVICE_DIR, PAM_SERVICE_TEXT } from '../accounts/pam-service.js';
import { generateSelfSigned } from '../tls/selfsigned.js';
import { fail } from './fail.js';
import { createFile, makeDirectory, SECRET_MODE } from './secret-files.js';
import { pathExists } from '../fsutil.js';

const DEFAULT_DIR = '/etc/mailsrv';
/** config/mailsrv.toml, installed with the package: every key, its default and its meaning. */
const REFERENCE_CONFIG = fileURLToPath(new URL('../../config/mailsrv.toml', import.meta.url));
const CERTIFICATE_DAYS = 3650;
const SECRET_NOTE = `mode 0${SECRET_MODE.toString(8)}`;
/** accounts = "system" keeps the aliases the box already has (Postfix's, sendmail's) */
const SYSTEM_ALIASES = '/etc/aliases';
const PAM_SERVICE = 'mailsrv';

type Accounts = 'file' | 'system';

interface Layout {
  dir: string;
  config: string;
  users: string;
  aliases: string;
  tlsDir: string;
  cert: string;
  key: string;
  /** dkim.keys_dir: `mailsrv dkim keygen` fills it */
  dkimDir: string;
  accounts: Accounts;
  /** accounts = "system": the PAM service file */
  pamFile: string;
}

function layoutOf(dir: string, accounts: Accounts, pamDir: string): Layout {
  const tlsDir = join(dir, 'tls');
  return {
    dir,
    config: join(dir, 'mailsrv.toml'),
    users: join(dir, 'users'),
    aliases: accounts === 'system' ? SYSTEM_ALIASES : join(dir, 'aliases'),
    tlsDir,
    cert: join(tlsDir, 'cert.pem'),
    key: join(tlsDir, 'key.pem'),
    dkimDir: join(dir, 'dkim'),
    accounts,
    pamFile: join(pamDir, PAM_SERVICE),
  };
}

export function registerInitCommand(program: Command): void {
  program
    .command('init')
    .description(
      'write a starter config, an empty users file, an aliases file with postmaster ' +
        'and a self-signed TLS certificate; existing files are kept',
    )
    .option('--dir <dir>', 'where to write them', DEFAULT_DIR)
    .option('--hostname <name>', "the mail server's name (default: the system host name)")
    .option('--accounts <kind>', '"file": users of its own; "system": the Unix accounts (PAM, /etc/aliases)', 'file')
    .option('--pam-dir <dir>', 'where the PAM service file goes (--accounts system)', PAM_SERVICE_DIR)
    .action(async (opts: { dir: string; hostname?: string; accounts: string; pamDir: string }) => {
      if (opts.accounts !== 'file' && opts.accounts !== 'system')
        fail(`--accounts must be "file" or "system", not ${JSON.stringify(opts.accounts)}`);
      const hostname = (opts.hostname ?? osHostname()).toLowerCase();
      const layout = layoutOf(resolve(opts.dir), opts.accounts as Accounts, resolve(opts.pamDir));
      const configText = starterConfig(hostname, layout);
      const config = validated(configText, layout.config, hostname);
      try {
        await writeInstallation(layout, configText, config);
      } catch (err) {
        fail(`init in ${layout.dir} failed: ${(err as Error).message}`);
      }
    });
}

/** The starter config as the daemon will read it; a host name the schema refuses stops init here. */
function validated(configText: string, path: string, hostname: string): Config {
  try {
    return parseConfig(configText, path);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return fail(
      `cannot make a config for host name "${hostname}": ${err.problems.join('; ')}; ` +
        'pass --hostname NAME (the fully qualified name of this mail server)',
    );
  }
}

async function writeInstallation(layout: Layout, configText: string, config: Config): Promise<void> {
  await makeDirectory(layout.dir);
  await makeDirectory(layout.tlsDir);
  const certificateExists = await certificatePairExists(layout);
  const system = layout.accounts === 'system';
  const outcomes = [
    outcome(layout.config, await createFile(layout.config, configText, 0o644)),
    ...(system
      ? [
          outcome(layout.pamFile, await createFile(layout.pamFile, PAM_SERVICE_TEXT, 0o644), 'pam_unix'),
          `using the Unix accounts and ${layout.aliases} (kept as it is)`,
        ]
      : [
          outcome(layout.users, await createFile(layout.users, USERS_FILE, SECRET_MODE), SECRET_NOTE),
          outcome(layout.aliases, await createFile(layout.aliases, ALIASES_FILE, 0o644)),
        ]),
    ...(certificateExists
      ? [outcome(layout.cert, false), outcome(layout.key, false)]
      : await createCertificate(layout, config.hostname)),
  ];
  process.stdout.write(
    `mailsrv init: ${layout.dir} for ${config.hostname}\n` +
      `${outcomes.map((line) => `  ${line}\n`).join('')}${nextSteps(layout)}`,
  );
}

function outcome(path: string, written: boolean, detail = ''): string {
  return written ? `wrote ${path}${detail ? ` (${detail})` : ''}` : `kept existing ${path}`;
}

/** The certificate and its key are a pair: both exist (kept), or neither (written); one alone stops init. */
async function certificatePairExists(layout: Layout): Promise<boolean> {
  const [certExists, keyExists] = await Promise.all([pathExists(layout.cert), pathExists(layout.key)]);
  if (certExists !== keyExists) {
    const [present, missing] = certExists ? [layout.cert, layout.key] : [layout.key, layout.cert];
    throw new Error(
      `${present} exists without ${missing}: put its partner there, or remove it to have a new self-signed pair made`,
    );
  }
  return certExists;
}

async function createCertificate(layout: Layout, hostname: string): Promise<string[]> {
  const pem = await generateSelfSigned(hostname, CERTIFICATE_DAYS);
  const keyWritten = await createFile(layout.key, pem.key, SECRET_MODE);
  const certWritten = await createFile(layout.cert, pem.cert, 0o644);
  return [
    outcome(layout.cert, certWritten, `self-signed for ${hostname}, valid ${CERTIFICATE_DAYS / 365} years`),
    outcome(layout.key, keyWritten, SECRET_NOTE),
  ];
}

function nextSteps(layout: Layout): string {
  const configOption = configPath(undefined) === layout.config ? '' : ` -c ${layout.config}`;
  const firstSteps =
    layout.accounts === 'system'
      ? [
          '  1. mail users are the Unix accounts (uid >= system_min_uid): adduser NAME',
          `  2. make sure ${layout.aliases} has "root: NAME" (then postmaster reaches that user)`,
        ]
      : [
          `  1. mailsrv user add${configOption} NAME     (asks for the password)`,
          `  2. add a line "root: NAME" to ${layout.aliases}, so that mail to postmaster reaches that user`,
        ];
  return [
    'Next steps:',
    ...firstSteps,
    `  3. review ${layout.config} (hostname, domains, mynetworks, listeners)`,
    `  4. mailsrv dkim keygen${configOption} DOMAIN   (each domain and the hostname), then publish the records`,
    `     that \`mailsrv dkim dns${configOption}\` prints (DKIM, SPF, DMARC, MX, SRV)`,
    `  5. mailsrv check${configOption}`,
    `  6. mailsrv start${configOption}`,
    '',
  ].join('\n');
}

/** The domain part of a host name (mail.example.org: example.org), never a bare top-level domain. */
function domainOf(hostname: string): string | null {
  const domain = hostname.slice(hostname.indexOf('.') + 1);
  return hostname.includes('.') && domain.includes('.') ? domain : null;
}

/** A TOML string or array of strings: TOML basic strings take JSON's quoting and escapes. */
const toml = (value: string | string[]) =>
  typeof value === 'string' ? JSON.stringify(value) : `[${value.map((item) => JSON.stringify(item)).join(', ')}]`;

/** Both address families on one port. */
const anyAddress = (port: number) => [`0.0.0.0:${port}`, `[::]:${port}`];

function starterConfig(hostname: string, layout: Layout): string {
  const domain = domainOf(hostname);
  return `# mailsrv configuration for ${hostname}, written by \`mailsrv init\`.
# Only the keys a site usually edits are here; every other key takes its default. Every key,
# its default and what it does: ${REFERENCE_CONFIG}
# After an edit: \`mailsrv check -c ${layout.config}\`, then restart mailsrv (or send it SIGHUP).

# The name in the SMTP banner, Received lines and bounces: the name your MX record points to.
hostname = ${toml(hostname)}
# Domains whose mail is delivered here (NAME@domain); hostname and "localhost" always are.
${domain === null ? '# For example: domains = ["example.org"]\n' : ''}domains = ${toml(domain === null ? [] : [domain])}
# One mbox file per user: spool_dir/NAME.
spool_dir = "/var/mail"
# The queue, indexes and the pid file.
state_dir = "/var/lib/mailsrv"
${layout.accounts === 'system' ? systemAccountsKeys(layout) : fileAccountsKeys(layout)}
# Clients that may send mail anywhere without logging in; add your LAN, e.g. "192.168.1.0/24".
mynetworks = ["127.0.0.0/8", "::1/128"]
# Started as root, mailsrv binds its ports and then runs as this user and group; its root
# helper reads the users file, the TLS key and the DKIM keys again on SIGHUP (they stay 0600).
user = "mail"
group = "mail"

# Each listener list takes IPv4 and IPv6 addresses; remove the "[::]" ones on a host without IPv6.
[smtp]
# The MX port: mail for local users from anyone; to other domains only from mynetworks or after AUTH.
listen = ${toml(anyAddress(25))}
# Submission for mail clients: STARTTLS, then AUTH (RFC 6409); the same with implicit TLS (RFC 8314).
submission = ${toml(anyAddress(587))}
smtps = ${toml(anyAddress(465))}

[pop3]
# POP3 (STLS, then login) and POP3 with implicit TLS.
listen = ${toml(anyAddress(110))}
pop3s = ${toml(anyAddress(995))}

[tls]
# A self-signed certificate for ${hostname}, made by \`mailsrv init\`; mail clients warn about it
# until you replace it with one from a CA (Let's Encrypt: fullchain.pem and privkey.pem).
# The key must not be readable by others (0600); mailsrv re-reads both on SIGHUP.
cert = ${toml(layout.cert)}
key = ${toml(layout.key)}

[dkim]
# DKIM keys, one DOMAIN.key per domain and the hostname: \`mailsrv dkim keygen DOMAIN\` makes one
# and prints its DNS record; mail whose From: domain has a key is signed.
keys_dir = ${toml(layout.dkimDir)}

[log]
# fatal, error, warn, info, debug (every SMTP command and reply) or trace.
level = "info"
`;
}

function fileAccountsKeys(layout: Layout): string {
  return `# The users (\`mailsrv user add NAME\`) and the aliases (/etc/aliases syntax).
users_file = ${toml(layout.users)}
aliases_file = ${toml(layout.aliases)}`;
}

function systemAccountsKeys(layout: Layout): string {
  return `# The users are this box's Unix accounts with a uid of at least system_min_uid (adduser NAME);
# their passwords are checked through PAM (${layout.pamFile}), their mailboxes are
# spool_dir/NAME, owned by them, group mail, mode 0660. Aliases: the box's own file.
accounts = "system"
system_min_uid = 1000
pam_service = ${toml(PAM_SERVICE)}
aliases_file = ${toml(layout.aliases)}`;
}

const USERS_FILE = `# mailsrv users: one \`name:{SCHEME}hash\` a line (Dovecot passwd-file format, so
# \`doveadm pw -s ARGON2ID\` output works). Manage them with
#   mailsrv user add NAME       add a user (asks for the password; only its hash is stored)
#   mailsrv user passwd NAME    change a password
#   mailsrv user del NAME       remove a user (the mailbox stays)
#   mailsrv user list
# A name is letters, digits, ".", "_" or "-"; mail to NAME@ any local domain goes to
# spool_dir/NAME. mailsrv reads this file at start and on SIGHUP.
`;

const ALIASES_FILE = `# mailsrv aliases, /etc/aliases syntax: \`name: target, target\`; a line starting with
# whitespace continues the one before. A target is a user, another alias, or a remote address
# (someone@example.net) to forward to. mailsrv reads this file at start and on SIGHUP.
#
# Mail to postmaster, abuse and MAILER-DAEMON must reach a person (RFC 5321, RFC 2142): add a
# user (\`mailsrv user add NAME\`), then a line "root: NAME" below, and run \`mailsrv check\`.
postmaster: root
abuse: postmaster
MAILER-DAEMON: postmaster
`;
