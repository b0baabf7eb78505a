// Counts per key (a sender, a reason, an address) in bounded memory, for the top lists of
// `mailsrv report`: at most `maxKeys` distinct keys are held; past that the less frequent half
// is forgotten and the table is marked approximate (a key seen again starts from 0).

export interface CountedKey {
  key: string;
  count: number;
  /** bytes summed for the key (senders: the size of their messages); 0 when not counted */
  bytes: number;
}

/** Longest key kept; longer ones are cut (a reason with a whole reply in it). */
const MAX_KEY_LENGTH = 200;

export class BoundedCounter {
  private readonly counts = new Map<string, { count: number; bytes: number }>();
  private pruned = false;

  constructor(private readonly maxKeys: number) {}

  add(key: string, bytes = 0): void {
    const name = key.length > MAX_KEY_LENGTH ? `${key.slice(0, MAX_KEY_LENGTH)}...` : key;
    const entry = this.counts.get(name);
    if (entry) {
      entry.count += 1;
      entry.bytes += bytes;
      return;
    }
    if (this.counts.size >= this.maxKeys) this.prune();
    this.counts.set(name, { count: 1, bytes });
  }

  /** Some keys were forgotten: counts of the keys listed may be too low. */
  get approximate(): boolean {
    return this.pruned;
  }

  /** The `n` most frequent keys, most frequent first (ties by key). */
  top(n: number): CountedKey[] {
    return this.sorted().slice(0, n);
  }

  private sorted(): CountedKey[] {
    return [...this.counts]
      .map(([key, { count, bytes }]) => ({ key, count, bytes }))
      .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Keeps the more frequent half. */
  private prune(): void {
    const keep = this.sorted().slice(0, Math.floor(this.maxKeys / 2));
    this.counts.clear();
    for (const { key, count, bytes } of keep) this.counts.set(key, { count, bytes });
    this.pruned = true;
  }
}
