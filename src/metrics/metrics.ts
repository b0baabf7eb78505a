// The events the daemon counts for its metrics (README "Monitoring"): one small function per
// event, called where the event already happens (most also log it). They cost one counter
// increment; with `[metrics] listen = []` the instruments are never created (prom-client is
// not even loaded) and every call returns at once. The gauges (queue, sessions, certificate)
// are read on each scrape, not here: see instruments.ts.
import type { LoginOutcome } from '../auth/session-logins.js';
import type { Instruments } from './instruments.js';

let instruments: Instruments | null = null;

/** From now on events are counted into `active` (the daemon's metrics listener is up). */
export function countInto(active: Instruments): void {
  instruments = active;
}

/** A client connected to one of the listeners (mx, submission, smtps, pop3, pop3s), refused or not. */
export function countConnection(listener: string): void {
  instruments?.connections.inc({ listener });
}

/** A message was accepted: over SMTP (250 after DATA) or from `mailsrv sendmail`. */
export function countReceived(): void {
  instruments?.received.inc();
}

/** One recipient's copy was delivered, `sinceReceivedMs` after the message came in. */
export function countDelivered(kind: 'local' | 'remote', sinceReceivedMs: number): void {
  if (instruments === null) return;
  instruments.delivered.inc({ kind });
  instruments.deliverySeconds.observe({ kind }, sinceReceivedMs / 1000);
}

/** One recipient's delivery failed for now and waits for its next attempt. */
export function countDeferred(): void {
  instruments?.deferred.inc();
}

/** One recipient failed for good or outlived max_queue_lifetime: the sender gets a bounce. */
export function countBounced(): void {
  instruments?.bounced.inc();
}

/** A connection was refused by max_clients or max_connections_per_ip. */
export function countConnectionRefused(): void {
  instruments?.rejected.inc({ reason: 'too_many_connections' });
}

/** An SMTP command (MAIL, RCPT, or the message at the end of DATA) got this refusal. */
export function countSmtpRefusal(refusal: { responseCode?: number; message: string }): void {
  instruments?.rejected.inc({ reason: rejectReason(refusal) });
}

/** What a login attempt came to, on either protocol (SessionLogins' outcome). */
export function countLogin(protocol: 'smtp' | 'pop3', outcome: LoginOutcome): void {
  if (instruments === null) return;
  if (!outcome.ok && outcome.reason === 'gone') return;
  const result = outcome.ok ? 'ok' : outcome.reason;
  if (protocol === 'pop3') instruments.pop3Logins.inc({ result });
  if (result === 'invalid') instruments.authFailures.inc({ protocol });
}

/** RETR sent a message of `octets` bytes (its size on the wire). */
export function countRetrieved(octets: number): void {
  instruments?.pop3RetrievedBytes.inc(octets);
}

/**
 * The `reason` label of a refusal: a short name from its enhanced status code (RFC 3463), so
 * the label has a small, fixed set of values whatever the reply text says.
 */
export function rejectReason({ responseCode, message }: { responseCode?: number; message: string }): string {
  if (/Relay access denied/i.test(message)) return 'relay_denied';
  const code = /^([245]\.\d{1,3}\.\d{1,3})\b/.exec(message)?.[1] ?? '';
  const named = REASONS.get(code);
  if (named !== undefined) return named;
  if (code.startsWith('5.5.') || code === '5.1.3' || code === '5.1.7') return 'bad_syntax';
  return (responseCode ?? 500) < 500 || code.startsWith('4.') ? 'temporary' : 'other';
}

const REASONS: ReadonlyMap<string, string> = new Map([
  ['5.1.1', 'unknown_recipient'],
  ['5.2.2', 'mailbox_full'],
  ['5.3.4', 'message_too_big'],
  ['5.4.6', 'mail_loop'],
  ['5.7.0', 'auth_required'],
  ['5.7.1', 'policy'],
  ['5.7.23', 'spf'],
]);
