// The `mailsrv` program before its commands are added: name, description, version and the
// parsing rules all commands share. main.ts adds the commands a command line needs; the man
// page generator (scripts/man-pages.ts) adds them all.
import { Command } from 'commander';
import { packageVersion } from '../version.js';

export function createProgram(): Command {
  return (
    new Command('mailsrv')
      .description('SMTP and POP3 mail server delivering into mbox files')
      .version(packageVersion())
      // -V and -h belong to the subcommands after the name (sendmail -V, -h HOPS)
      .enablePositionalOptions()
  );
}
