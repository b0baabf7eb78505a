// Appends messages to an mbox file under the dotlock: From_ line, edited headers and the
// mboxrd-quoted body (streamed, or rendered in one pass when held in memory), fsynced; any
// failure truncates the file back (no partial mail). A MailboxSession keeps the lock and the
// open file for several batches, each with one fsync; a batch held in memory (small messages,
// none needing a note before its write) is one write through a second descriptor opened with
// O_DSYNC, durable when it returns: one thread-pool round trip for the batch instead of a write
// per message and an fsync.
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Writable, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromLine, MboxrdQuoter, MboxrdQuoting } from './format.js';
import { editHeaders, HeaderEditing, type EditHeadersOptions } from './headers.js';
import { checkMailboxFile, type MailboxOwner } from './trust.js';
import { acquireDotlock, MailboxLockedError, type Dotlock, type StaleLockHandler } from './lock.js';
import { fsyncDir, isErrno, readAt, writeAll, writeAllNow } from '../fsutil.js';

export { MailboxLockedError };

/** The mailbox to append to, and how. */
export interface MailboxTarget {
  mailboxPath: string;
  /** total mailbox size allowed after the append in bytes; 0 = unlimited */
  sizeLimit: number;
  lockTimeoutMs: number;
  onStaleBroken?: StaleLockHandler;
  /** who an existing mailbox must belong to (default: the daemon's account, mode 0600) */
  owner?: MailboxOwner;
  /** false: a missing mailbox is an error, not created here (system accounts: the helper makes it) */
  create?: boolean;
}

/** A message held in memory: its bytes are these pieces one after the other (as they were received). */
export type InMemoryMessage = readonly Buffer[];

function isInMemory(source: Readable | InMemoryMessage): source is InMemoryMessage {
  return Array.isArray(source);
}

/** One message to append. */
export interface MessageToAppend {
  /** the raw message (CRLF line ends): streamed, or a small one already in memory */
  source: Readable | InMemoryMessage;
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
  /**
   * Called once the message is fsynced, still under the lock (before anyone else in this process
   * can take it and, say, compact the mailbox): e.g. to record the delivery, so that crash
   * recovery never has to look for the message where it may no longer be. A rejection does not
   * undo the append.
   */
  afterCommit?: () => Promise<void>;
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

/**
 * File sink for a message's bytes, its headers edited: writes `head` first (From_ line), then each
 * chunk in mboxrd form (quoted into one output buffer used over and over: a chunk's output is
 * written before the next chunk comes), counts bytes and refuses to grow the mailbox past its
 * limit.
 */
class MailboxWriter extends Writable {
  written = 0;
  private inflight: Promise<void> = Promise.resolve();
  private readonly quoting = new MboxrdQuoting(true);

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
    const out: Buffer[] = [];
    this.quoting.write(chunk, out);
    this.writeBuffers(out, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const out: Buffer[] = [];
    this.quoting.end(out);
    this.writeBuffers(out, callback);
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
async function openMailbox(path: string, create: boolean): Promise<{ handle: FileHandle; created: boolean }> {
  const flags = constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW;
  for (;;) {
    try {
      return { handle: await fs.open(path, flags), created: false };
    } catch (err) {
      if (!isErrno(err, 'ENOENT') || !create) throw err;
    }
    try {
      return { handle: await fs.open(path, flags | constants.O_CREAT | constants.O_EXCL, 0o600), created: true };
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
  }
}

/**
 * A second descriptor of the open mailbox for writes that are durable when they return
 * (O_DSYNC: the data and the size, as fdatasync): the same file (device and inode) or an error.
 */
async function openSyncedWrites(path: string, handle: FileHandle): Promise<FileHandle> {
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_DSYNC;
  const synced = await fs.open(path, flags);
  try {
    const [a, b] = await Promise.all([handle.stat(), synced.stat()]);
    if (a.dev !== b.dev || a.ino !== b.ino) throw new Error('the mailbox was replaced while being opened');
    return synced;
  } catch (err) {
    await synced.close().catch(() => undefined);
    throw err;
  }
}

/** Line feeds needed so the new From_ line follows a blank line (or starts the file). */
async function separatorPadding(handle: FileHandle, size: number): Promise<string> {
  if (size === 0) return '';
  const tail = Buffer.alloc(2);
  const n = Math.min(2, size);
  await readAt(handle, tail, 0, n, size - n);
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
  if (isInMemory(message.source)) return bytes + renderInMemory(message.source, headerEdit(message)).length;
  const counter = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
  });
  await pipeline(message.source, editHeaders(headerEdit(message)), new MboxrdQuoter(), counter);
  return bytes;
}

function headerEdit(message: MessageToAppend): EditHeadersOptions {
  return { add: message.addHeaders, addIfMissing: message.addHeadersIfMissing };
}

/** The mbox form of a message held in memory (header edit and mboxrd quoting in one pass, into one buffer). */
function renderInMemory(raw: InMemoryMessage, edit: EditHeadersOptions): Buffer {
  const edited: Buffer[] = [];
  const editing = new HeaderEditing(edit);
  for (const piece of raw) editing.write(piece, edited);
  editing.end(edited);
  return new MboxrdQuoting().quoteWhole(edited);
}

/** Destroys a streamed source that will not be read. */
export function dropSource(message: MessageToAppend): void {
  if (!isInMemory(message.source)) message.source.destroy();
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
export async function appendMessages(
  target: MailboxTarget,
  messages: MessageToAppend[],
): Promise<(AppendResult | Error)[]> {
  const prepared = prepareAll(messages);
  if (prepared.every((p) => p instanceof Error)) return prepared as Error[];
  const session = await MailboxSession.openFor(target, messages);
  if (!(session instanceof MailboxSession)) return session;
  try {
    return await session.append(messages, prepared);
  } finally {
    await session.close();
  }
}

/** A message made ready to append, or why it cannot be (a bad sender or header line). */
export type PreparedMessage = Rendered | Error;

/**
 * Renders what can be rendered before the mailbox is touched; a message that cannot be
 * appended gets its error here (and its stream is destroyed).
 */
export function prepareAll(messages: MessageToAppend[]): PreparedMessage[] {
  return messages.map((message) => {
    const prepared = prepare(message);
    if (prepared instanceof Error) dropSource(message);
    return prepared;
  });
}

/**
 * A mailbox held locked and open for one or more batches of appends (see GroupAppender): the
 * lock, the open and the look at the mailbox's end are paid once, each batch then costs its
 * writes, one fsync and one note in the lock file of the size now committed.
 */
export class MailboxSession {
  /** where the mailbox ends and what the next From_ line needs; null: look again */
  private tail: MailboxTail | null;
  /** the directory entry of a mailbox this session created is not durable yet */
  private created: boolean;
  /** a failure left the file in a state this session cannot vouch for: close it */
  broken = false;

  private constructor(
    private readonly target: MailboxTarget,
    readonly lock: Dotlock,
    private readonly handle: FileHandle,
    /** the same file opened with O_DSYNC: a batch held in memory is written through it */
    private readonly syncedHandle: FileHandle,
    opened: { created: boolean; tail: MailboxTail },
  ) {
    this.created = opened.created;
    this.tail = opened.tail;
  }

  /**
   * Takes the mailbox's dotlock and opens it (creating it, mode 0600, if missing). Throws
   * MailboxLockedError or MailboxIOError; nothing is held then.
   */
  static async open(target: MailboxTarget): Promise<MailboxSession> {
    const path = target.mailboxPath;
    let lock;
    try {
      lock = await acquireDotlock(path, { timeoutMs: target.lockTimeoutMs, onStaleBroken: target.onStaleBroken });
    } catch (err) {
      throw err instanceof MailboxLockedError ? err : new MailboxIOError(path, 'cannot lock mailbox', err);
    }
    let opened;
    try {
      opened = await openMailbox(path, target.create ?? true);
    } catch (err) {
      await lock.release().catch(() => undefined);
      throw new MailboxIOError(path, 'cannot open mailbox', err);
    }
    let synced: FileHandle | undefined;
    try {
      const st = await opened.handle.stat();
      if (!st.isFile()) throw new Error('not a regular file');
      if (!opened.created) checkMailboxFile(path, st, target.owner);
      const tail = { size: st.size, padding: await separatorPadding(opened.handle, st.size) };
      synced = await openSyncedWrites(path, opened.handle);
      lock.noteCommittedSize(st.size);
      return new MailboxSession(target, lock, opened.handle, synced, { created: opened.created, tail });
    } catch (err) {
      await synced?.close().catch(() => undefined);
      await opened.handle.close().catch(() => undefined);
      await lock.release().catch(() => undefined);
      throw new MailboxIOError(path, 'cannot append to mailbox', err);
    }
  }

  /**
   * open(), or, when the mailbox cannot be locked or opened, the error for every message (whose
   * streams are destroyed).
   */
  static async openFor(target: MailboxTarget, messages: MessageToAppend[]): Promise<MailboxSession | Error[]> {
    try {
      return await MailboxSession.open(target);
    } catch (err) {
      for (const message of messages) dropSource(message);
      return messages.map(() => err as Error);
    }
  }

  /**
   * Appends one batch (prepared by prepareAll) and fsyncs it; one outcome per message (see
   * appendMessages). `limits` gives the size limit now (a SIGHUP may have changed it since open).
   * `inPlace`: a batch of one message held in memory is written on the calling thread
   * (writeAllNow), blocking the event loop for that write.
   */
  async append(
    messages: MessageToAppend[],
    prepared: PreparedMessage[],
    limits: MailboxTarget = this.target,
    inPlace = false,
  ): Promise<(AppendResult | Error)[]> {
    const path = this.target.mailboxPath;
    this.tail ??= await mailboxTail(this.handle);
    const batchStart = this.tail.size;
    const inOneWrite = oneWriteTakes(messages, prepared) ? await this.writeInOne(prepared, limits.sizeLimit) : null;
    const { outcomes, needsFsync } =
      inOneWrite ?? (await this.writeEach(messages, prepared, limits.sizeLimit, inPlace));
    const end = this.tail?.size;
    if (end === batchStart) return outcomes; // nothing written: nothing to make durable
    try {
      // after a failed message too: its truncation must be as durable as the messages around it
      if (needsFsync) await this.handle.sync();
      if (this.created) await fsyncDir(dirname(path));
      this.created = false;
      this.lock.noteCommittedSize(end ?? (await this.handle.stat()).size);
    } catch (err) {
      this.broken = true;
      await this.handle.truncate(batchStart).catch(() => undefined);
      return outcomes.map(() => new MailboxIOError(path, 'cannot fsync mailbox', err));
    }
    if (messages.some((message) => message.afterCommit !== undefined))
      await Promise.all(
        messages.map((message, i) =>
          outcomes[i] instanceof Error ? undefined : message.afterCommit?.().catch(() => undefined),
        ),
      );
    return outcomes;
  }

  /**
   * A batch that oneWriteTakes, in one write through the O_DSYNC descriptor: durable when it
   * returns, one thread-pool round trip for the whole batch (instead of a write each and an
   * fsync). A message that would pass the size limit is left out with its MailboxFullError.
   * null: the write failed and was undone; the batch then goes message by message (writeEach),
   * so each gets its own outcome.
   */
  private async writeInOne(prepared: PreparedMessage[], sizeLimit: number): Promise<WrittenBatch | null> {
    const start = this.tail!;
    let tail = start;
    const buffers: Buffer[] = [];
    const outcomes = prepared.map((ready): AppendResult | Error => {
      if (ready instanceof Error) return ready;
      const body = ready.body as Buffer;
      const placed = placeInMemory(tail, this.target.mailboxPath, sizeLimit, ready.from, body);
      if (placed instanceof Error) return placed;
      buffers.push(placed.head, body);
      tail = { size: placed.offset + placed.bytes, padding: '' };
      return { offset: placed.offset, bytes: placed.bytes };
    });
    try {
      await writeAll(this.syncedHandle, buffers);
    } catch {
      // undone here and tried again one by one, where a failure is reported and handled per message
      try {
        await this.handle.truncate(start.size);
      } catch (err) {
        this.broken = true;
        throw new MailboxIOError(this.target.mailboxPath, 'append failed and truncating back failed', err);
      }
      return null;
    }
    this.tail = tail;
    return { outcomes, needsFsync: false };
  }

  /** The batch one message after another, through appendLocked; needsFsync unless each write was durable itself. */
  private async writeEach(
    messages: MessageToAppend[],
    prepared: PreparedMessage[],
    sizeLimit: number,
    inPlace: boolean,
  ): Promise<WrittenBatch> {
    const path = this.target.mailboxPath;
    const outcomes: (AppendResult | Error)[] = [];
    let needsFsync = false;
    for (const [index, message] of messages.entries()) {
      const ready = prepared[index]!;
      try {
        if (ready instanceof Error) {
          outcomes.push(ready);
          continue;
        }
        this.tail ??= await mailboxTail(this.handle);
        // a batch of one message held in memory: one O_DSYNC write; more share one fsync (one
        // flush for all instead of one each), and a streamed message is written in pieces
        const alone = messages.length === 1;
        const handle = alone && Buffer.isBuffer(ready.body) ? this.syncedHandle : this.handle;
        const write = alone && inPlace ? writeAllNow : writeAll;
        const outcome = await appendLocked({ handle, write }, this.tail, path, sizeLimit, message, ready);
        if (handle === this.handle || outcome instanceof Error) needsFsync = true;
        outcomes.push(outcome);
        this.tail = outcome instanceof Error ? null : { size: outcome.offset + outcome.bytes, padding: '' };
      } catch (fatal) {
        // the file could not be truncated back: append nothing more after the damage
        this.broken = true;
        for (const rest of messages.slice(index)) dropSource(rest);
        outcomes.push(...messages.slice(index).map(() => fatal as Error));
        break;
      }
    }
    return { outcomes, needsFsync };
  }

  /** The mailbox's size as this session last saw it (null: unknown after a failure). */
  get knownSize(): number | null {
    return this.tail?.size ?? null;
  }

  /** Closes the mailbox and removes the lock. */
  async close(): Promise<void> {
    await this.syncedHandle.close().catch(() => undefined);
    await this.handle.close().catch(() => undefined);
    await this.lock.release().catch(() => undefined);
  }
}

/** The From_ line and the rendered body (in memory) or the transform that renders it (streamed). */
function prepare(message: MessageToAppend): Rendered | Error {
  try {
    const from = fromLine(message.sender, message.date);
    const edit = headerEdit(message);
    if (isInMemory(message.source)) return { from, body: renderInMemory(message.source, edit) };
    return { from, body: editHeaders(edit) };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** A message made ready to write: its From_ line and its body rendered, or the transform that renders it. */
interface Rendered {
  from: string;
  body: Buffer | Transform;
}

/** Whether writeInOne takes a batch: several messages, each held in memory with no beforeWrite (or failed already). */
function oneWriteTakes(messages: MessageToAppend[], prepared: PreparedMessage[]): boolean {
  if (messages.length < 2) return false;
  return prepared.every(
    (ready, i) => ready instanceof Error || (Buffer.isBuffer(ready.body) && messages[i]!.beforeWrite === undefined),
  );
}

/** What writing a batch came to: one outcome per message; whether the writes still need an fsync. */
interface WrittenBatch {
  outcomes: (AppendResult | Error)[];
  needsFsync: boolean;
}

/** Where the locked mailbox ends and what the next From_ line needs before it. */
interface MailboxTail {
  size: number;
  padding: string;
}

async function mailboxTail(handle: FileHandle): Promise<MailboxTail> {
  const { size } = await handle.stat();
  return { size, padding: await separatorPadding(handle, size) };
}

/**
 * Where a message held in memory goes at the mailbox's end `tail`: the bytes before its body
 * (padding and From_ line), its offset and its length up to its blank separator line; a
 * MailboxFullError if it would take the mailbox past `sizeLimit` (0: no limit).
 */
function placeInMemory(
  tail: MailboxTail,
  path: string,
  sizeLimit: number,
  from: string,
  body: Buffer,
): { head: Buffer; offset: number; bytes: number } | MailboxFullError {
  const head = Buffer.from(tail.padding + from, 'utf8');
  const length = head.length + body.length;
  if (sizeLimit > 0 && tail.size + length > sizeLimit) return new MailboxFullError(path, sizeLimit);
  return { head, offset: tail.size + tail.padding.length, bytes: length - tail.padding.length };
}

/** Where appendLocked writes, and how it writes a message held in memory (writeAll or writeAllNow). */
interface AppendWrite {
  handle: FileHandle;
  write: (handle: FileHandle, buffers: Buffer[]) => Promise<void> | void;
}

/**
 * One message onto the open, locked mailbox at `path` that ends at `tail` (`sizeLimit` 0: no
 * limit). A failed message is truncated away and returned as its error; throws only when even
 * the truncation failed.
 */
async function appendLocked(
  { handle, write }: AppendWrite,
  tail: MailboxTail,
  path: string,
  sizeLimit: number,
  message: MessageToAppend,
  rendered: Rendered,
): Promise<AppendResult | Error> {
  /** the old size, which a failed append truncates back to */
  let oldSize = -1;
  let writer: MailboxWriter | null = null;
  try {
    if (sizeLimit > 0 && tail.size >= sizeLimit) throw new MailboxFullError(path, sizeLimit);
    const { padding } = tail;
    const offset = tail.size + padding.length;
    if (message.beforeWrite !== undefined) await message.beforeWrite(offset);
    oldSize = tail.size;
    if (Buffer.isBuffer(rendered.body)) {
      // held in memory: one write of the whole message
      const placed = placeInMemory(tail, path, sizeLimit, rendered.from, rendered.body);
      if (placed instanceof Error) throw placed;
      await write(handle, [placed.head, rendered.body]);
      return { offset, bytes: placed.bytes };
    }
    const head = Buffer.from(padding + rendered.from, 'utf8');
    writer = new MailboxWriter(handle, path, head, sizeLimit > 0 ? sizeLimit - oldSize : Infinity, sizeLimit);
    await pipeline(message.source as Readable, rendered.body, writer);
    return { offset, bytes: writer.written - padding.length };
  } catch (err) {
    dropSource(message);
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
