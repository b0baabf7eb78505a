// The mbox reading rules (README, "Files on disk" and "POP3") as one pass over a file's bytes, fed in pieces: where
// each message is and its wire size; its header block goes to uidl.ts for its UIDL. scan.ts
// reads the file and feeds it here.
//
// Messages: a message starts at a line beginning `From ` at the very top of the file or right
// after a blank line (popa3d's and mutt's rule); `From ` lines elsewhere are content, and bytes
// before the first such line are ignored. Lines end in LF or CRLF on disk; a blank line is one
// with nothing before its LF or CRLF. The blank line right before the next From_ line (or one
// final blank line at the end of the scanned part) is the separator, not content. Wire size
// (RETR octets): every content line ends in CRLF (LF counts 2, an existing CRLF 2), one `>` is
// dropped from lines matching `^>+From ` (mboxrd; an mboxo `>From ` loses its `>` too), a last
// line without LF gets CRLF. retrieve.ts streams exactly that. So a message's size is its
// content bytes + its LFs - the LFs preceded by CR - its `^>+From ` lines (+ 2 for a last line
// without LF), counted on the way: the only work per body line is finding its LF and looking
// at its first and last byte (body-lines.ts, the loop most of a mailbox goes through, does that
// for many lines at once, 16 bytes at a time).
import type { MessageInfo } from './mailbox.js';
import { BodyLineCounter } from './body-lines.js';
import { UidlCollector } from './uidl.js';

/** a line start shorter than this is carried into the next feed, so it is seen whole */
export const CARRY_MAX = 64 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const GT = 0x3e;
const UPPER_F = 0x46;
const FROM_ = Buffer.from('From ', 'latin1');

/** Whether the line at data[p, nl) (nl: its LF or the end of the data) starts with `From `. */
function isFromLine(data: Buffer, p: number, nl: number): boolean {
  return (
    nl - p >= 5 &&
    data[p] === UPPER_F &&
    data[p + 1] === 0x72 &&
    data[p + 2] === 0x6f &&
    data[p + 3] === 0x6d &&
    data[p + 4] === SP
  );
}

/** Whether the line at data[p, nl), which starts with `>`, matches `^>+From `. */
function isQuotedFrom(data: Buffer, p: number, nl: number): boolean {
  let q = p + 1;
  while (q < nl && data[q] === GT) q++;
  return isFromLine(data, q, nl);
}

/** A rescan from an indexed message's offset found no From_ line there. */
export class ResumeMismatch extends Error {}

/** Line-at-a-time state machine over the bytes of [from, end) of an mbox file. */
export class MboxParser {
  readonly messages: MessageInfo[] = [];
  /** the previous complete line was blank (true at the top: a From_ line may start there) */
  private prevBlank = true;
  /** file offset of the last blank line, and whether it was CRLF */
  private blankStart = 0;
  private blankCRLF = false;
  /** the first fragment of the current line (no LF in it yet) has been handled */
  private midLine = false;
  /** the last fragment of the current line ended in CR */
  private lastCR = false;
  /** `^>+From ` match of a fragmented line: -1 decided, 0 in the `>` run, k: k bytes of `From ` matched */
  private gtState = -1;
  /** the first line must be a From_ line (a rescan from an indexed message) */
  private requireFrom: boolean;

  private inMsg = false;
  /** the current message's From_ line has not reached its LF yet */
  private fromPending = false;
  private msgOffset = 0;
  private contentOffset = 0;
  /** of the current message's content so far: LFs, LFs after a CR, `^>+From ` lines */
  private lfs = 0;
  private crlfs = 0;
  private quoted = 0;
  /** the scanned part ends inside a content line (no LF): it gets CRLF on the wire */
  private openLine = false;
  private inHeader = false;
  private readonly uidls: UidlCollector;
  private readonly bodyCounter: BodyLineCounter;

  constructor(
    /** UIDLs already taken (by messages before the scanned part); the new ones are added */
    used: Set<string>,
    requireFrom: boolean,
    /** count body lines in JavaScript even where WebAssembly is available (tests) */
    scalarBodyLines = false,
  ) {
    this.uidls = new UidlCollector(used);
    this.bodyCounter = new BodyLineCounter(scalarBodyLines);
    this.requireFrom = requireFrom;
  }

  /**
   * Handles data (starting at file offset `base`) and returns how many of its bytes were
   * consumed: an incomplete last line shorter than CARRY_MAX is left for the next call unless
   * `eof`. Throws ResumeMismatch if the parser was made with requireFrom and the data does not
   * start with a From_ line.
   */
  feed(data: Buffer, base: number, eof: boolean): number {
    try {
      return this.feedLines(data, base, eof);
    } finally {
      // the next piece may be other bytes in the same buffer; and the counter keeps no buffer alive
      this.bodyCounter.forget();
    }
  }

  private feedLines(data: Buffer, base: number, eof: boolean): number {
    const len = data.length;
    let p = 0;
    if (this.midLine) {
      const nl = data.indexOf(LF);
      const end = nl === -1 ? len : nl + 1;
      this.continueLine(data, end, nl !== -1, base);
      if (nl === -1) {
        if (eof) this.endUnterminated();
        return len;
      }
      p = end;
    }
    while (p < len) {
      if (this.inMsg && !this.inHeader) {
        p = this.bodyLines(data, p);
        if (p === len) break;
      }
      const nl = data.indexOf(LF, p);
      if (nl === -1) {
        if (!eof && len - p < CARRY_MAX) return p;
        this.firstFragment(data, p, base, eof);
        return len;
      }
      // the complete line data[p, nl]
      const c = data[p];
      if (c === UPPER_F && this.prevBlank && isFromLine(data, p, nl)) {
        this.startMessage(data, p, nl > p && data[nl - 1] === CR ? nl - 1 : nl, base);
        this.contentOffset = base + nl + 1;
      } else {
        if (this.requireFrom) throw new ResumeMismatch();
        const cr = nl > p && data[nl - 1] === CR;
        const blank = nl === p || (cr && nl === p + 1);
        if (this.inMsg) {
          this.lfs++;
          if (cr) this.crlfs++;
          if (c === GT && isQuotedFrom(data, p, nl)) this.quoted++;
          if (this.inHeader) {
            if (blank) this.inHeader = false;
            else this.uidls.headerFragment(data, p, nl + 1, cr ? nl - 1 : nl, true);
          }
        }
        if (blank) {
          this.blankStart = base + p;
          this.blankCRLF = cr;
        }
        this.prevBlank = blank;
      }
      p = nl + 1;
    }
    return len;
  }

  /** The fast path for a message body (body-lines.ts): returns where the first line it does not count starts. */
  private bodyLines(data: Buffer, p: number): number {
    const { bodyCounter } = this;
    const q = bodyCounter.count(data, p, this.prevBlank);
    if (q > p) {
      this.lfs += bodyCounter.lines;
      this.crlfs += bodyCounter.crlfLines;
      this.prevBlank = false;
    }
    return q;
  }

  /** Ends the scan at file offset `end` and returns all messages. */
  finish(end: number): MessageInfo[] {
    if (this.inMsg) this.finishMessage(end);
    return this.messages;
  }

  /** The start data[p, len) of a line without LF: a long line (>= CARRY_MAX) or the last one. */
  private firstFragment(data: Buffer, p: number, base: number, eof: boolean): void {
    const len = data.length;
    const c = data[p];
    this.midLine = !eof;
    this.lastCR = data[len - 1] === CR;
    if (this.prevBlank && c === UPPER_F && isFromLine(data, p, len)) {
      this.startMessage(data, p, len, base);
      if (eof) this.contentOffset = base + len;
      else this.fromPending = true;
      return;
    }
    if (this.requireFrom) throw new ResumeMismatch();
    this.prevBlank = false;
    if (!this.inMsg) return;
    if (c === GT) {
      this.gtState = 0;
      this.continuePrefix(data, p + 1, len);
    }
    if (this.inHeader) this.uidls.headerFragment(data, p, len, len, true);
    if (eof) this.endUnterminated();
  }

  /** More of a line whose first fragment was handled: data[0, end), ending in its LF if `hasLF`. */
  private continueLine(data: Buffer, end: number, hasLF: boolean, base: number): void {
    if (hasLF) this.midLine = false;
    if (this.fromPending) {
      if (hasLF) {
        this.fromPending = false;
        this.contentOffset = base + end;
      }
      return;
    }
    if (this.inMsg) {
      if (this.gtState >= 0) this.continuePrefix(data, 0, end);
      if (this.inHeader) this.uidls.headerFragment(data, 0, end, end, false);
      if (hasLF) {
        this.lfs++;
        if (end >= 2 ? data[end - 2] === CR : this.lastCR) this.crlfs++;
      }
    }
    if (hasLF) this.gtState = -1;
    else if (end > 0) this.lastCR = data[end - 1] === CR;
  }

  /** Goes on matching `>+From ` at the start of a fragmented line over data[from, to). */
  private continuePrefix(data: Buffer, from: number, to: number): void {
    let k = this.gtState;
    for (let i = from; i < to && k >= 0; i++) {
      const b = data[i];
      if (k === 0 && b === GT) continue;
      if (b !== FROM_[k]) {
        k = -1;
      } else if (++k === FROM_.length) {
        this.quoted++;
        k = -1;
      }
    }
    this.gtState = k;
  }

  /** The last line of the scanned part has no LF: it gets CRLF on the wire. */
  private endUnterminated(): void {
    if (this.inMsg && !this.fromPending) this.openLine = true;
    this.midLine = false;
    this.gtState = -1;
  }

  private startMessage(data: Buffer, p: number, contentEnd: number, base: number): void {
    if (this.inMsg) this.finishMessage(base + p);
    this.requireFrom = false;
    this.inMsg = true;
    this.prevBlank = false;
    this.msgOffset = base + p;
    this.lfs = 0;
    this.crlfs = 0;
    this.quoted = 0;
    this.openLine = false;
    this.inHeader = true;
    this.uidls.startMessage(data, p, contentEnd);
  }

  /** The current message ends where the next one starts (or the scanned part ends): `next`. */
  private finishMessage(next: number): void {
    let contentEnd = next;
    let size: number;
    if (this.fromPending) {
      this.fromPending = false;
      this.contentOffset = next;
      size = 0;
    } else {
      let { lfs, crlfs } = this;
      if (this.prevBlank) {
        // the separator: not content
        contentEnd = this.blankStart;
        lfs--;
        if (this.blankCRLF) crlfs--;
      }
      size = contentEnd - this.contentOffset + lfs - crlfs - this.quoted + (this.openLine ? 2 : 0);
    }
    this.messages.push({
      offset: this.msgOffset,
      contentOffset: this.contentOffset,
      contentLength: contentEnd - this.contentOffset,
      spanLength: next - this.msgOffset,
      size,
      uidl: this.uidls.takeUidl(),
    });
    this.inMsg = false;
  }
}
