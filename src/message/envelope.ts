// The envelope of a message as the queue keeps it: who sent it, how it came in, and each
// delivery it is owed. Plain types, imported by every layer; this file imports nothing.

export interface ClientInfo {
  ip: string;
  helo: string;
  /** ESMTP, ESMTPS, ESMTPSA, SMTP or LOCAL (sendmail injection) */
  protocol: string;
  /** reverse-DNS name, or '' */
  hostname: string;
  /** mail from mynetworks or an authenticated user: Message-ID/Date are added if missing */
  submitted: boolean;
  /** mail made on this host (protocol LOCAL): the uid of the local user who sent it */
  uid?: number;
}

/** `forwarded`: an alias here sends it on (README, "Forwarding: SRS and ARC"): SRS and an ARC seal on the way out. */
export type RecipientTarget = { kind: 'local'; user: string } | { kind: 'remote'; forwarded?: boolean };

/** One delivery a recipient address leads to (a user here, or a remote address). */
export interface ResolvedRecipient {
  /** the address as the client gave it (or the alias target) */
  address: string;
  target: RecipientTarget;
}

export interface EnvelopeRecipient extends ResolvedRecipient {
  /** unique per delivery; written as X-Delivery-ID */
  deliveryId: string;
}

export interface Envelope {
  id: string;
  sender: string;
  receivedAt: number;
  client: ClientInfo;
  recipients: EnvelopeRecipient[];
  /**
   * header fields this server's inbound checks put on top of the message (Authentication-Results,
   * X-Spam-Flag), written at every delivery below its trace headers
   */
  addedHeaders?: string[];
  /** a bounce or delay warning: the entry and recipients it reports on (see QueueManager.report) */
  noticeOf?: NoticeOrigin;
}

/** What a delivery status notice reports: these recipients of that queue entry failed, or are late. */
export interface NoticeOrigin {
  queueId: string;
  indexes: number[];
  kind: 'failure' | 'delay';
}

/** The client of mail made on this host: no network peer; `uid` of the local user who sent it, if any. */
export function localClient(uid?: number): ClientInfo {
  return { ip: '', helo: '', hostname: '', protocol: 'LOCAL', submitted: true, ...(uid === undefined ? {} : { uid }) };
}
