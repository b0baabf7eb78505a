// The daemon's life, in order: the start-up phases (each named, so a failure says which one),
// then the signals it answers: SIGHUP reloads (daemon/reload.ts), QUEUE_SIGNAL retries the
// queue, SIGTERM and SIGINT stop it gracefully (daemon/stop.ts). What the parts are and how
// they are wired together is in daemon/components.ts.
import type { Config } from './config/schema.js';
import { buildComponents, type Components } from './daemon/components.js';
import { bindListeners } from './daemon/listeners.js';
import { loadFiles } from './daemon/loaded.js';
import { Monitoring } from './daemon/monitoring.js';
import { phase } from './daemon/phase.js';
import { reload } from './daemon/reload.js';
import {
  announceReady,
  becomeDaemonUser,
  daemonIdentity,
  prepareStateDirectories,
  recoverMailboxes,
  startQueue,
} from './daemon/startup.js';
import { stopDaemon } from './daemon/stop.js';
import type { Logger } from './log.js';
import { statePaths } from './paths.js';
import { QUEUE_SIGNAL } from './queue/signal.js';

/** Starts the daemon from `config` (read from `configFile`, which SIGHUP reads again); a failure is a StartupError. */
export async function runDaemon(configFile: string, config: Config, logger: Logger): Promise<void> {
  const paths = statePaths(config.state_dir);
  const identity = await phase('resolve user', () => daemonIdentity(config));
  await phase('prepare directories', () => prepareStateDirectories(config, paths, identity));
  const loaded = await phase('load certificate, users and aliases', () => loadFiles(config, logger));
  const parts = await phase('build', () => buildComponents(loaded, paths, logger));
  const monitoring = new Monitoring(config, paths, parts, loaded, logger);
  await phase('bind listeners', () => bindListeners(parts.smtp, parts.pop3, config));
  await phase('bind metrics listeners', () => monitoring.listen());
  await phase('drop privileges', () => becomeDaemonUser(identity, config, logger));
  await phase('recover mailboxes', () => recoverMailboxes(config, paths, logger));
  await phase('load queue', () => startQueue(parts));
  await phase('start pickup', () => {
    parts.pickup.start();
    // set before the pid file names this process, so the signal never finds the default action
    answerQueueSignal(parts, logger);
  });
  await phase('ready', async () => {
    await announceReady(parts, loaded, paths, logger);
    await monitoring.ready();
  });

  process.on('SIGHUP', () => {
    monitoring.reloading();
    reload(configFile, loaded, parts.reconfigure, logger).then(
      () => monitoring.reloaded(null),
      (err: Error) => {
        logger.error({ err: err.message }, 'reload failed; keeping the running config');
        monitoring.reloaded(err);
      },
    );
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    monitoring.stopping();
    void stopDaemon(parts, paths, logger, signal, () => monitoring.stopped());
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** `mailsrv queue flush`, and `queue delete` (so the manager forgets the entry at once). */
function answerQueueSignal(parts: Components, logger: Logger): void {
  process.on(QUEUE_SIGNAL, () => {
    logger.info('queue flush requested');
    parts.manager.flush().catch((err: Error) => logger.error({ err: err.message }, 'queue flush failed'));
    void parts.pickup.scan();
  });
}
