// The UIDL rule (README, "POP3"): what a message's unique id is, worked out while parser.ts reads its
// header block line fragment by line fragment, and made unique in file order.
//
// The value: the X-UIDL value if the header block has one (the first `X-UIDL:` field, unfolded
// and trimmed of SP/TAB, used only if it is then 1-70 characters 0x21-0x7E; a field value over
// 1 KiB is not looked at), else popa3d's UIDL, so users moving from popa3d keep theirs. popa3d
// (mailbox.c) MD5-hashes raw header lines as they are on disk: name, colon, value, line end
// (LF, or CRLF), folded continuation lines included, in file order, of exactly these fields, up
// to the first blank line:
//   - the first `Received:` field only;
//   - every `Delivered-To:` field;
//   - `Date:` and `Message-ID:` fields that come before the first `Received:`;
//   - every `X-Delivery-ID:` field (popa3d tests a capital `X`, the rest case-insensitively).
// A field matches when its line starts with the name and the colon, case-insensitively (no
// space before the colon); the From_ line is not hashed. The UIDL is 16 lowercase hex digits of
// the digest's bytes 3,2,1,0,7,6,5,4 (popa3d prints two little-endian 32-bit words). A message
// without any of these fields hashes the empty string.
//
// Uniqueness (popa3d has none): messages get their UIDLs in file order; a value already taken
// by an earlier message is replaced by the lowercase hex MD5 of `value NUL fromline NUL n`
// (fromline: the From_ line's bytes after `From `, line end excluded, at most 1 KiB) for the
// first n = 1, 2, ... not taken. So the first copy keeps the popa3d value, a twin delivered at
// another time (another From_ date) gets a value that depends only on its own bytes, and
// twins with equal From_ lines are numbered in file order. Appends never change an existing
// UIDL; deleting a message changes another's UIDL only if that one was its later twin (with
// byte-identical hashed headers, the content allows no better).
import { createHash, type Hash } from 'node:crypto';
import { md5 } from './md5.js';

const FROM_KEY_MAX = 1024;
/** longest unfolded X-UIDL field value kept (a valid one is at most 70 characters) */
const XUIDL_MAX = 1024;
/** hashed header bytes of a message collected for one md5() call; more go through a Hash object */
const DIGEST_BUFFER_BYTES = 16 * 1024;
const FROM_LENGTH = 'From '.length;

const SP = 0x20;
const TAB = 0x09;
const UPPER_X = 0x58;
const NUL = Buffer.from([0]);

const RECEIVED = Buffer.from('received:', 'latin1');
const DELIVERED_TO = Buffer.from('delivered-to:', 'latin1');
const DATE = Buffer.from('date:', 'latin1');
const MESSAGE_ID = Buffer.from('message-id:', 'latin1');
const X_DELIVERY_ID = Buffer.from('x-delivery-id:', 'latin1');
const X_UIDL = Buffer.from('x-uidl:', 'latin1');

/** Whether data[p, end) starts with `name` (lowercase ASCII), ignoring ASCII case. */
function startsWithI(data: Buffer, p: number, end: number, name: Buffer): boolean {
  if (end - p < name.length) return false;
  for (let i = 0; i < name.length; i++) {
    let b = data[p + i]!;
    if (b >= 0x41 && b <= 0x5a) b += 0x20;
    if (b !== name[i]) return false;
  }
  return true;
}

/** popa3d's UIDL of an MD5 digest: its bytes 3,2,1,0,7,6,5,4 in hex. */
const uidlBytes = Buffer.alloc(8);
function popa3dUidl(digest: Buffer): string {
  for (let i = 0; i < 4; i++) {
    uidlBytes[i] = digest[3 - i]!;
    uidlBytes[4 + i] = digest[7 - i]!;
  }
  return uidlBytes.toString('hex');
}

function validUidl(value: string): boolean {
  return /^[\x21-\x7e]{1,70}$/.test(value);
}

/** MD5 of one message's hashed header bytes: collected and hashed in one call (md5.ts), unless there are many. */
class HeaderDigest {
  private readonly buffer = Buffer.allocUnsafe(DIGEST_BUFFER_BYTES);
  private filled = 0;
  private running: Hash | null = null;

  reset(): void {
    this.filled = 0;
    this.running = null;
  }

  add(data: Buffer, start: number, end: number): void {
    if (this.running === null && this.filled + (end - start) <= this.buffer.length) {
      this.filled += data.copy(this.buffer, this.filled, start, end);
      return;
    }
    if (this.running === null) this.running = createHash('md5').update(this.buffer.subarray(0, this.filled));
    this.running.update(data.subarray(start, end));
  }

  /** The digest (read it before the next digest() of any message). */
  digest(): Buffer {
    return this.running !== null ? this.running.digest() : md5(this.buffer, 0, this.filled);
  }
}

/**
 * The UIDLs of one pass over a mailbox, message by message in file order: startMessage() at each
 * From_ line, headerFragment() for each piece of its header block, takeUidl() at its end.
 */
export class UidlCollector {
  /** the header line being read is one popa3d hashes */
  private fixed = false;
  private received = false;
  private readonly headerDigest = new HeaderDigest();
  /** the From_ line's key bytes (a string only for a twin: most messages never need it) */
  private readonly fromKeyBytes = Buffer.allocUnsafe(FROM_KEY_MAX);
  private fromKeyLength = 0;
  /** X-UIDL field: 0 none yet, 1 collecting its value (folded lines too), 2 value complete */
  private xuidlState = 0;
  private xuidl = '';
  private xuidlTooLong = false;

  /** last n used for a UIDL value and From_ line (twins): the next twin tries from n + 1 */
  private readonly lastTwin = new Map<string, number>();

  constructor(
    /** UIDLs already taken (by messages before the scanned part); the new ones are added */
    private readonly used: Set<string>,
  ) {}

  /** A message starts with the From_ line at data[p, lineEnd) (lineEnd: before its line end). */
  startMessage(data: Buffer, p: number, lineEnd: number): void {
    this.fixed = false;
    this.received = false;
    this.headerDigest.reset();
    this.xuidlState = 0;
    this.xuidl = '';
    this.xuidlTooLong = false;
    this.fromKeyLength = data.copy(
      this.fromKeyBytes,
      0,
      p + FROM_LENGTH,
      Math.min(lineEnd, p + FROM_LENGTH + FROM_KEY_MAX),
    );
  }

  /**
   * A header-block line fragment data[s, e) (e after its LF if it has one; contentEnd before
   * the line end); `atStart` if it begins the line.
   */
  headerFragment(data: Buffer, s: number, e: number, contentEnd: number, atStart: boolean): void {
    let valueFrom = s;
    if (atStart) {
      const c = data[s]!;
      if (c !== SP && c !== TAB) {
        this.fixed = false;
        if (this.xuidlState === 1) this.xuidlState = 2;
        switch (c | 0x20) {
          case 0x72: // r
            if (!this.received && startsWithI(data, s, e, RECEIVED)) this.received = this.fixed = true;
            break;
          case 0x64: // d
            this.fixed = startsWithI(data, s, e, DELIVERED_TO) || (!this.received && startsWithI(data, s, e, DATE));
            break;
          case 0x6d: // m
            this.fixed = !this.received && startsWithI(data, s, e, MESSAGE_ID);
            break;
          case 0x78: // x
            this.fixed = c === UPPER_X && startsWithI(data, s, e, X_DELIVERY_ID);
            if (this.xuidlState === 0 && startsWithI(data, s, e, X_UIDL)) {
              this.xuidlState = 1;
              valueFrom = s + X_UIDL.length;
            }
            break;
        }
      }
    }
    if (this.fixed) this.headerDigest.add(data, s, e);
    if (this.xuidlState === 1) {
      if (!atStart || this.xuidl.length + (contentEnd - valueFrom) > XUIDL_MAX) this.xuidlTooLong = true;
      else this.xuidl += data.toString('latin1', valueFrom, contentEnd);
    }
  }

  /** The UIDL of the message that just ended, unique among all taken so far. */
  takeUidl(): string {
    const xuidl = this.xuidlState !== 0 && !this.xuidlTooLong ? this.xuidl.replace(/^[ \t]+|[ \t]+$/g, '') : '';
    const value = xuidl !== '' && validUidl(xuidl) ? xuidl : popa3dUidl(this.headerDigest.digest());
    // one lookup (add, then see whether the set grew) instead of has + add: 100,000 of them in a big mailbox
    const taken = this.used.size;
    if (this.used.add(value).size > taken) return value;
    // every n below the last one used for this value and From_ line is taken already
    const fromKey = this.fromKeyBytes.toString('latin1', 0, this.fromKeyLength);
    const twinKey = `${value}\0${fromKey}`;
    for (let n = (this.lastTwin.get(twinKey) ?? 0) + 1; ; n++) {
      const derived = createHash('md5')
        .update(value, 'latin1')
        .update(NUL)
        .update(fromKey, 'latin1')
        .update(NUL)
        .update(String(n), 'latin1')
        .digest('hex');
      if (!this.used.has(derived)) {
        this.used.add(derived);
        this.lastTwin.set(twinKey, n);
        return derived;
      }
    }
  }
}
