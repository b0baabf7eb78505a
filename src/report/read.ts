// Feeds a log to a MailLogReport as it streams (a file or stdin): one line at a time, never the
// whole log in memory, a line longer than MAX_LOG_LINE counted as unreadable. Also finds the
// time of a log file's newest line (from its tail), which `--since` counts back from.
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LineReader } from '../pop3/lines.js';
import { logLineTime, type MailLogReport } from './aggregate.js';

/** Longest log line read; the daemon's lines are far shorter (a few hundred bytes). */
export const MAX_LOG_LINE = 64 * 1024;
/** How much of a file's end is searched for its newest line. */
const TAIL_BYTES = 256 * 1024;

export async function readLog(input: Readable, report: MailLogReport): Promise<void> {
  const reader = new LineReader(MAX_LOG_LINE);
  const drain = () => {
    for (let event = reader.next(); event !== null; event = reader.next()) {
      if (event.kind === 'line') report.addLine(event.line.toString('utf8'));
      else report.addUnreadable();
    }
  };
  for await (const chunk of input) {
    reader.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    drain();
  }
  // a last line without its line end
  reader.push(Buffer.from('\n'));
  drain();
}

/** The time of the newest line in the last TAIL_BYTES of `path` (epoch ms); null when none has one. */
export async function newestLineTime(path: string): Promise<number | null> {
  const file = await open(path, 'r');
  try {
    const stat = await file.stat();
    if (!stat.isFile()) return null;
    const { size } = stat;
    const length = Math.min(size, TAIL_BYTES);
    const tail = Buffer.alloc(length);
    await file.read(tail, 0, length, size - length);
    let newest: number | null = null;
    for (const line of tail.toString('utf8').split('\n')) {
      const time = lineTime(line);
      if (time !== null && (newest === null || time > newest)) newest = time;
    }
    return newest;
  } finally {
    await file.close();
  }
}

function lineTime(line: string): number | null {
  try {
    return logLineTime(JSON.parse(line));
  } catch {
    return null;
  }
}
