// Mail addresses as mailsrv handles them: `local@domain`, split at the last "@", the domain
// compared in lowercase; which addresses are safe to carry in an envelope, a From_ line and a
// header. The one place these rules live for smtp, queue, relay, bounce and sendmail.

/** Characters that never belong in an envelope address (they would break a header or the From_ line). */
const UNSAFE_IN_ENVELOPE = /[\s\x00-\x1f\x7f]/;
/** Longest sender address taken from a client (RFC 5321: 64 + 1 + 255). */
export const MAX_ADDRESS_LENGTH = 320;

const ADDRESS_PART = '[^\\s\\x00-\\x1f\\x7f<>()[\\]\\\\,;:"@]';
const STRICT_ADDRESS = new RegExp(`^(?!-)${ADDRESS_PART}{1,64}@${ADDRESS_PART}{1,255}$`, 'u');

export interface AddressParts {
  localPart: string;
  /** lowercase */
  domain: string;
}

/** `local@domain` split at its last "@" (a quoted local part may hold one); null without "@". */
export function splitAddress(address: string): AddressParts | null {
  const at = address.lastIndexOf('@');
  if (at < 0) return null;
  return { localPart: address.slice(0, at), domain: address.slice(at + 1).toLowerCase() };
}

/** The lowercase domain of an address ('' when it has none). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/** A bare name gets `@hostname`, as mail made on this host is addressed. */
export function qualify(address: string, hostname: string): string {
  return address.includes('@') ? address : `${address}@${hostname}`;
}

/** No blanks or controls: what an address from an SMTP client must be free of. */
export function isEnvelopeSafe(address: string): boolean {
  return !UNSAFE_IN_ENVELOPE.test(address);
}

/**
 * `local@domain` that is safe in an envelope, a From_ line and a header: no spaces, controls,
 * brackets, quotes or separators (quoted local parts and address literals are not taken), and
 * no leading "-" (a misplaced option such as `-f` is no recipient). For mail made on this host.
 */
export function isSafeAddress(address: string): boolean {
  return STRICT_ADDRESS.test(address);
}
