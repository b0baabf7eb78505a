// The DNS the inbound-checks bench runs against: a local authoritative server (the tests' zone
// server) answering for the sender domain of the load, so that SPF passes (the load comes from
// 127.0.0.1), DMARC passes aligned with SPF under a p=reject policy, and the DNSBL zone lists
// nobody (every name in it is NXDOMAIN). No message is signed, so DKIM finds none.
import { startDnsZone, type DnsZoneServer } from '../test/support/dns-zone.js';

/** The envelope sender (and From:) of the checked load. */
export const CHECKED_SENDER = 'bench@sender.bench.test';
/** The DNSBL zone mailsrv is told to check: empty. */
export const EMPTY_DNSBL = 'bl.bench.test';

export function startChecksDns(): Promise<DnsZoneServer> {
  return startDnsZone({
    'sender.bench.test': { txt: ['v=spf1 ip4:127.0.0.0/8 -all'] },
    '_dmarc.sender.bench.test': { txt: ['v=DMARC1; p=reject'] },
  });
}
