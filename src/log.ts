// The pino logger: JSON on stdout, one line per event. Child loggers carry
// `sessionId` (a connection) and `queueId` (a message) so one grep follows a message.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'mailsrv' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
