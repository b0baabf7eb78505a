// The layout of state_dir: every file and directory mailsrv keeps there is named here, so the
// daemon, the queue, POP3 and the CLI agree on it and a new one is added in one place.
import { join } from 'node:path';

export interface StatePaths {
  /** the running daemon's pid (`mailsrv status`, `stop`, `queue flush` read it) */
  pidFile: string;
  /** left by `mailsrv queue flush` before it signals the daemon: retry the deferred mail too (queue/signal.ts) */
  flushRequest: string;
  /** what the running daemon says about itself, for `mailsrv status` (daemon/status-file.ts) */
  statusFile: string;
  /** the queue: one file per accepted message (queue/store.ts) */
  queueDir: string;
  /** what the POP3 scan learnt about each mailbox */
  indexDir: string;
  /** the POP3 update's crash journal */
  journalDir: string;
  /** where `mailsrv sendmail` leaves mail for the daemon to pick up (queue/drop-dir.ts) */
  dropDir: string;
  /** the ACME account key and certificate (acme/store.ts) */
  acmeDir: string;
  /** the secret of the SRS addresses given to forwarded mail (forward/srs.ts) */
  srsKey: string;
}

export function statePaths(stateDir: string): StatePaths {
  return {
    pidFile: join(stateDir, 'mailsrv.pid'),
    flushRequest: join(stateDir, 'flush-request'),
    statusFile: join(stateDir, 'status.json'),
    queueDir: join(stateDir, 'queue'),
    indexDir: join(stateDir, 'index'),
    journalDir: join(stateDir, 'journal'),
    dropDir: join(stateDir, 'maildrop'),
    acmeDir: join(stateDir, 'acme'),
    srsKey: join(stateDir, 'srs.key'),
  };
}
