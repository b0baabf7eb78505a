// `mailsrv start`: runs the daemon in the foreground, JSON logs on stdout.
import type { Command } from 'commander';
import { configPath } from '../config/load.js';
import { runDaemon } from '../daemon.js';
import { StartupError } from '../daemon/phase.js';
import { createLogger, exitProcess } from '../log.js';
import { loadConfigOrExit } from './load-config.js';

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('run the daemon in the foreground (JSON logs on stdout)')
    .option('-c, --config <file>', 'config file (default: $MAILSRV_CONFIG or /etc/mailsrv/mailsrv.toml)')
    .action(async (opts: { config?: string }) => {
      const config = loadConfigOrExit(opts.config);
      const logger = createLogger(config.log.level);
      try {
        await runDaemon(configPath(opts.config), config, logger);
      } catch (err) {
        const phase = err instanceof StartupError ? { phase: err.phase } : {};
        logger.fatal({ ...phase, err: (err as Error).message }, 'cannot start');
        logger.flush();
        exitProcess(1);
      }
    });
}
