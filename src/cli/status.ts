// `mailsrv status` (is the daemon up: pid, listeners, queue size, certificate) and `mailsrv stop`.
import { X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { AcmeStore, certificateNames } from '../acme/store.js';
import type { Config } from '../config/schema.js';
import type { Command } from 'commander';
import { statePaths } from '../paths.js';
import { runningPid } from '../pid-file.js';
import { isQueueId } from '../queue/id.js';
import { fail } from './fail.js';
import { loadConfigOrExit } from './load-config.js';

export function registerStatusCommands(program: Command): void {
  program
    .command('status')
    .description('is the daemon running: pid, listeners, queue size, certificate (exit 1 when not running)')
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
      process.stdout.write(
        `mailsrv is running, pid ${pid}\n` +
          `  smtp:       ${config.smtp.listen.join(', ') || '-'}\n` +
          `  submission: ${config.smtp.submission.join(', ') || '-'}\n` +
          `  smtps:      ${config.smtp.smtps.join(', ') || '-'}\n` +
          `  pop3:       ${config.pop3.listen.join(', ') || '-'}\n` +
          `  pop3s:      ${config.pop3.pop3s.join(', ') || '-'}\n` +
          `  autoconfig: ${config.autoconfig.listen.join(', ') || '-'}\n` +
          `  queue:      ${queued} message(s)\n` +
          `  certificate: ${await describeCertificate(config, paths.acmeDir)}\n`,
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

/**
 * "NAMES, expires YYYY-MM-DDTHH:MM:SSZ" of the certificate on disk: the ACME one when ACME is
 * on and one was issued, else the [tls] one; "-" when there is none (or a temporary one).
 */
async function describeCertificate(config: Config, acmeDir: string): Promise<string> {
  const acmeCert = config.acme.directory === '' ? '' : new AcmeStore(acmeDir).certFile;
  for (const file of [acmeCert, config.tls.cert].filter((f) => f !== '')) {
    let pem: Buffer;
    try {
      pem = await readFile(file);
    } catch {
      continue;
    }
    try {
      const expires = new Date(new X509Certificate(pem).validTo).toISOString().replace(/\.\d{3}Z$/, 'Z');
      return `${certificateNames(pem).join(', ') || '-'}, expires ${expires}`;
    } catch (err) {
      return `${file}: ${(err as Error).message}`;
    }
  }
  return '-';
}
