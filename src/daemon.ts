// The composition root: builds every part from a Config, opens the listeners, drops root
// privileges, and owns the process's life (pid file, SIGHUP reload, SIGTERM/SIGINT graceful stop).
import { isDeepStrictEqual } from 'node:util';
import { Authenticator, type AuthSettings } from './auth/authenticator.js';
import { countHops } from './message/hops.js';
import { BounceNotifier } from './bounce/notifier.js';
import { localDomainMatcher } from './config/domains.js';
import { loadConfig } from './config/load.js';
import { networkMatcher } from './config/networks.js';
import type { Config } from './config/schema.js';
import { durationMs, listenOptions, parseListen } from './config/units.js';
import { Directory } from './delivery/directory.js';
import { LocalDelivery } from './delivery/local.js';
import { routeAddresses } from './delivery/route.js';
import type { Logger } from './log.js';
import { recoverInterruptedExpunges } from './mbox/expunge.js';
import { clearStaleLocks, type StaleLockInfo } from './mbox/lock.js';
import { statePaths } from './paths.js';
import { removePidFile, writePidFile } from './pid-file.js';
import { createPop3Server, type Pop3Settings } from './pop3/server.js';
import { checkWritable, dropPrivileges, prepareDirectories, resolveIdentity, startedAsRoot } from './privileges.js';
import { Injector } from './queue/inject.js';
import { prepareMaildrop } from './queue/maildrop.js';
import { MaildropPickup, queueThrough } from './queue/pickup.js';
import { QUEUE_SIGNAL } from './queue/signal.js';
import { QueueManager } from './queue/manager.js';
import { QueueStore } from './queue/store.js';
import { RemoteDelivery, type RemoteSettings } from './relay/agent.js';
import type { MailsrvSMTPServer } from './smtp/connection.js';
import { SmtpPolicy } from './smtp/policy.js';
import { createSmtpServer, type SmtpListenerKind, type SmtpService, type SmtpSettings } from './smtp/server.js';
import { loadTlsCredentials } from './tls/credentials.js';

/** Keys that only take effect at start; SIGHUP says so when they changed. */
const RESTART_KEYS = [
  'spool_dir',
  'state_dir',
  'user',
  'group',
  'smtp.listen',
  'smtp.submission',
  'smtp.smtps',
  'pop3.listen',
  'pop3.pop3s',
] as const;

export async function runDaemon(configFile: string, initial: Config, logger: Logger): Promise<void> {
  let config = initial;
  const paths = statePaths(config.state_dir);
  // as root: who to become once the ports are bound (a bad user/group stops the start here)
  const identity = startedAsRoot() ? resolveIdentity(config.user, config.group) : null;
  await prepareDirectories(
    { spool: config.spool_dir, state: [config.state_dir, paths.indexDir, paths.journalDir] },
    identity,
  );
  // `mailsrv sendmail` drops mail here as any local user: state_dir 0711, maildrop 1733
  await prepareMaildrop(config.state_dir, identity);
  let tls = await loadTlsCredentials(config.tls);
  let directory = await loadDirectory(config, logger);

  // sessions wait for this: the listeners are bound before the mail is safe to touch
  let opened!: () => void;
  const ready = new Promise<void>((resolve) => {
    opened = resolve;
  });
  const authenticator = new Authenticator(() => directory.users, authSettings(config));
  const policy = new SmtpPolicy({
    ...policySettings(config),
    directory: () => directory,
    mailboxSize: (user) => local.mailboxSize(user),
  });
  const store = new QueueStore(config.state_dir);
  const local = new LocalDelivery({
    ...localSettings(config),
    spoolDir: config.spool_dir,
    store,
    userExists: (user) => directory.users.has(user),
    logger,
  });
  const injector = new Injector({
    store,
    route: (addresses) =>
      routeAddresses(addresses, { hostname: config.hostname, isLocalDomain: localDomainMatcher(config), directory }),
    onQueued: (entry) => manager.add(entry),
  });
  const remote = new RemoteDelivery({ ...remoteSettings(config), store, logger });
  const manager: QueueManager = new QueueManager({
    ...managerSettings(config),
    store,
    local,
    remote,
    notifier: new BounceNotifier({
      store,
      injector,
      settings: () => ({ hostname: config.hostname, maxLifetimeMs: durationMs(config.relay.max_queue_lifetime) }),
    }),
    hops: (entry) => countHops(store.openMessage(entry)),
    logger,
  });
  const service = (kind: SmtpListenerKind, address: string) => ({
    address,
    service: createSmtpServer({
      kind,
      settings: smtpSettings(config),
      tls,
      ready,
      policy,
      authenticator,
      store,
      deliverNow: (envelope, source) => local.deliverNow(envelope, source),
      onQueued: (entry) => manager.add(entry),
      logger,
    }),
  });
  const listeners: { service: SmtpService; address: string }[] = [
    ...config.smtp.listen.map((address) => service('mx', address)),
    ...config.smtp.submission.map((address) => service('submission', address)),
    ...config.smtp.smtps.map((address) => service('smtps', address)),
  ];
  for (const { service, address } of listeners) await listen(service.server, address);
  const pop3 = createPop3Server({
    settings: pop3Settings(config),
    tls: () => tls,
    ready,
    spoolDir: config.spool_dir,
    indexDir: paths.indexDir,
    journalDir: paths.journalDir,
    authenticator,
    logger,
  });
  for (const address of config.pop3.listen) await pop3.listen(parseListen(address)!, { implicitTls: false });
  for (const address of config.pop3.pop3s) await pop3.listen(parseListen(address)!, { implicitTls: true });

  if (identity !== null) {
    dropPrivileges(identity);
    logger.info(
      { user: identity.user, uid: identity.uid, group: identity.group, gid: identity.gid },
      'privileges dropped',
    );
  }
  await checkWritable({ spool_dir: config.spool_dir, state_dir: config.state_dir });
  const onStaleLock = (info: StaleLockInfo) =>
    logger.warn({ lock: info.path, reason: info.reason }, 'stale mailbox lock removed');
  await clearStaleLocks(config.spool_dir, onStaleLock);
  // a POP3 update that a crash interrupted is completed or undone before anyone reads or appends
  await recoverInterruptedExpunges(
    paths.journalDir,
    (info) => logger.warn({ mailbox: info.mailbox, action: info.action }, 'interrupted POP3 update recovered'),
    { onStaleBroken: onStaleLock },
  );
  await store.init();
  await manager.start();
  const pickup = new MaildropPickup({
    dir: paths.maildropDir,
    messageSizeLimit: config.message_size_limit,
    logger,
    inject: queueThrough(injector, logger),
  });
  pickup.start();
  // `mailsrv queue flush`, and `queue delete` (so the manager forgets the entry at once); set
  // before the pid file names this process, so a signal never finds the default action
  process.on(QUEUE_SIGNAL, () => {
    logger.info('queue flush requested');
    manager.flush().catch((err: Error) => logger.error({ err: err.message }, 'queue flush failed'));
    void pickup.scan();
  });
  opened();
  await writePidFile(paths.pidFile);
  logger.info(
    {
      pid: process.pid,
      smtp: config.smtp.listen,
      submission: config.smtp.submission,
      smtps: config.smtp.smtps,
      pop3: config.pop3.listen,
      pop3s: config.pop3.pop3s,
      tls: tls === null ? 'off' : { validTo: tls.validTo.toISOString() },
      queued: manager.size,
    },
    'ready',
  );

  const reload = async () => {
    const fresh = loadConfig(configFile);
    const freshDirectory = await loadDirectory(fresh, logger);
    // a certificate that cannot be read (say, a root-only key: SIGHUP reads as the daemon's
    // user) must not stop users, aliases and settings from reloading
    const freshTls = await loadTlsCredentials(fresh.tls).catch((err: Error) => {
      logger.error({ err: err.message }, 'cannot reload the TLS certificate; keeping the running one');
      return tls;
    });
    const needRestart = RESTART_KEYS.filter((key) => !isDeepStrictEqual(valueAt(config, key), valueAt(fresh, key)));
    if (needRestart.length > 0) logger.warn({ keys: needRestart }, 'these changes take effect at the next start');
    config = fresh;
    directory = freshDirectory;
    tls = freshTls;
    logger.level = fresh.log.level;
    authenticator.reconfigure(authSettings(fresh));
    policy.reconfigure(policySettings(fresh));
    local.reconfigure(localSettings(fresh));
    manager.reconfigure(managerSettings(fresh));
    pickup.reconfigure({ messageSizeLimit: fresh.message_size_limit });
    remote.reconfigure(remoteSettings(fresh));
    for (const { service } of listeners) service.reconfigure(smtpSettings(fresh), freshTls);
    pop3.reconfigure(pop3Settings(fresh));
    logger.info(
      {
        users: freshDirectory.users.names().length,
        aliases: freshDirectory.aliases.size,
        tls: tls === null ? 'off' : { validTo: tls.validTo.toISOString() },
      },
      'reloaded config, users, aliases and TLS certificate',
    );
  };
  process.on('SIGHUP', () => {
    reload().catch((err: Error) => logger.error({ err: err.message }, 'reload failed; keeping the running config'));
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: no new connections, finishing messages in progress');
    await Promise.all([...listeners.map(({ service }) => closeGracefully(service.server)), pop3.shutdown()]);
    await pickup.stop();
    await manager.stop();
    await local.close();
    await removePidFile(paths.pidFile);
    logger.info('stopped');
    logger.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

function policySettings(config: Config) {
  return {
    hostname: config.hostname,
    isLocalDomain: localDomainMatcher(config),
    mynetworks: networkMatcher(config.mynetworks),
    mailboxSizeLimit: config.mailbox_size_limit,
  };
}

function authSettings(config: Config): AuthSettings {
  return {
    failureDelayMs: durationMs(config.auth.failure_delay),
    maxFailures: config.auth.max_failures,
    lockoutMs: durationMs(config.auth.lockout),
    cacheTtlMs: durationMs(config.auth.cache_ttl),
  };
}

function localSettings(config: Config) {
  return {
    hostname: config.hostname,
    mailboxSizeLimit: config.mailbox_size_limit,
    lockTimeoutMs: durationMs(config.delivery.lock_timeout),
  };
}

function remoteSettings(config: Config): RemoteSettings {
  return {
    hostname: config.hostname,
    relayhost: config.relay.relayhost,
    relayhostUser: config.relay.relayhost_user,
    relayhostPasswordFile: config.relay.relayhost_password_file,
    tlsSecurity: config.relay.tls_security,
    dnsServers: config.relay.dns_servers,
    connectTimeoutMs: durationMs(config.relay.connect_timeout),
    timeoutMs: durationMs(config.relay.timeout),
    ownListeners: [...config.smtp.listen, ...config.smtp.submission, ...config.smtp.smtps].map(
      (address) => parseListen(address)!,
    ),
  };
}

function managerSettings(config: Config) {
  return {
    concurrency: config.delivery.concurrency,
    remoteConcurrency: config.relay.concurrency,
    destinationConcurrency: config.relay.destination_concurrency,
    delayWarningMs: durationMs(config.relay.delay_warning),
    localRetryMs: config.delivery.retry.map(durationMs),
    remoteRetryMs: config.relay.retry.map(durationMs),
    maxLifetimeMs: durationMs(config.relay.max_queue_lifetime),
  };
}

function smtpSettings(config: Config): SmtpSettings {
  return {
    hostname: config.hostname,
    messageSizeLimit: config.message_size_limit,
    maxClients: config.smtp.max_clients,
    maxRecipients: config.smtp.max_recipients,
    timeoutMs: durationMs(config.smtp.timeout),
    greetPauseMs: durationMs(config.smtp.greet_pause),
    vrfy: config.smtp.vrfy,
    senderLoginMatch: config.smtp.sender_login_match,
    plaintextAuth: networkMatcher(config.plaintext_auth_networks),
  };
}

function pop3Settings(config: Config): Pop3Settings {
  return {
    maxClients: config.pop3.max_clients,
    timeoutMs: durationMs(config.pop3.timeout),
    lockTimeoutMs: durationMs(config.delivery.lock_timeout),
    plaintextAuth: networkMatcher(config.plaintext_auth_networks),
  };
}

function valueAt(config: Config, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown>)[part], config);
}

async function loadDirectory(config: Config, logger: Logger): Promise<Directory> {
  const { directory, problems } = await Directory.load(
    config.users_file,
    config.aliases_file,
    localDomainMatcher(config),
  );
  for (const problem of problems) logger.warn({ problem }, 'users or aliases file problem');
  return directory;
}

function listen(server: MailsrvSMTPServer, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.server.once('error', reject);
    server.server.listen(listenOptions(parseListen(address)!), () => {
      server.server.off('error', reject);
      resolve();
    });
  });
}

/** Stops accepting, lets messages in DATA finish, then sends 421 to everyone still connected. */
async function closeGracefully(server: MailsrvSMTPServer): Promise<void> {
  const closed = new Promise<void>((resolve) => server.server.close(() => resolve()));
  const deadline = Date.now() + 60_000;
  while (server.shutdownIdleSessions() > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  for (const connection of server.connections) connection.close();
  await closed;
}
