// The daemon's life, in order: the start-up phases (each named, so a failure says which one),
// then the signals it answers: SIGHUP reloads (daemon/reload.ts), QUEUE_SIGNAL looks at the
// queue again, SIGTERM and SIGINT stop it gracefully (daemon/stop.ts). What the parts are and how
// they are wired together is in daemon/components.ts.
import { AcmeCertificates } from './acme/certificates.js';
import { systemClock } from './clock.js';
import type { Config } from './config/schema.js';
import { buildComponents, type Components } from './daemon/components.js';
import { bindListeners } from './daemon/listeners.js';
import { type Loaded, loadFiles } from './daemon/loaded.js';
import { loadSrsSecret } from './forward/srs.js';
import { Monitoring } from './daemon/monitoring.js';
import { phase } from './daemon/phase.js';
import { reload } from './daemon/reload.js';
import {
  announceReady,
  becomeDaemonUser,
  daemonIdentity,
  prepareStateDirectories,
  recoverMailboxes,
  refuseSecondDaemon,
  startRootHelper,
  startQueue,
} from './daemon/startup.js';
import { stopDaemon } from './daemon/stop.js';
import type { Logger } from './log.js';
import { setThisNode } from './mbox/node.js';
import { type StatePaths, statePaths } from './paths.js';
import { QUEUE_SIGNAL, takeFlushRequest } from './queue/signal.js';
import { readSecretDirectly } from './secret-reader.js';

/** Starts the daemon from `config` (read from `configFile`, which SIGHUP reads again); a failure is a StartupError. */
export async function runDaemon(configFile: string, config: Config, logger: Logger): Promise<void> {
  const paths = statePaths(config.state_dir);
  setThisNode(config.state_dir);
  await phase('check not running', () => refuseSecondDaemon(paths));
  const identity = await phase('resolve user', () => daemonIdentity(config));
  await phase('prepare directories', () => prepareStateDirectories(config, paths, identity));
  const acme = await phase('load ACME certificate', () => AcmeCertificates.open(config, paths.acmeDir, logger));
  const loaded = await phase('load certificate, users and aliases', () => loadFiles(config, logger));
  if (acme !== null) loaded.tls = acme.serving(loaded.tls);
  const helper = await phase('start root helper', () => startRootHelper(config, identity, logger));
  const srsSecret = await phase('load SRS secret', () => loadSrsSecret(paths.srsKey, identity));
  const parts = await phase('build', () => buildComponents(loaded, paths, acme, srsSecret, logger, helper));
  const monitoring = new Monitoring(config, paths, parts, loaded, logger);
  await phase('bind listeners', async () => {
    await bindListeners(parts.smtp, parts.pop3, parts.autoconfig, config);
    await acme?.listen();
  });
  await phase('bind metrics listeners', () => monitoring.listen());
  await phase('drop privileges', () => becomeDaemonUser(identity, config, logger));
  await phase('recover mailboxes', () => recoverMailboxes(config, paths, logger));
  await phase('load queue', () => startQueue(parts, config, logger));
  await phase('start pickup', () => {
    parts.pickup.start();
    // set before the ready line and the pid file name this process, so no signal finds its
    // default action (for SIGHUP: the end of the process)
    answerQueueSignal(parts, paths, logger);
    answerReloadAndStop(configFile, loaded, parts, paths, acme, monitoring, logger);
  });
  await phase('ready', async () => {
    await announceReady(parts, loaded, paths, logger);
    await monitoring.ready();
  });
  acme?.start(systemClock, async (tls) => {
    parts.useCertificate(tls);
    await monitoring.certificateChanged();
  });
}

/** SIGHUP reloads (daemon/reload.ts); SIGTERM and SIGINT stop gracefully (daemon/stop.ts). */
function answerReloadAndStop(
  configFile: string,
  loaded: Loaded,
  parts: Components,
  paths: StatePaths,
  acme: AcmeCertificates | null,
  monitoring: Monitoring,
  logger: Logger,
): void {
  process.on('SIGHUP', () => {
    monitoring.reloading();
    reload(
      configFile,
      loaded,
      parts.reconfigure,
      acme,
      parts.accountHelper?.readSecret ?? readSecretDirectly,
      logger,
    ).then(
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

/** `mailsrv queue delete` and `queue flush` (see queue/signal.ts), and `sendmail` for the maildrop. */
function answerQueueSignal(parts: Components, paths: StatePaths, logger: Logger): void {
  process.on(QUEUE_SIGNAL, () => {
    void parts.pickup.scan();
    const lookAgain = async () => {
      const forgotten = await parts.manager.forgetDeleted();
      const flush = await takeFlushRequest(paths.flushRequest);
      const retried = flush ? parts.manager.retryDeferredNow() : 0;
      logger.info({ flush, forgotten, retried }, 'queue signal handled');
    };
    lookAgain().catch((err: Error) => logger.error({ err: err.message }, 'queue signal failed'));
  });
}
