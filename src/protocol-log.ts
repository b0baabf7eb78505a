// The SMTP dialogue log of smtp-server (incoming) and of nodemailer's client (outbound): every
// command and reply ("C: MAIL FROM:<...>" / "S: 250 ..."), as pino debug lines with mailsrv's
// sessionId or queueId: `[log] level = "debug"` shows whole SMTP dialogues. Message data is
// never logged. smtp-server redacts AUTH credentials only inside an AUTH exchange it runs; a
// client line that is not an SMTP command (the base64 lines of an AUTH mailsrv refused, say)
// could be a password, so only its length is logged, and whatever follows an AUTH mechanism
// name is always hidden.
import { format } from 'node:util';
import type { Logger } from './log.js';

interface SmtpServerLogMeta {
  tnx?: string;
  cid?: string;
}

type LogCall = (meta: SmtpServerLogMeta | string, ...args: unknown[]) => void;

const SMTP_VERBS =
  /^(HELO|EHLO|LHLO|MAIL|RCPT|DATA|RSET|NOOP|QUIT|VRFY|EXPN|HELP|STARTTLS|ETRN|BDAT|XCLIENT|XFORWARD)(\s|$)/i;
const AUTH_COMMAND = /^AUTH(\s+(\S+))?/i;

/** A client line as it may be logged. */
export function redactClientLine(line: string): string {
  if (line === '/* secured */' || line.endsWith(' /* secured */') || SMTP_VERBS.test(line)) return line;
  const auth = AUTH_COMMAND.exec(line);
  if (auth) return auth[2] === undefined ? 'AUTH' : `AUTH ${auth[2]} /* secured */`;
  return `<${Buffer.byteLength(line)} bytes, not a command>`;
}

export function smtpProtocolLogger(
  logger: Logger,
): Record<'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal', LogCall> {
  const toDebug: LogCall = (meta, ...args) => {
    if (!logger.isLevelEnabled('debug')) return;
    if (typeof meta === 'string') return logger.debug(format(meta, ...args));
    if (args[0] === 'C:' && typeof args[1] === 'string') args = ['C:', redactClientLine(args[1]), ...args.slice(2)];
    logger.debug({ sessionId: meta.cid, tnx: meta.tnx }, format(...args));
  };
  return { trace: toDebug, debug: toDebug, info: toDebug, warn: toDebug, error: toDebug, fatal: toDebug };
}
