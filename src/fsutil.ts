// File-system helpers every durable writer needs: telling errno codes apart, reading or writing
// a number of bytes at an offset whole, writing a list of buffers whole, making a directory
// entry (a new, renamed or removed file) durable, alone or grouped with others, and flushing a
// large rewrite to the disk while it is still being written.
import { promises as fs, writevSync } from 'node:fs';
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

/** fsync of a directory: after it, the entries created, renamed or removed in it survive a crash. */
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
  while (rest.length > 0) rest = unwritten(rest, (await handle.writev(rest)).bytesWritten);
}

/**
 * writeAll on the calling thread: blocks the event loop until the write returns (an O_DSYNC
 * write: until it is on disk). It spares the two thread-pool hand-offs of an asynchronous write,
 * for when no other client waits on the loop meanwhile.
 */
export function writeAllNow(handle: FileHandle, buffers: Buffer[]): void {
  let rest = buffers.filter((b) => b.length > 0);
  while (rest.length > 0) rest = unwritten(rest, writevSync(handle.fd, rest));
}

/** What is left of `buffers` after a write took their first `bytesWritten` bytes. */
function unwritten(buffers: Buffer[], bytesWritten: number): Buffer[] {
  const rest: Buffer[] = [];
  for (const buf of buffers) {
    if (bytesWritten >= buf.length) {
      bytesWritten -= buf.length;
    } else {
      rest.push(buf.subarray(bytesWritten));
      bytesWritten = 0;
    }
  }
  return rest;
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

/**
 * Keeps the disk busy during a long rewrite of one file: after each write, wrote() starts an
 * fdatasync in the background once `stepBytes` were written since the last one started, never
 * two at once, so that the final fsync finds little left to write. An fdatasync that fails
 * fails the next wrote() or settled().
 */
export class BackgroundFlush {
  private written = 0;
  private running: Promise<void> | null = null;
  private failure: { error: unknown } | null = null;

  constructor(
    private readonly handle: FileHandle,
    private readonly stepBytes: number,
  ) {}

  /** Counts `bytes` just written; may start an fdatasync. */
  wrote(bytes: number): void {
    if (this.failure !== null) throw this.failure.error;
    this.written += bytes;
    if (this.running !== null || this.written < this.stepBytes) return;
    this.written = 0;
    this.running = this.handle.datasync().then(
      () => {
        this.running = null;
      },
      (error: unknown) => {
        this.running = null;
        this.failure = { error };
      },
    );
  }

  /** Waits for the fdatasync under way, if any; throws if one failed. */
  async settled(): Promise<void> {
    await this.running;
    if (this.failure !== null) throw this.failure.error;
  }
}
