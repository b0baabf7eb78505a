// Signals to the running daemon, found through state_dir's pid file: `mailsrv reload` and the
// user commands (SIGHUP), `mailsrv queue` and `sendmail -q` (the queue signal). Only root and
// the daemon's own user may signal it (it runs as `user` once started as root).
import { access, constants } from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import { isErrno } from '../fsutil.js';
import { statePaths } from '../paths.js';
import { runningPid } from '../pid-file.js';
import { fail } from './fail.js';

/** Sends `signal` to the running daemon; returns its pid, or null when none runs. Throws when not allowed to. */
export async function signalDaemon(config: Config, signal: NodeJS.Signals): Promise<number | null> {
  const { pidFile } = statePaths(config.state_dir);
  try {
    await access(pidFile, constants.R_OK);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw new Error(`cannot read ${pidFile}: ${(err as Error).message}; ${daemonUserHint(config)}`);
  }
  const pid = await runningPid(pidFile);
  if (pid === null) return null;
  try {
    process.kill(pid, signal);
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return null;
    if (isErrno(err, 'EPERM'))
      throw new Error(`cannot signal mailsrv (pid ${pid}): permission denied; ${daemonUserHint(config)}`);
    throw err;
  }
  return pid;
}

/** signalDaemon for commands whose whole point is the signal: any problem ends them (exit 1). */
export async function signalDaemonOrFail(config: Config, signal: NodeJS.Signals): Promise<number | null> {
  try {
    return await signalDaemon(config, signal);
  } catch (err) {
    return fail((err as Error).message);
  }
}

/** Who may talk to the daemon and read its state. */
function daemonUserHint(config: Config): string {
  return `mailsrv runs as the user named by the config key user ("${config.user}"): run this as root or as that user`;
}
