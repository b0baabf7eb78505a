// `mailsrv user add|passwd|del|list`: manages the users file named by `users_file`, and tells
// the running daemon of a change.
// Passwords come from a no-echo prompt on the terminal (asked twice) or, with
// --password-stdin, from the first line of stdin; they are hashed at once and never printed.
import { join } from 'node:path';
import type { Command } from 'commander';
import { addUser, deleteUser, loadUsers, setPassword } from '../auth/users.js';
import { normalizeUsername } from '../auth/username.js';
import { configPath, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { signalDaemon } from './daemon-signal.js';
import { fail } from './fail.js';

interface ConfigOption {
  config?: string;
}

interface PasswordOptions extends ConfigOption {
  passwordStdin?: boolean;
}

export function registerUserCommands(program: Command): void {
  const user = program.command('user').description('manage the users file (users_file)');

  passwordCommand(
    user,
    'add',
    'add a user; asks for the password (no echo) unless --password-stdin',
    false,
    async (file, name, password) => `user "${await addUser(file, name, password)}" added to ${file}`,
  );
  passwordCommand(
    user,
    'passwd',
    "change a user's password; asks for it (no echo) unless --password-stdin",
    true,
    async (file, name, password) => `password of "${await setPassword(file, name, password)}" changed in ${file}`,
  );

  user
    .command('del')
    .description('delete a user (the mailbox is left in place)')
    .argument('<name>', 'user name')
    .option('-c, --config <file>', 'config file')
    .action((name: string, opts: ConfigOption) =>
      run(opts, async (config) => {
        const deleted = await deleteUser(config.users_file, name);
        return (
          `user "${deleted}" deleted from ${config.users_file}; ` +
          `mailbox ${join(config.spool_dir, deleted)} left in place${await tellDaemon(config)}`
        );
      }),
    );

  user
    .command('list')
    .description('list the user names, one a line')
    .option('-c, --config <file>', 'config file')
    .action((opts: ConfigOption) =>
      run(opts, async (config) => {
        const users = await loadUsers(config.users_file);
        for (const problem of users.problems) process.stderr.write(`warning: ${problem}\n`);
        return users.names().join('\n');
      }),
    );
}

/**
 * `user add` and `user passwd`: the name is checked, and whether the user must exist or must
 * not, before the password is asked for (nobody types a password twice to learn of a typo).
 */
function passwordCommand(
  user: Command,
  command: string,
  description: string,
  mustExist: boolean,
  apply: (usersFile: string, name: string, password: string) => Promise<string>,
): void {
  user
    .command(command)
    .description(description)
    .argument('<name>', 'user name: letters, digits, ".", "_", "-"; case-insensitive')
    .option('-c, --config <file>', 'config file')
    .option('--password-stdin', 'read the password from the first line of stdin')
    .action((name: string, opts: PasswordOptions) =>
      run(opts, async (config) => {
        const normalized = checkedName(name);
        const exists = (await loadUsers(config.users_file)).has(normalized);
        if (exists && !mustExist) fail(`user "${normalized}" already exists in ${config.users_file}`);
        if (!exists && mustExist) fail(`no such user "${normalized}" in ${config.users_file}`);
        return (await apply(config.users_file, normalized, await readNewPassword(opts))) + (await tellDaemon(config));
      }),
    );
}

/**
 * A change reaches the running daemon at once (SIGHUP, as `mailsrv reload`), so mail to a user
 * just added is not refused meanwhile. The line to print after the result ('' when none runs).
 */
async function tellDaemon(config: Config): Promise<string> {
  try {
    const pid = await signalDaemon(config, 'SIGHUP');
    return pid === null ? '' : `\nthe running mailsrv (pid ${pid}) reloads the users file`;
  } catch (err) {
    process.stderr.write(`warning: the running mailsrv was not told: ${(err as Error).message}\n`);
    return '';
  }
}

/** Loads the config, runs one command and prints its result; any error: stderr, exit 1. */
async function run(opts: ConfigOption, command: (config: Config) => Promise<string>): Promise<void> {
  let output: string;
  try {
    output = await command(loadConfig(configPath(opts.config)));
  } catch (err) {
    return fail((err as Error).message);
  }
  if (output !== '') process.stdout.write(`${output}\n`);
}

function checkedName(name: string): string {
  return (
    normalizeUsername(name) ??
    fail(
      `bad user name ${JSON.stringify(name)}: ` +
        'use letters, digits, ".", "_" or "-", starting with a letter or digit, at most 64 characters',
    )
  );
}

async function readNewPassword(opts: PasswordOptions): Promise<string> {
  let password: string;
  if (opts.passwordStdin) {
    password = await readFirstLine(process.stdin);
  } else {
    if (!process.stdin.isTTY)
      throw new Error('stdin is not a terminal: use --password-stdin to read the password from it');
    password = await promptHidden('Password: ');
    if (password !== '' && (await promptHidden('Retype password: ')) !== password)
      throw new Error('passwords do not match');
  }
  if (password === '') throw new Error('empty password refused');
  return password;
}

/** The first line of a stream, without its line end (LF or CRLF); the whole stream when it has no LF. */
async function readFirstLine(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const newline = buffer.indexOf(0x0a);
    chunks.push(newline < 0 ? buffer : buffer.subarray(0, newline));
    if (newline >= 0) break; // leaving the loop ends the stream: the rest is not read
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r$/, '');
}

/** Asks for a line on the terminal without echoing it (raw mode). Ctrl-C or Ctrl-D cancels. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let typed: string[] = [];
    const finish = (error: Error | null) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(typed.join(''));
    };
    const onData = (chunk: string) => {
      for (const c of chunk) {
        if (c === '\r' || c === '\n') return finish(null);
        if (c === '\u0003' || c === '\u0004') return finish(new Error('cancelled'));
        if (c === '\u007f' || c === '\b') typed.pop();
        else if (c === '\u0015')
          typed = []; // Ctrl-U: erase the line
        else if (c >= ' ') typed.push(c);
      }
    };
    stdin.on('data', onData);
  });
}
