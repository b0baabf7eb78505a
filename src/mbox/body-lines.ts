// The scan's fast path over a message body (parser.ts; the loop most of a mailbox goes through):
// from a line start, the complete lines whose first byte is none of LF, CR, `>` (so neither blank,
// LF or CR LF, nor `>+From `: only their line ends matter) are counted, with how many of them end
// in CR LF, up to the first other line or incomplete line. `F` matters only for a line right after
// a blank one (a From_ line), so only for the first line of a call. A tiny WebAssembly function
// using SIMD does that 16 bytes at a time: a block is compared with LF, the first LF found ends the
// line (the byte before it tells CR LF), and the next line's first byte is looked at. Its input is
// copied into its scratch memory WINDOW_BYTES at a time: the copy costs far less than the one
// native search per line (~12 million per GB) of the JavaScript loop it replaces, which stays as
// the fallback where WebAssembly is unavailable (node --jitless). The function is assembled below
// from its instructions (wasm-asm.ts has the encoding), with the text form beside them: no build
// step, no binary blob.
import {
  ADD,
  addTo,
  AND,
  BITMASK,
  BLOCK,
  br,
  brIf,
  bytesEqual,
  CTZ,
  END_,
  EQ,
  EQZ,
  GE_U,
  get,
  i32,
  IF,
  instantiateWasm,
  LOAD8,
  LOOP,
  LT_U,
  OR,
  SHL,
  SUB,
  set,
  store32At,
  tee,
  V128_LOAD,
  vector,
} from './wasm-asm.js';

const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const UPPER_F = 0x46;

/** input bytes in the scratch memory at once (a window that stays in the CPU's cache) */
const WINDOW_BYTES = 256 * 1024;
/** the memory: the two counts of the last call, then the window (and 16 bytes a last block may read past it) */
const COUNTS_AT = 0;
const INPUT_AT = 16;

// locals of body(src, end) -> where it stopped; the counts go to memory at COUNTS_AT
const SRC = 0;
const END = 1;
const LINES = 2;
const CRLFS = 3;
const POS = 4;
const M = 5;
const B = 6;
const NL = 7;

// biome-ignore format: one instruction (or a few) per line, with its text form beside it
const BODY = [
  ...vector([[6, 0x7f]]), //                    (local $lines $crlfs $pos $m $b $nl i32)
  ...BLOCK, //                                 block $out
  ...LOOP, //                                    loop $line: src is a line start
  ...get(SRC), ...get(END), GE_U, ...brIf(1), //   src >= end: br_if $out
  ...get(SRC), ...LOAD8, ...tee(B), ...i32(LF), EQ, // b = i32.load8_u (src); b == LF
  ...get(B), ...i32(CR), EQ, OR, //                | b == CR
  ...get(B), ...i32(GT), EQ, OR, ...brIf(1), //    | b == '>': br_if $out
  ...get(SRC), ...set(POS), //                     pos = src
  ...LOOP, //                                      loop $vec
  ...get(POS), ...V128_LOAD, //                      v128.load (pos)
  ...bytesEqual(LF), ...BITMASK, ...set(M), //       m = i8x16.bitmask (i8x16.eq v, (i8x16.splat LF))
  ...get(END), ...get(POS), SUB, ...i32(16), LT_U, ...IF, // if end - pos < 16: bytes from end on do not count
  ...get(M), ...i32(1), ...get(END), ...get(POS), SUB, SHL, //   m &= (1 << (end - pos)) - 1
  ...i32(1), SUB, AND, ...set(M),
  END_,
  ...get(M), EQZ, ...IF, //                          if (no LF in the block)
  ...addTo(POS, i32(16)),
  ...get(POS), ...get(END), GE_U, ...brIf(3), //       pos >= end: br_if $out (the line has no LF)
  ...br(1), //                                         br $vec
  END_,
  ...get(POS), ...get(M), CTZ, ADD, ...set(NL), //   nl = pos + i32.ctz m: the line's LF
  ...addTo(LINES, i32(1)),
  ...get(CRLFS), ...get(NL), ...i32(1), SUB, ...LOAD8, ...i32(CR), EQ, ADD, ...set(CRLFS), // crlfs += (nl - 1) is CR
  ...get(NL), ...i32(1), ADD, ...set(SRC), //        src = nl + 1
  ...br(1), //                                       br $line
  END_, //                                         end
  END_, //                                       end
  END_, //                                     end
  ...i32(0), ...get(LINES), ...store32At(COUNTS_AT), //     i32.store (0) lines
  ...i32(0), ...get(CRLFS), ...store32At(COUNTS_AT + 4), // i32.store offset=4 (0) crlfs
  ...get(SRC),
  END_, //                                     end of the function
];

type Body = (src: number, end: number) => number;

const wasm = instantiateWasm<Body>({ name: 'body', params: 2, body: BODY, memoryBytes: INPUT_AT + WINDOW_BYTES + 16 });
const counts = wasm === null ? null : new Uint32Array(wasm.bytes.buffer, COUNTS_AT, 2);

/** Whether BodyLineCounter runs in WebAssembly (false: the JavaScript fallback). */
export const simdAvailable = wasm !== null;

/** the counter whose window is in the scratch memory */
let windowOwner: BodyLineCounter | null = null;

/** Whether a line starting with byte c goes back to the parser: it may be blank (LF, CR LF) or `>+From `. */
function stopsBody(c: number): boolean {
  return c === LF || c === CR || c === GT;
}

/** Counts a parser's body lines, in WebAssembly if available (`scalar`: always in JavaScript). */
export class BodyLineCounter {
  /** of the last count(): the lines counted, and how many of them end in CR LF */
  lines = 0;
  crlfLines = 0;
  /** data[windowFrom, windowTo) is in the scratch memory at INPUT_AT, if windowOwner is this */
  private windowData: Buffer | null = null;
  private windowFrom = 0;
  private windowTo = 0;

  constructor(private readonly scalar = false) {}

  /** Forgets what was copied (and the buffer it came from): the next count() calls may get other bytes. */
  forget(): void {
    this.windowData = null;
  }

  /**
   * Counts the complete lines from data[p] on whose first byte is none of LF, CR, `>` (into lines
   * and crlfLines), and returns where the first other line (or incomplete line) starts. With
   * fromMayStart (the line before data[p] was blank), a first line starting with `F` is not
   * counted either (it may be a From_ line); later ones follow a counted line, which is not blank.
   */
  count(data: Buffer, p: number, fromMayStart: boolean): number {
    this.lines = 0;
    this.crlfLines = 0;
    if (fromMayStart && data[p] === UPPER_F) return p;
    if (wasm === null || counts === null || this.scalar) return this.countScalar(data, p);
    const len = data.length;
    let q = p;
    while (q < len) {
      if (windowOwner !== this || this.windowData !== data || q < this.windowFrom || q >= this.windowTo) {
        this.windowData = data;
        this.windowFrom = q;
        this.windowTo = Math.min(len, q + WINDOW_BYTES);
        windowOwner = this;
        wasm.bytes.set(new Uint8Array(data.buffer, data.byteOffset + q, this.windowTo - q), INPUT_AT);
      }
      const shift = this.windowFrom - INPUT_AT;
      q = wasm.run(q - shift, this.windowTo - shift) + shift;
      this.lines += counts[0]!;
      this.crlfLines += counts[1]!;
      if (q === this.windowTo) continue;
      if (stopsBody(data[q]!) || this.windowTo === len) return q;
      // a line running past the window: a native search finds its end, the next window starts after it
      const nl = data.indexOf(LF, q);
      if (nl === -1) return q;
      this.lines++;
      if (data[nl - 1] === CR) this.crlfLines++;
      q = nl + 1;
    }
    return q;
  }

  /** count() in JavaScript: one native search per line. */
  private countScalar(data: Buffer, p: number): number {
    let lines = 0;
    let crlfLines = 0;
    let q = p;
    while (q < data.length) {
      if (stopsBody(data[q]!)) break;
      const nl = data.indexOf(LF, q);
      if (nl === -1) break;
      lines++;
      if (data[nl - 1] === CR) crlfLines++;
      q = nl + 1;
    }
    this.lines = lines;
    this.crlfLines = crlfLines;
    return q;
  }
}
