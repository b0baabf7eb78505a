// Two file-system helpers every durable writer needs: telling errno codes apart, and making
// a directory entry (a new, renamed or removed file) durable.
import { promises as fs } from 'node:fs';

export function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** fsync of a directory: after it, the entries created, renamed or removed in it survive a crash. */
export async function fsyncDir(path: string): Promise<void> {
  const dir = await fs.open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
