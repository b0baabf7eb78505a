// The `mailsrv` command line: one subcommand per file in this folder, loaded only when it runs
// (commands.ts). Installed under the name `sendmail` or `mailq` (a link to bin/mailsrv), it acts
// as `mailsrv sendmail` / `mailsrv queue`.
import { basename } from 'node:path';
import { Command } from 'commander';
import { MAILSRV_VERSION } from '../version.js';
import { commandFilesFor } from './commands.js';

const LINK_NAMES = new Map([
  ['sendmail', ['sendmail']],
  ['mailq', ['queue', 'list']],
]);
const argv = [...process.argv];
const linkedAs = LINK_NAMES.get(basename(argv[1] ?? ''));
if (linkedAs) argv.splice(2, 0, ...linkedAs);

const program = new Command('mailsrv')
  .description('SMTP and POP3 mail server delivering into mbox files')
  .version(MAILSRV_VERSION)
  // -V and -h belong to the subcommands after the name (sendmail -V, -h HOPS)
  .enablePositionalOptions();
for (const file of commandFilesFor(argv[2])) (await file.load())(program, argv);
await program.parseAsync(argv);
