// The trace headers a delivery adds on top of a message (README, "Files on disk"):
// Return-Path, Delivered-To, Received and X-Delivery-ID, folded as RFC 5322 wants, then the
// results of the inbound checks (README, "Reading Authentication-Results"); and the
// Message-ID and Date that submitted mail gets when it has none.
import { rfc5322Date } from './date.js';
import type { Envelope } from './envelope.js';

/** Message-ID and Date for submitted mail that lacks them (as Postfix's cleanup adds them). */
export function missingSubmissionHeaders(envelope: Envelope, hostname: string): string[] {
  if (!envelope.client.submitted) return [];
  return [`Message-ID: <${envelope.id}@${hostname}>`, `Date: ${rfc5322Date(new Date(envelope.receivedAt))}`];
}

/**
 * The Received line this server adds (RFC 5321 4.4): for a local delivery and for mail it
 * relays (which is how the next server, and mailsrv itself, can count hops and stop a loop).
 * `forRecipient` is named when the copy goes to one recipient only.
 */
export function receivedHeader(envelope: Envelope, hostname: string, forRecipient?: string): string {
  const { client } = envelope;
  const clientName = client.hostname || 'unknown';
  // mail made on this host (bounces, sendmail) has no client to name, as Postfix's pickup writes it
  const from = client.ip === '' ? '' : `from ${client.helo || 'unknown'} (${clientName} [${client.ip}])\r\n\t`;
  const by =
    client.uid === undefined ? `by ${hostname} (mailsrv)` : `by ${hostname} (mailsrv, from userid ${client.uid})`;
  const recipient = forRecipient === undefined ? '' : `\r\n\tfor <${forRecipient}>`;
  return (
    `Received: ${from}${by} with ${client.protocol} id ${envelope.id}${recipient}; ` +
    `${rfc5322Date(new Date(envelope.receivedAt))}`
  );
}

export function traceHeaders(envelope: Envelope, index: number, hostname: string, deliveredTo: string): string[] {
  const recipient = envelope.recipients[index]!;
  return [
    `Return-Path: <${envelope.sender}>`,
    `Delivered-To: ${deliveredTo}`,
    receivedHeader(envelope, hostname, recipient.address),
    `X-Delivery-ID: ${recipient.deliveryId}`,
    ...(envelope.addedHeaders ?? []),
  ];
}
