// The daemon's pid file (statePaths().pidFile): written once the daemon is ready, removed when
// it stops; the CLI reads it to find the daemon it signals.
import { readFile, rm, writeFile } from 'node:fs/promises';

export async function writePidFile(path: string): Promise<void> {
  await writeFile(path, `${process.pid}\n`);
}

export async function removePidFile(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** The pid of the running daemon, from its pid file, or null when none runs. */
export async function runningPid(path: string): Promise<number | null> {
  let pid: number;
  try {
    pid = Number((await readFile(path, 'utf8')).trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it runs, as the daemon's user (after the privilege drop), not as us
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return null;
  }
  // the pid file is the daemon user's to write: root must not signal whatever it names
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return command.includes('mailsrv') ? pid : null;
}
