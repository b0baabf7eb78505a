// The subcommands and the file that defines each, loaded only when one of its commands runs:
// `mailsrv sendmail` and `mailq` (run from cron, often) load neither the daemon nor the other
// commands' code.
import type { Command } from 'commander';

/** Adds a file's commands to the program; `argv` is what main.ts parses. */
export type RegisterCommands = (program: Command, argv: string[]) => void;

export interface CommandFile {
  /** the commands it defines, in the order `mailsrv --help` lists them */
  names: string[];
  load(): Promise<RegisterCommands>;
}

export const COMMAND_FILES: CommandFile[] = [
  { names: ['start'], load: async () => (await import('./start.js')).registerStartCommand },
  { names: ['check', 'config'], load: async () => (await import('./check.js')).registerCheckCommands },
  { names: ['init'], load: async () => (await import('./init.js')).registerInitCommand },
  { names: ['status', 'stop'], load: async () => (await import('./status.js')).registerStatusCommands },
  { names: ['reload'], load: async () => (await import('./reload.js')).registerReloadCommand },
  { names: ['user'], load: async () => (await import('./user.js')).registerUserCommands },
  { names: ['queue'], load: async () => (await import('./queue.js')).registerQueueCommands },
  { names: ['dkim'], load: async () => (await import('./dkim.js')).registerDkimCommands },
  { names: ['sendmail'], load: async () => (await import('./sendmail.js')).registerSendmailCommand },
  { names: ['install-links'], load: async () => (await import('./install-links.js')).registerInstallLinksCommand },
  { names: ['report'], load: async () => (await import('./report.js')).registerReportCommand },
];

/** The options that need no command file (`--version`, printed by main.ts). */
const NEEDS_NO_COMMAND = new Set(['--version', '-V']);

/** The files to load for a command line naming `command`: its own, none for --version, or all (help, errors). */
export function commandFilesFor(command: string | undefined): CommandFile[] {
  if (command !== undefined && NEEDS_NO_COMMAND.has(command)) return [];
  const own = COMMAND_FILES.filter((file) => command !== undefined && file.names.includes(command));
  return own.length > 0 ? own : COMMAND_FILES;
}
