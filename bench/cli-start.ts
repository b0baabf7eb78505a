// Start time of the commands cron runs often: `mailsrv sendmail` (one message into the maildrop)
// and `mailq` (`mailsrv queue` on an empty queue), against `node -e 0` on the same box. Each is
// run --runs times in turn (after one untimed run of each) on a temp config; prints the median
// and the fastest wall time of each and the difference to `node -e 0`.
// Usage: npm run build && npx tsx bench/cli-start.ts [--runs 30]
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { percentile } from './util.js';

const runsArg = process.argv.indexOf('--runs');
const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 30;
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs: expected a positive whole number');

const mailsrv = resolve(import.meta.dirname, '../bin/mailsrv');
const dir = mkdtempSync(join(tmpdir(), 'mailsrv-cli-start-'));
const config = join(dir, 'mailsrv.toml');
mkdirSync(join(dir, 'state/maildrop'), { recursive: true });
mkdirSync(join(dir, 'state/queue'), { recursive: true });
mkdirSync(join(dir, 'spool'));
writeFileSync(join(dir, 'users'), '');
writeFileSync(join(dir, 'aliases'), '');
writeFileSync(
  config,
  [
    'hostname = "bench.example.org"',
    'domains = ["example.org"]',
    `spool_dir = "${join(dir, 'spool')}"`,
    `state_dir = "${join(dir, 'state')}"`,
    `users_file = "${join(dir, 'users')}"`,
    `aliases_file = "${join(dir, 'aliases')}"`,
    '[smtp]',
    'listen = []',
    'submission = []',
    '[pop3]',
    'listen = []',
    '',
  ].join('\n'),
);
const message = 'Subject: cron\n\nThe nightly job ran.\n';

interface Case {
  name: string;
  args: string[];
  input?: string;
}
const cases: Case[] = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: 'mailsrv --version', args: [mailsrv, '--version'] },
  { name: 'mailsrv sendmail', args: [mailsrv, 'sendmail', '-c', config, 'root@example.org'], input: message },
  { name: 'mailq (mailsrv queue)', args: [mailsrv, 'queue', '-c', config] },
];

function runOnce(item: Case): number {
  const started = performance.now();
  const result = spawnSync(process.execPath, item.args, { input: item.input ?? '', encoding: 'utf8' });
  const took = performance.now() - started;
  if (result.status !== 0) throw new Error(`${item.name} exited ${result.status}: ${result.stderr}`);
  return took;
}

const times = new Map<string, number[]>(cases.map((item) => [item.name, []]));
for (const item of cases) runOnce(item);
for (let i = 0; i < runs; i++) for (const item of cases) times.get(item.name)!.push(runOnce(item));
rmSync(dir, { recursive: true, force: true });

const baseline = median(times.get('node -e 0')!);
console.log(`node ${process.version}, ${runs} runs each`);
console.log('command                     median    fastest   median - node -e 0');
for (const item of cases) {
  const values = times.get(item.name)!;
  const extra = item.name === 'node -e 0' ? '' : `${(median(values) - baseline).toFixed(0).padStart(6)} ms`;
  console.log(
    `${item.name.padEnd(26)}${median(values).toFixed(0).padStart(6)} ms${Math.min(...values)
      .toFixed(0)
      .padStart(7)} ms   ${extra}`,
  );
}

function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}
