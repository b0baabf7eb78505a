// Delivers one queued message to one destination over SMTP (Postfix's smtp client): the
// destination's addresses are tried in order until one holds a session; over that session, one
// mail transaction for all of the message's recipients there. nodemailer's SMTPConnection speaks
// the protocol (EHLO, STARTTLS, AUTH, PIPELINING, and the message streamed with CRLF line ends
// and dot-stuffing); this file applies the TLS policy and decides what every reply means for
// every recipient. A remote problem is a result, never an exception; every wait is bounded by
// connect_timeout (connecting, greeting, STARTTLS) or timeout (each reply).
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Readable } from 'node:stream';
import SMTPConnection, {
  type SMTPConnectionEnvelope,
  type SMTPConnectionSendInfo,
  type SMTPError,
} from 'nodemailer/lib/smtp-connection';
import { networkMatcher } from '../config/networks.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { deferred, permanent, statusFromReply, temporary, type DeliveryStatus } from '../message/status.js';
import { smtpProtocolLogger } from '../protocol-log.js';
import type { Destination } from './destinations.js';

export interface SmtpClientSettings {
  /** our name in EHLO */
  hostname: string;
  tlsSecurity: Config['relay']['tls_security'];
  /** the CAs a server certificate may chain to (the system's plus relay.ca_file); undefined: the system's */
  ca?: string[];
  /** told when a session holds without a verified TLS connection (MTA-STS testing mode logs it) */
  onUnverifiedTls?: (where: string, reason: string) => void;
  /** relayhost credentials; null: no AUTH */
  auth: { user: string; pass: string } | null;
  /** for connecting, the greeting and STARTTLS together */
  connectTimeoutMs: number;
  /** for each reply */
  timeoutMs: number;
  /** gets the SMTP dialogue (without message data or credentials) at debug level */
  protocolLogger?: Logger;
}

export interface OutboundMessage {
  /** the envelope sender; '' for a bounce (MAIL FROM:<>) */
  sender: string;
  /** every recipient of the message at this destination */
  recipients: string[];
  /** in bytes, as queued: announced with SIZE */
  size: number;
  /** the message from its start, as queued (CRLF or LF line ends); called once per transaction tried */
  openMessage: () => Readable;
}

export interface RecipientResult {
  recipient: string;
  /** sent (2.x.x), bounced (permanent) or deferred; with the server's reply on one line when one answered */
  status: DeliveryStatus;
  /** the server that answered; null when the status is mailsrv's own */
  remote: Destination | null;
}

export interface DeliveryReport {
  /** the server that held the transaction, "host[address]:port"; null when none was reached */
  relay: string | null;
  /** one per recipient, in the message's order */
  results: RecipientResult[];
  /**
   * Settles once the session is over. The report comes as soon as the transaction is, before the
   * QUIT: the queue records what the server took while the session ends (README, "Reliability").
   */
  ended: Promise<void>;
}

/** An outcome shared by several recipients (the recipient is added when it is reported). */
type Outcome = Omit<RecipientResult, 'recipient'>;

interface Capabilities {
  /** SIZE limit; 0: none announced */
  size: number;
  smtputf8: boolean;
  auth: boolean;
}

type StepResult<T> = { ok: true; value: T } | { ok: false; error: SMTPError };

type SessionResult =
  | { ok: true; connection: SMTPConnection; capabilities: Capabilities }
  | { ok: false; failure: Outcome };

/** How long QUIT may take to be answered before the connection is dropped anyway. */
const QUIT_WAIT_MS = 10_000;
/** Failures to reach an address at all (as opposed to losing a session). */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EAFNOSUPPORT']);
/** Where a password may go without TLS (it never leaves the box). */
const isLoopback = networkMatcher(['127.0.0.0/8', '::1/128']);

/** "mx1.remote.test[192.0.2.1]:25", as Postfix names a server in its logs. */
export function formatDestination(destination: Destination): string {
  const host = destination.host === destination.address ? '' : destination.host;
  return `${host}[${destination.address}]:${destination.port}`;
}

/**
 * Tries `destinations` in order until one takes a session (a refused connection, a timeout, a
 * failed greeting/EHLO, TLS or AUTH moves on to the next), then sends the message to all its
 * recipients in one transaction there. When no address takes a session, every recipient is
 * deferred with the last address's failure.
 */
export async function sendToDestination(
  destinations: readonly Destination[],
  message: OutboundMessage,
  settings: SmtpClientSettings,
): Promise<DeliveryReport> {
  let lastFailure: Outcome = ownOutcome(temporary('4.4.4', 'no address to deliver to'));
  for (const destination of destinations) {
    const session = await openSession(destination, settings);
    if (!session.ok) {
      lastFailure = session.failure;
      continue;
    }
    let transaction: Awaited<ReturnType<typeof transact>>;
    try {
      transaction = await transact(session.connection, session.capabilities, destination, message);
    } catch (err) {
      await hangUp(session.connection, false, settings.timeoutMs);
      throw err;
    }
    return {
      relay: formatDestination(destination),
      results: message.recipients.map((recipient) => ({ recipient, ...transaction.outcomes.get(recipient)! })),
      ended: hangUp(session.connection, transaction.polite, settings.timeoutMs),
    };
  }
  const failed: Outcome = { ...lastFailure, status: deferred(lastFailure.status) };
  return {
    relay: null,
    results: message.recipients.map((recipient) => ({ recipient, ...failed })),
    ended: Promise.resolve(),
  };
}

/**
 * A session with one address, ready for MAIL FROM: greeted, EHLO'd, TLS per the policy,
 * logged in when there are credentials. With tls_security = may, a failed STARTTLS is retried
 * once without TLS (as Postfix does), so a server with broken TLS still gets its mail.
 */
async function openSession(destination: Destination, settings: SmtpClientSettings): Promise<SessionResult> {
  let connected = await connect(destination, settings, false);
  if (!connected.ok && connected.error.code === 'ETLS' && settings.tlsSecurity === 'may')
    connected = await connect(destination, settings, true);
  if (!connected.ok) return { ok: false, failure: failureOutcome(connected.error, destination) };
  const connection = connected.value;
  // at 'connect' the last reply is the EHLO reply (after STARTTLS, the one over TLS)
  const capabilities = capabilitiesOf(connection.lastServerResponse);
  const where = formatDestination(destination);
  const auth = settings.auth;
  let refusal: Outcome | null = null;
  if (settings.tlsSecurity !== 'may' && !connection.secure) {
    refusal = ownOutcome(temporary('4.7.4', `TLS not offered by ${where}`));
  } else if (auth && !connection.secure && !isLoopback(destination.address)) {
    // (nor is the mail sent without the login: the relayhost would refuse or bounce it)
    refusal = ownOutcome(temporary('4.7.4', `not sending the relayhost password to ${where} without TLS`));
  } else if (auth && capabilities.auth) {
    const login = await step<boolean | undefined>(connection, (done) =>
      connection.login({ user: auth.user, pass: auth.pass }, done),
    );
    // (deferred like every failure to hold a session: see sendToDestination)
    if (!login.ok) refusal = failureOutcome(login.error, destination);
  }
  if (refusal) {
    await hangUp(connection, true, settings.timeoutMs);
    return { ok: false, failure: refusal };
  }
  if (settings.onUnverifiedTls) {
    // nodemailer keeps the socket (after STARTTLS, the TLS one) in a field it does not declare
    const socket = (connection as unknown as { _socket: TLSSocket })._socket;
    if (!connection.secure) settings.onUnverifiedTls(where, 'no TLS');
    else if (!socket.authorized) settings.onUnverifiedTls(where, String(socket.authorizationError));
  }
  return { ok: true, connection, capabilities };
}

/** Connects and greets; resolves once the session is ready or has failed (the socket is then closed). */
async function connect(
  destination: Destination,
  settings: SmtpClientSettings,
  plaintext: boolean,
): Promise<StepResult<SMTPConnection>> {
  const connection = new SMTPConnection({
    host: destination.address,
    port: destination.port,
    // SNI and the certificate check go by the host name, not by the address connected to
    servername: isIP(destination.host) === 0 ? destination.host : undefined,
    name: settings.hostname,
    ignoreTLS: plaintext,
    tls: { rejectUnauthorized: settings.tlsSecurity === 'verify', ...(settings.ca ? { ca: settings.ca } : {}) },
    connectionTimeout: settings.connectTimeoutMs,
    greetingTimeout: settings.connectTimeoutMs,
    socketTimeout: settings.timeoutMs,
    ...(settings.protocolLogger ? { logger: smtpProtocolLogger(settings.protocolLogger), transactionLog: true } : {}),
  });
  // every failure is also emitted as 'error': unheard, it would be thrown
  connection.on('error', () => undefined);
  const connected = await step<SMTPConnection>(connection, (done) =>
    connection.connect((err) => done(err ?? null, connection)),
  );
  // a failed handshake (or certificate check) after STARTTLS comes as a socket error: name it as nodemailer names a
  // refused STARTTLS
  if (!connected.ok && connection.upgrading) connected.error.code = 'ETLS';
  return connected;
}

/**
 * The transaction on a ready session: what the server's extensions rule out is decided first
 * (SIZE, SMTPUTF8), then MAIL FROM, RCPT TO for the rest, DATA. `polite`: the server is waiting
 * for a command, so QUIT can be sent.
 */
async function transact(
  connection: SMTPConnection,
  capabilities: Capabilities,
  destination: Destination,
  message: OutboundMessage,
): Promise<{ outcomes: Map<string, Outcome>; polite: boolean }> {
  const outcomes = refusedBeforeEnvelope(capabilities, destination, message);
  const recipients = message.recipients.filter((recipient) => !outcomes.has(recipient));
  if (recipients.length === 0) return { outcomes, polite: true };
  // nodemailer keeps its per-recipient bookkeeping (accepted, rejectedErrors) on this very object
  const envelope: Partial<SMTPConnectionEnvelope> = {
    from: message.sender,
    to: recipients,
    size: message.size,
    use8BitMime: true,
  };
  const stream = message.openMessage();
  const sent = await step<SMTPConnectionSendInfo>(connection, (done) => connection.send(envelope, stream, done));
  stream.destroy();
  // recipients refused at RCPT keep their own reply; the others share the end of the transaction
  for (const err of refusedAtRcpt(sent, envelope)) outcomes.set(err.recipient!, failureOutcome(err, destination));
  const rest = sent.ok
    ? replyOutcome(sent.value.response, 'sent', destination)
    : failureOutcome(sent.error, destination);
  for (const recipient of recipients) if (!outcomes.has(recipient)) outcomes.set(recipient, rest);
  return { outcomes, polite: sent.ok || sent.error.response !== undefined };
}

/**
 * The RCPT refusals of a send. A failed send reports them only when every recipient was
 * refused; after a failure in DATA they are read from nodemailer's bookkeeping on the envelope.
 * A refused MAIL FROM decides for everyone (a pipelined RCPT after it only gets "503 need MAIL").
 */
function refusedAtRcpt(
  sent: StepResult<SMTPConnectionSendInfo>,
  envelope: Partial<SMTPConnectionEnvelope>,
): SMTPError[] {
  if (sent.ok) return sent.value.rejectedErrors ?? [];
  if (sent.error.command === 'MAIL FROM') return [];
  return sent.error.rejectedErrors ?? envelope.rejectedErrors ?? [];
}

/**
 * Recipients this server cannot take whatever it would answer: a message over its SIZE, addresses it cannot carry
 * without SMTPUTF8.
 */
function refusedBeforeEnvelope(
  capabilities: Capabilities,
  destination: Destination,
  message: OutboundMessage,
): Map<string, Outcome> {
  const where = formatDestination(destination);
  const refused = new Map<string, Outcome>();
  if (capabilities.size > 0 && message.size > capabilities.size) {
    const tooBig = ownOutcome(
      permanent('5.3.4', `message size ${message.size} exceeds the size limit ${capabilities.size} of ${where}`),
    );
    for (const recipient of message.recipients) refused.set(recipient, tooBig);
    return refused;
  }
  if (capabilities.smtputf8) return refused;
  for (const recipient of message.recipients) {
    const address = needsSmtpUtf8(message.sender) ? message.sender : needsSmtpUtf8(recipient) ? recipient : null;
    if (address !== null)
      refused.set(
        recipient,
        ownOutcome(permanent('5.6.7', `${where} does not support SMTPUTF8, which the address ${address} needs`)),
      );
  }
  return refused;
}

/**
 * What a nodemailer error means for the recipients it applies to: a server reply keeps its words; anything else is
 * explained.
 */
function failureOutcome(error: SMTPError, destination: Destination): Outcome {
  // nodemailer sets `permanent` with the reply code: 5xx except 503 (a sequence error is not the message's fault)
  if (error.response !== undefined)
    return replyOutcome(error.response, error.permanent ? 'permanent' : 'temporary', destination);
  const [code, text] = explain(error, formatDestination(destination));
  return ownOutcome(temporary(code, text));
}

/** A server reply, on one line, as the status of the recipients it applies to. */
function replyOutcome(
  response: string,
  outcome: 'sent' | 'temporary' | 'permanent',
  destination: Destination,
): Outcome {
  const reply = response
    .split('\n')
    .map((line) => line.trim())
    .join(' ');
  return { status: statusFromReply(reply, outcome, destination.host), remote: destination };
}

/** An RFC 3463 status and mailsrv's words for a failure that came with no server reply. */
function explain(error: SMTPError, where: string): [string, string] {
  // OpenSSL errors carry a short `reason` beside a long message
  const reason = (error as { reason?: unknown }).reason;
  const detail = (typeof reason === 'string' ? reason : error.message).replace(/\s+/g, ' ').trim();
  if (error.code === 'ETIMEDOUT') {
    switch (error.timeoutType) {
      case 'CONNECT_TIMEOUT':
        return ['4.4.1', `connect to ${where}: timed out`];
      case 'GREETING_TIMEOUT':
        return ['4.4.2', `timed out waiting for the greeting of ${where}`];
      case 'UPGRADE_TIMEOUT':
        return ['4.4.2', `timed out in the TLS handshake with ${where}`];
      default:
        return ['4.4.2', `timed out waiting for a reply from ${where}`];
    }
  }
  if (error.code === 'ETLS') return ['4.7.5', `TLS with ${where} failed: ${detail}`];
  if (error.code === 'ESTREAM') return ['4.3.0', `cannot read the queued message: ${detail}`];
  if (error.originalCode !== undefined && CONNECT_ERRORS.has(error.originalCode))
    return ['4.4.1', `connect to ${where}: ${error.originalCode}`];
  return ['4.4.2', `lost connection with ${where}: ${detail}`];
}

function ownOutcome(status: DeliveryStatus): Outcome {
  return { status, remote: null };
}

/** The extensions that matter here, from the EHLO reply (a HELO reply has none). */
function capabilitiesOf(ehloReply: string | false): Capabilities {
  const keywords = (ehloReply || '')
    .split('\n')
    .slice(1)
    .map((line) =>
      line
        .replace(/^\d{3}[ -]/, '')
        .trim()
        .toUpperCase(),
    );
  const size = keywords.map((keyword) => /^SIZE\s+(\d+)$/.exec(keyword)).find((match) => match !== null);
  return {
    size: size ? Number(size[1]) : 0,
    smtputf8: keywords.includes('SMTPUTF8'),
    auth: keywords.some((keyword) => /^AUTH[ =]/.test(keyword)),
  };
}

function needsSmtpUtf8(address: string): boolean {
  return /[^\x00-\x7f]/.test(address);
}

/**
 * Runs one SMTPConnection step (connect, login, send). Resolves with its callback's outcome,
 * or with the error that ended the connection first: nodemailer reports a dropped connection
 * only as an 'error' event to a step that is not a send.
 */
function step<T>(
  connection: SMTPConnection,
  start: (done: (err: SMTPError | null | undefined, value?: T) => void) => void,
): Promise<StepResult<T>> {
  return new Promise((resolve) => {
    const finish = (result: StepResult<T>) => {
      connection.off('error', onError);
      connection.off('end', onEnd);
      resolve(result);
    };
    const onError = (error: SMTPError) => finish({ ok: false, error });
    const onEnd = () =>
      finish({ ok: false, error: Object.assign(new Error('connection closed'), { code: 'ECONNECTION' }) });
    connection.on('error', onError);
    connection.on('end', onEnd);
    start((err, value) => finish(err ? { ok: false, error: err } : { ok: true, value: value as T }));
  });
}

/**
 * Ends a session: QUIT when the server waits for a command (its reply waited for a bounded
 * time), else the connection is dropped. Resolves once nodemailer has let go of the socket.
 */
async function hangUp(connection: SMTPConnection, polite: boolean, timeoutMs: number): Promise<void> {
  if (connection.destroyed) return;
  const ended = new Promise<void>((resolve) => connection.once('end', () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  if (polite) {
    connection.quit();
    timer = setTimeout(() => connection.close(), Math.min(QUIT_WAIT_MS, timeoutMs));
  } else {
    connection.close();
  }
  await ended;
  clearTimeout(timer);
}
