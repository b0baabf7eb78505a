// The one signal by which `mailsrv queue flush|delete` and `mailsrv sendmail -q` ask the running
// daemon to look at its queue again: retry every deferred recipient now, forget entries whose
// file was deleted, and pick up the maildrop.
//
// Not SIGUSR1: Node.js reserves it to start the inspector, and a daemon that has not (or not
// yet) installed its own listener would open a debugger on 127.0.0.1:9229 instead, which every
// local user could connect to and run code as the mail user. SIGUSR2 has no such meaning in
// Node (its default action ends the process, like the SIGTERM of `mailsrv stop`).
export const QUEUE_SIGNAL = 'SIGUSR2' satisfies NodeJS.Signals;
