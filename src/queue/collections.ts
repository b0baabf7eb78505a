// The two queues the queue manager schedules with, both O(1) or O(log n) per job so that tens
// of thousands of queued messages cost nothing per event: a FIFO (Array#shift moves the whole
// array) and a min-heap by due time (one timer for the earliest deferred job).

export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.head += 1;
    // drop the consumed part once it is most of the array
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/** Items ordered by a key fixed when they are pushed (a later change of the item does not reorder it). */
export class MinHeap<T> {
  private readonly nodes: { key: number; item: T }[] = [];

  get size(): number {
    return this.nodes.length;
  }

  push(key: number, item: T): void {
    this.nodes.push({ key, item });
    let i = this.nodes.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.nodes[parent]!.key <= this.nodes[i]!.key) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** The smallest key, or Infinity when empty. */
  peekKey(): number {
    return this.nodes[0]?.key ?? Infinity;
  }

  pop(): T | undefined {
    const top = this.nodes[0];
    if (top === undefined) return undefined;
    const last = this.nodes.pop()!;
    if (this.nodes.length > 0) {
      this.nodes[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < this.nodes.length && this.nodes[left]!.key < this.nodes[smallest]!.key) smallest = left;
        if (right < this.nodes.length && this.nodes[right]!.key < this.nodes[smallest]!.key) smallest = right;
        if (smallest === i) break;
        this.swap(i, smallest);
        i = smallest;
      }
    }
    return top.item;
  }

  /** Removes and returns every item, in no particular order. */
  drain(): T[] {
    return this.nodes.splice(0).map((node) => node.item);
  }

  /** Keeps only the items `keep` accepts (O(n log n): for rare clean-ups, not per event). */
  retain(keep: (item: T) => boolean): void {
    for (const node of this.nodes.splice(0)) if (keep(node.item)) this.push(node.key, node.item);
  }

  private swap(a: number, b: number): void {
    [this.nodes[a], this.nodes[b]] = [this.nodes[b]!, this.nodes[a]!];
  }
}
