// File-system helpers every durable writer needs: telling errno codes apart, reading or writing
// a number of bytes at an offset whole, writing a list of buffers whole, and making a directory
// entry (a new, renamed or removed file) durable, alone or grouped with others.
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

export function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** The disk (or the user's quota) is full: `err` or an error it was caused by says so. */
export function isOutOfSpace(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (isErrno(e, 'ENOSPC') || isErrno(e, 'EDQUOT')) return true;
  }
  return false;
}

/**
 * FileHandle.read that does not stop short: reads `length` bytes at file `position` into
 * `buffer` from `offset`, fewer only where the file ends. Returns the count read.
 */
export async function readAt(
  handle: FileHandle,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, offset + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** FileHandle.write that does not stop short: writes `length` bytes of `buffer` from `offset` at file `position`. */
export async function writeAt(
  handle: FileHandle,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, offset + done, length - done, position + done);
    done += bytesWritten;
  }
}

/** fsync of a directory: after it, the entries created, renamed or removed in it survive a crash. */
/** Whether anything (a file, a directory, a dangling link) is at `path`; other errors throw. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

export async function fsyncDir(path: string): Promise<void> {
  const dir = await fs.open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Writes all of `buffers` at the file's position (its end, with O_APPEND), looping over short writes. */
export async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let rest = buffers.filter((b) => b.length > 0);
  while (rest.length > 0) {
    let { bytesWritten } = await handle.writev(rest);
    const next: Buffer[] = [];
    for (const buf of rest) {
      if (bytesWritten >= buf.length) {
        bytesWritten -= buf.length;
      } else {
        next.push(buf.subarray(bytesWritten));
        bytesWritten = 0;
      }
    }
    rest = next;
  }
}

/**
 * Group commit for one directory's entries: sync() resolves once an fsync of the directory
 * that started after the call has finished. Callers that arrive while one runs share the next.
 */
export class GroupedDirSync {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(private readonly path: string) {}

  sync(): Promise<void> {
    if (this.running === null) {
      this.running = fsyncDir(this.path).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    // one is under way: it may have started before our entry was made, so wait for the next
    this.next ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        return this.sync();
      });
    return this.next;
  }
}
