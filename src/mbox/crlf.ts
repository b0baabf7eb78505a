// The common case of RETR's conversion (mbox/retrieve.ts): a piece of a message with no CR and
// no line starting with `>` or (when dot-stuffing) `.` only needs a CR before every LF. toPlainWire
// checks that and converts in one pass, 16 bytes at a time, in a tiny WebAssembly function using
// SIMD: a block with no LF or CR is copied whole; at an LF the bytes before it are already stored,
// the CR LF is written, the next line's first byte is looked at, and the next block starts after
// the LF. It gives up (-1) at the first CR or `>`/`.` line start, and WireEncoder's general loop
// does the piece instead. About five times faster than the JavaScript it replaces (three native
// searches, then a copy four bytes at a time), which stays as the fallback where WebAssembly is
// unavailable (node --jitless). The function is assembled below from its instructions (wasm-asm.ts
// has the encoding), with the text form beside them: no build step, no binary blob. Input and
// output go through its scratch memory, at most PIECE_BYTES of input at a time.

import {
  ADD,
  addTo,
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
  GT_U,
  get,
  i32,
  IF,
  instantiateWasm,
  LOAD8,
  LOOP,
  LT_U,
  OR,
  RETURN,
  STORE8,
  STORE16,
  set,
  tee,
  V128_LOAD,
  V128_OR,
  V128_STORE,
  vector,
} from './wasm-asm.js';

const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const DOT = 0x2e;
const LF_GT = Buffer.from('\n>', 'latin1');
const LF_DOT = Buffer.from('\n.', 'latin1');

/** input bytes converted per wasm call; the output (at most twice that) follows it in memory */
const PIECE_BYTES = 64 * 1024;
const OUTPUT_AT = PIECE_BYTES;

// locals of wire(src, end, dst, dot) -> dst after the output, or -1: not plain
const SRC = 0;
const END = 1;
const DST = 2;
/** the byte that may not start a line besides `>`: `.` when dot-stuffing, else `>` again */
const STUFF = 3;
const V = 4;
const M = 5;
const B = 6;

const GIVE_UP = [...i32(-1), RETURN]; // return -1

/** src < end and the byte at src (a line's first) is `>` or STUFF: give up */
// biome-ignore format: instructions with their text form beside them
const CHECK_LINE_START = [
  ...get(SRC), ...get(END), LT_U, ...IF, //  if src < end
  ...get(SRC), ...LOAD8, ...tee(B), ...i32(GT), EQ, ...get(B), ...get(STUFF), EQ, OR, // b == GT | b == stuff
  ...IF, ...GIVE_UP, END_,
  END_,
];

// biome-ignore format: one instruction (or a few) per line, with its text form beside it
const WIRE_BODY = [
  ...vector([[1, 0x7b], [2, 0x7f]]), //         (local $v v128) (local $m i32) (local $b i32)
  ...BLOCK, //                                 block $tail
  ...LOOP, //                                    loop $vec
  ...get(SRC), ...i32(16), ADD, ...get(END), //    src + 16 > end:
  GT_U, ...brIf(1), //                             br_if $tail
  ...get(DST), ...get(SRC), ...V128_LOAD, //       v128.load (src)
  ...tee(V), ...V128_STORE, //                     v128.store (dst) v: the 16 bytes as they are
  ...get(V), ...bytesEqual(LF), //                 i8x16.eq v, (i8x16.splat LF)
  ...get(V), ...bytesEqual(CR), //                 i8x16.eq v, (i8x16.splat CR)
  ...V128_OR, ...BITMASK, ...tee(M), EQZ, //       v128.or  i8x16.bitmask  m = ...; i32.eqz
  ...IF, //                                        if (no LF or CR in the block)
  ...addTo(SRC, i32(16)), ...addTo(DST, i32(16)),
  ...br(1), //                                       br $vec
  END_,
  ...get(M), CTZ, ...set(M), //                    m = i32.ctz m: the first LF or CR, bytes before it stored
  ...get(SRC), ...get(M), ADD, ...LOAD8, ...i32(CR), EQ, ...IF, ...GIVE_UP, END_, // a CR: give up
  ...addTo(DST, get(M)), ...addTo(SRC, [...get(M), ...i32(1), ADD]),
  ...get(DST), ...i32(CR | (LF << 8)), ...STORE16, // i32.store16 (dst) CR LF
  ...addTo(DST, i32(2)),
  ...CHECK_LINE_START,
  ...br(0), //                                     br $vec
  END_, //                                       end
  END_, //                                     end
  ...BLOCK, //                                 block $done: the last bytes, one at a time
  ...LOOP, //                                    loop $byte
  ...get(SRC), ...get(END), GE_U, ...brIf(1), //   src >= end: br_if $done
  ...get(SRC), ...LOAD8, ...set(B), //             b = i32.load8_u (src)
  ...get(B), ...i32(CR), EQ, ...IF, ...GIVE_UP, END_, // a CR: give up
  ...addTo(SRC, i32(1)),
  ...get(B), ...i32(LF), EQ, ...IF, //             if b == LF
  ...get(DST), ...i32(CR | (LF << 8)), ...STORE16, // i32.store16 (dst) CR LF
  ...addTo(DST, i32(2)),
  ...CHECK_LINE_START,
  ...br(1), //                                       br $byte
  END_,
  ...get(DST), ...get(B), ...STORE8, //            i32.store8 (dst) b
  ...addTo(DST, i32(1)),
  ...br(0), //                                     br $byte
  END_, //                                       end
  END_, //                                     end
  ...get(DST),
  END_, //                                     end of the function
];

type Wire = (src: number, end: number, dst: number, stuff: number) => number;

const wasm = instantiateWasm<Wire>({
  name: 'wire',
  params: 4,
  body: WIRE_BODY,
  // the 16-byte store may run 16 bytes past the output's end
  memoryBytes: OUTPUT_AT + 2 * PIECE_BYTES + 16,
});

/** Whether toPlainWire runs in WebAssembly (false: the JavaScript fallback). */
export const simdAvailable = wasm !== null;

/**
 * Converts input[start, end), which follows an LF (or starts the message) and does not start with
 * `>` (or `.`, when dotStuff), to out at o with a CR before every LF, and returns the offset after
 * it (out needs 2 * (end - start) bytes free there); or -1, having written any part of that room,
 * if the piece has a CR or a line starting with `>` (or `.`): then it needs the general loop.
 */
export function toPlainWire(
  input: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  o: number,
  dotStuff: boolean,
): number {
  if (wasm === null) return toPlainWireScalar(input, start, end, out, o, dotStuff);
  const { bytes, run: wire } = wasm;
  const stuff = dotStuff ? DOT : GT;
  for (let at = start; at < end; at += PIECE_BYTES) {
    const length = Math.min(PIECE_BYTES, end - at);
    bytes.set(new Uint8Array(input.buffer, input.byteOffset + at, length), 0);
    const after = wire(0, length, OUTPUT_AT, stuff);
    if (after < 0) return -1;
    const produced = after - OUTPUT_AT;
    out.set(new Uint8Array(bytes.buffer, OUTPUT_AT, produced), o);
    o += produced;
    // a line starting in the next piece
    const next = at + length;
    if (next < end && input[next - 1] === LF && (input[next] === GT || input[next] === stuff)) return -1;
  }
  return o;
}

/** toPlainWire in JavaScript: three native searches, then addCRs. */
export function toPlainWireScalar(
  input: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  o: number,
  dotStuff: boolean,
): number {
  const piece = Buffer.from(input.buffer, input.byteOffset + start, end - start);
  if (piece.indexOf(CR) !== -1 || piece.indexOf(LF_GT) !== -1 || (dotStuff && piece.indexOf(LF_DOT) !== -1)) return -1;
  return addCRs(input, start, end, out, o);
}

/**
 * Copies input[start, end) to out at o with CR before every LF; returns the offset after it.
 * Four bytes at a time: a word without an LF byte (x = word ^ 0x0a0a0a0a has no zero byte, the
 * usual test (x - 0x01010101) & ~x & 0x80808080) is copied whole, others byte by byte.
 */
function addCRs(input: Uint8Array, start: number, end: number, out: Uint8Array, o: number): number {
  const from = new DataView(input.buffer, input.byteOffset, input.length);
  const to = new DataView(out.buffer, out.byteOffset, out.length);
  let i = start;
  for (; i + 4 <= end; i += 4) {
    const word = from.getUint32(i, true);
    const x = word ^ 0x0a0a0a0a;
    if (((x - 0x01010101) & ~x & 0x80808080) === 0) {
      to.setUint32(o, word, true);
      o += 4;
      continue;
    }
    for (let k = i; k < i + 4; k++) {
      const b = input[k]!;
      if (b === LF) out[o++] = CR;
      out[o++] = b;
    }
  }
  for (; i < end; i++) {
    const b = input[i]!;
    if (b === LF) out[o++] = CR;
    out[o++] = b;
  }
  return o;
}
