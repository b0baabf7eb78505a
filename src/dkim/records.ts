// The DNS records a site publishes for its mail (README, "Putting it on the internet"), written
// zone-file style: the DKIM key records (RFC 6376 3.6.1; Ed25519 keys as RFC 8463 wants them),
// SPF, DMARC, the MX, the RFC 6186 SRV records for mail clients and the autoconfig name.
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Config } from '../config/schema.js';
import { parseListen } from '../config/units.js';
import type { DkimKeyType, SigningKey } from './keys.js';

/** The TTL printed with every record. */
const TTL = 3600;
/** A TXT record's character-strings hold at most 255 bytes each (RFC 1035 3.3). */
const MAX_TXT_STRING = 255;
/** An Ed25519 SubjectPublicKeyInfo is this prefix and then the 32-byte key. */
const ED25519_SPKI_PREFIX_LENGTH = 12;

/** The p= value: RSA as SubjectPublicKeyInfo, Ed25519 as the bare 32-byte key (RFC 8463 4.2), base64. */
export function publicKeyValue(privateKey: KeyObject, type: DkimKeyType): string {
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return (type === 'rsa' ? spki : spki.subarray(ED25519_SPKI_PREFIX_LENGTH)).toString('base64');
}

export function dkimRecordValue(privateKey: KeyObject, type: DkimKeyType): string {
  return `v=DKIM1; k=${type}; p=${publicKeyValue(privateKey, type)}`;
}

/** A TXT value as zone-file character-strings: quoted, at most 255 bytes each, `"` and `\` escaped. */
export function txtStrings(value: string): string {
  const bytes = Buffer.from(value, 'utf8');
  const parts: string[] = [];
  for (let start = 0; start < bytes.length || parts.length === 0; start += MAX_TXT_STRING) {
    const part = bytes.subarray(start, start + MAX_TXT_STRING).toString('latin1');
    parts.push(`"${part.replace(/["\\]/g, '\\$&')}"`);
  }
  return parts.join(' ');
}

/** One record line; `name` gets its final dot. */
export function recordLine(name: string, type: string, data: string): string {
  return `${name}. ${TTL} IN ${type} ${data}`;
}

export function txtRecord(name: string, value: string): string {
  return recordLine(name, 'TXT', txtStrings(value));
}

export function dkimRecord(selector: string, domain: string, privateKey: KeyObject, type: DkimKeyType): string {
  return txtRecord(`${selector}._domainkey.${domain}`, dkimRecordValue(privateKey, type));
}

/**
 * Everything a local domain publishes: its DKIM records, SPF, DMARC, the MX naming `hostname`,
 * the RFC 6186 SRV records of the listeners configured (port 0 and target "." for a service
 * not offered) and the autoconfig name.
 */
export function domainRecords(
  config: Pick<Config, 'hostname' | 'smtp' | 'pop3'>,
  domain: string,
  keys: Pick<SigningKey, 'selector' | 'key' | 'type'>[],
): string[] {
  const host = config.hostname;
  const lines = [`; ${domain}`];
  if (keys.length === 0)
    lines.push(`; no DKIM key: make one with \`mailsrv dkim keygen ${domain}\`, then run this again`);
  for (const { selector, key, type } of keys) lines.push(dkimRecord(selector, domain, key, type));
  lines.push(
    txtRecord(domain, 'v=spf1 mx -all'),
    txtRecord(`_dmarc.${domain}`, `v=DMARC1; p=quarantine; rua=mailto:postmaster@${domain}`),
    recordLine(domain, 'MX', `10 ${host}.`),
  );
  const services: [service: string, listeners: string[]][] = [
    ['_submission', config.smtp.submission],
    ['_submissions', config.smtp.smtps],
    ['_pop3s', config.pop3.pop3s],
    ['_pop3', config.pop3.listen],
  ];
  for (const [service, listeners] of services) {
    const port = listeners.length === 0 ? undefined : parseListen(listeners[0]!)?.port;
    const target = port === undefined ? '0 0 0 .' : `0 1 ${port} ${host}.`;
    lines.push(recordLine(`${service}._tcp.${domain}`, 'SRV', target));
  }
  lines.push(recordLine(`autoconfig.${domain}`, 'CNAME', `${host}.`));
  return lines;
}
