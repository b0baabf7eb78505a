// A value kept on an object for as long as the object lives, as a WeakMap keeps one, for
// objects made per connection (SMTP sessions, sockets). V8 keeps a WeakMap's entries in an
// ephemeron table that its young-generation collections work through: one WeakMap entry per
// SMTP message cost ~6% of the daemon's CPU at 10 connections (README "Performance"). A slot is
// a property named by a symbol of its own instead: nothing else can see or clash with it, and
// it goes with its object. Adding it to an object is still a change of the object's shape,
// through one store site shared by every slot: keep to one slot per object, holding a record.

export class ObjectSlot<K extends object, V> {
  private readonly symbol: symbol;

  /** `description` names the symbol (for a debugger). */
  constructor(description: string) {
    this.symbol = Symbol(description);
  }

  get(owner: K): V | undefined {
    return (owner as Record<symbol, V | undefined>)[this.symbol];
  }

  set(owner: K, value: V): void {
    (owner as Record<symbol, V | undefined>)[this.symbol] = value;
  }
}
