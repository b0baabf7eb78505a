// Thunderbird's autoconfig answer (clientConfig 1.1, the format Thunderbird and Evolution read
// from autoconfig.DOMAIN/mail/config-v1.1.xml): the provider is the asked-for domain, the
// servers are this host's POP3 and submission ports; the user name is the address's local part.
import type { MailService, MailSite } from './site.js';
import { escapeXml } from './xml.js';

/** The clientConfig document for accounts of `domain` (one of the site's domains). */
export function clientConfigXml(site: MailSite, domain: string): string {
  const server = (element: 'incomingServer' | 'outgoingServer', type: string, service: MailService) =>
    [
      `    <${element} type="${type}">`,
      `      <hostname>${escapeXml(site.hostname)}</hostname>`,
      `      <port>${service.port}</port>`,
      `      <socketType>${service.socketType}</socketType>`,
      '      <username>%EMAILLOCALPART%</username>',
      '      <authentication>password-cleartext</authentication>',
      `    </${element}>`,
    ].join('\n');
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<clientConfig version="1.1">',
    `  <emailProvider id="${escapeXml(domain)}">`,
    ...site.domains.map((name) => `    <domain>${escapeXml(name)}</domain>`),
    `    <displayName>${escapeXml(domain)}</displayName>`,
    `    <displayShortName>${escapeXml(domain)}</displayShortName>`,
    ...site.incoming.map((service) => server('incomingServer', 'pop3', service)),
    ...site.outgoing.map((service) => server('outgoingServer', 'smtp', service)),
    '  </emailProvider>',
    '</clientConfig>',
    '',
  ].join('\n');
}
