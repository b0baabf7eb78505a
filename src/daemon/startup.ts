// The steps of the daemon's start-up that touch the system: who to run as, the directories,
// the privilege drop, crash recovery, the queue, and the announcement that it is ready.
// daemon.ts runs them as named phases, in order.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AccountHelper } from '../accounts/helper-client.js';
import { PAM_SERVICE_DIR } from '../accounts/pam-service.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { recoverInterruptedExpunges } from '../mbox/expunge.js';
import { clearStaleLocks, type StaleLockInfo } from '../mbox/lock.js';
import { clearOwnUpdateMarkers, forgetOwnCrashes } from '../mbox/node-recovery.js';
import type { StatePaths } from '../paths.js';
import { runningPid, writePidFile } from '../pid-file.js';
import {
  checkWritable,
  dropPrivileges,
  type Identity,
  PrivilegeError,
  prepareDirectories,
  resolveIdentity,
  startedAsRoot,
} from '../privileges.js';
import { prepareDropDir } from '../queue/drop-dir.js';
import type { Components } from './components.js';
import { type Loaded, secretFilesOf } from './loaded.js';

/** How long start-up waits for a mailbox's lock to take this node's notes out of its spool files. */
const RECOVERY_LOCK_TIMEOUT_MS = 60_000;

/** As root: who to become once the ports are bound (a bad user or group stops the start); else null. */
/** A second `mailsrv start` on the same state_dir stops here, naming the one that runs (not at its ports). */
export async function refuseSecondDaemon(paths: StatePaths): Promise<void> {
  const pid = await runningPid(paths.pidFile);
  if (pid !== null && pid !== process.pid)
    throw new Error(`mailsrv is already running as pid ${pid} (${paths.pidFile}); \`mailsrv stop\` stops it`);
}

export function daemonIdentity(config: Config): Identity | null {
  return startedAsRoot() ? resolveIdentity(config.user, config.group) : null;
}

/**
 * Started as root: starts the root helper while this process is still root; else null. It reads
 * the secret files on SIGHUP (README, "Privileges") and, with accounts = "system", checks
 * passwords and creates mailboxes (README, "Using the box's Unix accounts").
 */
export async function startRootHelper(
  config: Config,
  identity: Identity | null,
  logger: Logger,
): Promise<AccountHelper | null> {
  const accounts = config.accounts === 'system';
  if (identity === null) {
    if (!accounts) return null;
    throw new PrivilegeError(
      'accounts = "system" needs mailsrv started as root: its helper checks Unix passwords and ' +
        "creates mailboxes owned by their users (it drops to 'user'/'group' for everything else)",
    );
  }
  const pamFile = join(PAM_SERVICE_DIR, config.pam_service);
  if (accounts && !existsSync(pamFile)) {
    logger.warn({ pamFile }, 'no PAM service file: PAM checks passwords with /etc/pam.d/other');
  }
  return AccountHelper.start(
    {
      spoolDir: resolve(config.spool_dir),
      minUid: config.system_min_uid,
      pamService: config.pam_service,
      mailGid: identity.gid,
      accounts,
      secretFiles: secretFilesOf(config),
    },
    logger,
  );
}

/**
 * Creates the spool and state directories (state_dir/acme with ACME on), handed to the daemon's
 * user, and opens the maildrop.
 */
export async function prepareStateDirectories(
  config: Config,
  paths: StatePaths,
  identity: Identity | null,
): Promise<void> {
  const acmeDir = config.acme.directory === '' ? [] : [paths.acmeDir];
  await prepareDirectories(
    {
      spool: config.spool_dir,
      state: [config.state_dir, paths.indexDir, paths.journalDir, ...acmeDir],
      sharedSpool: config.accounts === 'system',
    },
    identity,
  );
  // `mailsrv sendmail` drops mail here as any local user: state_dir 0711, maildrop 1733
  await prepareDropDir(config.state_dir, identity);
}

/** Becomes the daemon's user (when started as root) and checks it can write where it must. */
export async function becomeDaemonUser(identity: Identity | null, config: Config, logger: Logger): Promise<void> {
  if (identity !== null) {
    dropPrivileges(identity);
    logger.info(
      { user: identity.user, uid: identity.uid, group: identity.group, gid: identity.gid },
      'privileges dropped',
    );
  }
  await checkWritable({ spool_dir: config.spool_dir, state_dir: config.state_dir });
}

/**
 * Removes the mailbox locks of dead programs and completes or undoes the POP3 updates a crash
 * interrupted, before anyone reads or appends.
 */
export async function recoverMailboxes(config: Config, paths: StatePaths, logger: Logger): Promise<void> {
  const onStaleLock = (info: StaleLockInfo) =>
    logger.warn({ lock: info.path, reason: info.reason }, 'stale mailbox lock removed');
  await clearStaleLocks(config.spool_dir, onStaleLock);
  await recoverInterruptedExpunges(
    paths.journalDir,
    (info) => logger.warn({ mailbox: info.mailbox, action: info.action }, 'interrupted POP3 update recovered'),
    { onStaleBroken: onStaleLock },
  );
  await clearOwnUpdateMarkers(config.spool_dir);
}

/**
 * Loads every entry left in the queue, settles interrupted appends, and starts delivering; then
 * takes away this node's notes for deliveries it may not have recorded (node-recovery.ts).
 */
export async function startQueue(parts: Components, config: Config, logger: Logger): Promise<void> {
  await parts.store.init();
  await parts.manager.start();
  const skipped = await forgetOwnCrashes(config.spool_dir, {
    timeoutMs: RECOVERY_LOCK_TIMEOUT_MS,
    onStaleBroken: (info) => logger.warn({ lock: info.path, reason: info.reason }, 'stale mailbox lock removed'),
    now: Date.now(),
  });
  for (const mailbox of skipped) logger.warn({ mailbox }, 'mailbox locked: its unsettled deliveries note stays');
}

/** Lets the waiting sessions in, writes the pid file, and logs `ready`. */
export async function announceReady(
  parts: Components,
  loaded: Loaded,
  paths: StatePaths,
  logger: Logger,
): Promise<void> {
  parts.open();
  await writePidFile(paths.pidFile);
  const { config, tls } = loaded;
  logger.info(
    {
      pid: process.pid,
      smtp: config.smtp.listen,
      submission: config.smtp.submission,
      smtps: config.smtp.smtps,
      pop3: config.pop3.listen,
      pop3s: config.pop3.pop3s,
      autoconfig: config.autoconfig.listen,
      tls: tls === null ? 'off' : { validTo: tls.validTo.toISOString() },
      queued: parts.manager.size,
    },
    'ready',
  );
}
