// The shape of a mailbox as the POP3 side sees it: the messages found by scanning an mbox
// file (offsets, wire sizes, UIDLs). scan.ts makes it, retrieve.ts streams one message
// from it, expunge.ts removes messages from the file with it.

export interface MessageInfo {
  /** byte offset of the message's From_ line in the mbox file */
  offset: number;
  /** byte offset of the first content byte (the line after the From_ line) */
  contentOffset: number;
  /**
   * bytes of content on disk, from contentOffset up to, not including, the separator blank
   * line before the next From_ line (or the end of the file, less one final blank line)
   */
  contentLength: number;
  /** bytes on disk from offset to the next message's offset (or the scanned end) */
  spanLength: number;
  /**
   * octets that RETR sends for it: CRLF line ends, one `>` stripped from `^>+From ` lines,
   * before dot-stuffing, without the terminating `.` line (README, "POP3")
   */
  size: number;
  /** unique and stable id (README, "UIDLs"), at most 70 printable characters */
  uidl: string;
}

export interface MailboxSnapshot {
  path: string;
  /** identity of the scanned file: a replaced file is another mailbox */
  dev: number;
  ino: number;
  /** bytes of the file the scan covered: [0, scannedSize); messages lie inside */
  scannedSize: number;
  messages: MessageInfo[];
}

/** The part of a mailbox a session read was changed by someone else: the update is refused. */
export class MailboxChangedError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path}: mailbox changed by another program (${reason})`);
    this.name = 'MailboxChangedError';
  }
}
