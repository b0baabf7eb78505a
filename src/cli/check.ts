// `mailsrv check` validates the config and everything it points at; `mailsrv config`
// prints the effective config with every default filled in (like `postconf`).
import { access, constants, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'smol-toml';
import { parseUsersFile } from '../auth/users.js';
import { localDomainMatcher } from '../config/domains.js';
import { ConfigError, configPath, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { checkAliases, parseAliases } from '../delivery/aliases.js';
import { loadConfigOrExit } from './start.js';

export function registerCheckCommands(program: Command): void {
  program
    .command('check')
    .description('validate the config, users and aliases files, TLS files and directories; exit 1 on any problem')
    .option('-c, --config <file>', 'config file')
    .action(async (opts: { config?: string }) => {
      const path = configPath(opts.config);
      let problems: string[];
      try {
        problems = await checkEverything(loadConfig(path));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problems = err.problems;
      }
      for (const problem of problems) process.stderr.write(`${problem}\n`);
      if (problems.length > 0) {
        process.stderr.write(`mailsrv check: ${problems.length} problem${problems.length === 1 ? '' : 's'} found\n`);
        process.exit(1);
      }
      process.stdout.write(`mailsrv check: ${path} is OK\n`);
    });

  program
    .command('config')
    .description('print the effective config, defaults filled in')
    .option('-c, --config <file>', 'config file')
    .action((opts: { config?: string }) => {
      const config = loadConfigOrExit(opts.config);
      process.stdout.write(`# effective config of ${configPath(opts.config)}\n${stringify(config)}\n`);
    });
}

async function checkEverything(config: Config): Promise<string[]> {
  const problems: string[] = [];
  for (const [key, dir] of [['spool_dir', config.spool_dir], ['state_dir', config.state_dir]] as const) {
    problems.push(...(await checkDirectory(key, dir)));
  }
  const usersText = await readOptional(config.users_file, 'users_file', problems);
  const users = parseUsersFile(usersText ?? '', config.users_file);
  problems.push(...users.problems);
  const aliasesText = await readOptional(config.aliases_file, 'aliases_file', problems);
  const aliases = parseAliases(aliasesText ?? '', config.aliases_file);
  problems.push(...aliases.problems);
  problems.push(...checkAliases({ has: (name: string) => users.users.has(name) }, aliases.aliases, localDomainMatcher(config)).map((p) => `${config.aliases_file}: ${p}`));
  if (config.tls.cert !== '') {
    for (const [key, file] of [['tls.cert', config.tls.cert], ['tls.key', config.tls.key]] as const) {
      try {
        await access(file, constants.R_OK);
      } catch {
        problems.push(`key '${key}': cannot read ${file}`);
      }
    }
  }
  return problems;
}

/** A directory must exist and be writable, or be creatable in a writable parent. */
async function checkDirectory(key: string, dir: string): Promise<string[]> {
  try {
    if (!(await stat(dir)).isDirectory()) return [`key '${key}': ${dir} is not a directory`];
    await access(dir, constants.W_OK);
    return [];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return [`key '${key}': ${dir} is not writable`];
    try {
      await access(dirname(dir), constants.W_OK);
      return [];
    } catch {
      return [`key '${key}': ${dir} does not exist and cannot be created`];
    }
  }
}

async function readOptional(file: string, key: string, problems: string[]): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`key '${key}': cannot read ${file}: ${(err as Error).message}`);
    return undefined;
  }
}
