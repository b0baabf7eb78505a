// The name an SMTP command line is counted under in the `disconnect` log line (see
// net/session-activity.ts): the lowercase verb, or "unknown". Read from the line's bytes
// without making a string, as it runs for every command line.

/** The verbs counted by name, most frequent first; any other line is "unknown". */
const VERBS = [
  ...['MAIL', 'RCPT', 'DATA', 'EHLO', 'RSET', 'QUIT', 'NOOP', 'HELO'],
  ...['AUTH', 'STARTTLS', 'VRFY', 'EXPN', 'HELP', 'ETRN', 'BDAT'],
].map((verb) => ({ bytes: Buffer.from(verb, 'latin1'), name: verb.toLowerCase() }));

const SPACE = 0x20;
/** clears the lowercase bit of an ASCII letter */
const UPPERCASE = 0xdf;

/** The verb `line` starts with (as a whole word, in any case), lowercase; "unknown" for others. */
export function smtpCommandName(line: Uint8Array): string {
  for (const { bytes, name } of VERBS) {
    const length = bytes.length;
    if (line.length < length || (line.length > length && line[length] !== SPACE)) continue;
    let same = true;
    for (let i = 0; i < length && same; i++) same = (line[i]! & UPPERCASE) === bytes[i];
    if (same) return name;
  }
  return 'unknown';
}
