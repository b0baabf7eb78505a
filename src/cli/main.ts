// The `mailsrv` command line: one subcommand per file in this folder, loaded only when it runs
// (commands.ts). Installed under the name `sendmail` or `mailq` (a link to bin/mailsrv), it acts
// as `mailsrv sendmail` / `mailsrv queue`.
import { basename } from 'node:path';
import { commandFilesFor } from './commands.js';
import { createProgram } from './program.js';

const LINK_NAMES = new Map([
  ['sendmail', ['sendmail']],
  ['mailq', ['queue', 'list']],
]);
const argv = [...process.argv];
const linkedAs = LINK_NAMES.get(basename(argv[1] ?? ''));
if (linkedAs) argv.splice(2, 0, ...linkedAs);

const program = createProgram();
for (const file of commandFilesFor(argv[2])) (await file.load())(program, argv);
await program.parseAsync(argv);
