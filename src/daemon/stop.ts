// The graceful stop (SIGTERM, SIGINT): no new connections, the messages in progress are
// finished, deliveries in progress wait, then the pid file goes and the process exits.
import { exitProcess, type Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import { removePidFile } from '../pid-file.js';
import type { Components } from './components.js';
import { closeListeners } from './listeners.js';

/** `lastly` runs once everything else is done, before `stopped` is logged. */
export async function stopDaemon(
  parts: Components,
  paths: StatePaths,
  logger: Logger,
  signal: string,
  lastly: () => Promise<void>,
): Promise<never> {
  logger.info({ signal }, 'stopping: no new connections, finishing messages in progress');
  await closeListeners(parts.smtp, parts.pop3, parts.autoconfig);
  await parts.acme?.stop();
  await parts.pickup.stop();
  await parts.manager.stop();
  await parts.local.close();
  parts.accountHelper?.stop();
  await removePidFile(paths.pidFile);
  await lastly();
  logger.info('stopped');
  logger.flush();
  exitProcess(0);
}
