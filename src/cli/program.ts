// The `mailsrv` program before its commands are added: name, description, version and the
// parsing rules all commands share. main.ts adds the commands a command line needs; the man
// page generator (scripts/man-pages.ts) adds them all.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';

export const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function createProgram(): Command {
  return (
    new Command('mailsrv')
      .description('SMTP and POP3 mail server delivering into mbox files')
      .version(version)
      // -V and -h belong to the subcommands after the name (sendmail -V, -h HOPS)
      .enablePositionalOptions()
  );
}
