// `mailsrv report [LOGFILE|-]`: a pflogsumm-like summary of the daemon's JSON log (README "Logs"):
// text for people, --json for scripts, --svg for the per-hour traffic chart.
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { systemClock } from '../clock.js';
import { durationMs, isDuration } from '../config/units.js';
import { summarizeLog } from '../report/summarize.js';
import { trafficSvg } from '../report/svg.js';
import { formatReport } from '../report/text.js';
import { fail } from './fail.js';

interface ReportOptions {
  since?: string;
  top: string;
  json?: boolean;
  svg?: string;
}

const MAX_TOP = 1000;

export function registerReportCommand(program: Command): void {
  program
    .command('report')
    .description(
      'summarize the JSON log as pflogsumm does: totals, mail per hour, top senders and recipients, ' +
        'rejection and deferral reasons, logins and failed logins',
    )
    .argument('[logfile]', 'the log the daemon wrote on stdout; "-": standard input', '-')
    .option('--since <duration>', 'only the last DURATION (e.g. 24h, 7d) up to the newest line of LOGFILE (stdin: now)')
    .option('--top <n>', 'entries in each top list', '10')
    .option('--json', 'print the summary as JSON, for scripts')
    .option('--svg <file>', 'also write the per-hour traffic chart to FILE (SVG)')
    .action(async (logfile: string, opts: ReportOptions) => {
      if (opts.since !== undefined && !isDuration(opts.since))
        fail(`--since: expected a duration such as "24h" or "7d" (got ${JSON.stringify(opts.since)})`);
      if (logfile === '-' && process.stdin.isTTY)
        fail('name the log file, or pipe the log in: journalctl -u mailsrv -o cat | mailsrv report');
      const top = Number(opts.top);
      if (!Number.isInteger(top) || top < 1 || top > MAX_TOP) fail(`--top: expected a number from 1 to ${MAX_TOP}`);
      const summary = await summarizeLog({
        path: logfile === '-' ? null : logfile,
        stdin: process.stdin,
        sinceMs: opts.since === undefined ? null : durationMs(opts.since),
        top,
        now: () => systemClock.now(),
      }).catch((err: Error) => fail(`cannot read ${logfile === '-' ? 'standard input' : logfile}: ${err.message}`));
      if (opts.svg !== undefined) {
        await writeFile(opts.svg, trafficSvg(summary)).catch((err: Error) => fail(`--svg: ${err.message}`));
      }
      process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : formatReport(summary));
    });
}
