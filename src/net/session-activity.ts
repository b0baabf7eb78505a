// What one client session did, for its `disconnect` log line (README "Logs"), as Postfix's
// `disconnect from host[addr] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`: how long it
// lasted and how many of each command the client sent. Counting a command is one increment on
// a small object (it runs for every command line), nothing is allocated.

/** The `disconnect` line's fields. */
export interface ActivitySummary {
  durationMs: number;
  /** lowercase command name → how many times the client sent it, in order of first use */
  commands: Record<string, number>;
  /** all command lines, unknown ones included */
  total: number;
}

export class SessionActivity {
  private readonly startedAt = Date.now();
  private readonly counts: Record<string, number> = {};
  private total = 0;

  /**
   * One command line. `name` comes from the protocol's fixed list of command names (anything
   * else is counted as "unknown"), so a client cannot make the object grow.
   */
  count(name: string): void {
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    this.total += 1;
  }

  summary(): ActivitySummary {
    return { durationMs: Date.now() - this.startedAt, commands: this.counts, total: this.total };
  }
}
