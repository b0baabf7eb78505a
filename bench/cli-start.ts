// Start time of the commands cron runs often: `mailsrv sendmail` (one message into the maildrop)
// and `mailq` (`mailsrv queue` on an empty queue), against `node -e 0` on the same box. Each is
// run --runs times in turn (after one untimed run of each) on a temp config, under /usr/bin/time
// (Debian's `time`); prints the median wall time and the median CPU time (user + system: what
// a busy box does not distort) of each, and how much more than `node -e 0` that is.
// Usage: npm run build && npx tsx bench/cli-start.ts [--runs 30]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

const TIME = '/usr/bin/time';
if (!existsSync(TIME)) throw new Error(`${TIME} is missing: apt-get install time`);
const timesFile = join(dir, 'time');

interface Sample {
  wall: number;
  cpu: number;
}

function runOnce(item: Case): Sample {
  const started = performance.now();
  const result = spawnSync(TIME, ['-o', timesFile, '-f', '%U %S', process.execPath, ...item.args], {
    input: item.input ?? '',
    encoding: 'utf8',
  });
  const wall = performance.now() - started;
  if (result.status !== 0) throw new Error(`${item.name} exited ${result.status}: ${result.stderr}`);
  const [user, system] = readFileSync(timesFile, 'utf8').trim().split(' ').map(Number) as [number, number];
  return { wall, cpu: (user + system) * 1000 };
}

const samples = new Map<string, Sample[]>(cases.map((item) => [item.name, []]));
for (const item of cases) runOnce(item);
for (let i = 0; i < runs; i++) for (const item of cases) samples.get(item.name)!.push(runOnce(item));
rmSync(dir, { recursive: true, force: true });

const ms = (value: number) => `${value.toFixed(0).padStart(6)} ms`;
const baseline = samples.get('node -e 0')!;
const baseWall = median(baseline.map((s) => s.wall));
const baseCpu = median(baseline.map((s) => s.cpu));
console.log(`node ${process.version}, ${runs} runs each; medians (CPU: user + system, 10 ms steps)`);
console.log('command                       wall   over node      CPU   over node');
for (const item of cases) {
  const wall = median(samples.get(item.name)!.map((s) => s.wall));
  const cpu = median(samples.get(item.name)!.map((s) => s.cpu));
  const first = item.name === 'node -e 0';
  console.log(
    `${item.name.padEnd(24)}${ms(wall)}${first ? ' '.repeat(12) : ms(wall - baseWall)}${ms(cpu)}` +
      `${first ? '' : ms(cpu - baseCpu)}`,
  );
}

function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}
