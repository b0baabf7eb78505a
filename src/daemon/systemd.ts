// Readiness for systemd's Type=notify (README "Running under systemd"): when started with
// NOTIFY_SOCKET set, the daemon tells systemd READY=1 once it serves, RELOADING=1 and READY=1
// around a SIGHUP reload, and STOPPING=1 when it stops. Node cannot send the AF_UNIX datagram
// itself (no unix datagram sockets, and a native addon is not worth it), so systemd's own
// `systemd-notify` sends it; it waits until systemd has read the message (sd_notify_barrier),
// so the message is never lost when it exits, and the unit has NotifyAccess=all because the
// sender is that child, not the main process. Messages go out one at a time, in order.
import { execFile } from 'node:child_process';
import type { Logger } from '../log.js';

/** How long one systemd-notify may take (it waits up to 5 s for systemd itself). */
const NOTIFY_TIMEOUT_MS = 10_000;

export interface SystemdNotifier {
  /** sends `assignments` (e.g. ["READY=1", "STATUS=..."]); resolves once sent, never rejects */
  send(...assignments: string[]): Promise<void>;
  /** resolves once every message asked for so far has been sent */
  settled(): Promise<void>;
}

/** A notifier; without NOTIFY_SOCKET (not started by systemd) it sends nothing. */
export function systemdNotifier(logger: Logger, env: NodeJS.ProcessEnv = process.env): SystemdNotifier {
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return { send: async () => undefined, settled: async () => undefined };
  let last: Promise<void> = Promise.resolve();
  let warned = false;
  const childOptions = {
    timeout: NOTIFY_TIMEOUT_MS,
    env: { PATH: env.PATH ?? '/usr/bin:/bin', NOTIFY_SOCKET: socket },
  };
  const sendNow = (assignments: string[]) =>
    new Promise<void>((resolve) => {
      execFile('systemd-notify', assignments, childOptions, (err) => {
        if (err !== null && !warned) {
          warned = true;
          logger.warn({ err: err.message, socket }, 'cannot notify systemd (is systemd-notify installed?)');
        }
        resolve();
      });
    });
  return {
    send(...assignments) {
      last = last.then(() => sendNow(assignments));
      return last;
    },
    settled: () => last,
  };
}
