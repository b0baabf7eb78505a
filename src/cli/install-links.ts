// `mailsrv install-links`: the links through which cron, mail(1), git send-email and scripts
// find the mail system, as an MTA package installs them: `sendmail` (in /usr/sbin, where
// programs look for it) and `mailq` (in /usr/bin), both pointing at this `mailsrv` program,
// which acts as `mailsrv sendmail` / `mailsrv queue` when called by those names (main.ts).
// A file already there (another MTA's) is kept unless --force, which moves it aside first.
import { lstat, readlink, rename, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { isErrno } from '../fsutil.js';
import { fail } from './fail.js';

interface LinkOptions {
  sbin: string;
  bin: string;
  force?: boolean;
}

/** Where a file replaced by --force is kept. */
const SAVED_SUFFIX = '.before-mailsrv';

export function registerInstallLinksCommand(program: Command): void {
  program
    .command('install-links')
    .description(`link sendmail (in --sbin) and mailq (in --bin) to this mailsrv; --force moves others aside`)
    .option('--sbin <dir>', 'where sendmail goes', '/usr/sbin')
    .option('--bin <dir>', 'where mailq goes', '/usr/bin')
    .option('--force', `replace a sendmail or mailq that is there (kept as NAME${SAVED_SUFFIX})`)
    .action(async (opts: LinkOptions) => {
      const target = resolve(process.argv[1] ?? fail('cannot tell where this mailsrv program is'));
      for (const path of [join(opts.sbin, 'sendmail'), join(opts.bin, 'mailq')]) {
        process.stdout.write(`${await installLink(path, target, opts.force === true)}\n`);
      }
    });
}

/** Makes `path` a symbolic link to `target`; returns what was done, exits 1 when it must not. */
async function installLink(path: string, target: string, force: boolean): Promise<string> {
  let existing: string | null = null;
  try {
    const info = await lstat(path);
    existing = info.isSymbolicLink() ? await readlink(path) : '';
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) fail(`cannot look at ${path}: ${(err as Error).message}`);
  }
  if (existing === target) return `${path} -> ${target} (already there)`;
  let saved = '';
  if (existing !== null) {
    if (!force)
      fail(
        `${path} exists${existing === '' ? '' : ` (a link to ${existing})`}, from another mail system?: ` +
          `remove it, or run again with --force to keep it as ${path}${SAVED_SUFFIX}`,
      );
    await rename(path, path + SAVED_SUFFIX);
    saved = ` (the one before is now ${path}${SAVED_SUFFIX})`;
  }
  try {
    await symlink(target, path);
  } catch (err) {
    fail(`cannot link ${path}: ${(err as Error).message}`);
  }
  return `${path} -> ${target}${saved}`;
}
