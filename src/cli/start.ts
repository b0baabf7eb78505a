// `mailsrv start`: runs the daemon in the foreground, logs on stdout (JSON, or --log-format).
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { configPath } from '../config/load.js';
import { runDaemon } from '../daemon.js';
import { StartupError } from '../daemon/phase.js';
import { createLogger, exitProcess } from '../log.js';
import { LOG_FORMATS, type LogFormat } from '../log-format.js';
import { packageVersion } from '../version.js';
import { loadConfigOrExit } from './load-config.js';

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('run the daemon in the foreground (logs on stdout: JSON unless --log-format)')
    .option('-c, --config <file>', 'config file (default: $MAILSRV_CONFIG or /etc/mailsrv/mailsrv.toml)')
    .addOption(
      new Option('--log-format <format>', 'log lines as JSON, pretty (for a terminal) or logfmt')
        .choices(LOG_FORMATS)
        .default('json'),
    )
    .action(async (opts: { config?: string; logFormat: LogFormat }) => {
      const config = loadConfigOrExit(opts.config);
      const logger = createLogger(config.log.level, opts.logFormat);
      const file = configPath(opts.config);
      logger.info(
        { version: packageVersion(), node: process.version, pid: process.pid, config: resolve(file) },
        'starting',
      );
      try {
        await runDaemon(file, config, logger);
      } catch (err) {
        const phase = err instanceof StartupError ? { phase: err.phase } : {};
        logger.fatal({ ...phase, err: (err as Error).message }, 'cannot start');
        logger.flush();
        exitProcess(1);
      }
    });
}
