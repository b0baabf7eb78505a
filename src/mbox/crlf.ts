// LF → CRLF for RETR (mbox/retrieve.ts): copies bytes, putting a CR before every LF. The work is
// done 16 bytes at a time by a tiny WebAssembly function using SIMD (a block without an LF is
// copied whole; at an LF the bytes before it are already stored, so the block restarts after
// it), about five times faster than the JavaScript word loop it replaces, which stays as the
// fallback where WebAssembly is unavailable (node --jitless). The module is assembled below from
// its instructions, with the text form beside each one: no build step, no binary blob.
// Input and output go through one scratch memory shared by the process (the call is synchronous,
// so nothing else can use it meanwhile), a piece of at most PIECE_BYTES at a time.

const LF = 0x0a;
const CR = 0x0d;

/** input bytes converted per wasm call; the output (at most twice that) follows it in memory */
const PIECE_BYTES = 64 * 1024;
const OUTPUT_AT = PIECE_BYTES;
/** the 16-byte store may run 16 bytes past the output's end */
const MEMORY_BYTES = OUTPUT_AT + 2 * PIECE_BYTES + 16;
const WASM_PAGE = 64 * 1024;

/** unsigned LEB128 */
function uleb(value: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    bytes.push(byte);
  } while (value !== 0);
  return bytes;
}

/** signed LEB128 (i32.const) */
function sleb(value: number): number[] {
  const bytes: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    if ((value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0)) {
      bytes.push(byte);
      return bytes;
    }
    bytes.push(byte | 0x80);
  }
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(text: string): number[] {
  return [...uleb(text.length), ...Buffer.from(text, 'latin1')];
}

// locals of crlf(src, end, dst) -> dst after the output
const SRC = 0;
const END = 1;
const DST = 2;
const V = 3;
const M = 4;
const B = 5;

const get = (local: number) => [0x20, local]; // local.get
const set = (local: number) => [0x21, local]; // local.set
const tee = (local: number) => [0x22, local]; // local.tee
const i32 = (value: number) => [0x41, ...sleb(value)]; // i32.const
const ADD = 0x6a; // i32.add
const addTo = (local: number, amount: number[]) => [...get(local), ...amount, ADD, ...set(local)];
const simd = (op: number) => [0xfd, ...uleb(op)];
const MEMARG_BYTE = [0x00, 0x00]; // align 1, offset 0

// biome-ignore format: one instruction (or a few) per line, with its text form beside it
const CRLF_BODY = [
  ...vector([[1, 0x7b], [3, 0x7f]]), // (local $v v128) (local $m i32) (local $b i32)
  0x02, 0x40, //                               block $tail
  0x03, 0x40, //                                 loop $vec
  ...get(SRC), ...i32(16), ADD, ...get(END), //    src + 16 > end:
  0x4b, 0x0d, 1, //                                i32.gt_u  br_if $tail
  ...get(DST), ...get(SRC), ...simd(0), ...MEMARG_BYTE, // v128.load (src)
  ...tee(V), ...simd(11), ...MEMARG_BYTE, //       v128.store (dst) v: the 16 bytes as they are
  ...get(V), ...i32(LF), ...simd(15), ...simd(35), // i8x16.eq v, splat(LF)
  ...simd(100), ...tee(M), 0x45, //                i8x16.bitmask  m = ...; i32.eqz
  0x04, 0x40, //                                   if (no LF in the block)
  ...addTo(SRC, i32(16)), ...addTo(DST, i32(16)),
  0x0c, 1, //                                        br $vec
  0x0b, //                                         end
  ...get(M), 0x68, ...set(M), //                   m = i32.ctz m: the first LF, bytes before it stored
  ...addTo(DST, get(M)), ...addTo(SRC, [...get(M), ...i32(1), ADD]),
  ...get(DST), ...i32(CR | (LF << 8)), 0x3b, ...MEMARG_BYTE, // i32.store16 (dst) CR LF
  ...addTo(DST, i32(2)),
  0x0c, 0, //                                      br $vec
  0x0b, //                                       end
  0x0b, //                                     end
  0x02, 0x40, //                               block $done: the last bytes, one at a time
  0x03, 0x40, //                                 loop $byte
  ...get(SRC), ...get(END), 0x4f, 0x0d, 1, //      src >= end: br_if $done
  ...get(SRC), 0x2d, ...MEMARG_BYTE, ...set(B), // b = i32.load8_u (src)
  ...get(B), ...i32(LF), 0x46, //                  b == LF:
  0x04, 0x40, //                                   if
  ...get(DST), ...i32(CR), 0x3a, ...MEMARG_BYTE, //  i32.store8 (dst) CR
  ...addTo(DST, i32(1)),
  0x0b, //                                         end
  ...get(DST), ...get(B), 0x3a, ...MEMARG_BYTE, // i32.store8 (dst) b
  ...addTo(DST, i32(1)), ...addTo(SRC, i32(1)),
  0x0c, 0, //                                      br $byte
  0x0b, //                                       end
  0x0b, //                                     end
  ...get(DST),
  0x0b, //                                     end of the function
];

const MODULE = Uint8Array.from([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
  ...section(1, vector([[0x60, ...vector([[0x7f], [0x7f], [0x7f]]), ...vector([[0x7f]])]])), // (i32 i32 i32) -> i32
  ...section(3, vector([[0]])), // one function of type 0
  ...section(5, vector([[0x00, ...uleb(Math.ceil(MEMORY_BYTES / WASM_PAGE))]])), // memory, min pages
  ...section(
    7,
    vector([
      [...name('crlf'), 0x00, 0],
      [...name('memory'), 0x02, 0],
    ]),
  ),
  ...section(10, vector([[...uleb(CRLF_BODY.length), ...CRLF_BODY]])),
]);

interface Simd {
  crlf(src: number, end: number, dst: number): number;
  bytes: Uint8Array;
}

/** The part of the WebAssembly global used here (Node's types for ES2023 do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: { crlf: Simd['crlf']; memory: { buffer: ArrayBuffer } } };
}

/** The wasm function and its memory, or null where WebAssembly (or its SIMD) is not available. */
function instantiate(): Simd | null {
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (api === undefined || !api.validate(MODULE)) return null;
  const { exports } = new api.Instance(new api.Module(MODULE));
  return { crlf: exports.crlf, bytes: new Uint8Array(exports.memory.buffer) };
}

const wasm = instantiate();

/** Whether addCRs runs in WebAssembly (false: the JavaScript loop). */
export const simdAvailable = wasm !== null;

/**
 * Copies input[start, end) to out at o with CR before every LF; returns the offset after it (out
 * needs 2 * (end - start) bytes free there).
 */
export function addCRs(input: Uint8Array, start: number, end: number, out: Uint8Array, o: number): number {
  if (wasm === null) return addCRsScalar(input, start, end, out, o);
  const { bytes, crlf } = wasm;
  for (let at = start; at < end; at += PIECE_BYTES) {
    const length = Math.min(PIECE_BYTES, end - at);
    bytes.set(input.subarray(at, at + length), 0);
    const produced = crlf(0, length, OUTPUT_AT) - OUTPUT_AT;
    out.set(bytes.subarray(OUTPUT_AT, OUTPUT_AT + produced), o);
    o += produced;
  }
  return o;
}

/**
 * addCRs in JavaScript, four bytes at a time: a word without an LF byte (x = word ^ 0x0a0a0a0a
 * has no zero byte, the usual test (x - 0x01010101) & ~x & 0x80808080) is copied whole, others
 * byte by byte.
 */
export function addCRsScalar(input: Uint8Array, start: number, end: number, out: Uint8Array, o: number): number {
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
