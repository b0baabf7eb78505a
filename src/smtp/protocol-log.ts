// smtp-server's own log (every command and reply, "C: MAIL FROM:<...>" / "S: 250 ..."), as
// pino debug lines with mailsrv's sessionId: `[log] level = "debug"` shows whole SMTP
// dialogues. smtp-server redacts AUTH credentials itself; message data is never logged.
import { format } from 'node:util';
import type { Logger } from '../log.js';

interface SmtpServerLogMeta {
  tnx?: string;
  cid?: string;
}

type LogCall = (meta: SmtpServerLogMeta | string, ...args: unknown[]) => void;

export function smtpProtocolLogger(logger: Logger): Record<'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal', LogCall> {
  const toDebug: LogCall = (meta, ...args) => {
    if (!logger.isLevelEnabled('debug')) return;
    if (typeof meta === 'string') logger.debug(format(meta, ...args));
    else logger.debug({ sessionId: meta.cid, tnx: meta.tnx }, format(...args));
  };
  return { trace: toDebug, debug: toDebug, info: toDebug, warn: toDebug, error: toDebug, fatal: toDebug };
}
