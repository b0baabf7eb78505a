// Files the CLI writes once and never overwrites (`mailsrv init`, `mailsrv dkim keygen`): made
// exclusively with an exact mode and fsynced; secrets are SECRET_MODE, owned by who ran it.
import { chmod, mkdir, open, unlink } from 'node:fs/promises';

/**
 * The mode of secret files (the users file, the TLS key, DKIM keys): the owner's alone. Run as
 * root that is root: the daemon's root helper reads them again on SIGHUP (README, "Privileges").
 */
export const SECRET_MODE = 0o600;

/**
 * Creates a directory and any missing parents (mode 0755, never more, whatever the umask); one that exists is left
 * as it is.
 */
export async function makeDirectory(dir: string): Promise<void> {
  if ((await mkdir(dir, { recursive: true, mode: 0o755 })) !== undefined) await chmod(dir, 0o755);
}

/** Writes a new file with exactly `mode`; false when the file already exists. */
export async function createFile(path: string, text: string, mode: number): Promise<boolean> {
  let file;
  try {
    file = await open(path, 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await file.chmod(mode); // the mode asked for, whatever the umask
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
