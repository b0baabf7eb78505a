// What each running part of the daemon takes from the config, derived in one place: at start
// the parts are built with it, and on SIGHUP it is derived again from the new config and handed
// to each part's reconfigure, one part at a time. A key read while running is mapped here and
// nowhere else; a key read only at start is one of RESTART_KEYS.
import { isDeepStrictEqual } from 'node:util';
import type { AuthSettings } from '../auth/authenticator.js';
import type { InboundCheckSettings } from '../checks/inbound.js';
import type { BounceNotifierOptions } from '../bounce/notifier.js';
import { localDomainMatcher } from '../config/domains.js';
import { type NetworkMatcher, networkMatcher } from '../config/networks.js';
import type { Config } from '../config/schema.js';
import { durationMs, parseListen } from '../config/units.js';
import type { LocalDeliveryOptions } from '../delivery/local.js';
import type { ConnectionLimitSettings } from '../net/connection-limits.js';
import type { RoutingContext } from '../delivery/route.js';
import type { Pop3Settings } from '../pop3/server.js';
import type { QueueManagerOptions } from '../queue/manager.js';
import type { DropDirPickupOptions } from '../queue/pickup.js';
import type { RemoteSettings } from '../relay/agent.js';
import type { PolicyOptions } from '../smtp/policy.js';
import type { SmtpSettings } from '../smtp/server.js';

/** The settings of each part that SIGHUP reconfigures. */
export interface LiveSettings {
  log: Config['log']['level'];
  /** where mail mailsrv queues itself (bounces, `mailsrv sendmail`) goes */
  routing: Pick<RoutingContext, 'hostname' | 'isLocalDomain'>;
  bounces: ReturnType<BounceNotifierOptions['settings']>;
  auth: AuthSettings;
  policy: Pick<PolicyOptions, 'hostname' | 'isLocalDomain' | 'mynetworks' | 'mailboxSizeLimit'>;
  local: Pick<LocalDeliveryOptions, 'hostname' | 'mailboxSizeLimit' | 'lockTimeoutMs'>;
  queue: Pick<
    QueueManagerOptions,
    | 'concurrency'
    | 'remoteConcurrency'
    | 'destinationConcurrency'
    | 'delayWarningMs'
    | 'localRetryMs'
    | 'remoteRetryMs'
    | 'maxLifetimeMs'
  >;
  pickup: Pick<DropDirPickupOptions, 'messageSizeLimit'>;
  remote: RemoteSettings;
  smtp: SmtpSettings;
  checks: InboundCheckSettings;
  smtpConnections: ConnectionLimitSettings;
  pop3: Pop3Settings;
  pop3Connections: ConnectionLimitSettings;
  /** peers that must send a PROXY header first, SMTP and POP3 alike */
  proxyNetworks: NetworkMatcher;
}

export type LivePart = keyof LiveSettings;

/** How each part's settings follow from the config; SIGHUP applies them in this order. */
export const liveSettings: { [Part in LivePart]: (config: Config) => LiveSettings[Part] } = {
  log: (config) => config.log.level,
  routing: (config) => ({ hostname: config.hostname, isLocalDomain: localDomainMatcher(config) }),
  bounces: (config) => ({ hostname: config.hostname, maxLifetimeMs: durationMs(config.relay.max_queue_lifetime) }),
  auth: (config) => ({
    failureDelayMs: durationMs(config.auth.failure_delay),
    maxFailures: config.auth.max_failures,
    forgetAfterMs: durationMs(config.auth.lockout),
    cacheTtlMs: durationMs(config.auth.cache_ttl),
    exempt: networkMatcher(config.mynetworks),
  }),
  policy: (config) => ({
    hostname: config.hostname,
    isLocalDomain: localDomainMatcher(config),
    mynetworks: networkMatcher(config.mynetworks),
    mailboxSizeLimit: config.mailbox_size_limit,
  }),
  local: (config) => ({
    hostname: config.hostname,
    mailboxSizeLimit: config.mailbox_size_limit,
    lockTimeoutMs: durationMs(config.delivery.lock_timeout),
  }),
  queue: (config) => ({
    concurrency: config.delivery.concurrency,
    remoteConcurrency: config.relay.concurrency,
    destinationConcurrency: config.relay.destination_concurrency,
    delayWarningMs: durationMs(config.relay.delay_warning),
    localRetryMs: config.delivery.retry.map(durationMs),
    remoteRetryMs: config.relay.retry.map(durationMs),
    maxLifetimeMs: durationMs(config.relay.max_queue_lifetime),
  }),
  pickup: (config) => ({ messageSizeLimit: config.message_size_limit }),
  remote: (config) => ({
    hostname: config.hostname,
    isLocalDomain: localDomainMatcher(config),
    relayhost: config.relay.relayhost,
    relayhostUser: config.relay.relayhost_user,
    relayhostPasswordFile: config.relay.relayhost_password_file,
    tlsSecurity: config.relay.tls_security,
    mtaSts: config.relay.mta_sts,
    caFile: config.relay.ca_file,
    dnsServers: config.dns_servers,
    connectTimeoutMs: durationMs(config.relay.connect_timeout),
    timeoutMs: durationMs(config.relay.timeout),
    ownListeners: [...config.smtp.listen, ...config.smtp.submission, ...config.smtp.smtps].map(
      (address) => parseListen(address)!,
    ),
  }),
  smtp: (config) => ({
    hostname: config.hostname,
    messageSizeLimit: config.message_size_limit,
    maxRecipients: config.smtp.max_recipients,
    timeoutMs: durationMs(config.smtp.timeout),
    greetPauseMs: durationMs(config.smtp.greet_pause),
    vrfy: config.smtp.vrfy,
    senderLoginMatch: config.smtp.sender_login_match,
    plaintextAuth: networkMatcher(config.plaintext_auth_networks),
  }),
  checks: (config) => ({
    hostname: config.hostname,
    spf: config.checks.spf,
    dkim: config.checks.dkim,
    dmarc: config.checks.dmarc,
    dnsbl: config.checks.dnsbl,
    dnsTimeoutMs: durationMs(config.checks.dns_timeout),
    dnsServers: config.dns_servers,
  }),
  smtpConnections: (config) => ({
    maxClients: config.smtp.max_clients,
    maxPerAddress: config.smtp.max_connections_per_ip,
    exempt: networkMatcher(config.mynetworks),
  }),
  pop3: (config) => ({
    timeoutMs: durationMs(config.pop3.timeout),
    lockTimeoutMs: durationMs(config.delivery.lock_timeout),
    plaintextAuth: networkMatcher(config.plaintext_auth_networks),
  }),
  pop3Connections: (config) => ({
    maxClients: config.pop3.max_clients,
    maxPerAddress: config.pop3.max_connections_per_ip,
    exempt: networkMatcher(config.mynetworks),
  }),
  proxyNetworks: (config) => networkMatcher(config.proxy_protocol_networks),
};

/** How each running part takes new settings. */
export type Reconfigurers = { [Part in LivePart]: (settings: LiveSettings[Part]) => void };

/** Keys that only take effect at start; SIGHUP says so when they changed. */
export const RESTART_KEYS = [
  'spool_dir',
  'state_dir',
  'user',
  'group',
  'accounts',
  'system_min_uid',
  'pam_service',
  'smtp.listen',
  'smtp.submission',
  'smtp.smtps',
  'pop3.listen',
  'pop3.pop3s',
  'autoconfig.listen',
  'acme',
  'metrics.listen',
] as const;

/** The RESTART_KEYS whose value differs between the running config and a new one. */
export function restartOnlyChanges(running: Config, fresh: Config): string[] {
  return RESTART_KEYS.filter((key) => !isDeepStrictEqual(valueAt(running, key), valueAt(fresh, key)));
}

function valueAt(config: Config, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown>)[part], config);
}

/**
 * Derives every part's settings from `config` and hands them to its reconfigurer, in table
 * order. A part that fails (deriving or taking them) is reported to `onFailure` and keeps what
 * it had; the others still get theirs.
 */
export function applyLiveSettings(
  config: Config,
  reconfigure: Reconfigurers,
  onFailure: (part: LivePart, err: Error) => void,
): void {
  for (const part of Object.keys(liveSettings) as LivePart[]) {
    try {
      applyPart(part, config, reconfigure);
    } catch (err) {
      onFailure(part, err as Error);
    }
  }
}

function applyPart<Part extends LivePart>(part: Part, config: Config, reconfigure: Reconfigurers): void {
  const apply: (settings: LiveSettings[Part]) => void = reconfigure[part];
  apply(liveSettings[part](config));
}
