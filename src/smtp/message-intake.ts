// Reading a message's DATA (smtp-server's message stream) into the queue: every chunk is counted
// against the size limit and shown to the hop counter; chunks past the limit are dropped (an
// oversized message is refused at the end of DATA anyway, and must not fill the queue directory
// or memory first). The chunks are read in flowing mode and handed on one by one (to the pending
// queue entry, or to the inbound checks in front of it), not through async iteration, which
// cost ~20 µs more per message.
import type { Readable } from 'node:stream';
import type { HopCounter } from '../message/hops.js';

/** Takes a chunk; a promise means the next chunk must wait for it (the entry writes to disk). */
export type ChunkTaker = (chunk: Buffer) => Promise<void> | undefined;

export class MessageIntake {
  private seen = 0;

  constructor(
    private readonly limit: number,
    private readonly hops: HopCounter,
    /** when the client last sent a chunk (the stop tells stalled clients by it) */
    private readonly progress: { lastChunkAt: number },
  ) {}

  /** Counts a chunk; false when the message is past the limit and the chunk is dropped. */
  admit(chunk: Buffer): boolean {
    this.progress.lastChunkAt = Date.now();
    const before = this.seen;
    this.seen += chunk.length;
    if (before > this.limit) return false;
    this.hops.observe(chunk);
    return true;
  }

  /**
   * Hands every admitted chunk to `take`, the stream paused while a take is in progress, and
   * resolves at the stream's end (which comes after the last take, as the stream is paused).
   * Rejects when the stream fails or closes before its end (a client gone mid-DATA), or when a
   * take fails: the stream is then destroyed, as a `for await` loop left by an error would.
   */
  feed(stream: Readable, take: ChunkTaker): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        if (err === undefined) resolve();
        else reject(err);
      };
      stream.on('data', (chunk: Buffer) => {
        if (!this.admit(chunk)) return;
        const wait = take(chunk);
        if (wait === undefined) return;
        stream.pause();
        wait.then(
          () => {
            if (!settled) stream.resume();
          },
          (err: Error) => {
            settle(err);
            stream.destroy();
          },
        );
      });
      stream.on('end', () => settle());
      stream.on('error', settle);
      stream.on('close', () => {
        if (!stream.readableEnded) settle(new Error('the message stream closed before its end'));
      });
    });
  }
}
