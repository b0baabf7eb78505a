// A message's DKIM-Signature fields (README, "DKIM signing"), made by mailauth's signer:
// relaxed/relaxed, rsa-sha256 and, when the domain has an Ed25519 key too, a second
// ed25519-sha256 signature. h= names each field of SIGNED_FIELDS the message has, and From once
// more than it has ("oversigning", RFC 6376 8.15), so a From: added on the way breaks the
// signature. The message is read as a stream: the signer holds only its header block.
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DkimSigner, type ParsedHeader } from 'mailauth/lib/dkim/dkim-signer.js';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import { domainOf } from '../message/address.js';
import { headerLines } from '../message/header-block.js';
import type { DomainKeys } from './keys.js';

/** The fields signed when present: addressing, subject, identity, threading, MIME and list headers. */
export const SIGNED_FIELDS: readonly string[] = [
  'From',
  'Sender',
  'Reply-To',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'In-Reply-To',
  'References',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
  'Content-Disposition',
  'Content-ID',
  'Content-Description',
  'List-Id',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
];

/** mailauth's signer, naming From in h= once more than the message has it. */
class OversigningSigner extends DkimSigner {
  override async messageHeaders(headers: { parsed: ParsedHeader[] }): Promise<void> {
    // h= lists the signed fields bottom-up, each instance by its casedKey: the topmost From comes
    // last, and one more name after it stands for an instance that does not exist (hashed as nothing)
    const topmostFrom = headers.parsed.find((header) => header.key === 'from');
    if (topmostFrom !== undefined) topmostFrom.casedKey += ':From';
    await super.messageHeaders(headers);
  }
}

export interface Signatures {
  /** the DKIM-Signature fields, each with its CRLF ('' when none could be made) */
  fields: string;
  /** why a signature could not be made */
  errors: string[];
}

/** Signs `message` (CRLF line ends) with the domain's keys: RSA, then Ed25519 if it has one. */
export async function dkimSignatures(message: Readable, keys: DomainKeys, now: Date): Promise<Signatures> {
  const signer = new OversigningSigner({
    canonicalization: 'relaxed/relaxed',
    headerList: SIGNED_FIELDS.join(':'),
    signTime: now,
    signatureData: [keys.rsa, ...(keys.ed25519 === undefined ? [] : [keys.ed25519])].map((key) => ({
      signingDomain: keys.domain,
      selector: key.selector,
      privateKey: key.pem,
      algorithm: `${key.type}-sha256`,
    })),
  });
  await pipeline(message, signer);
  return {
    fields: signer.signatureHeaders.map((field) => `${field}\r\n`).join(''),
    errors: signer.errors.map(({ selector, err }) => `selector ${selector}: ${err.message}`),
  };
}

/** A header block's fields, unfolded: each name lowercase, each value as written after its colon. */
export function headerFields(headerBlock: Buffer): { name: string; value: string }[] {
  const fields: { name: string; value: string }[] = [];
  for (const line of headerLines(headerBlock)) {
    const text = line.toString('utf8');
    const last = fields.at(-1);
    if (/^[ \t]/.test(text)) {
      if (last !== undefined) last.value += text;
      continue;
    }
    const colon = text.indexOf(':');
    fields.push({ name: colon > 0 ? text.slice(0, colon).trim().toLowerCase() : '', value: text.slice(colon + 1) });
  }
  return fields;
}

/**
 * The lowercase domain of the address in a header block's From: field; null when there is no
 * From:, more than one, or one without an address (nothing is signed then).
 */
export function fromDomain(headerBlock: Buffer): string | null {
  const from = headerFields(headerBlock).filter((field) => field.name === 'from');
  if (from.length !== 1) return null;
  const addresses = addressparser(from[0]!.value, { flatten: true });
  const domain = addresses.length === 0 ? '' : domainOf(addresses[0]!.address);
  return domain === '' ? null : domain;
}
