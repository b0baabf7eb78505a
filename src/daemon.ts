// The composition root: builds every part from a Config, opens the listeners, and owns
// the process's life (pid file, SIGHUP reload, SIGTERM/SIGINT graceful stop).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from './config/schema.js';
import { localDomainMatcher } from './config/domains.js';
import { networkMatcher } from './config/networks.js';
import { durationMs, parseListen } from './config/units.js';
import { Directory } from './delivery/directory.js';
import { LocalDelivery } from './delivery/local.js';
import type { Logger } from './log.js';
import { clearStaleLocks } from './mbox/lock.js';
import { mailboxSize } from './mbox/append.js';
import { QueueManager } from './queue/manager.js';
import { QueueStore } from './queue/store.js';
import type { MailsrvSMTPServer } from './smtp/connection.js';
import { SmtpPolicy } from './smtp/policy.js';
import { createSmtpServer } from './smtp/server.js';

export function pidFilePath(config: Config): string {
  return join(config.state_dir, 'mailsrv.pid');
}

export async function runDaemon(config: Config, logger: Logger): Promise<void> {
  await mkdir(config.spool_dir, { recursive: true, mode: 0o775 });
  await mkdir(config.state_dir, { recursive: true, mode: 0o700 });
  await clearStaleLocks(config.spool_dir, (info) => logger.warn({ lock: info.path, reason: info.reason }, 'stale mailbox lock removed'));

  const isLocalDomain = localDomainMatcher(config);
  const policy = new SmtpPolicy({
    hostname: config.hostname,
    isLocalDomain,
    mynetworks: networkMatcher(config.mynetworks),
    directory: () => directory,
    mailboxSizeLimit: config.mailbox_size_limit,
    mailboxSize: (user) => mailboxSize(join(config.spool_dir, user)),
  });
  let directory = await loadDirectory(config, isLocalDomain, logger);

  const store = new QueueStore(config.state_dir);
  await store.init();
  const local = new LocalDelivery({
    spoolDir: config.spool_dir,
    hostname: config.hostname,
    mailboxSizeLimit: config.mailbox_size_limit,
    lockTimeoutMs: durationMs(config.delivery.lock_timeout),
    store,
    userExists: (user) => directory.users.has(user),
    logger,
  });
  const manager = new QueueManager({
    store,
    local,
    logger,
    concurrency: config.delivery.concurrency,
    localRetryMs: config.delivery.retry.map(durationMs),
    remoteRetryMs: config.relay.retry.map(durationMs),
    maxLifetimeMs: durationMs(config.relay.max_queue_lifetime),
  });
  const smtpCommon = {
    hostname: config.hostname,
    messageSizeLimit: config.message_size_limit,
    maxClients: config.smtp.max_clients,
    maxRecipients: config.smtp.max_recipients,
    timeoutMs: durationMs(config.smtp.timeout),
    greetPauseMs: durationMs(config.smtp.greet_pause),
    vrfy: config.smtp.vrfy,
    policy,
    store,
    onQueued: (entry: Parameters<QueueManager['add']>[0]) => manager.add(entry),
    logger,
  };
  const servers: { server: MailsrvSMTPServer; address: string }[] = [
    ...config.smtp.listen.map((address) => ({ server: createSmtpServer({ ...smtpCommon, kind: 'mx' }), address })),
    ...config.smtp.submission.map((address) => ({ server: createSmtpServer({ ...smtpCommon, kind: 'submission' }), address })),
  ];
  for (const { server, address } of servers) await listen(server, address);

  await manager.start();
  await writeFile(pidFilePath(config), `${process.pid}\n`);
  logger.info({ pid: process.pid, smtp: config.smtp.listen, submission: config.smtp.submission, queued: manager.size }, 'ready');

  process.on('SIGHUP', () => {
    loadDirectory(config, isLocalDomain, logger).then(
      (fresh) => {
        directory = fresh;
        logger.info({ users: fresh.users.names().length, aliases: fresh.aliases.size }, 'reloaded users and aliases');
      },
      (err: Error) => logger.error({ err: err.message }, 'reload failed; keeping the previous users and aliases'),
    );
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: no new connections, finishing messages in progress');
    await Promise.all(servers.map(({ server }) => closeGracefully(server)));
    await manager.stop();
    await rm(pidFilePath(config), { force: true });
    logger.info('stopped');
    logger.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

async function loadDirectory(config: Config, isLocalDomain: (domain: string) => boolean, logger: Logger): Promise<Directory> {
  const { directory, problems } = await Directory.load(config.users_file, config.aliases_file, isLocalDomain);
  for (const problem of problems) logger.warn({ problem }, 'aliases file problem');
  return directory;
}

function listen(server: MailsrvSMTPServer, address: string): Promise<void> {
  const { host, port } = parseListen(address)!;
  return new Promise((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => {
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

/** The pid of the running daemon, from its pid file, or null when none runs. */
export async function runningPid(config: Config): Promise<number | null> {
  let pid: number;
  try {
    pid = Number((await readFile(pidFilePath(config), 'utf8')).trim());
    process.kill(pid, 0);
  } catch {
    return null;
  }
  return pid;
}
