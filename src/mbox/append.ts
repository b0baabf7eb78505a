// Appends messages to an mbox file under the dotlock: From_ line, edited headers and the
// mboxrd-quoted body, streamed and fsynced; any failure truncates the file back (no partial
// mail). Several messages for one mailbox can share one lock, one open and one fsync.
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Writable, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromLine, MboxrdQuoter } from './format.js';
import { editHeaders } from './headers.js';
import { acquireDotlock, MailboxLockedError, type StaleLockHandler } from './lock.js';
import { fsyncDir, isErrno } from '../fsutil.js';

export { MailboxLockedError };

/** The mailbox to append to, and how. */
export interface MailboxTarget {
  mailboxPath: string;
  /** total mailbox size allowed after the append in bytes; 0 = unlimited */
  sizeLimit: number;
  lockTimeoutMs: number;
  onStaleBroken?: StaleLockHandler;
}

/** One message to append. */
export interface MessageToAppend {
  /** the raw message (CRLF line ends) */
  source: Readable;
  /** envelope sender for the From_ line; '' is the null sender */
  sender: string;
  /** delivery time for the From_ line */
  date: Date;
  /** complete header lines (no final CRLF) put at the top of the message */
  addHeaders: string[];
  /** header lines added at the end of the header block when the message lacks that field */
  addHeadersIfMissing?: string[];
  /**
   * Called under the lock with the offset the message will start at, before any byte is
   * written (e.g. to note it for crash recovery). If it rejects, nothing is written.
   */
  beforeWrite?: (offset: number) => Promise<void>;
}

export type AppendOptions = MailboxTarget & MessageToAppend;

export interface AppendResult {
  /** where the message (its From_ line) starts in the mailbox */
  offset: number;
  /** its length there, up to and including the blank separator line: the mailbox now ends at offset + bytes */
  bytes: number;
}

/** The mailbox is (or would become) larger than its limit: 552 5.2.2. Nothing was written. */
export class MailboxFullError extends Error {
  readonly path: string;
  readonly limit: number;
  constructor(path: string, limit: number) {
    super(`mailbox full: ${path} (limit ${limit} bytes)`);
    this.name = 'MailboxFullError';
    this.path = path;
    this.limit = limit;
  }
}

/** Any other failure (file system, source stream): retry later. The mailbox is unchanged. */
export class MailboxIOError extends Error {
  readonly path: string;
  constructor(path: string, message: string, cause: unknown) {
    super(`${message}: ${path}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'MailboxIOError';
    this.path = path;
  }
}

/** Size of a mailbox file in bytes, 0 if it does not exist. */
export async function mailboxSize(path: string): Promise<number> {
  try {
    return (await fs.stat(path)).size;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return 0;
    throw err;
  }
}

/** Writes all of `buffers` at the end of the file (O_APPEND), looping over short writes. */
async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let rest = buffers;
  while (rest.length > 0) {
    let { bytesWritten } = await handle.writev(rest);
    const next: Buffer[] = [];
    for (const buf of rest) {
      if (bytesWritten >= buf.length) {
        bytesWritten -= buf.length;
      } else {
        next.push(bytesWritten > 0 ? buf.subarray(bytesWritten) : buf);
        bytesWritten = 0;
      }
    }
    rest = next;
  }
}

/**
 * File sink that writes `head` first (From_ line), counts bytes and refuses to grow the mailbox
 * past its limit.
 */
class MailboxWriter extends Writable {
  written = 0;
  private inflight: Promise<void> = Promise.resolve();

  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly head: Buffer,
    private readonly room: number,
    private readonly limit: number,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.writeBuffers([this.head], callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writeBuffers([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.writeBuffers(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  /** Resolves once no file write is in flight (so truncating cannot race a late write). */
  settled(): Promise<void> {
    return this.inflight;
  }

  private writeBuffers(buffers: Buffer[], callback: (error?: Error | null) => void): void {
    const size = buffers.reduce((sum, b) => sum + b.length, 0);
    if (this.written + size > this.room) {
      callback(new MailboxFullError(this.path, this.limit));
      return;
    }
    this.written += size;
    this.inflight = writeAll(this.handle, buffers).then(
      () => callback(),
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
    );
  }
}

/** Opens the mailbox for append, creating it with mode 0600 if missing. Symlinks are refused. */
async function openMailbox(path: string): Promise<{ handle: FileHandle; created: boolean }> {
  const flags = constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW;
  for (;;) {
    try {
      return { handle: await fs.open(path, flags), created: false };
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    try {
      return { handle: await fs.open(path, flags | constants.O_CREAT | constants.O_EXCL, 0o600), created: true };
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
  }
}

/** Line feeds needed so the new From_ line follows a blank line (or starts the file). */
async function separatorPadding(handle: FileHandle, size: number): Promise<string> {
  if (size === 0) return '';
  const tail = Buffer.alloc(2);
  const n = Math.min(2, size);
  await handle.read(tail, 0, n, size - n);
  if (tail[n - 1] !== 0x0a) return '\n\n';
  if (n === 2 && tail[0] !== 0x0a) return '\n';
  return '';
}

/**
 * How many bytes `message` takes in a mailbox once appended (From_ line through its blank
 * separator line): what appendMessages' result reports as `bytes`. Reads the whole source.
 */
export async function renderedLength(message: MessageToAppend): Promise<number> {
  let bytes = Buffer.byteLength(fromLine(message.sender, message.date));
  const counter = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
  });
  await pipeline(message.source, editHeaders({ add: message.addHeaders, addIfMissing: message.addHeadersIfMissing }), new MboxrdQuoter(), counter);
  return bytes;
}

/**
 * Appends one message to `mailboxPath` under its dotlock and fsyncs it. Throws
 * MailboxLockedError (retry later), MailboxFullError (552 5.2.2) or MailboxIOError (retry
 * later); after any failure the file has its old length again and `source` is destroyed.
 * A bad sender or header line is a TypeError, thrown before anything is locked.
 */
export async function appendMessage(options: AppendOptions): Promise<AppendResult> {
  const [result] = await appendMessages(options, [options]);
  if (result instanceof Error) throw result;
  return result!;
}

/**
 * Appends messages in order to one mailbox under one dotlock, then fsyncs once. Each message
 * gets its own outcome: an AppendResult, or the error appendMessage would have thrown (a
 * failed message is truncated away and the next one is still tried). If the lock, the open
 * or the final fsync fails, every message fails and the file has its old length again.
 */
export async function appendMessages(target: MailboxTarget, messages: MessageToAppend[]): Promise<(AppendResult | Error)[]> {
  const prepared = messages.map((message) => {
    try {
      return { from: fromLine(message.sender, message.date), editor: editHeaders({ add: message.addHeaders, addIfMissing: message.addHeadersIfMissing }) };
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  });
  if (prepared.every((p) => p instanceof Error)) {
    for (const message of messages) message.source.destroy();
    return prepared as Error[];
  }
  const path = target.mailboxPath;
  const failAll = (err: Error) => {
    for (const message of messages) message.source.destroy();
    return messages.map(() => err);
  };
  let lock;
  try {
    lock = await acquireDotlock(path, { timeoutMs: target.lockTimeoutMs, onStaleBroken: target.onStaleBroken });
  } catch (err) {
    return failAll(err instanceof MailboxLockedError ? err : new MailboxIOError(path, 'cannot lock mailbox', err));
  }
  try {
    let opened;
    try {
      opened = await openMailbox(path);
    } catch (err) {
      return failAll(new MailboxIOError(path, 'cannot open mailbox', err));
    }
    const { handle, created } = opened;
    try {
      const batchStart = (await handle.stat()).size;
      const outcomes: (AppendResult | Error)[] = [];
      for (const [index, message] of messages.entries()) {
        const ready = prepared[index]!;
        try {
          if (ready instanceof Error) {
            message.source.destroy();
            outcomes.push(ready);
          } else {
            outcomes.push(await appendLocked(handle, target, message, ready.from, ready.editor));
          }
        } catch (fatal) {
          // the file could not be truncated back: append nothing more after the damage
          for (const rest of messages.slice(index)) rest.source.destroy();
          outcomes.push(...messages.slice(index).map(() => fatal as Error));
          break;
        }
      }
      try {
        await handle.sync();
        if (created) await fsyncDir(dirname(path));
      } catch (err) {
        await handle.truncate(batchStart).catch(() => undefined);
        return outcomes.map(() => new MailboxIOError(path, 'cannot fsync mailbox', err));
      }
      return outcomes;
    } finally {
      await handle.close().catch(() => undefined);
    }
  } finally {
    await lock.release().catch(() => undefined);
  }
}

/**
 * One message onto an open, locked mailbox. A failed message is truncated away and returned as
 * its error; throws only when even the truncation failed.
 */
async function appendLocked(handle: FileHandle, target: MailboxTarget, message: MessageToAppend, from: string, editor: Transform): Promise<AppendResult | Error> {
  const { mailboxPath: path, sizeLimit } = target;
  /** the old size, which a failed append truncates back to */
  let oldSize = -1;
  let writer: MailboxWriter | null = null;
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    if (sizeLimit > 0 && st.size >= sizeLimit) throw new MailboxFullError(path, sizeLimit);
    const padding = await separatorPadding(handle, st.size);
    const offset = st.size + padding.length;
    await message.beforeWrite?.(offset);
    oldSize = st.size;
    writer = new MailboxWriter(handle, path, Buffer.from(padding + from, 'utf8'), sizeLimit > 0 ? sizeLimit - oldSize : Infinity, sizeLimit);
    await pipeline(message.source, editor, new MboxrdQuoter(), writer);
    return { offset, bytes: writer.written - padding.length };
  } catch (err) {
    message.source.destroy();
    const failure = err instanceof MailboxFullError ? err : new MailboxIOError(path, 'cannot append to mailbox', err);
    if (writer !== null) await writer.settled();
    if (oldSize >= 0) {
      try {
        await handle.truncate(oldSize);
      } catch (truncateErr) {
        throw new MailboxIOError(path, `append failed (${failure.message}) and truncating back failed`, truncateErr);
      }
    }
    return failure;
  }
}
