// Text for tests: CRLF messages, Date and Message-ID values, a string inside a RegExp.

/** A message with CRLF line ends from lines. */
export function crlf(...lines: string[]): string {
  return lines.map((l) => `${l}\r\n`).join('');
}

/** `text` matched literally inside a RegExp. */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** A `Date:` header value in RFC 5322 form. */
export function rfcDate(date = new Date()): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

let messageCounter = 0;
/** A unique Message-ID. */
export function messageId(): string {
  messageCounter += 1;
  return `<e2e.${process.pid}.${Date.now()}.${messageCounter}@client.test>`;
}

/** A small message as a client would send it (CRLF): From, Subject, Date, Message-ID, then `body` lines. */
export function note(subject: string, ...body: string[]): string {
  return crlf(
    'From: someone@client.test',
    `Subject: ${subject}`,
    `Date: ${rfcDate()}`,
    `Message-ID: ${messageId()}`,
    '',
    ...(body.length ? body : [`body of ${subject}`]),
  );
}
