// `mailsrv status` (is the daemon up, and what it says about itself in its status file) and
// `mailsrv stop`.
import { readdir } from 'node:fs/promises';
import type { Command } from 'commander';
import { type DaemonStatus, listenersOf } from '../daemon/status.js';
import { readStatusFile } from '../daemon/status-file.js';
import { statePaths } from '../paths.js';
import { runningPid } from '../pid-file.js';
import { isQueueId } from '../queue/id.js';
import { fail } from './fail.js';
import { loadConfigOrExit } from './load-config.js';

export function registerStatusCommands(program: Command): void {
  program
    .command('status')
    .description(
      'is the daemon running: pid, version, uptime, listeners, sessions, queue, certificate, last reload ' +
        '(exit 1 when not running)',
    )
    .option('-c, --config <file>', 'config file')
    .action(async (opts: { config?: string }) => {
      const config = loadConfigOrExit(opts.config);
      const paths = statePaths(config.state_dir);
      const pid = await runningPid(paths.pidFile);
      const queued = (await readdir(paths.queueDir).catch(() => [])).filter(isQueueId).length;
      if (pid === null) {
        process.stdout.write(`mailsrv is not running (${queued} message(s) in the queue)\n`);
        process.exit(1);
      }
      const status = await readStatusFile(paths.statusFile);
      process.stdout.write(
        status !== null && status.pid === pid
          ? describeStatus(status, Date.now())
          : `mailsrv is running, pid ${pid}\n${describeListeners(listenersOf(config))}` +
              `  queue:       ${queued} message(s)\n` +
              `  (no status from the daemon in ${paths.statusFile}: ${statusFileHint()})\n`,
      );
    });

  program
    .command('stop')
    .description('stop the running daemon gracefully and wait for it to exit')
    .option('-c, --config <file>', 'config file')
    .action(async (opts: { config?: string }) => {
      const { pidFile } = statePaths(loadConfigOrExit(opts.config).state_dir);
      const pid = await runningPid(pidFile);
      if (pid === null) fail('mailsrv is not running');
      process.kill(pid, 'SIGTERM');
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        if ((await runningPid(pidFile)) === null) {
          process.stdout.write(`mailsrv (pid ${pid}) stopped\n`);
          return;
        }
      }
      fail(`mailsrv (pid ${pid}) did not stop within 90 s`);
    });
}

function describeListeners(listeners: Record<string, string[]>): string {
  return Object.entries(listeners)
    .map(([name, addresses]) => `  ${`${name}:`.padEnd(13)}${addresses.join(', ') || '-'}\n`)
    .join('');
}

function statusFileHint(): string {
  return process.getuid?.() === 0 ? 'it is starting or stopping' : 'not readable by this user, or it is starting';
}

/** What `mailsrv status` prints from the daemon's status file, ages counted up to `now`. */
export function describeStatus(status: DaemonStatus, now: number): string {
  const since = (iso: string) => duration(now - Date.parse(iso));
  const { queue, sessions, certificate, lastReload } = status;
  const oldest = queue.oldestReceivedAt === null ? '' : `, oldest ${since(queue.oldestReceivedAt)} old`;
  const reload =
    lastReload === null
      ? 'none since the start'
      : `${lastReload.ok ? 'ok' : `failed (${lastReload.error ?? 'unknown error'})`}, ${since(lastReload.at)} ago`;
  const state = status.state === 'stopping' ? ', stopping' : '';
  return (
    `mailsrv ${status.version} is running, pid ${status.pid}, up ${since(status.startedAt)}${state}\n` +
    describeListeners(status.listeners) +
    `  sessions:    smtp ${sessions.smtp}, pop3 ${sessions.pop3}\n` +
    `  queue:       ${queue.messages} message(s)${oldest}\n` +
    `  certificate: ${certificate === null ? 'none (TLS is off)' : describeCertificate(certificate, now)}\n` +
    `  last reload: ${reload}\n` +
    `  (as of ${since(status.updatedAt)} ago)\n`
  );
}

/** As README "Certificates by ACME" shows it: NAMES, expires YYYY-MM-DDTHH:MM:SSZ (EXPIRED appended once past). */
function describeCertificate({ names, expires }: { names: string[]; expires: string }, now: number): string {
  const expired = Date.parse(expires) <= now ? ' EXPIRED' : '';
  return `${names.join(', ')}, expires ${expires.replace(/\.\d{3}Z$/, 'Z')}${expired}`;
}

/** 93784000 → "1d 2h 3m"; under a minute in seconds. */
export function duration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const units: [number, string][] = [
    [Math.floor(seconds / 86_400), 'd'],
    [Math.floor(seconds / 3600) % 24, 'h'],
    [Math.floor(seconds / 60) % 60, 'm'],
  ];
  const first = units.findIndex(([value]) => value > 0);
  return units
    .slice(first)
    .filter(([value]) => value > 0)
    .map(([value, unit]) => `${value}${unit}`)
    .join(' ');
}
