// What the daemon reads from files besides its state, at start and again on SIGHUP: the config,
// the users and aliases, and the TLS certificate. The running parts read the users, aliases and
// certificate through one Loaded object, which a reload updates in place. With accounts =
// "system" the users are the box's accounts, looked up as needed (the lookups' cache is kept
// across reloads: accounts and system_min_uid only change at a restart).
import { SystemAccounts } from '../accounts/system-accounts.js';
import { localDomainMatcher } from '../config/domains.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { Directory } from '../delivery/directory.js';
import type { Logger } from '../log.js';
import { loadTlsCredentials, type TlsCredentials } from '../tls/credentials.js';

export interface Loaded {
  config: Config;
  directory: Directory;
  /** the Unix accounts when accounts = "system", else null */
  accounts: SystemAccounts | null;
  /** null: TLS is off */
  tls: TlsCredentials | null;
}

/** At start: a certificate that cannot be read stops the start. */
export async function loadFiles(config: Config, logger: Logger): Promise<Loaded> {
  const tls = await loadTlsCredentials(config.tls);
  const accounts = config.accounts === 'system' ? new SystemAccounts({ minUid: config.system_min_uid }) : null;
  return { config, accounts, directory: await loadDirectory(config, accounts, logger), tls };
}

/**
 * On SIGHUP: the config and the users and aliases must load, or the reload fails. A certificate
 * that cannot be read (say, a root-only key: SIGHUP reads as the daemon's user) must not stop
 * them from reloading: the running one is kept.
 */
export async function reloadFiles(configFile: string, running: Loaded, logger: Logger): Promise<Loaded> {
  const config = loadConfig(configFile);
  const directory = await loadDirectory(config, running.accounts, logger);
  const tls = await loadTlsCredentials(config.tls).catch((err: Error) => {
    logger.error({ err: err.message }, 'cannot reload the TLS certificate; keeping the running one');
    return running.tls;
  });
  return { config, accounts: running.accounts, directory, tls };
}

async function loadDirectory(config: Config, accounts: SystemAccounts | null, logger: Logger): Promise<Directory> {
  const { directory, problems } = await Directory.load(
    { usersFile: config.users_file, aliasesFile: config.aliases_file },
    localDomainMatcher(config),
    accounts,
  );
  for (const problem of problems) logger.warn({ problem }, 'users or aliases file problem');
  return directory;
}
