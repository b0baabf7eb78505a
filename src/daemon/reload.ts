// SIGHUP: reads the config, users, aliases and certificate again, says which changed keys wait
// for a restart, and hands every running part its settings from the new config (live-settings.ts).
// With ACME on, an issued certificate stays in use whatever [tls] now says.
import type { AcmeCertificates } from '../acme/certificates.js';
import type { Logger } from '../log.js';
import type { SecretReader } from '../secret-reader.js';
import { applyLiveSettings, type Reconfigurers, restartOnlyChanges } from './live-settings.js';
import { type Loaded, reloadFiles } from './loaded.js';

/**
 * Reloads into `loaded` (which the running parts read) and reconfigures every part. Rejects,
 * with nothing changed, when the config or the users or aliases cannot be read. `readSecret`
 * reads the secret files (the root helper when started as root).
 */
export async function reload(
  configFile: string,
  loaded: Loaded,
  reconfigure: Reconfigurers,
  acme: AcmeCertificates | null,
  readSecret: SecretReader,
  logger: Logger,
): Promise<void> {
  const fresh = await reloadFiles(configFile, loaded, readSecret, logger);
  if (acme !== null) fresh.tls = acme.serving(fresh.tls);
  const needRestart = restartOnlyChanges(loaded.config, fresh.config);
  if (needRestart.length > 0) logger.warn({ keys: needRestart }, 'these changes take effect at the next start');
  Object.assign(loaded, fresh);
  applyLiveSettings(fresh.config, reconfigure, (part, err) =>
    logger.error({ part, err: err.message }, 'cannot apply the new settings to this part; it keeps the running ones'),
  );
  logger.info(
    {
      users: fresh.directory.users.names().length,
      aliases: fresh.directory.aliases.size,
      tls: fresh.tls === null ? 'off' : { validTo: fresh.tls.validTo.toISOString() },
    },
    'reloaded config, users, aliases and TLS certificate',
  );
}
