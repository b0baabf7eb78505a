// What the crash loop's clients were told, over all rounds: the truth the mailboxes and the test
// MX are checked against (test/fault/crash-loop.ts), and the loop's deterministic random source.

/** A small deterministic random source (mulberry32), so a failing round can be replayed by its seed. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Ledger {
  /** subject → recipients it was sent to: local user names, remote addresses (acknowledged or not) */
  readonly sent = new Map<string, string[]>();
  /** "recipient subject" of messages that got a 250 */
  readonly acknowledged = new Set<string>();
  /** subject → the queue id its 250 named (to find it in the daemons' logs) */
  readonly queueIds = new Map<string, string>();
  /** "user subject" deleted by a QUIT that got +OK */
  readonly deleted = new Set<string>();
  /** "user subject" marked by a QUIT whose answer never came (the update may or may not have run) */
  readonly maybeDeleted = new Set<string>();
}

/** A recipient (user name or remote address) and a subject, as the ledger's sets hold them. */
export const key = (recipient: string, subject: string) => `${recipient} ${subject}`;
/** The last body line of every message sent: a copy that lacks it is torn. */
export const bodyEnd = (subject: string) => `end of ${subject}`;
