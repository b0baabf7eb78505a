// Files the CLI writes once and never overwrites (`mailsrv init`, `mailsrv dkim keygen`): made
// exclusively with an exact mode, fsynced, and, run as root, secrets get the daemon's group so
// it can read them again (SIGHUP) after it dropped root.
import { chmod, mkdir, open, unlink } from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import { PrivilegeError, resolveIdentity, startedAsRoot } from '../privileges.js';

/**
 * The group for `what` (secrets the daemon re-reads) when run as root: the config's group.
 * Null: leave the group as it comes (not root, or the group does not exist yet: a warning says so).
 */
export function groupForSecrets(config: Pick<Config, 'user' | 'group'>, what: string): number | null {
  if (!startedAsRoot()) return null;
  try {
    return resolveIdentity(config.user, config.group).gid;
  } catch (err) {
    if (!(err instanceof PrivilegeError)) throw err;
    process.stderr.write(
      `warning: ${err.message}; ${what} keep root's group: once the user and group exist, chgrp ${config.group} them\n`,
    );
    return null;
  }
}

/**
 * Creates a directory and any missing parents (mode 0755, never more, whatever the umask); one that exists is left
 * as it is.
 */
export async function makeDirectory(dir: string): Promise<void> {
  if ((await mkdir(dir, { recursive: true, mode: 0o755 })) !== undefined) await chmod(dir, 0o755);
}

/** Writes a new file with exactly `mode` (and group `gid`); false when the file already exists. */
export async function createFile(path: string, text: string, mode: number, gid: number | null): Promise<boolean> {
  let file;
  try {
    file = await open(path, 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await file.chmod(mode); // the mode asked for, whatever the umask
    if (gid !== null) await file.chown(process.getuid!(), gid);
    await file.writeFile(text, 'utf8');
    await file.sync();
  } catch (err) {
    await unlink(path).catch(() => undefined); // no half-written file for the next run to keep
    throw err;
  } finally {
    await file.close();
  }
  return true;
}
