// A message being received, before it is accepted: held in memory while it is small (within a
// per-message and a shared byte budget), spilled to `<id>.tmp` in the queue directory as soon as
// it is not. Accepting it means either handing it to a mailbox directly (the caller then
// discards this) or commit(): the queue file written, fsynced and renamed into place. The
// envelope may still change until then (the inbound checks add their header fields to it).
import { createReadStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { writeAll, type GroupedDirSync } from '../fsutil.js';
import type { Envelope } from '../message/envelope.js';

/** Bytes of received messages held in memory at once, by all pending entries together. */
export class MemoryBudget {
  private used = 0;

  constructor(private readonly limit: number) {}

  /** Takes `bytes` if they fit; false means the caller must use the disk. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

export interface PendingEntryOptions<Entry> {
  dir: string;
  envelope: Envelope;
  /** a message up to this size stays in memory (if the budget has room) */
  memoryLimit: number;
  budget: MemoryBudget;
  dirSync: GroupedDirSync;
  /** what a committed file is to the store (its queue entry) */
  toEntry: (file: CommittedFile) => Entry;
}

/** What commit() made durable. */
export interface CommittedFile {
  /** where the message starts in the queue file (after the envelope line) */
  dataOffset: number;
  size: number;
}

export class PendingEntry<Entry> {
  readonly envelope: Envelope;
  /** the queue file's envelope line, made only when the message goes to disk */
  private headerLine: Buffer | null = null;
  private chunks: Buffer[] | null = [];
  /** bytes taken from the memory budget */
  private held = 0;
  private file: FileHandle | null = null;
  private size = 0;

  constructor(private readonly options: PendingEntryOptions<Entry>) {
    this.envelope = options.envelope;
  }

  /** the temporary file, once the message goes to disk (most are delivered from memory) */
  private get tmpPath(): string {
    return join(this.options.dir, `${this.envelope.id}.tmp`);
  }

  get id(): string {
    return this.envelope.id;
  }

  private get header(): Buffer {
    this.headerLine ??= Buffer.from(`${JSON.stringify(this.envelope)}\n`);
    return this.headerLine;
  }

  /** Reads the whole message from `source`; returns its size. */
  async write(source: AsyncIterable<Buffer>): Promise<number> {
    for await (const chunk of source) await this.take(chunk);
    return this.size;
  }

  /**
   * The next chunk of the message. Held in memory while it fits (nothing to wait for: undefined);
   * else written to the temporary file, and the next chunk must wait for the promise.
   */
  take(chunk: Buffer): Promise<void> | undefined {
    this.size += chunk.length;
    if (this.chunks !== null && this.size <= this.options.memoryLimit && this.options.budget.take(chunk.length)) {
      this.held += chunk.length;
      this.chunks.push(chunk);
      return undefined;
    }
    return this.writeToFile(chunk);
  }

  private async writeToFile(chunk: Buffer): Promise<void> {
    if (this.file === null) await this.spill();
    await writeAll(this.file!, [chunk]);
  }

  /**
   * The message's chunks, if it is held in memory; null if it went to disk. The array is the
   * entry's own (prepend() adds to it): render it before the entry changes.
   */
  messageInMemory(): readonly Buffer[] | null {
    return this.chunks;
  }

  /** Bytes of the message received (and prepended) so far. */
  get messageSize(): number {
    return this.size;
  }

  /**
   * Puts `head` (whole header lines) in front of the message: in memory while it fits; a message
   * already on disk gets a new temporary file, `head` and then the message copied from the old
   * one, which it replaces (a file cannot grow at its front). Call after write(), before commit().
   */
  async prepend(head: Buffer): Promise<void> {
    if (this.chunks !== null) {
      this.chunks.unshift(head);
      this.size += head.length;
      if (this.size <= this.options.memoryLimit && this.options.budget.take(head.length)) this.held += head.length;
      else await this.spill();
      return;
    }
    const copyPath = join(this.options.dir, `${this.envelope.id}.head.tmp`);
    const copy = await open(copyPath, 'wx', 0o600);
    try {
      await writeAll(copy, [this.header, head]);
      // this.file is open for writing only: the message is read back through its name
      const message = await open(this.tmpPath, 'r');
      try {
        await copyFrom(message, this.header.length, copy);
      } finally {
        await message.close();
      }
      await rename(copyPath, this.tmpPath);
    } catch (err) {
      await copy.close().catch(() => undefined);
      await rm(copyPath, { force: true });
      throw err;
    }
    const replaced = this.file!;
    this.file = copy;
    await replaced.close().catch(() => undefined);
    this.size += head.length;
  }

  /** The message as a stream (from memory or the temporary file). */
  openData(): Readable {
    if (this.chunks !== null) return Readable.from(this.chunks);
    return createReadStream(this.tmpPath, { start: this.header.length });
  }

  /** Makes the queue file durable under its final name. */
  async commit(): Promise<Entry> {
    if (this.file === null) await this.spill();
    else if (!this.header.equals(Buffer.from(`${JSON.stringify(this.envelope)}\n`))) await this.rewriteEnvelope();
    const file = this.file!;
    this.file = null;
    try {
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(this.tmpPath, join(this.options.dir, this.envelope.id));
    this.release();
    await this.options.dirSync.sync();
    return this.options.toEntry({ dataOffset: this.header.length, size: this.size });
  }

  /** Drops the message (refused, or delivered without the queue). */
  async discard(): Promise<void> {
    this.release();
    const file = this.file;
    this.file = null;
    if (file === null) return;
    await file.close().catch(() => undefined);
    await rm(this.tmpPath, { force: true });
  }

  /** Moves what is held in memory into the temporary file, which takes the rest. */
  private async spill(): Promise<void> {
    this.file = await open(this.tmpPath, 'wx', 0o600);
    await writeAll(this.file, [this.header, ...(this.chunks ?? [])]);
    this.release();
  }

  /**
   * The envelope changed after the message went to disk: the temporary file is written anew
   * with the new envelope line, the message copied over as a stream (never held whole).
   */
  private async rewriteEnvelope(): Promise<void> {
    const messageStart = this.header.length;
    this.headerLine = null;
    const newPath = join(this.options.dir, `${this.envelope.id}.envelope.tmp`);
    const file = await open(newPath, 'wx', 0o600);
    try {
      await writeAll(file, [this.header]);
      for await (const chunk of createReadStream(this.tmpPath, { start: messageStart })) {
        await writeAll(file, [chunk as Buffer]);
      }
      await rename(newPath, this.tmpPath);
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(newPath, { force: true });
      throw err;
    }
    await this.file!.close().catch(() => undefined);
    this.file = file;
  }

  private release(): void {
    this.options.budget.give(this.held);
    this.held = 0;
    this.chunks = null;
  }
}

/** Bytes copied at a time by copyFrom. */
const COPY_CHUNK = 64 * 1024;

/** Appends everything of `from` after `start` to `to`. */
async function copyFrom(from: FileHandle, start: number, to: FileHandle): Promise<void> {
  const buffer = Buffer.allocUnsafe(COPY_CHUNK);
  for (let position = start; ; ) {
    const { bytesRead } = await from.read(buffer, 0, COPY_CHUNK, position);
    if (bytesRead === 0) return;
    await writeAll(to, [buffer.subarray(0, bytesRead)]);
    position += bytesRead;
  }
}
