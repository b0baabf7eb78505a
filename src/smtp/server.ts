// The SMTP listeners (MX port and submission) wired to mailsrv's policy and queue:
// smtp-server speaks the protocol; this file answers its hooks. A message is accepted
// (250) only after the queue has it on disk, fsynced.
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { Logger } from '../log.js';
import type { QueueEntry, QueueStore } from '../queue/store.js';
import { MailsrvSMTPServer } from './connection.js';
import { smtpProtocolLogger } from './protocol-log.js';
import { SmtpPolicy, SmtpReplyError, type ResolvedRecipient } from './policy.js';

/** What SIGHUP may change on a running listener. */
export interface SmtpSettings {
  hostname: string;
  messageSizeLimit: number;
  maxClients: number;
  maxRecipients: number;
  timeoutMs: number;
  greetPauseMs: number;
  vrfy: boolean;
}

export interface SmtpServiceOptions {
  kind: 'mx' | 'submission';
  settings: SmtpSettings;
  policy: SmtpPolicy;
  store: QueueStore;
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
    import('node:dns').then(({ reverse }) => reverse(ip, callback), (err: Error) => callback(err, []));
  },
};

export interface SmtpService {
  server: MailsrvSMTPServer;
  reconfigure(settings: SmtpSettings): void;
}

export function createSmtpServer(options: SmtpServiceOptions): SmtpService {
  const { policy, logger } = options;
  let settings = options.settings;
  const resolved = new WeakMap<SMTPServerAddress, ResolvedRecipient[]>();
  const sessionLog = (session: SMTPServerSession) => logger.child({ sessionId: session.id });

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
    authOptional: options.kind === 'mx',
    // AUTH and STARTTLS arrive with TLS support (until then the submission port refuses MAIL,
    // see onMailFrom); the joke commands never.
    disabledCommands: ['AUTH', 'STARTTLS', 'WIZ', 'SHELL', 'KILL'],
    logger: smtpProtocolLogger(logger),
    resolver,
    vrfy: (address, session) => (settings.vrfy ? vrfyReply(policy, address, session.remoteAddress) : undefined),

    onConnect(session, callback) {
      sessionLog(session).info({ client: session.remoteAddress, port: session.localPort, listener: options.kind }, 'connect');
      const pause = options.kind === 'mx' && !policy.mayRelay(session.remoteAddress) ? settings.greetPauseMs : 0;
      if (pause === 0) callback();
      else void sleep(pause).then(() => callback());
    },

    onClose(session) {
      sessionLog(session).info('disconnect');
    },

    onMailFrom(address, session, callback) {
      try {
        // RFC 6409: the submission port relays nothing for strangers, not even to local users.
        if (options.kind === 'submission' && !session.user) throw new SmtpReplyError(530, '5.7.0 Authentication required');
        policy.checkHelo(session.hostNameAppearsAs ?? '');
        policy.checkSender(address.address);
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },

    onRcptTo(address, session, callback) {
      policy.checkRecipient(address.address, session.remoteAddress).then(
        (recipients) => {
          resolved.set(address, recipients);
          callback();
        },
        (err: Error) => {
          if (!(err instanceof SmtpReplyError)) {
            sessionLog(session).error({ err }, 'recipient check failed');
            err = new SmtpReplyError(451, '4.3.0 Temporary lookup failure');
          }
          sessionLog(session).info({ to: address.address, reply: `${(err as SmtpReplyError).responseCode} ${err.message}` }, 'reject');
          callback(err);
        },
      );
    },

    onData(stream, session, callback) {
      const recipients = dedupe(session.envelope.rcptTo.flatMap((rcpt) => resolved.get(rcpt) ?? []));
      receive(options, settings, stream, session, recipients).then(
        (entry) => {
          try {
            options.onQueued(entry);
          } catch (err) {
            // the message is on disk: the queue manager picks it up at the latest at the next start
            sessionLog(session).error({ err, queueId: entry.envelope.id }, 'queued message not scheduled');
          }
          callback(null, `2.0.0 Ok: queued as ${entry.envelope.id}`);
        },
        (err: Error) => {
          if (stream.errored) {
            sessionLog(session).info({ reason: err.message }, 'message aborted by the client');
          } else if (!(err instanceof SmtpReplyError)) {
            sessionLog(session).error({ err }, 'cannot queue message');
            err = new SmtpReplyError(451, '4.3.0 Error: queue file write error');
          }
          callback(err);
        },
      );
    },
  });
  server.on('error', (err) => logger.warn({ err: err.message }, 'smtp connection error'));
  return {
    server,
    reconfigure(fresh) {
      settings = fresh;
      Object.assign(server.options, serverLimits(fresh));
    },
  };
}

/** The smtp-server options that follow from mailsrv's settings (read by it per connection). */
function serverLimits(settings: SmtpSettings) {
  return {
    name: settings.hostname,
    size: settings.messageSizeLimit,
    maxClients: settings.maxClients,
    maxRecipients: settings.maxRecipients,
    socketTimeout: settings.timeoutMs,
  };
}

/** Streams DATA into a queue entry; commits it only if it is complete, in size and fits. */
async function receive(
  options: SmtpServiceOptions,
  settings: SmtpSettings,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  recipients: ResolvedRecipient[],
): Promise<QueueEntry> {
  const mailFrom = session.envelope.mailFrom;
  const pending = options.store.begin({
    sender: mailFrom ? mailFrom.address : '',
    receivedAt: Date.now(),
    client: {
      ip: session.remoteAddress,
      helo: session.hostNameAppearsAs ?? '',
      hostname: session.clientHostname === `[${session.remoteAddress}]` ? '' : session.clientHostname,
      protocol: session.transmissionType,
      submitted: options.policy.mayRelay(session.remoteAddress),
    },
    recipients,
  });
  try {
    const capped = new SizeCap(settings.messageSizeLimit);
    // a client that drops mid-DATA errors `stream`; pipeline passes that on to `capped`
    pipeline(stream, capped).catch(() => undefined);
    const size = await pending.write(capped);
    if (stream.sizeExceeded) {
      throw new SmtpReplyError(552, `5.3.4 Message size exceeds fixed limit of ${settings.messageSizeLimit} bytes`);
    }
    const localUsers = recipients.flatMap((r) => (r.target.kind === 'local' ? [r.target.user] : []));
    await options.policy.checkMessageFits(localUsers, size);
    const entry = await pending.commit();
    options.logger.info(
      { sessionId: session.id, queueId: entry.envelope.id, from: entry.envelope.sender, nrcpt: recipients.length, size, client: session.remoteAddress },
      'queued',
    );
    return entry;
  } catch (err) {
    await pending.discard();
    throw err;
  }
}

/**
 * Passes a message through until it exceeds the limit, then drops the rest: an oversized
 * message is refused at the end of DATA anyway, and must not fill the queue directory first.
 */
class SizeCap extends Transform {
  private seen = 0;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const before = this.seen;
    this.seen += chunk.length;
    callback(null, before <= this.limit ? chunk : undefined);
  }
}

/** The same delivery requested twice (two RCPTs naming one user) happens once. */
function dedupe(recipients: ResolvedRecipient[]): ResolvedRecipient[] {
  const seen = new Set<string>();
  return recipients.filter((r) => {
    const key = r.target.kind === 'local' ? `local:${r.target.user}` : `remote:${r.address.toLowerCase()}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

async function vrfyReply(policy: SmtpPolicy, address: string, clientIp: string): Promise<{ code: number; message: string }> {
  try {
    await policy.checkRecipient(address.includes('@') ? address : `${address}@localhost`, clientIp);
    return { code: 250, message: `2.1.5 <${address}>` };
  } catch (err) {
    if (err instanceof SmtpReplyError) return { code: err.responseCode, message: err.message };
    throw err;
  }
}
