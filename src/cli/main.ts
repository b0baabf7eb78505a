// The `mailsrv` command line: one subcommand per file in this folder.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerCheckCommands } from './check.js';
import { registerInitCommand } from './init.js';
import { registerStartCommand } from './start.js';
import { registerStatusCommands } from './status.js';
import { registerUserCommands } from './user.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('mailsrv')
  .description('SMTP and POP3 mail server delivering into mbox files')
  .version(version);
registerStartCommand(program);
registerCheckCommands(program);
registerInitCommand(program);
registerStatusCommands(program);
registerUserCommands(program);
await program.parseAsync(process.argv);
