// `mailsrv reload`: the running daemon re-reads its config, users and aliases files and TLS
// certificate (SIGHUP; README "Command line" says what a reload changes and what needs a restart).
import type { Command } from 'commander';
import { signalDaemonOrFail } from './daemon-signal.js';
import { fail } from './fail.js';
import { loadConfigOrExit } from './load-config.js';

export function registerReloadCommand(program: Command): void {
  program
    .command('reload')
    .description('make the running daemon re-read its config, users, aliases and certificate (SIGHUP)')
    .option('-c, --config <file>', 'config file')
    .action(async (opts: { config?: string }) => {
      const pid = await signalDaemonOrFail(loadConfigOrExit(opts.config), 'SIGHUP');
      if (pid === null) fail('mailsrv is not running');
      process.stdout.write(`mailsrv (pid ${pid}) is reloading; its log says what changed\n`);
    });
}
