// What a logged-in POP3 session sees of its mailbox: the messages as scanned at login, the ones
// DELE marked (removed only by QUIT's update), and the file opened once for the session's RETR
// and TOP reads, with the buffer small RETR replies are built in (retr-reply.ts). The file
// work itself is Maildrop's.
import type { ExpungeResult } from '../mbox/expunge.js';
import type { MailboxSnapshot, MessageInfo } from '../mbox/mailbox.js';
import type { FileWindow, MessageReader } from '../mbox/retrieve.js';
import type { Maildrop } from './maildrop.js';
import { WholeReplies } from './retr-reply.js';

export class MailboxView {
  /** indexes into snapshot.messages marked by DELE */
  readonly deleted = new Set<number>();
  /** the mailbox file and its read buffer, opened at the first RETR or TOP */
  private window: Promise<FileWindow> | null = null;
  /** the same once open */
  private opened: FileWindow | null = null;
  /** where small RETR replies are built, made at the first RETR */
  private wholeReplies: WholeReplies | null = null;

  constructor(
    readonly user: string,
    private readonly snapshot: MailboxSnapshot,
    private readonly maildrop: Maildrop,
  ) {}

  get messages(): MessageInfo[] {
    return this.snapshot.messages;
  }

  /** Messages not marked deleted: their count and total octets. */
  stat(): { count: number; size: number } {
    let count = 0;
    let size = 0;
    this.messages.forEach((message, index) => {
      if (this.deleted.has(index)) return;
      count += 1;
      size += message.size;
    });
    return { count, size };
  }

  /** `n value` for every message not marked deleted, generated as it is written. */
  *listing(value: (message: MessageInfo) => string): Generator<string> {
    const { messages } = this;
    for (let index = 0; index < messages.length; index++) {
      if (!this.deleted.has(index)) yield `${index + 1} ${value(messages[index]!)}`;
    }
  }

  /** The mailbox file for RETR and TOP, opened at the first call and kept until close(); a failed open is retried. */
  openWindow(): Promise<FileWindow> {
    if (this.window === null) {
      const opening = this.maildrop.openWindow(this.snapshot);
      this.window = opening;
      opening.then(
        (window) => {
          if (this.window === opening) this.opened = window;
        },
        () => {
          if (this.window === opening) this.window = null;
        },
      );
    }
    return this.window;
  }

  /** The whole reply (status, message, terminator) to RETR of a small message, in one buffer. */
  wholeReply(window: FileWindow, info: MessageInfo, status: string): Promise<Buffer> {
    this.wholeReplies ??= new WholeReplies();
    return this.wholeReplies.retr(window, this.snapshot.path, info, status);
  }

  /**
   * wholeReply without waiting: the reply if the file is open and its window holds the message,
   * else null (then wholeReply reads it).
   */
  wholeReplyNow(info: MessageInfo, status: string): Buffer | null {
    if (this.opened === null) return null;
    this.wholeReplies ??= new WholeReplies();
    return this.wholeReplies.retrHeld(this.opened, this.snapshot.path, info, status);
  }

  /** A message as POP3 sends it, without the terminator; with bodyLines, TOP's part of it. */
  retrieve(window: FileWindow, info: MessageInfo, bodyLines?: number): MessageReader {
    return this.maildrop.retrieve(this.snapshot, window, info, bodyLines);
  }

  /** QUIT's update: removes the messages marked deleted (a long copy goes on after it returns: see ExpungeResult). */
  expunge(): Promise<ExpungeResult> {
    return this.maildrop.expunge(this.snapshot, this.deleted);
  }

  /** Closes the file (a read still running keeps it until it is done: FileHandle.close waits for it). */
  close(): void {
    const window = this.window;
    this.window = null;
    this.opened = null;
    this.wholeReplies = null;
    if (window !== null) void window.then((opened) => opened.close()).catch(() => undefined);
  }
}
