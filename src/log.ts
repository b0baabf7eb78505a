// The pino logger: JSON on stdout, one line per event. Child loggers carry
// `sessionId` (a connection) and `queueId` (a message) so one grep follows a message.
// `--log-format pretty|logfmt` turns each JSON line into text (log-format.ts) on its way to the
// same stdout destination; JSON goes to it straight.
//
// A log that cannot be written never stops mail: when stdout fails (a terminal that went
// away: EIO; a full disk: ENOSPC) or stays blocked (a reader that stopped reading) for
// LOG_BLOCKED_GIVE_UP_MS, log lines are dropped and counted (`droppedLogLines()`), with one
// notice on stderr; lines waiting while stdout is slow are capped at LOG_BUFFER_BYTES. The
// daemon exits through exitProcess() so a terminal that went away cannot crash the exit.
import { closeSync, openSync, writeSync } from 'node:fs';
import { type DestinationStream, pino, type Logger } from 'pino';
import { formatLogLine, type LogFormat, type TextLogFormat } from './log-format.js';

export type { Logger };

/** Log output held in memory while stdout is slow; beyond it lines are dropped. */
const LOG_BUFFER_BYTES = 8 * 1024 * 1024;
/** How long stdout may refuse every write (EAGAIN) before logging is given up. */
const LOG_BLOCKED_GIVE_UP_MS = 5000;

let dropped = 0;
let outputFailed = false;

/** How many log lines could not be written (stdout failing, blocked or too slow). */
export function droppedLogLines(): number {
  return dropped;
}

/** stdout for pino, failing soft: see the file comment. */
function logDestination(fd: number) {
  let blockedSince: number | null = null;
  const destination = pino.destination({
    fd,
    sync: false,
    maxLength: LOG_BUFFER_BYTES,
    retryEAGAIN: () => {
      const now = Date.now();
      blockedSince ??= now;
      return now - blockedSince < LOG_BLOCKED_GIVE_UP_MS;
    },
  });
  destination.on('write', () => {
    blockedSince = null;
  });
  destination.on('drop', () => {
    dropped += 1;
  });
  destination.on('error', (err: NodeJS.ErrnoException) => {
    outputFailed = true;
    // from now on every line is counted instead of written; nothing waits on stdout again
    destination.write = () => {
      dropped += 1;
      return true;
    };
    destination.flush = () => undefined;
    destination.flushSync = () => undefined;
    destination.end = () => undefined;
    try {
      writeSync(2, `mailsrv: log output failed (${err.code ?? err.message}); log lines are dropped\n`);
    } catch {
      // stderr is often the same broken terminal
    }
  });
  return destination;
}

/**
 * Exits. Node restores a terminal's settings at exit and aborts when that terminal has gone
 * (EIO); after a failed log output, stdout and stderr are first pointed at /dev/null (close,
 * then open: the lowest free descriptor) so a stop still ends with `code`.
 */
export function exitProcess(code: number): never {
  if (outputFailed) {
    for (const fd of [1, 2]) {
      try {
        closeSync(fd);
        const reopened = openSync('/dev/null', 'w');
        if (reopened !== fd) closeSync(reopened);
      } catch {
        // exiting regardless
      }
    }
  }
  process.exit(code);
}

/**
 * pino's JSON lines in `format`, written to `destination` (which fails soft as above: this
 * looks its write() up at every line, so a failed one is replaced here too).
 */
function formatted(destination: ReturnType<typeof logDestination>, format: TextLogFormat): DestinationStream {
  const stream: DestinationStream & { flush(callback: (err?: Error) => void): void } = {
    write: (line) => destination.write(formatLogLine(line, format)),
    // pino's logger.flush() (at the stop) reaches the destination through this
    flush: (callback) => destination.flush(callback),
  };
  return stream;
}

export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  const destination = logDestination(process.stdout.fd ?? 1);
  return pino(
    {
      level,
      base: { service: 'mailsrv' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    format === 'json' ? destination : formatted(destination, format),
  );
}
