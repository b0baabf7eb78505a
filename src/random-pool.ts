// Random bytes fetched in bulk for ids (queue ids, SMTP session ids): one call to the generator
// per 4 KiB, not one per id. Unpredictable enough for names that must not collide; not for keys.
import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(4096);
let used = pool.length;

/** The next random byte of the pool, refilled when it is used up. */
export function randomByte(): number {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  return pool[used++]!;
}
