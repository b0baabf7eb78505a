// Signs mail submitted here before it is queued or delivered (README, "DKIM signing"): mail from
// AUTH users, mynetworks and `mailsrv sendmail`, and bounces, whose From: domain has a key. So a
// local recipient gets the same signed bytes a remote one does. The Message-ID and Date that a
// delivery would add to submitted mail lacking them are added here, above the message, to be
// signed too. With no key at all nothing is read; a message is never held whole for this.
import { Readable } from 'node:stream';
import type { Logger } from '../log.js';
import type { Envelope } from '../message/envelope.js';
import { readHeaderSection } from '../message/header-block.js';
import { missingSubmissionHeaders } from '../message/trace.js';
import type { DkimKeys } from './keys.js';
import { dkimSignatures, fromDomain, headerFields } from './sign.js';

/** A header block longer than this is not signed (the signer holds the whole block). */
export const MAX_SIGNED_HEADER_BYTES = 256 * 1024;

/** A message received but not yet accepted (a PendingEntry). */
export interface UnsignedMessage {
  readonly envelope: Envelope;
  readonly messageSize: number;
  openData(): Readable;
  prepend(head: Buffer): Promise<void>;
}

/** What signing reads as it is now (SIGHUP replaces both). */
export interface SigningContext {
  keys: DkimKeys;
  hostname: string;
}

export class SubmissionSigner {
  constructor(
    private readonly context: () => SigningContext,
    private readonly logger: Logger,
  ) {}

  /** Signs `message` when its From: domain has a key; resolves to the message's size then. */
  async sign(message: UnsignedMessage): Promise<number> {
    const { keys, hostname } = this.context();
    if (keys.empty) return message.messageSize;
    const { block, complete } = await readHeaderSection(message.openData(), MAX_SIGNED_HEADER_BYTES);
    const domain = fromDomain(block);
    const domainKeys = domain === null ? undefined : keys.forDomain(domain);
    if (domainKeys === undefined) return message.messageSize;
    const log = this.logger.child({ queueId: message.envelope.id });
    if (!complete) {
      log.warn({ domain, limit: MAX_SIGNED_HEADER_BYTES }, 'header block too long to sign; sent unsigned');
      return message.messageSize;
    }
    const present = new Set(headerFields(block).map((field) => field.name));
    const added = missingSubmissionHeaders(message.envelope, hostname)
      .filter((line) => !present.has(line.slice(0, line.indexOf(':')).toLowerCase()))
      .map((line) => `${line}\r\n`)
      .join('');
    const addedBytes = Buffer.from(added, 'utf8');
    const { fields, errors } = await dkimSignatures(
      Readable.from(withHead(addedBytes, message.openData())),
      domainKeys,
      new Date(),
    ).catch((err: Error) => ({ fields: '', errors: [err.message] }));
    if (errors.length > 0) log.warn({ domain, errors }, 'cannot make a DKIM signature');
    if (fields === '') return message.messageSize;
    await message.prepend(Buffer.concat([Buffer.from(fields, 'latin1'), addedBytes]));
    const selectors = [domainKeys.rsa, domainKeys.ed25519].flatMap((key) => (key === undefined ? [] : [key.selector]));
    log.info({ domain, selectors }, 'dkim signed');
    return message.messageSize;
  }
}

async function* withHead(head: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  if (head.length > 0) yield head;
  yield* rest as AsyncIterable<Buffer>;
}
