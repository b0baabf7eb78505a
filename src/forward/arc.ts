// The ARC seal of a forwarded copy (RFC 8617; README, "Forwarding: SRS and ARC"): mailauth checks
// the message as it arrived here (SPF of the original client and sender, DKIM, DMARC, an ARC chain
// it may already carry) and makes the next ARC set, instance i=N+1, signed with the hostname's
// DKIM key: ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results. A receiver that
// trusts us can then accept the copy although forwarding broke SPF (and perhaps DKIM).
import type { Readable } from 'node:stream';
import { authenticate, type DNSResolver } from 'mailauth';
import type { ClientInfo } from '../message/envelope.js';
import type { SigningKey } from '../dkim/keys.js';

export interface SealRequest {
  /** the message exactly as it will leave (with our Received line) */
  message: Readable;
  client: ClientInfo;
  /** the original envelope sender ('' for none) */
  sender: string;
  hostname: string;
  key: SigningKey;
  /** (name, type) → records, as dns.promises.resolve answers */
  resolver: DNSResolver;
}

/** The ARC header fields to put on top of the message, each without its final CRLF. */
export async function arcSeal(request: SealRequest): Promise<string[]> {
  const { client, hostname, key } = request;
  const result = await authenticate(request.message, {
    // mail made on this host (sendmail, pickup) came from no network client: it is checked as from loopback
    ip: client.ip === '' ? '127.0.0.1' : client.ip,
    helo: client.helo === '' ? hostname : client.helo,
    sender: request.sender,
    mta: hostname,
    resolver: request.resolver,
    disableBimi: true,
    seal: { signingDomain: hostname, selector: key.selector, privateKey: key.pem },
  });
  // mailauth returns the ARC set first, then its own Authentication-Results and Received-SPF
  return result.headers
    .split(/\r\n(?=[^ \t])/)
    .filter((field) => /^ARC-/i.test(field))
    .map((field) => field.replace(/\r\n$/, ''));
}
