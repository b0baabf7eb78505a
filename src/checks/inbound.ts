// The inbound checks of mail from the internet, as the MX listener uses them (README,
// "Putting it on the internet"): only sessions on smtp.listen from clients outside mynetworks
// that have not logged in are checked, so mail from mynetworks costs nothing extra.
// - at connect: the DNSBL lookups start; their answer is given at RCPT (554 5.7.1);
// - at MAIL FROM: SPF starts and runs while the dialogue goes on; only `spf = "enforce"` waits
//   for it (a fail is refused with 550 5.7.23);
// - in DATA: a MessageCheck verifies DKIM as the message streams in, then DMARC at its end.
import type { SMTPServerSession } from 'smtp-server';
import type { Logger } from '../log.js';
import { SmtpReplyError } from '../smtp/policy.js';
import { CheckDns } from './dns-lookup.js';
import { Dnsbl, type DnsblListing } from './dnsbl.js';
import { MessageCheck, type MessageCheckSettings } from './message-check.js';
import { checkSpf, type SpfOutcome } from './sender-check.js';
import { ObjectSlot } from '../object-slot.js';

/** What SIGHUP may change. */
export interface InboundCheckSettings extends MessageCheckSettings {
  dnsbl: string[];
  dnsTimeoutMs: number;
  dnsServers: string[];
}

interface SessionChecks {
  dnsbl: Promise<DnsblListing | null> | null;
  spf: Promise<SpfOutcome> | null;
}

export class InboundChecks {
  private settings: InboundCheckSettings;
  private dns: CheckDns;
  private dnsbl: Dnsbl;
  /** the checked sessions (outside mynetworks, on the MX port) */
  private readonly sessions = new ObjectSlot<SMTPServerSession, SessionChecks>('inbound checks');

  constructor(settings: InboundCheckSettings) {
    this.settings = settings;
    this.dns = new CheckDns(settings.dnsServers, settings.dnsTimeoutMs);
    this.dnsbl = new Dnsbl(this.dns);
  }

  reconfigure(settings: InboundCheckSettings): void {
    const dnsChanged =
      settings.dnsTimeoutMs !== this.settings.dnsTimeoutMs ||
      settings.dnsServers.join() !== this.settings.dnsServers.join();
    this.settings = settings;
    if (dnsChanged) {
      this.dns = new CheckDns(settings.dnsServers, settings.dnsTimeoutMs);
      this.dnsbl = new Dnsbl(this.dns);
    }
  }

  /** A client outside mynetworks connected to the MX port: its session is checked from now on. */
  connected(session: SMTPServerSession, log: Logger): void {
    const zones = this.settings.dnsbl;
    const dnsbl =
      zones.length === 0
        ? null
        : this.dnsbl.check(session.remoteAddress, zones).then((verdict) => {
            for (const { zone, code } of verdict.failures)
              log.warn({ zone, client: verdict.listing?.client ?? session.remoteAddress, code }, 'dnsbl lookup failed');
            if (verdict.listing) log.info({ ...verdict.listing }, 'dnsbl listed');
            return verdict.listing;
          });
    this.sessions.set(session, { dnsbl, spf: null });
  }

  /** The checks of this session, unless it is exempt (mynetworks, or logged in). */
  private checked(session: SMTPServerSession): SessionChecks | undefined {
    return session.user === undefined ? this.sessions.get(session) : undefined;
  }

  /**
   * MAIL FROM: starts SPF. Returns what the reply must wait for: only an enforced SPF check
   * (whose fail is refused); undefined when the reply can go at once. `log` gives the session's
   * logger (made only when something is logged).
   */
  mailFrom(session: SMTPServerSession, sender: string, log: () => Logger): Promise<void> | undefined {
    const checks = this.checked(session);
    if (checks === undefined) return undefined;
    const { settings } = this;
    checks.spf = null;
    if (settings.spf === 'off' && settings.dmarc === 'off') return undefined;
    const ip = session.remoteAddress;
    const spf = checkSpf(this.dns, { ip, sender, helo: session.hostNameAppearsAs ?? '', hostname: settings.hostname });
    checks.spf = spf;
    if (settings.spf !== 'enforce') return undefined;
    return spf.then((outcome) => {
      if (outcome.result !== 'fail') return;
      log().info({ spf: outcome.result, domain: outcome.domain, client: ip }, 'spf fail');
      throw new SmtpReplyError(
        550,
        `5.7.23 SPF check failed: ${outcome.domain} does not designate ${ip} as permitted sender`,
      );
    });
  }

  /** RCPT TO: a client on a DNS blocklist is refused. undefined: nothing to wait for (exempt, or no lists). */
  rcptTo(session: SMTPServerSession): Promise<void> | undefined {
    return this.checked(session)?.dnsbl?.then((listing) => {
      if (listing)
        throw new SmtpReplyError(
          554,
          `5.7.1 Service unavailable; client [${listing.client}] blocked using ${listing.zone}`,
        );
    });
  }

  /** DATA: the checks of the message (null for an exempt session). */
  message(session: SMTPServerSession): MessageCheck | null {
    const checks = this.checked(session);
    return checks === undefined ? null : new MessageCheck(this.settings, this.dns, checks.spf);
  }
}
