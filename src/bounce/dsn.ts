// Delivery status notifications (Postfix's bounce role): the message that tells a sender that
// mail failed or is delayed, an RFC 6522 multipart/report holding a human explanation, an
// RFC 3464 message/delivery-status part and the original header block (RFC 6522
// text/rfc822-headers). The body is never included: a DSN stays small and cannot amplify
// backscatter. Every value from outside (addresses, remote replies, headers) is made safe.
import { randomBytes, randomUUID } from 'node:crypto';
import { rfc5322Date } from '../message/date.js';
import { toDsnFields, type DeliveryStatus } from '../message/status.js';
import { headerLines } from '../message/header-block.js';

/** Most bytes of the original header block quoted in a DSN (whole lines only). */
export const ORIGINAL_HEADERS_CAP = 64 * 1024;
/** Most characters of a diagnostic quoted (a multi-line remote reply can be long). */
const DIAGNOSTIC_CAP = 2000;
/** RFC 5322 limit for a line, without its CRLF. */
const MAX_LINE_BYTES = 998;
/** Longest unbroken word: with a field name or an indent in front it stays under MAX_LINE_BYTES. */
const MAX_WORD_BYTES = 900;
/** Preferred header line length (RFC 5322 "SHOULD" 78). */
const FOLD_WIDTH = 78;
/** Line length of the human-readable text. */
const TEXT_WIDTH = 76;
const CRLF = '\r\n';

export type DsnKind = 'failure' | 'delay';

export interface DsnRecipient {
  /** the address delivery was attempted to (Final-Recipient) */
  address: string;
  /** the address as the sender gave it, when it differs (an alias): Original-Recipient */
  originalAddress?: string;
  /** the last attempt's outcome: Status, and Remote-MTA and Diagnostic-Code (the remote reply or our own reason) */
  status: DeliveryStatus;
  /** ms since the epoch */
  lastAttemptAt?: number;
  /** ms since the epoch; reported for a delay */
  willRetryUntil?: number;
}

export interface DsnOriginal {
  queueId: string;
  /** the envelope sender the DSN goes to (never empty: null-sender mail is not bounced) */
  sender: string;
  /** ms since the epoch */
  receivedAt: number;
  /** the HELO name of the client that sent it, reported as Received-From-MTA */
  clientHelo?: string;
}

export interface DsnReport {
  /** failure: these recipients failed for good (Action: failed); delay: still retried (Action: delayed) */
  kind: DsnKind;
  /** our host name */
  reportingHost: string;
  original: DsnOriginal;
  recipients: DsnRecipient[];
  /** the original message's header block (see readHeaderBlock); anything after its first empty line is ignored */
  originalHeaders: Buffer;
  now: Date;
}

const SUBJECTS: Record<DsnKind, string> = {
  failure: 'Undelivered Mail Returned to Sender',
  delay: 'Delayed Mail (still being retried)',
};

const ACTIONS: Record<DsnKind, string> = { failure: 'failed', delay: 'delayed' };

/**
 * The whole DSN message for `report`, CRLF line ends, to be queued with the null sender to
 * `report.original.sender`. Throws a RangeError when there is nobody to report on or nobody
 * to report to (a null sender).
 */
export function composeDsn(report: DsnReport): Buffer {
  if (report.recipients.length === 0) throw new RangeError('a DSN needs at least one recipient');
  if (oneLine(report.original.sender) === '') throw new RangeError('mail from the null sender is never bounced');
  const host = asciiOneLine(report.reportingHost);
  const boundary = `=_mailsrv_dsn_${randomBytes(12).toString('hex')}`;
  const explanation = Buffer.from(explanationText(report, host), 'utf8');
  const headersPart = quotedHeaders(report.originalHeaders);
  const eightBit = hasEightBit(explanation) || hasEightBit(headersPart);
  const head = [
    foldField('From', `Mail Delivery System <MAILER-DAEMON@${host}>`),
    foldField('To', `<${oneLine(report.original.sender)}>`),
    foldField('Subject', SUBJECTS[report.kind]),
    foldField('Date', rfc5322Date(report.now)),
    foldField('Message-ID', `<${randomUUID()}@${host}>`),
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    foldField('Content-Type', `multipart/report; report-type=delivery-status; boundary="${boundary}"`),
    `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
  ];
  return Buffer.concat([
    Buffer.from(
      `${head.join(CRLF) + CRLF + CRLF}This is a MIME-encapsulated delivery status notification.${CRLF}`,
      'ascii',
    ),
    mimePart(boundary, ['Content-Description: Notification', 'Content-Type: text/plain; charset=utf-8'], explanation),
    mimePart(
      boundary,
      ['Content-Description: Delivery report', 'Content-Type: message/delivery-status'],
      deliveryStatus(report, host),
    ),
    mimePart(
      boundary,
      ['Content-Description: Undelivered message headers', 'Content-Type: text/rfc822-headers'],
      headersPart,
    ),
    Buffer.from(`${CRLF}--${boundary}--${CRLF}`, 'ascii'),
  ]);
}

/** A body part: boundary line, its headers, and `content` (CRLF-terminated lines). */
function mimePart(boundary: string, headers: string[], content: Buffer): Buffer {
  const encoding = `Content-Transfer-Encoding: ${hasEightBit(content) ? '8bit' : '7bit'}`;
  return Buffer.concat([
    Buffer.from(`${CRLF}--${boundary}${CRLF}${[...headers, encoding].join(CRLF)}${CRLF}${CRLF}`, 'ascii'),
    content,
  ]);
}

/** The text part: what happened, for a person, naming each recipient and quoting the reply. */
function explanationText(report: DsnReport, host: string): string {
  const { original, now } = report;
  const received = rfc5322Date(new Date(original.receivedAt));
  const queueId = asciiOneLine(original.queueId);
  const paragraphs: string[][] = [[`This is the mail server at ${host}.`]];
  if (report.kind === 'failure') {
    paragraphs.push(
      wrapWords(
        `Your message, received here on ${received} (queue ID ${queueId}), could not be delivered to ` +
          `the recipients listed below. Delivery to them has been given up and will not be tried again.`,
        TEXT_WIDTH,
      ),
    );
  } else {
    const retryUntil = Math.max(...report.recipients.map((r) => r.willRetryUntil ?? Number.NEGATIVE_INFINITY));
    paragraphs.push(
      wrapWords(
        `Your message, received here on ${received} (queue ID ${queueId}), has not yet been delivered to ` +
          'the recipients listed below: ' +
          `it has been waiting for ${humanDuration(now.getTime() - original.receivedAt)}. ` +
          'This server keeps trying, so there is no need to send it again.' +
          (Number.isFinite(retryUntil)
            ? ` If it still cannot be delivered by ${rfc5322Date(new Date(retryUntil))}, it will be returned to you.`
            : ''),
        TEXT_WIDTH,
      ),
    );
  }
  for (const recipient of report.recipients) paragraphs.push(recipientText(report.kind, recipient));
  paragraphs.push(
    wrapWords(
      'The headers of your message are attached below; its body is not. ' +
        'If you need help, please contact your mail administrator.',
      TEXT_WIDTH,
    ),
  );
  return paragraphs.map((lines) => lines.join(CRLF) + CRLF).join(CRLF);
}

function recipientText(kind: DsnKind, recipient: DsnRecipient): string[] {
  const address = oneLine(recipient.address);
  const original = recipient.originalAddress === undefined ? '' : oneLine(recipient.originalAddress);
  const named = `<${address}>${original !== '' && original !== address ? ` (you wrote to <${original}>)` : ''}`;
  const lines = wrapWords(named, TEXT_WIDTH - 2).map((line) => `  ${line}`);
  const detail = (label: string, text: string) =>
    lines.push(...wrapWords(`${label}: ${text}`, TEXT_WIDTH - 6).map((line) => `      ${line}`));
  const { status, remoteMta, diagnostic } = toDsnFields(recipient.status);
  detail('Status', status);
  if (recipient.lastAttemptAt !== undefined) detail('Last attempt', rfc5322Date(new Date(recipient.lastAttemptAt)));
  if (kind === 'delay' && recipient.willRetryUntil !== undefined)
    detail('Trying until', rfc5322Date(new Date(recipient.willRetryUntil)));
  const remote = remoteMta === undefined ? '' : oneLine(remoteMta);
  const intro =
    diagnostic.type !== 'smtp'
      ? 'Reason:'
      : remote !== ''
        ? `The server ${remote} replied:`
        : 'The receiving server replied:';
  lines.push(...wrapWords(intro, TEXT_WIDTH - 6).map((line) => `      ${line}`));
  for (const replyLine of capped(diagnostic.text).split(/\r\n|\r|\n/)) {
    lines.push(...wrapWords(oneLine(replyLine), TEXT_WIDTH - 8).map((line) => `        ${line}`));
  }
  return lines;
}

/** The message/delivery-status part (RFC 3464): per-message fields, then one group per recipient; ASCII only. */
function deliveryStatus(report: DsnReport, host: string): Buffer {
  const { original } = report;
  const perMessage = [
    foldField('Reporting-MTA', `dns; ${host}`),
    foldField('X-Mailsrv-Queue-ID', asciiOneLine(original.queueId)),
    foldField('X-Mailsrv-Sender', addressValue(original.sender)),
  ];
  const helo = original.clientHelo === undefined ? '' : asciiOneLine(original.clientHelo);
  if (helo !== '') perMessage.push(foldField('Received-From-MTA', `dns; ${helo}`));
  perMessage.push(foldField('Arrival-Date', rfc5322Date(new Date(original.receivedAt))));
  const groups = [perMessage, ...report.recipients.map((recipient) => recipientFields(report.kind, recipient))];
  return Buffer.from(groups.map((fields) => fields.join(CRLF) + CRLF).join(CRLF), 'ascii');
}

function recipientFields(kind: DsnKind, recipient: DsnRecipient): string[] {
  const fields = [foldField('Final-Recipient', addressValue(recipient.address))];
  if (recipient.originalAddress !== undefined && oneLine(recipient.originalAddress) !== oneLine(recipient.address)) {
    fields.push(foldField('Original-Recipient', addressValue(recipient.originalAddress)));
  }
  const { status, remoteMta, diagnostic } = toDsnFields(recipient.status);
  fields.push(`Action: ${ACTIONS[kind]}`, `Status: ${status}`);
  const remote = remoteMta === undefined ? '' : asciiOneLine(remoteMta);
  if (remote !== '') fields.push(foldField('Remote-MTA', `dns; ${remote}`));
  const diagnosticText = asciiOneLine(capped(diagnostic.text));
  if (diagnosticText !== '') fields.push(foldField('Diagnostic-Code', `${diagnostic.type}; ${diagnosticText}`));
  if (recipient.lastAttemptAt !== undefined)
    fields.push(foldField('Last-Attempt-Date', rfc5322Date(new Date(recipient.lastAttemptAt))));
  if (kind === 'delay' && recipient.willRetryUntil !== undefined) {
    fields.push(foldField('Will-Retry-Until', rfc5322Date(new Date(recipient.willRetryUntil))));
  }
  return fields;
}

/**
 * The original header lines for the text/rfc822-headers part: CRLF line ends, NUL and lone
 * CR made spaces, lines over the RFC 5322 limit folded, and cut after the last whole line
 * that fits in ORIGINAL_HEADERS_CAP. Nothing after the first empty line (the body).
 */
function quotedHeaders(block: Buffer): Buffer {
  const out: Buffer[] = [];
  let size = 0;
  for (const line of headerLines(block)) {
    const safe = Buffer.from(line);
    for (let i = 0; i < safe.length; i++) if (safe[i] === 0 || safe[i] === 0x0d) safe[i] = 0x20;
    for (const piece of splitLongLine(safe)) {
      if (size + piece.length + 2 > ORIGINAL_HEADERS_CAP) return Buffer.concat(out);
      out.push(piece, Buffer.from(CRLF));
      size += piece.length + 2;
    }
  }
  return Buffer.concat(out);
}

/**
 * A line over MAX_LINE_BYTES as a first piece and continuation pieces (leading space), cut between UTF-8
 * characters.
 */
function splitLongLine(line: Buffer): Buffer[] {
  const pieces: Buffer[] = [];
  let rest = line;
  while (rest.length > MAX_LINE_BYTES) {
    let cut = MAX_LINE_BYTES;
    // back off over at most 3 UTF-8 continuation bytes, so a character is not cut in two
    while (cut > MAX_LINE_BYTES - 3 && (rest[cut]! & 0xc0) === 0x80) cut--;
    pieces.push(rest.subarray(0, cut));
    rest = Buffer.concat([Buffer.from(' '), rest.subarray(cut)]);
  }
  pieces.push(rest);
  return pieces;
}

/** An address for a delivery-status field: `rfc822; addr`, or RFC 6533 `utf-8; ` xtext for non-ASCII. */
function addressValue(address: string): string {
  const clean = oneLine(address);
  if (/^[\x20-\x7e]*$/.test(clean)) return `rfc822; ${clean}`;
  const xtext = [...clean]
    .map((char) =>
      /^[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]$/.test(char)
        ? char
        : `\\x{${char.codePointAt(0)!.toString(16).toUpperCase()}}`,
    )
    .join('');
  return `utf-8; ${xtext}`;
}

/** At most DIAGNOSTIC_CAP characters of `text`. */
function capped(text: string): string {
  const chars = [...text];
  return chars.length <= DIAGNOSTIC_CAP ? text : `${chars.slice(0, DIAGNOSTIC_CAP).join('')}...`;
}

/** `text` on one line: line breaks and other control characters become single spaces. */
function oneLine(text: string): string {
  return text
    .replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
}

/** oneLine, with every non-ASCII character replaced by '?' (delivery-status fields are ASCII). */
function asciiOneLine(text: string): string {
  return oneLine(text).replace(/[^\x20-\x7e]/gu, '?');
}

function hasEightBit(content: Buffer): boolean {
  return content.some((byte) => byte >= 0x80);
}

/** A header field `name: value` folded at spaces (RFC 5322), no line over MAX_LINE_BYTES. */
function foldField(name: string, value: string): string {
  return wrapWords(`${name}: ${value}`, FOLD_WIDTH).join(`${CRLF} `);
}

/** Words of `text` (split at spaces) in lines of at most `width` characters where possible; over-long words cut. */
function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text
    .split(' ')
    .filter((w) => w !== '')
    .flatMap(cutLongWord)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** A word as pieces of at most MAX_WORD_BYTES UTF-8 bytes, cut between characters. */
function cutLongWord(word: string): string[] {
  if (Buffer.byteLength(word) <= MAX_WORD_BYTES) return [word];
  const pieces: string[] = [];
  let piece = '';
  let bytes = 0;
  for (const char of word) {
    const size = Buffer.byteLength(char);
    if (bytes + size > MAX_WORD_BYTES) {
      pieces.push(piece);
      piece = '';
      bytes = 0;
    }
    piece += char;
    bytes += size;
  }
  pieces.push(piece);
  return pieces;
}

/** "3 hours", "1 day 2 hours", "5 minutes": the two largest units of a duration. */
function humanDuration(ms: number): string {
  const minutes = Math.max(0, Math.floor(ms / 60_000));
  const units: [number, string][] = [
    [Math.floor(minutes / 1440), 'day'],
    [Math.floor(minutes / 60) % 24, 'hour'],
    [minutes % 60, 'minute'],
  ];
  const firstUsed = units.findIndex(([count]) => count > 0);
  if (firstUsed === -1) return 'less than a minute';
  return units
    .slice(firstUsed, firstUsed + 2)
    .filter(([count]) => count > 0)
    .map(([count, unit]) => `${count} ${unit}${count === 1 ? '' : 's'}`)
    .join(' ');
}
