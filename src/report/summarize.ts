// One report from one log: the file (or stdin) streamed through a MailLogReport, with `--since`
// counted back from the newest line of the file, or from now when the log comes on stdin.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { MailLogReport, type ReportSummary } from './aggregate.js';
import { newestLineTime, readLog } from './read.js';

export interface SummarizeOptions {
  /** the log file; null: `stdin` */
  path: string | null;
  stdin: Readable;
  /** only lines logged this long before the newest line (or now); null: all */
  sinceMs: number | null;
  /** entries per top list */
  top: number;
  now: () => number;
}

export async function summarizeLog(options: SummarizeOptions): Promise<ReportSummary> {
  const { path, sinceMs } = options;
  let cutoff: number | null = null;
  if (sinceMs !== null) {
    const newest = path === null ? null : await newestLineTime(path);
    cutoff = (newest ?? options.now()) - sinceMs;
  }
  const report = new MailLogReport({ cutoff });
  await readLog(path === null ? options.stdin : createReadStream(path), report);
  return report.summary(options.top);
}
