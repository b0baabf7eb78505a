// Which mailsrv node this process is, as its mailbox locks and the spool's recovery notes name it
// (README "More than one node"): the short host name and a tag of the node's state_dir, so that
// two daemons sharing one spool, on one box or on several, tell their own notes from another's.
// The daemon names itself at start; other programs (the CLI) go by host and pid.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';

let named: string | null = null;
let shortHostnameCache: string | undefined;

/** Short host name, as liblockfile uses it (up to the first dot); read once. */
export function shortHostname(): string {
  shortHostnameCache ??= hostname().split('.')[0] || 'localhost';
  return shortHostnameCache;
}

/** The node name of a daemon with this state_dir on this host. */
export function nodeNameOf(stateDir: string): string {
  return `${shortHostname()}:${createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 10)}`;
}

/** Names this process the node of this state_dir (daemon start; tests acting as a node). */
export function setThisNode(stateDir: string): void {
  named = nodeNameOf(stateDir);
}

/** This process's node name. */
export function thisNode(): string {
  return named ?? `${shortHostname()}:pid${process.pid}`;
}
