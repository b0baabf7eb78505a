// The graceful stop (SIGTERM, SIGINT): no new connections, the messages in progress are
// finished, deliveries in progress wait, then the pid file goes and the process exits.
import { exitProcess, type Logger } from '../log.js';
import type { StatePaths } from '../paths.js';
import { removePidFile } from '../pid-file.js';
import type { Components } from './components.js';
import { closeListeners } from './listeners.js';

export async function stopDaemon(parts: Components, paths: StatePaths, logger: Logger, signal: string): Promise<never> {
  logger.info({ signal }, 'stopping: no new connections, finishing messages in progress');
  await closeListeners(parts.smtp, parts.pop3, parts.autoconfig);
  await parts.acme?.stop();
  await parts.pickup.stop();
  await parts.manager.stop();
  await parts.local.close();
  await removePidFile(paths.pidFile);
  logger.info('stopped');
  logger.flush();
  exitProcess(0);
}
