// The one signal by which `mailsrv queue flush|delete` and `mailsrv sendmail -q` ask the running
// daemon to look at its queue again: forget entries whose file was deleted and pick up the
// maildrop; and, only when the file statePaths().flushRequest exists (left by a flush, removed
// by the daemon), retry every deferred recipient now — a delete leaves the other messages'
// retry times alone.
//
// Not SIGUSR1: Node.js reserves it to start the inspector, and a daemon that has not (or not
// yet) installed its own listener would open a debugger on 127.0.0.1:9229 instead, which every
// local user could connect to and run code as the mail user. SIGUSR2 has no such meaning in
// Node (its default action ends the process, like the SIGTERM of `mailsrv stop`).
import { rm, writeFile } from 'node:fs/promises';

export const QUEUE_SIGNAL = 'SIGUSR2' satisfies NodeJS.Signals;

/** `mailsrv queue flush`: leaves the request for the daemon to find when the signal arrives. */
export async function requestFlush(flushRequestFile: string): Promise<void> {
  await writeFile(flushRequestFile, '');
}

/** The daemon, on the signal: whether a flush was requested (the request is taken away). */
export async function takeFlushRequest(flushRequestFile: string): Promise<boolean> {
  try {
    await rm(flushRequestFile);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
