// What the SMTP side may accept, decided in one place: which domains are local, which
// recipients exist (users and aliases), who may relay (mynetworks and logged-in users), which
// senders a logged-in user may use, and which senders and HELO names are safe to write into a
// From_ line or a header. An SRS address at the hostname stands for the sender of forwarded mail.
// Every refusal carries its SMTP reply.
import type { DomainMatcher } from '../config/domains.js';
import type { NetworkMatcher } from '../config/networks.js';
import { isEnvelopeSafe, MAX_ADDRESS_LENGTH, splitAddress } from '../message/address.js';
import { deliveriesFor, type RecipientDirectory } from '../delivery/route.js';
import type { ResolvedRecipient } from '../message/envelope.js';

/** A refusal with the SMTP reply it becomes (smtp-server reads `responseCode`). */
export class SmtpReplyError extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'SmtpReplyError';
  }
}

/** Who sends: the client's address and, after SMTP AUTH, the user it logged in as. */
export interface SmtpClientIdentity {
  ip: string;
  user?: string;
}

export interface PolicyOptions {
  hostname: string;
  isLocalDomain: DomainMatcher;
  mynetworks: NetworkMatcher;
  directory: () => RecipientDirectory;
  mailboxSizeLimit: number;
  mailboxSize: (user: string) => Promise<number>;
  /** an SRS0 local part → the sender it stands for; null: forged or expired; undefined: not SRS (forward/srs.ts) */
  reverseSrs: (localPart: string) => string | null | undefined;
}

export class SmtpPolicy {
  constructor(private readonly options: PolicyOptions) {}

  /** Applies changed settings (SIGHUP); the next decision uses them. */
  reconfigure(settings: Partial<PolicyOptions>): void {
    Object.assign(this.options, settings);
  }

  /** mynetworks and logged-in users may relay; their mail counts as submitted (RFC 6409). */
  mayRelay(client: SmtpClientIdentity): boolean {
    return client.user !== undefined || this.options.mynetworks(client.ip);
  }

  /** HELO/EHLO names and senders end up in headers and the From_ line. */
  checkHelo(helo: string): void {
    if (/[\x00-\x1f\x7f]/.test(helo)) throw new SmtpReplyError(501, '5.5.4 Invalid HELO name');
  }

  checkSender(address: string): void {
    if (!isEnvelopeSafe(address) || address.length > MAX_ADDRESS_LENGTH) {
      throw new SmtpReplyError(501, '5.1.7 Bad sender address syntax');
    }
  }

  /**
   * A logged-in user sends as themselves (smtp.sender_login_match): the null sender, or an
   * address in a local domain whose local part is the user, or an alias that delivers to them
   * alone (not a list they are on); never as MAILER-DAEMON, whose mail is never answered.
   */
  async checkSenderOwner(address: string, user: string): Promise<void> {
    if (address === '') return;
    const parts = splitAddress(address);
    const localPart = parts?.localPart.toLowerCase() ?? '';
    const ownAlias = async (): Promise<boolean> => {
      const resolved = await this.options.directory().resolve(localPart);
      return resolved !== null && resolved.remote.length === 0 && resolved.local.every((u) => u === user);
    };
    const owned =
      parts !== null &&
      localPart !== '' &&
      localPart !== 'mailer-daemon' &&
      this.options.isLocalDomain(parts.domain) &&
      (localPart === user || (await ownAlias()));
    if (!owned) throw new SmtpReplyError(553, `5.7.1 <${address}>: Sender address rejected: not owned by user ${user}`);
  }

  /** Decides one RCPT TO: the deliveries it expands to, or a refusal. */
  async checkRecipient(address: string, client: SmtpClientIdentity): Promise<ResolvedRecipient[]> {
    const parts = isEnvelopeSafe(address) ? splitAddress(address) : null;
    if (parts === null || parts.localPart === '') {
      if (/^postmaster$/i.test(address)) return this.checkRecipient(`postmaster@${this.options.hostname}`, client);
      throw new SmtpReplyError(501, '5.1.3 Bad recipient address syntax');
    }
    const { localPart, domain } = parts;
    if (!this.options.isLocalDomain(domain)) {
      if (this.mayRelay(client)) return [{ address, target: { kind: 'remote' } }];
      throw new SmtpReplyError(554, `5.7.1 <${address}>: Relay access denied`);
    }
    if (domain.toLowerCase() === this.options.hostname.toLowerCase()) {
      const original = this.options.reverseSrs(localPart);
      if (original === null)
        throw new SmtpReplyError(550, `5.1.1 <${address}>: Recipient address rejected: invalid or expired SRS address`);
      // a bounce to a sender whose mail an alias forwarded: it goes back to that sender
      if (original !== undefined)
        return this.options.isLocalDomain(splitAddress(original)!.domain)
          ? this.checkRecipient(original, client)
          : [{ address: original, target: { kind: 'remote' } }];
    }
    const resolved = await this.options.directory().resolve(localPart);
    if (!resolved) {
      throw new SmtpReplyError(
        550,
        `5.1.1 <${address}>: Recipient address rejected: User unknown in local recipient table`,
      );
    }
    await this.checkMailboxes(address, resolved.local);
    return deliveriesFor(address, resolved);
  }

  /** A message of `size` bytes must fit every local mailbox it goes to. */
  async checkMessageFits(users: string[], size: number): Promise<void> {
    const full = await this.firstFullMailbox(users, size);
    if (full !== undefined) throw this.mailboxFull(full);
  }

  /** The reply to a message that does not fit into the user's mailbox. */
  mailboxFull(user: string): SmtpReplyError {
    return new SmtpReplyError(552, `5.2.2 Mailbox of ${user} is full`);
  }

  private async checkMailboxes(address: string, users: string[]): Promise<void> {
    if ((await this.firstFullMailbox(users, 1)) !== undefined) {
      throw new SmtpReplyError(552, `5.2.2 <${address}>: Mailbox full`);
    }
  }

  private async firstFullMailbox(users: string[], size: number): Promise<string | undefined> {
    const limit = this.options.mailboxSizeLimit;
    if (limit === 0) return undefined;
    for (const user of users) {
      if ((await this.options.mailboxSize(user)) + size > limit) return user;
    }
    return undefined;
  }
}
