// Outlook's autodiscover (the "POX" protocol: a POST of an Autodiscover request naming an
// EMailAddress, answered with the outlook responseschema/2006a): one POP3 and one SMTP
// Protocol entry, the preferred service of each, logging in with the address's local part.
import type { MailService, MailSite } from './site.js';
import { escapeXml, unescapeXml } from './xml.js';

/** The EMailAddress element of the request (any namespace prefix), or null when there is none. */
const EMAIL_ADDRESS = /<(?:[A-Za-z_][\w.-]*:)?EMailAddress\s*>([^<]{1,400})<\/(?:[A-Za-z_][\w.-]*:)?EMailAddress\s*>/;

/** The address an autodiscover request asks about, trimmed; null when it names none. */
export function requestedAddress(body: string): string | null {
  const match = EMAIL_ADDRESS.exec(body);
  return match === null ? null : unescapeXml(match[1]!).trim();
}

const ENCRYPTION = { SSL: 'SSL', STARTTLS: 'TLS', plain: 'None' } as const;

/** The response for the account `localPart`@(a site domain). */
export function autodiscoverXml(site: MailSite, localPart: string): string {
  const protocol = (type: 'POP3' | 'SMTP', service: MailService | undefined) =>
    service === undefined
      ? []
      : [
          '      <Protocol>',
          `        <Type>${type}</Type>`,
          `        <Server>${escapeXml(site.hostname)}</Server>`,
          `        <Port>${service.port}</Port>`,
          `        <LoginName>${escapeXml(localPart)}</LoginName>`,
          '        <DomainRequired>off</DomainRequired>',
          '        <SPA>off</SPA>',
          `        <SSL>${service.socketType === 'plain' ? 'off' : 'on'}</SSL>`,
          `        <Encryption>${ENCRYPTION[service.socketType]}</Encryption>`,
          '        <AuthRequired>on</AuthRequired>',
          '      </Protocol>',
        ];
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">',
    '  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">',
    '    <Account>',
    '      <AccountType>email</AccountType>',
    '      <Action>settings</Action>',
    ...protocol('POP3', site.incoming[0]),
    ...protocol('SMTP', site.outgoing[0]),
    '    </Account>',
    '  </Response>',
    '</Autodiscover>',
    '',
  ].join('\n');
}
