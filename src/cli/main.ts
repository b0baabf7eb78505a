// The `mailsrv` command line: one subcommand per file in this folder. Installed under the name
// `sendmail` or `mailq` (a link to bin/mailsrv), it acts as `mailsrv sendmail` / `mailsrv queue`.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Command } from 'commander';
import { registerCheckCommands } from './check.js';
import { registerInitCommand } from './init.js';
import { registerQueueCommands } from './queue.js';
import { registerSendmailCommand } from './sendmail.js';
import { registerStartCommand } from './start.js';
import { registerStatusCommands } from './status.js';
import { registerUserCommands } from './user.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const LINK_NAMES = new Map([
  ['sendmail', ['sendmail']],
  ['mailq', ['queue', 'list']],
]);
const argv = [...process.argv];
const linkedAs = LINK_NAMES.get(basename(argv[1] ?? ''));
if (linkedAs) argv.splice(2, 0, ...linkedAs);

const program = new Command('mailsrv')
  .description('SMTP and POP3 mail server delivering into mbox files')
  .version(version)
  // -V and -h belong to the subcommands after the name (sendmail -V, -h HOPS)
  .enablePositionalOptions();
registerStartCommand(program);
registerCheckCommands(program);
registerInitCommand(program);
registerStatusCommands(program);
registerUserCommands(program);
registerQueueCommands(program);
registerSendmailCommand(program, argv);
await program.parseAsync(argv);
