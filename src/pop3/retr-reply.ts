// Whole RETR replies for small messages: the status line, the message dot-stuffed (mbox/
// retrieve.ts's WireEncoder, one pass) and the terminating ".", built in one buffer from one
// window read, so that a session answers a run of pipelined RETRs with one write per message
// and no per-message stream; while the file window holds the messages (one read covers 256 KiB
// of them) a reply is built at once, without waiting for anything (retrHeld). The buffers are
// slices of a shared 128 KiB block: one allocation per block, not per message. Larger messages
// (and TOP) are streamed by the session instead.
import { MailboxChangedError, type MessageInfo } from '../mbox/mailbox.js';
import { encodedBound, WireEncoder, type FileWindow } from '../mbox/retrieve.js';

/** content bytes up to which a message is sent as one whole reply */
export const WHOLE_REPLY_MAX = 32 * 1024;
const BLOCK_BYTES = 128 * 1024;
/** room for the status line and its CRLF (a RETR status is short) and the terminator */
const FRAME_BYTES = 512;
export const TERMINATOR = Buffer.from('.\r\n', 'latin1');

function checkFits(info: MessageInfo, status: string): void {
  if (info.contentLength > WHOLE_REPLY_MAX || status.length + 2 + TERMINATOR.length > FRAME_BYTES) {
    throw new RangeError('message too large for a whole reply');
  }
}

export class WholeReplies {
  private block: Buffer | null = null;
  private used = 0;

  /**
   * The whole reply to RETR of `info` (content at most WHOLE_REPLY_MAX bytes), valid for good.
   * Throws MailboxChangedError if the file no longer holds the message as scanned (too short,
   * or another octet count than info.size): then nothing of it may be sent.
   */
  async retr(window: FileWindow, path: string, info: MessageInfo, status: string): Promise<Buffer> {
    checkFits(info, status);
    return this.build(await window.span(info.contentOffset, info.contentLength), path, info, status);
  }

  /** retr without I/O: the reply if the window holds the whole message already, else null. */
  retrHeld(window: FileWindow, path: string, info: MessageInfo, status: string): Buffer | null {
    checkFits(info, status);
    const input = window.holding(info.contentOffset, info.contentLength);
    return input === null ? null : this.build(input, path, info, status);
  }

  /** The reply from the message's content as read (input), in the current block. */
  private build(input: Buffer, path: string, info: MessageInfo, status: string): Buffer {
    if (input.length < info.contentLength)
      throw new MailboxChangedError(path, `message at offset ${info.offset} is shorter than expected`);
    const out = this.reserve(FRAME_BYTES + encodedBound(input.length));
    const start = this.used;
    let o = start + out.write(`${status}\r\n`, start, 'latin1');
    const encoder = new WireEncoder({ dotStuff: true });
    o = encoder.finish(out, encoder.encode(input, 0, input.length, out, o));
    if (encoder.wireBytes !== info.size)
      throw new MailboxChangedError(
        path,
        `message at offset ${info.offset} has ${encoder.wireBytes} octets, not ${info.size}`,
      );
    o += TERMINATOR.copy(out, o);
    this.used = o;
    return out.subarray(start, o);
  }

  /** The current block, or a new one, with `bytes` free after `used`. */
  private reserve(bytes: number): Buffer {
    if (this.block === null || this.block.length - this.used < bytes) {
      this.block = Buffer.allocUnsafe(BLOCK_BYTES);
      this.used = 0;
    }
    return this.block;
  }
}
