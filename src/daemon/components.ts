// Builds every part of the running daemon from what was loaded, wired together (nothing is
// read, written or bound here), and the table that SIGHUP uses to hand each part its new
// settings (see live-settings.ts). The parts read the users, aliases and certificate through
// `loaded`, so a reload that replaces them there reaches every part at once.
import type { AcmeCertificates } from '../acme/certificates.js';
import type { AccountHelper } from '../accounts/helper-client.js';
import { accountMailboxes, daemonMailboxes } from '../accounts/mailboxes.js';
import { SystemPasswords } from '../accounts/system-passwords.js';
import { AutoconfigServer } from '../autoconfig/server.js';
import { mailSite, servicePorts } from '../autoconfig/site.js';
import { Authenticator } from '../auth/authenticator.js';
import { systemClock } from '../clock.js';
import { BounceNotifier } from '../bounce/notifier.js';
import { InboundChecks } from '../checks/inbound.js';
import { LocalDelivery } from '../delivery/local.js';
import { SubmissionSigner } from '../dkim/submission.js';
import { Srs } from '../forward/srs.js';
import { routeAddresses } from '../delivery/route.js';
import type { Logger } from '../log.js';
import { countHops } from '../message/hops.js';
import { ConnectionLimits } from '../net/connection-limits.js';
import type { StatePaths } from '../paths.js';
import { createPop3Server, type Pop3Service } from '../pop3/server.js';
import { Injector } from '../queue/inject.js';
import { QueueManager } from '../queue/manager.js';
import { DropDirPickup, queueThrough } from '../queue/pickup.js';
import { QueueStore } from '../queue/store.js';
import { RemoteDelivery } from '../relay/agent.js';
import { SmtpPolicy } from '../smtp/policy.js';
import { createSmtpServer, type SmtpListenerKind, type SmtpService } from '../smtp/server.js';
import type { TlsCredentials } from '../tls/credentials.js';
import { isOnLocalFilesystem } from '../filesystem-kind.js';
import { liveSettings, type Reconfigurers } from './live-settings.js';
import type { Loaded } from './loaded.js';

export interface SmtpListener {
  address: string;
  service: SmtpService;
}

export interface Components {
  store: QueueStore;
  local: LocalDelivery;
  manager: QueueManager;
  /** smtp.listen, then smtp.submission, then smtp.smtps, in config order */
  smtp: SmtpListener[];
  pop3: Pop3Service;
  pickup: DropDirPickup;
  /** the mail client setup answers (autoconfig.listen) */
  autoconfig: AutoconfigServer;
  /** certificates by ACME; null: off */
  acme: AcmeCertificates | null;
  /** serves `tls` from the next TLS handshake on, on every listener; sessions keep theirs */
  useCertificate(tls: TlsCredentials): void;
  /** client connections open now, per protocol */
  sessions(): { smtp: number; pop3: number };
  /** started as root: the root helper (stopped with the daemon) */
  accountHelper: AccountHelper | null;
  /** lets the sessions waiting to be greeted go on: the mail is safe to touch */
  open(): void;
  reconfigure: Reconfigurers;
}

export function buildComponents(
  loaded: Loaded,
  paths: StatePaths,
  acme: AcmeCertificates | null,
  srsSecret: Buffer,
  logger: Logger,
  accountHelper: AccountHelper | null = null,
): Components {
  const { config } = loaded;
  const srs = new Srs(srsSecret);
  // sessions wait for this: the listeners are bound before the mail is safe to touch
  let open!: () => void;
  const ready = new Promise<void>((resolve) => {
    open = resolve;
  });
  let routing = liveSettings.routing(config);
  let bounces = liveSettings.bounces(config);
  let proxyNetworks = liveSettings.proxyNetworks(config);

  const accounts = accountHelper === null ? null : loaded.accounts;
  const mailboxes =
    accountHelper === null || accounts === null
      ? daemonMailboxes
      : accountMailboxes(accounts, (login, path) => accountHelper.createMailbox(login, path));
  const authenticator = new Authenticator(
    () => loaded.directory.users,
    liveSettings.auth(config),
    systemClock,
    accountHelper === null || accounts === null ? null : new SystemPasswords(accountHelper),
  );
  const smtpConnections = new ConnectionLimits('smtp', liveSettings.smtpConnections(config), logger);
  const pop3Connections = new ConnectionLimits('pop3', liveSettings.pop3Connections(config), logger);
  const store = new QueueStore(config.state_dir);
  const spoolIsLocal = isOnLocalFilesystem(config.spool_dir);
  const local = new LocalDelivery({
    ...liveSettings.local(config),
    spoolDir: config.spool_dir,
    store,
    userExists: (user) => loaded.directory.hasMailbox(user),
    mailboxes,
    // one client connected (most often the one whose message this is): no other SMTP or POP3
    // client waits on the event loop meanwhile (HTTP clients and sockets still sending a PROXY
    // header are not counted: they may wait for one write of at most ~256 KiB); never on a
    // network file system, which can stall for as long as its server does
    writeInPlace: () => spoolIsLocal && smtpConnections.connections + pop3Connections.connections <= 1,
    logger,
  });
  const policy = new SmtpPolicy({
    ...liveSettings.policy(config),
    directory: () => loaded.directory,
    mailboxSize: (user) => local.mailboxSize(user),
    reverseSrs: (localPart) => srs.reverse(localPart),
  });
  const signer = new SubmissionSigner(() => ({ keys: loaded.dkim, hostname: loaded.config.hostname }), logger);
  const injector = new Injector({
    store,
    sign: (pending) => signer.sign(pending),
    route: (addresses) => routeAddresses(addresses, { ...routing, directory: loaded.directory }),
    onQueued: (entry) => manager.add(entry),
  });
  const remote = new RemoteDelivery({
    ...liveSettings.remote(config),
    store,
    logger,
    srs,
    sealingKey: () => loaded.dkim.forDomain(loaded.config.hostname)?.rsa,
    ...(accountHelper === null ? {} : { readSecret: accountHelper.readSecret }),
  });
  const manager: QueueManager = new QueueManager({
    ...liveSettings.queue(config),
    store,
    local,
    remote,
    notifier: new BounceNotifier({ store, injector, settings: () => bounces }),
    hops: (entry) => countHops(store.openMessage(entry)),
    logger,
  });
  const checks = new InboundChecks(liveSettings.checks(config));
  const smtpListener = (kind: SmtpListenerKind, address: string): SmtpListener => ({
    address,
    service: createSmtpServer({
      kind,
      settings: liveSettings.smtp(config),
      tls: loaded.tls,
      ready,
      limits: smtpConnections,
      proxyNetworks: () => proxyNetworks,
      policy,
      checks: kind === 'mx' ? checks : null,
      authenticator,
      store,
      sign: (pending) => signer.sign(pending),
      deliverNow: (envelope, source) => local.deliverNow(envelope, source),
      onQueued: (entry) => manager.add(entry),
      logger,
    }),
  });
  const smtp = [
    ...config.smtp.listen.map((address) => smtpListener('mx', address)),
    ...config.smtp.submission.map((address) => smtpListener('submission', address)),
    ...config.smtp.smtps.map((address) => smtpListener('smtps', address)),
  ];
  const pop3 = createPop3Server({
    settings: liveSettings.pop3(config),
    tls: () => loaded.tls,
    ready,
    limits: pop3Connections,
    proxyNetworks: () => proxyNetworks,
    spoolDir: config.spool_dir,
    mailboxOwner: (user) => mailboxes.ownerOf(user),
    indexDir: paths.indexDir,
    journalDir: paths.journalDir,
    authenticator,
    logger,
  });
  // the ports are those bound at start; the names and whether TLS is on follow SIGHUP
  const ports = servicePorts(config);
  const autoconfig = new AutoconfigServer({
    site: () => mailSite(loaded.config, ports, loaded.tls !== null),
    tls: () => loaded.tls,
    logger,
  });
  const pickup = new DropDirPickup({
    ...liveSettings.pickup(config),
    dir: paths.dropDir,
    logger,
    inject: queueThrough(injector, logger),
  });

  const reconfigure: Reconfigurers = {
    log: (level) => {
      logger.level = level;
    },
    routing: (settings) => {
      routing = settings;
    },
    bounces: (settings) => {
      bounces = settings;
    },
    auth: (settings) => authenticator.reconfigure(settings),
    policy: (settings) => policy.reconfigure(settings),
    local: (settings) => local.reconfigure(settings),
    queue: (settings) => manager.reconfigure(settings),
    pickup: (settings) => pickup.reconfigure(settings),
    remote: (settings) => remote.reconfigure(settings),
    smtp: (settings) => {
      for (const { service } of smtp) service.reconfigure(settings, loaded.tls);
    },
    checks: (settings) => checks.reconfigure(settings),
    smtpConnections: (settings) => smtpConnections.reconfigure(settings),
    pop3: (settings) => pop3.reconfigure(settings),
    pop3Connections: (settings) => pop3Connections.reconfigure(settings),
    proxyNetworks: (matcher) => {
      proxyNetworks = matcher;
    },
  };
  const useCertificate = (tls: TlsCredentials) => {
    loaded.tls = tls; // POP3 and autoconfig read it per handshake
    for (const { service } of smtp) service.server.useCertificate(tls);
  };
  const sessions = () => ({ smtp: smtpConnections.connections, pop3: pop3Connections.connections });
  return {
    store,
    local,
    manager,
    smtp,
    pop3,
    pickup,
    autoconfig,
    acme,
    useCertificate,
    sessions,
    accountHelper,
    open,
    reconfigure,
  };
}
