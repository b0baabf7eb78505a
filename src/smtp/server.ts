// The SMTP listeners (MX port, submission, implicit-TLS submission) wired to mailsrv's policy,
// logins and queue: smtp-server speaks the protocol; this file answers its hooks. Sessions are
// greeted once the daemon is ready; AUTH checks passwords through the shared Authenticator; a
// message is accepted (250) only after the queue has it on disk, fsynced.
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TLSSocket } from 'node:tls';
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { Authenticator } from '../auth/authenticator.js';
import type { InboundChecks } from '../checks/inbound.js';
import type { MessageCheck } from '../checks/message-check.js';
import { type RefusedLogin, SessionLogins } from '../auth/session-logins.js';
import type { NetworkMatcher } from '../config/networks.js';
import { HopCounter, MAX_HOPS } from '../message/hops.js';
import { uniqueDeliveries } from '../delivery/route.js';
import type { Logger } from '../log.js';
import { countDelivered, countLogin, countReceived, countSmtpRefusal } from '../metrics/metrics.js';
import type { ConnectionLimits } from '../net/connection-limits.js';
import { clientBehind } from '../net/proxied-client.js';
import { qualify } from '../message/address.js';
import type { Envelope, ResolvedRecipient } from '../message/envelope.js';
import type { DirectOutcome } from '../delivery/local.js';
import type { InMemoryMessage } from '../mbox/append.js';
import type { PendingEntry } from '../queue/pending.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import type { TlsCredentials } from '../tls/credentials.js';
import { MailsrvSMTPServer } from './connection.js';
import { smtpProtocolLogger } from '../protocol-log.js';
import { type ChunkTaker, MessageIntake } from './message-intake.js';
import { isOutOfSpace } from '../fsutil.js';
import { ObjectSlot } from '../object-slot.js';
import { type SmtpPolicy, SmtpReplyError, type SmtpClientIdentity } from './policy.js';

/** What SIGHUP may change on a running listener. */
export interface SmtpSettings {
  hostname: string;
  messageSizeLimit: number;
  maxRecipients: number;
  timeoutMs: number;
  greetPauseMs: number;
  vrfy: boolean;
  /** an authenticated user may only send as their own addresses */
  senderLoginMatch: boolean;
  /** clients that may AUTH without TLS */
  plaintextAuth: NetworkMatcher;
}

/** mx: port 25 (AUTH optional); submission: 587 (AUTH required, STARTTLS); smtps: 465 (AUTH required, implicit TLS) */
export type SmtpListenerKind = 'mx' | 'submission' | 'smtps';

export interface SmtpServiceOptions {
  kind: SmtpListenerKind;
  settings: SmtpSettings;
  /** the certificate for STARTTLS and implicit TLS; null: no TLS */
  tls: TlsCredentials | null;
  /** sessions are greeted once this resolves (the daemon is ready to take mail) */
  ready: Promise<void>;
  /** max_clients, max_connections_per_ip and stress mode, shared by every SMTP listener */
  limits: ConnectionLimits;
  /** peers that must send a PROXY header first (proxy_protocol_networks, as loaded now) */
  proxyNetworks: () => NetworkMatcher;
  policy: SmtpPolicy;
  /** SPF, DKIM, DMARC and DNSBL for clients outside mynetworks (the MX port only), or null */
  checks: InboundChecks | null;
  authenticator: Authenticator;
  store: QueueStore;
  /** DKIM-signs a submitted message, all of it received; resolves to its size then (see SubmissionSigner) */
  sign: (pending: PendingEntry<QueueEntry>) => Promise<number>;
  /** offers a received message straight to its one local mailbox (see LocalDelivery.deliverNow) */
  deliverNow: (envelope: Envelope, source: InMemoryMessage | (() => Readable)) => Promise<DirectOutcome>;
  onQueued: (entry: QueueEntry) => void;
  logger: Logger;
}

/** Loopback clients need no reverse lookup (and a box without DNS would stall 1.5 s on it). */
const resolver = {
  reverse(ip: string, callback: (err: NodeJS.ErrnoException | null, hostnames: string[]) => void): void {
    if (/^(127\.|::1$|::ffff:127\.)/.test(ip)) {
      callback(null, ['localhost']);
      return;
    }
    import('node:dns').then(
      ({ reverse }) => {
        try {
          reverse(ip, callback);
        } catch (err) {
          // an address dns.reverse refuses outright (EINVAL): no name, as for a failed lookup
          callback(err as NodeJS.ErrnoException, []);
        }
      },
      (err: Error) => callback(err, []),
    );
  },
};

/** The reply to a refused login (a 421 reply closes the connection). */
function loginRefusal({ reason, closeConnection }: RefusedLogin): SmtpReplyError {
  if (closeConnection)
    return new SmtpReplyError(421, '4.7.0 Too many failed authentication attempts, closing connection');
  if (reason === 'throttled')
    return new SmtpReplyError(454, '4.7.0 Too many failed logins from your address, try again later');
  if (reason === 'busy')
    return new SmtpReplyError(454, '4.7.0 Too many logins in progress from your address, try again later');
  return new SmtpReplyError(535, '5.7.8 Authentication credentials invalid');
}

/**
 * The MAIL and RCPT parameters of the extensions mailsrv offers (SIZE, 8BITMIME, SMTPUTF8, and
 * AUTH= of RFC 4954); smtp-server checks their values. DSN and REQUIRETLS are not offered.
 */
const MAIL_PARAMETERS: ReadonlySet<string> = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'AUTH']);
const RCPT_PARAMETERS: ReadonlySet<string> = new Set();

/** RFC 5321 4.1.1.11: a parameter the server does not support is refused with 555. */
function refuseUnsupportedParameters(address: SMTPServerAddress, supported: ReadonlySet<string>): void {
  const args = address.args === false ? {} : (address.args as Record<string, string | true>);
  for (const [name, value] of Object.entries(args)) {
    if (supported.has(name.toUpperCase())) continue;
    const option = value === true ? name : `${name}=${value}`;
    throw new SmtpReplyError(555, `5.5.4 Unsupported option: ${option}`);
  }
}

/** The client as the policy sees it: its address and, after AUTH, its user. */
function clientOf(session: SMTPServerSession): SmtpClientIdentity {
  return typeof session.user === 'string'
    ? { ip: session.remoteAddress, user: session.user }
    : { ip: session.remoteAddress };
}

export interface SmtpService {
  server: MailsrvSMTPServer;
  /** SIGHUP: new settings and the certificate as reloaded (null: TLS now off) */
  reconfigure(settings: SmtpSettings, tls: TlsCredentials | null): void;
  /**
   * Stop: 421 to every session not receiving a message, and to those whose client has sent no
   * DATA bytes for `quietMs` (their message was never accepted); returns how many still receive.
   */
  shutdownSessions(quietMs: number): number;
}

/** How a message's DATA is coming in, for the stop: when the client last sent, and whether it is all in. */
interface DataProgress {
  lastChunkAt: number;
  complete: boolean;
}

/** What this file keeps per SMTP session, in one record (one slot on the session object). */
interface SessionState {
  /**
   * the deliveries each accepted RCPT TO of the transaction resolved to (made on the first), by
   * the address lowercased, as smtp-server keys its recipients: a repeated RCPT replaces its
   * entry (keyed by smtp-server's address objects, a client repeating one address for ever
   * would grow it for ever)
   */
  deliveries: Map<string, ResolvedRecipient[]> | null;
  /** the message being received, for the stop */
  progress: DataProgress | null;
  /** the session's AUTH attempts (made on the first) */
  logins: SessionLogins | null;
  /** the session's child logger (made when something is logged) */
  log: Logger | null;
  /** the connection has ended: a login still waiting for its check is not hashed */
  closed: boolean;
}

export function createSmtpServer(options: SmtpServiceOptions): SmtpService {
  const { policy, logger } = options;
  let settings = options.settings;
  const sessions = new ObjectSlot<SMTPServerSession, SessionState>('smtp session');
  const stateOf = (session: SMTPServerSession): SessionState => {
    let state = sessions.get(session);
    if (state === undefined) {
      state = { deliveries: null, progress: null, logins: null, log: null, closed: false };
      sessions.set(session, state);
    }
    return state;
  };
  /** options.ready has resolved: a session with no greeting pause is greeted at once, not after two promise turns */
  let isReady = false;
  void options.ready.then(() => {
    isReady = true;
  });
  const sessionLog = (session: SMTPServerSession): Logger => {
    const state = stateOf(session);
    state.log ??= logger.child({ sessionId: session.id });
    return state.log;
  };

  const server: MailsrvSMTPServer = new MailsrvSMTPServer({
    ...serverLimits(settings),
    banner: 'mailsrv',
    hideSize: false,
    rejectOversized: true,
    hideENHANCEDSTATUSCODES: false,
    hidePIPELINING: false,
    hide8BITMIME: false,
    hideSMTPUTF8: false,
    closeTimeout: 30_000,
    secure: options.kind === 'smtps',
    tls: options.tls,
    limits: options.limits,
    listenerName: options.kind,
    clientBehind: (socket) => clientBehind(socket, options.proxyNetworks(), logger, options.kind),
    authMethods: ['PLAIN', 'LOGIN'],
    // AUTH is never required by smtp-server: onMailFrom refuses MAIL without it on submission
    authOptional: true,
    plaintextAuth: (ip) => settings.plaintextAuth(ip),
    disabledCommands: ['WIZ', 'SHELL', 'KILL'],
    logger: smtpProtocolLogger(logger),
    protocolLogEnabled: () => logger.isLevelEnabled('debug'),
    resolver,
    vrfy: (address, session) => (settings.vrfy ? vrfyReply(policy, address, clientOf(session)) : undefined),
    deadlineExceeded: (session, { kind, elapsedMs, bytes }) =>
      sessionLog(session).info({ client: session.remoteAddress, deadline: kind, elapsedMs, bytes }, 'timeout exceeded'),

    onConnect(session, callback) {
      // the session's child logger is made when something is logged (most sessions log nothing below info)
      if (logger.isLevelEnabled('info'))
        sessionLog(session).info(
          { client: session.remoteAddress, port: session.localPort, listener: options.kind },
          'connect',
        );
      const outside = options.kind === 'mx' && !policy.mayRelay(clientOf(session));
      if (outside) options.checks?.connected(session, sessionLog(session));
      const pause = outside ? settings.greetPauseMs : 0;
      if (isReady && pause === 0) callback();
      else void options.ready.then(() => (pause === 0 ? undefined : sleep(pause))).then(() => callback());
    },

    onSecure(socket, session, callback) {
      const tls = {
        client: session.remoteAddress,
        protocol: (socket as TLSSocket).getProtocol(),
        cipher: session.tlsOptions ? session.tlsOptions.name : null,
      };
      // as POP3 names them: `tls` on an implicit-TLS listener, `starttls` for the upgrade
      sessionLog(session).info(tls, options.kind === 'smtps' ? 'tls' : 'starttls');
      callback();
    },

    onAuth(auth, session, callback) {
      const log = sessionLog(session);
      const client = session.remoteAddress;
      const state = stateOf(session);
      state.logins ??= new SessionLogins(options.authenticator, log, client, () => !state.closed);
      const sessionLogins = state.logins;
      const { username, password, authzid, method } = auth;
      void sessionLogins
        .attempt({ name: username ?? '', password: password ?? '', authzid, logFields: { method } })
        .then((result) => {
          countLogin('smtp', result);
          if (result.ok) {
            log.info({ user: result.user, client, method }, 'login');
            callback(null, { user: result.user });
          } else if (result.reason === 'invalid' || result.reason === 'throttled' || result.reason === 'busy') {
            callback(loginRefusal(result));
          } else {
            callback(new SmtpReplyError(454, '4.7.0 Temporary authentication failure'));
          }
        });
    },

    onClose(session) {
      const state = sessions.get(session);
      if (state !== undefined) state.closed = true;
      if (!logger.isLevelEnabled('info')) return;
      const user = typeof session.user === 'string' ? { user: session.user } : {};
      const activity = server.activityOf(session)?.summary();
      sessionLog(session).info({ client: session.remoteAddress, ...user, ...activity }, 'disconnect');
    },

    onMailFrom(address, session, callback) {
      // a new transaction: the recipients of one left without DATA (RSET) are forgotten
      sessions.get(session)?.deliveries?.clear();
      const checked = (async () => {
        const client = clientOf(session);
        // RFC 6409: the submission ports relay nothing for strangers, not even to local users.
        if (options.kind !== 'mx' && client.user === undefined)
          throw new SmtpReplyError(530, '5.7.0 Authentication required');
        refuseUnsupportedParameters(address, MAIL_PARAMETERS);
        policy.checkHelo(session.hostNameAppearsAs ?? '');
        policy.checkSender(address.address);
        if (settings.senderLoginMatch && client.user !== undefined)
          await policy.checkSenderOwner(address.address, client.user);
        // SPF starts here; only spf = "enforce" waits for its result
        await options.checks?.mailFrom(session, address.address, () => sessionLog(session));
      })();
      checked.then(
        () => callback(),
        (err: Error) => {
          if (!(err instanceof SmtpReplyError)) {
            sessionLog(session).error({ err }, 'sender check failed');
            err = new SmtpReplyError(451, '4.3.0 Temporary lookup failure');
          }
          countSmtpRefusal(err as SmtpReplyError);
          callback(err);
        },
      );
    },

    onRcptTo(address, session, callback) {
      const checked = (async () => {
        refuseUnsupportedParameters(address, RCPT_PARAMETERS);
        await options.checks?.rcptTo(session);
        return policy.checkRecipient(address.address, clientOf(session));
      })();
      checked.then(
        (recipients) => {
          const state = stateOf(session);
          state.deliveries ??= new Map();
          state.deliveries.set(address.address.toLowerCase(), recipients);
          callback();
        },
        (err: Error) => {
          if (!(err instanceof SmtpReplyError)) {
            sessionLog(session).error({ err }, 'recipient check failed');
            err = new SmtpReplyError(451, '4.3.0 Temporary lookup failure');
          }
          sessionLog(session).info(
            { to: address.address, reply: `${(err as SmtpReplyError).responseCode} ${err.message}` },
            'reject',
          );
          countSmtpRefusal(err as SmtpReplyError);
          callback(err);
        },
      );
    },

    onData(stream, session, callback) {
      // a loop, not flatMap: ~20x cheaper, and this runs for every message
      const deliveries: ResolvedRecipient[] = [];
      const state = stateOf(session);
      for (const rcpt of session.envelope.rcptTo)
        deliveries.push(...(state.deliveries?.get(rcpt.address.toLowerCase()) ?? []));
      // the transaction is over, whatever comes of its message (a next one starts with MAIL FROM)
      state.deliveries?.clear();
      const recipients = uniqueDeliveries(deliveries);
      const progress: DataProgress = { lastChunkAt: Date.now(), complete: false };
      state.progress = progress;
      const check = options.checks?.message(session) ?? null;
      receive(options, settings, stream, session, recipients, progress, check).then(
        (queueId) => {
          state.progress = null;
          callback(null, `2.0.0 Ok: queued as ${queueId}`);
        },
        (err: Error) => {
          state.progress = null;
          if (stream.errored) {
            sessionLog(session).info({ reason: err.message }, 'message aborted by the client');
          } else if (isOutOfSpace(err)) {
            sessionLog(session).error({ err: err.message }, 'cannot queue message: the disk is full');
            err = new SmtpReplyError(452, '4.3.1 Insufficient system storage');
          } else if (!(err instanceof SmtpReplyError)) {
            sessionLog(session).error({ err }, 'cannot queue message');
            err = new SmtpReplyError(451, '4.3.0 Error: queue file write error');
          }
          if (!stream.errored) countSmtpRefusal(err as SmtpReplyError);
          callback(err);
        },
      );
    },
  });
  server.on('error', (err) => logger.warn({ err: err.message }, 'smtp connection error'));
  return {
    server,
    reconfigure(fresh, tls) {
      settings = fresh;
      Object.assign(server.options, serverLimits(fresh));
      server.useCertificate(tls);
    },
    shutdownSessions(quietMs) {
      return server.shutdownSessions((session) => {
        const progress = sessions.get(session)?.progress ?? null;
        return progress !== null && !progress.complete && Date.now() - progress.lastChunkAt >= quietMs;
      });
    },
  };
}

/** The smtp-server options that follow from mailsrv's settings (read by it per connection). */
function serverLimits(settings: SmtpSettings) {
  return {
    name: settings.hostname,
    size: settings.messageSizeLimit,
    maxRecipients: settings.maxRecipients,
    socketTimeout: settings.timeoutMs,
  };
}

/**
 * Receives DATA and accepts the message once it is complete, in size, and durable: written and
 * fsynced into its one local mailbox when that mailbox is free (no queue file at all), else
 * committed to the queue. Returns the message's queue id.
 */
async function receive(
  options: SmtpServiceOptions,
  settings: SmtpSettings,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  recipients: ResolvedRecipient[],
  progress: DataProgress,
  check: MessageCheck | null,
): Promise<string> {
  const mailFrom = session.envelope.mailFrom;
  const pending = options.store.begin({
    sender: mailFrom ? mailFrom.address : '',
    receivedAt: Date.now(),
    client: {
      ip: session.remoteAddress,
      helo: session.hostNameAppearsAs ?? '',
      hostname: session.clientHostname === `[${session.remoteAddress}]` ? '' : session.clientHostname,
      protocol: session.transmissionType,
      submitted: options.policy.mayRelay(clientOf(session)),
    },
    recipients,
  });
  const { envelope } = pending;
  // the message's child logger is made on first use: below info, a delivered message logs nothing
  let messageLog: Logger | undefined;
  const log = () => (messageLog ??= options.logger.child({ sessionId: session.id, queueId: envelope.id }));
  const info = options.logger.isLevelEnabled('info');
  try {
    const hops = new HopCounter();
    const intake = new MessageIntake(settings.messageSizeLimit, hops, progress);
    const store: ChunkTaker = (chunk) => pending.take(chunk);
    // a client that drops mid-DATA errors `stream`, which ends the read with that error
    try {
      await intake.feed(stream, check === null ? store : (chunk) => check.take(chunk, store));
      await check?.end(store);
    } catch (err) {
      check?.abort();
      throw err;
    }
    let size = pending.messageSize;
    progress.complete = true;
    if (stream.sizeExceeded) {
      throw new SmtpReplyError(552, `5.3.4 Message size exceeds fixed limit of ${settings.messageSizeLimit} bytes`);
    }
    if (hops.hops > MAX_HOPS)
      throw new SmtpReplyError(554, `5.4.6 Too many hops (${hops.hops} Received headers): mail forwarding loop`);
    if (check !== null) {
      const verdict = await check.finish();
      log().info({ ...verdict.summary, refused: verdict.refusal?.message }, 'authentication');
      if (verdict.refusal !== null) throw verdict.refusal;
      envelope.addedHeaders = verdict.headers;
    }
    if (envelope.client.submitted) size = await options.sign(pending);
    const accepted = { from: envelope.sender, nrcpt: recipients.length, size, client: session.remoteAddress };
    const direct = await options.deliverNow(envelope, pending.messageInMemory() ?? (() => pending.openData()));
    if (direct === 'delivered') {
      const recipient = envelope.recipients[0]!;
      if (info) log().info({ ...accepted, direct: true }, 'queued');
      countReceived();
      if (info)
        log().info(
          {
            to: recipient.address,
            user: recipient.target.kind === 'local' ? recipient.target.user : undefined,
            status: 'sent',
            direct: true,
            delay: { total: Date.now() - envelope.receivedAt },
          },
          'delivered',
        );
      countDelivered('local', Date.now() - envelope.receivedAt);
      await pending.discard();
      if (info) log().info('removed');
      return envelope.id;
    }
    const localUsers = recipients.flatMap((r) => (r.target.kind === 'local' ? [r.target.user] : []));
    if (direct === 'mailbox-full') throw options.policy.mailboxFull(localUsers[0]!);
    await options.policy.checkMessageFits(localUsers, size);
    const entry = await pending.commit();
    log().info(accepted, 'queued');
    countReceived();
    try {
      options.onQueued(entry);
    } catch (err) {
      // the message is on disk: the queue manager picks it up at the latest at the next start
      log().error({ err }, 'queued message not scheduled');
    }
    return envelope.id;
  } catch (err) {
    await pending.discard();
    throw err;
  }
}

async function vrfyReply(
  policy: SmtpPolicy,
  address: string,
  client: SmtpClientIdentity,
): Promise<{ code: number; message: string }> {
  try {
    await policy.checkRecipient(qualify(address, 'localhost'), client);
    return { code: 250, message: `2.1.5 <${address}>` };
  } catch (err) {
    if (err instanceof SmtpReplyError) return { code: err.responseCode, message: err.message };
    throw err;
  }
}
