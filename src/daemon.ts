// The daemon's life, in order: the start-up phases (each named, so a failure says which one),
// then the signals it answers: SIGHUP reloads (daemon/reload.ts), QUEUE_SIGNAL retries the
// queue, SIGTERM and SIGINT stop it gracefully (daemon/stop.ts). What the parts are and how
// they are wired together is in daemon/components.ts.
import type { Config } from './config/schema.js';
import { buildComponents, type Components } from './daemon/components.js';
import { bindListeners } from './daemon/listeners.js';
import { loadFiles } from './daemon/loaded.js';
import { phase } from './daemon/phase.js';
import { reload } from './daemon/reload.js';
import {
  announceReady,
  becomeDaemonUser,
  daemonIdentity,
  prepareStateDirectories,
  recoverMailboxes,
  startAccountHelper,
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
  const helper = await phase('start account helper', () => startAccountHelper(config, identity, logger));
  const parts = await phase('build', () => buildComponents(loaded, paths, logger, helper));
  await phase('bind listeners', () => bindListeners(parts.smtp, parts.pop3, config));
  await phase('drop privileges', () => becomeDaemonUser(identity, config, logger));
  await phase('recover mailboxes', () => recoverMailboxes(config, paths, logger));
  await phase('load queue', () => startQueue(parts));
  await phase('start pickup', () => {
    parts.pickup.start();
    // set before the pid file names this process, so the signal never finds the default action
    answerQueueSignal(parts, logger);
  });
  await phase('ready', () => announceReady(parts, loaded, paths, logger));

  process.on('SIGHUP', () => {
    reload(configFile, loaded, parts.reconfigure, logger).catch((err: Error) =>
      logger.error({ err: err.message }, 'reload failed; keeping the running config'),
    );
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    void stopDaemon(parts, paths, logger, signal);
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
