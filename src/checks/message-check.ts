// The checks of one message at the end of DATA (README, "Putting it on the internet"): DKIM
// (RFC 6376, every signature verified by mailauth while the message streams in, never held
// whole) and DMARC (RFC 7489, from the From: domain, the DKIM and the SPF results). The result:
// one Authentication-Results field (and `X-Spam-Flag: YES` for a DMARC quarantine under
// enforce) to put on top, or the refusal an enforced policy calls for. Forged
// Authentication-Results fields naming us are removed from the message on the way in.
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { dkimVerify, dmarc, type DKIMResult, type DKIMVerifyResult } from 'mailauth';
import { domainOf } from '../message/address.js';
import { SmtpReplyError } from '../smtp/policy.js';
import { authenticationResults, type MethodResult } from './auth-results.js';
import type { CheckDns } from './dns-lookup.js';
import { ForgedResultsFilter } from './forged-results.js';
import type { ChunkTaker } from '../smtp/message-intake.js';
import { spfResult, type SpfOutcome } from './sender-check.js';

export type CheckMode = 'off' | 'tag' | 'enforce';

export interface MessageCheckSettings {
  hostname: string;
  spf: CheckMode;
  dkim: 'off' | 'tag';
  dmarc: CheckMode;
}

/** A header block larger than this is not verified (Postfix keeps at most 100 KiB of one). */
const MAX_VERIFIED_HEADER_BYTES = 1024 * 1024;
/** More DKIM-Signature fields than this are not verified (each costs a body hash and a lookup). */
export const MAX_DKIM_SIGNATURES = 20;

export interface CheckVerdict {
  /** header fields to put on top of the message */
  headers: string[];
  /** what an enforced policy says instead of 250 */
  refusal: SmtpReplyError | null;
  /** the results, for the log */
  summary: Record<string, string>;
}

/** What the DKIM verifier came to: its results, or why it could not run. */
type Verification = { verified: DKIMVerifyResult } | { unverifiable: string };

export class MessageCheck {
  private readonly filter: ForgedResultsFilter;
  /** message chunks held for the verifier until the header block is complete (and counted) */
  private headerChunks: Buffer[] = [];
  private headerBytes = 0;
  private input: PassThrough | null = null;
  private verification: Promise<Verification> | null = null;
  private unverifiable: string | null = null;

  constructor(
    private readonly settings: MessageCheckSettings,
    private readonly dns: CheckDns,
    /** the SPF check started at MAIL FROM, when SPF or DMARC is on */
    private readonly spf: Promise<SpfOutcome> | null,
  ) {
    this.filter = new ForgedResultsFilter(settings.hostname);
  }

  /** Whether DKIM signatures are verified (for the DKIM result, or for DMARC). */
  private get verifying(): boolean {
    return this.settings.dkim !== 'off' || this.settings.dmarc !== 'off';
  }

  /**
   * One chunk of the message as received: what the forged-results filter lets through goes to
   * `store`, and the chunk to the DKIM verifier. After the last chunk, end(); if the message is
   * cut off (client gone, a write failed), abort().
   */
  async take(chunk: Buffer, store: ChunkTaker): Promise<void> {
    const out: Buffer[] = [];
    const inHeader = !this.filter.headerDone;
    this.filter.write(chunk, out);
    if (this.verifying) await this.feed(chunk, inHeader);
    for (const piece of out) await store(piece);
  }

  /** The message is all in: the rest the filter held goes to `store`, and the verifier gets the end. */
  async end(store: ChunkTaker): Promise<void> {
    const out: Buffer[] = [];
    this.filter.end(out);
    for (const piece of out) await store(piece);
    if (this.verifying && this.verification === null) this.startVerifier();
    this.input?.end();
  }

  /** The message was cut off: the verifier stops too. */
  abort(): void {
    this.input?.destroy(new Error('message not received'));
  }

  private async feed(chunk: Buffer, inHeader: boolean): Promise<void> {
    if (this.unverifiable !== null) return;
    if (this.verification === null) {
      this.headerChunks.push(chunk);
      this.headerBytes += chunk.length;
      if (inHeader && this.headerBytes > MAX_VERIFIED_HEADER_BYTES) {
        this.unverifiable = `header block larger than ${MAX_VERIFIED_HEADER_BYTES} bytes`;
        this.headerChunks = [];
        return;
      }
      if (!this.filter.headerDone) return;
      this.startVerifier();
      return;
    }
    const input = this.input!;
    // the verifier may fail while its input waits for 'drain': its settling ends the wait too
    if (!input.write(chunk)) await Promise.race([once(input, 'drain'), this.verification]).catch(() => undefined);
  }

  /** Starts the verifier with the header block held so far, unless it has too many signatures. */
  private startVerifier(): void {
    const held = this.headerChunks;
    this.headerChunks = [];
    if (this.unverifiable !== null) return;
    if (this.filter.dkimSignatures > MAX_DKIM_SIGNATURES) {
      this.unverifiable = `more than ${MAX_DKIM_SIGNATURES} DKIM-Signature fields`;
      return;
    }
    const input = new PassThrough();
    this.input = input;
    this.verification = dkimVerify(input, { resolver: this.dns.resolve }).then(
      (verified) => ({ verified }),
      (err: Error) => {
        // the rest of the message is not fed to a verifier that failed (nor held for it)
        this.unverifiable = `DKIM verification failed: ${err.message}`;
        input.destroy();
        return { unverifiable: this.unverifiable };
      },
    );
    for (const chunk of held) input.write(chunk);
  }

  /** The verdict, once the whole message has passed through take() and end(). */
  async finish(): Promise<CheckVerdict> {
    const { settings } = this;
    const spf = this.spf === null ? null : await this.spf;
    const verification = this.unverifiable !== null ? { unverifiable: this.unverifiable } : await this.verification;
    const results: MethodResult[] = [];
    if (spf !== null && settings.spf !== 'off') results.push(spfResult(spf));
    const signatures = verification !== null && 'verified' in verification ? verification.verified.results : [];
    if (settings.dkim !== 'off') results.push(...dkimResults(verification, signatures, this.filter.dkimSignatures));
    let refusal: SmtpReplyError | null = null;
    const headers: string[] = [];
    if (settings.dmarc !== 'off' && verification !== null) {
      const outcome = await this.dmarcOutcome(verification, signatures, spf);
      results.push(outcome.result);
      if (settings.dmarc === 'enforce') {
        refusal = outcome.refusal;
        if (outcome.quarantine) headers.push('X-Spam-Flag: YES');
      }
    }
    if (results.length > 0) headers.unshift(authenticationResults(settings.hostname, results));
    const summary = Object.fromEntries(results.map((r) => [r.method, r.result]));
    if (this.filter.removed > 0) summary.removedForged = String(this.filter.removed);
    return { headers, refusal, summary };
  }

  private async dmarcOutcome(
    verification: Verification,
    signatures: DKIMResult[],
    spf: SpfOutcome | null,
  ): Promise<{ result: MethodResult; refusal: SmtpReplyError | null; quarantine: boolean }> {
    const unauthenticated = (reason: string) => ({
      result: { method: 'dmarc' as const, result: 'permerror', comment: reason, properties: {} },
      refusal: new SmtpReplyError(550, `5.7.1 Message cannot be authenticated: ${reason}`),
      quarantine: false,
    });
    if ('unverifiable' in verification) return unauthenticated(verification.unverifiable);
    const from = verification.verified.headerFrom;
    if (from.length !== 1) return unauthenticated(`${from.length} From: addresses, DMARC needs exactly one`);
    const fromDomain = domainOf(from[0]!).toLowerCase();
    const judge = (results: string[]) =>
      dmarc({
        headerFrom: from[0]!,
        spfDomains: spf !== null && results.includes(spf.result) ? [spf.domain] : [],
        dkimDomains: signatures
          .filter((s) => results.includes(s.status.result))
          .map((s) => ({
            id: s.id,
            domain: s.signingDomain,
            aligned: s.status.aligned,
            underSized: s.status.underSized,
          })),
        resolver: this.dns.resolve,
      });
    const checked = await judge(['pass']);
    const properties = { 'header.from': fromDomain };
    const policy = checked ? checked.policy : undefined;
    let result = checked ? checked.status.result : 'permerror';
    let comment = policy ? `p=${policy}` : undefined;
    // a failure that an SPF or DKIM lookup in time might have turned into a pass is no failure
    // (never rejected); only checks that would align count, so a forger's own slow DNS is no way out
    const hypothetical = result === 'fail' ? await judge(['pass', 'temperror']) : false;
    const lookupFailed = hypothetical !== false && hypothetical.status.result === 'pass';
    if (lookupFailed) {
      result = 'temperror';
      comment = `SPF or DKIM lookup failed; p=${policy}`;
    }
    const methodResult: MethodResult = { method: 'dmarc', result, properties, ...(comment ? { comment } : {}) };
    if (result === 'temperror' && !lookupFailed) {
      const refusal = new SmtpReplyError(
        451,
        `4.7.5 DMARC policy of ${fromDomain} could not be looked up, try again later`,
      );
      return { result: { ...methodResult, comment: 'DMARC record lookup failed' }, refusal, quarantine: false };
    }
    const failed = result === 'fail';
    return {
      result: methodResult,
      refusal:
        failed && policy === 'reject'
          ? new SmtpReplyError(550, `5.7.1 Message rejected by the DMARC policy of ${fromDomain}`)
          : null,
      quarantine: failed && policy === 'quarantine',
    };
  }
}

/**
 * The dkim= results: one per signature mailauth could read, one permerror for those it skipped
 * as malformed (no d= or s=, unknown algorithm), `none` for an unsigned message.
 */
function dkimResults(verification: Verification | null, signatures: DKIMResult[], fields: number): MethodResult[] {
  if (verification !== null && 'unverifiable' in verification)
    return [{ method: 'dkim', result: 'permerror', comment: verification.unverifiable, properties: {} }];
  const read = signatures.filter((s) => s.signingDomain);
  const malformed = fields - read.length;
  const results: MethodResult[] =
    malformed > 0
      ? [
          {
            method: 'dkim',
            result: 'permerror',
            comment: `${malformed} malformed DKIM-Signature fields`,
            properties: {},
          },
        ]
      : [];
  if (read.length === 0 && results.length === 0) return [{ method: 'dkim', result: 'none', properties: {} }];
  return results.concat(
    read.map((s) => {
      // a body that does not match its signed hash fails verification (RFC 6376 6.3)
      const bodyChanged = s.status.result === 'neutral' && s.status.comment === 'body hash did not verify';
      return {
        method: 'dkim',
        result: bodyChanged ? 'fail' : s.status.result,
        ...(s.status.comment ? { comment: s.status.comment } : {}),
        properties: { 'header.d': s.signingDomain, ...(s.selector ? { 'header.s': s.selector } : {}) },
      };
    }),
  );
}
