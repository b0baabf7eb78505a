// What the daemon reads from files besides its state, at start and again on SIGHUP: the config,
// the users and aliases, the TLS certificate and the DKIM keys. The running parts read them
// through one Loaded object, which a reload updates in place. With accounts = "system" the users
// are the box's accounts, looked up as needed (the lookups' cache is kept across reloads:
// accounts and system_min_uid only change at a restart). Started as root, a reload reads the
// secret files (secretFilesOf) through the root helper, which reads only those the config named
// at start (README, "Privileges").
import { resolve } from 'node:path';
import { SystemAccounts } from '../accounts/system-accounts.js';
import { localDomainMatcher } from '../config/domains.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { Directory } from '../delivery/directory.js';
import { DKIM_KEY_TYPES, type DkimKeys, keyFile, loadDkimKeys, signingDomains } from '../dkim/keys.js';
import type { Logger } from '../log.js';
import type { SecretReader } from '../secret-reader.js';
import { loadTlsCredentials, type TlsCredentials } from '../tls/credentials.js';

export interface Loaded {
  config: Config;
  directory: Directory;
  /** the Unix accounts when accounts = "system", else null */
  accounts: SystemAccounts | null;
  /** null: TLS is off */
  tls: TlsCredentials | null;
  /** the signing keys of the local domains and hostname */
  dkim: DkimKeys;
}

/** At start: a certificate that cannot be read stops the start. */
export async function loadFiles(config: Config, logger: Logger): Promise<Loaded> {
  const tls = await loadTlsCredentials(config.tls);
  const accounts = config.accounts === 'system' ? new SystemAccounts({ minUid: config.system_min_uid }) : null;
  const directory = await loadDirectory(config, accounts, logger);
  return { config, accounts, directory, tls, dkim: await loadKeys(config, logger) };
}

/**
 * The files holding secrets that `config` has the daemon read (absolute paths): the users file,
 * the TLS certificate and key, every DKIM key file it may look for, the relayhost password file.
 */
export function secretFilesOf(config: Config): string[] {
  const files = [
    ...(config.accounts === 'file' ? [config.users_file] : []),
    ...(config.tls.cert === '' ? [] : [config.tls.cert, config.tls.key]),
    ...signingDomains(config).flatMap((domain) =>
      DKIM_KEY_TYPES.map((type) => keyFile(config.dkim.keys_dir, domain, type)),
    ),
    ...(config.relay.relayhost_password_file === '' ? [] : [config.relay.relayhost_password_file]),
  ];
  return [...new Set(files.map((file) => resolve(file)))];
}

/**
 * On SIGHUP: the config and the users and aliases must load, or the reload fails. A certificate
 * that cannot be read (say, a file the root helper was not told about at start) must not stop
 * them from reloading: the running one is kept. `readSecret` reads the secret files.
 */
export async function reloadFiles(
  configFile: string,
  running: Loaded,
  readSecret: SecretReader,
  logger: Logger,
): Promise<Loaded> {
  const config = loadConfig(configFile);
  const directory = await loadDirectory(config, running.accounts, logger, readSecret);
  const tls = await loadTlsCredentials(config.tls, readSecret).catch((err: Error) => {
    logger.error({ err: err.message }, 'cannot reload the TLS certificate; keeping the running one');
    return running.tls;
  });
  return { config, accounts: running.accounts, directory, tls, dkim: await loadKeys(config, logger, readSecret) };
}

/** The DKIM keys; one that cannot be used, or a domain without one, is a warning: its mail goes unsigned. */
async function loadKeys(config: Config, logger: Logger, readSecret?: SecretReader): Promise<DkimKeys> {
  const { keys, unsigned, problems } = await loadDkimKeys(config, readSecret);
  for (const problem of problems) logger.warn({ problem }, 'DKIM key not used; mail from its domain is not signed');
  if (unsigned.length > 0)
    logger.warn(
      { domains: unsigned, keysDir: config.dkim.keys_dir },
      'no DKIM key for these domains: their mail is not signed (mailsrv dkim keygen DOMAIN makes one)',
    );
  if (!keys.empty) logger.info({ domains: keys.domains() }, 'DKIM keys loaded');
  return keys;
}

async function loadDirectory(
  config: Config,
  accounts: SystemAccounts | null,
  logger: Logger,
  readSecret?: SecretReader,
): Promise<Directory> {
  const { directory, problems } = await Directory.load(
    { usersFile: config.users_file, aliasesFile: config.aliases_file },
    localDomainMatcher(config),
    accounts,
    readSecret,
  );
  for (const problem of problems) logger.warn({ problem }, 'users or aliases file problem');
  return directory;
}
