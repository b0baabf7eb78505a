// MD5 (RFC 1321) of the short inputs of the UIDL rule (uidl.ts: a message's hashed header lines,
// typically one to four 64-byte blocks) in a tiny WebAssembly function: node:crypto's one-shot hash
// costs ~1.4 µs a call however short the input (OpenSSL's per-call set-up), this ~0.6 µs for 150
// bytes: over 100,000 messages the difference is ~15% of a 1 GB mailbox's scan. The digest is
// MD5's, so every UIDL stays the same (the test compares it with node:crypto on any bytes and
// lengths). Inputs longer than its memory, and every input where WebAssembly is unavailable (node
// --jitless), go to node:crypto. The function is assembled below from its instructions (wasm-asm.ts
// has the encoding): the 64 steps of a block are generated from RFC 1321's tables.
import { hash } from 'node:crypto';
import {
  ADD,
  BLOCK,
  br,
  brIf,
  END_,
  EQZ,
  get,
  i32,
  instantiateWasm,
  LOOP,
  OR,
  ROTL,
  SUB,
  set,
  store32At,
  vector,
  XOR,
  load32At,
  AND,
  addTo,
} from './wasm-asm.js';

/** the digest's 16 bytes are at 0, the padded input from INPUT_AT */
const DIGEST_AT = 0;
const INPUT_AT = 64;
/** longest input hashed in WebAssembly: with its padding (at most 72 bytes) it fits the memory */
export const MD5_WASM_MAX_BYTES = 16 * 1024;
const MEMORY_BYTES = INPUT_AT + MD5_WASM_MAX_BYTES + 72;

/** the per-step constants: floor(abs(sin(i + 1)) * 2^32) (RFC 1321, 3.4) */
const SINES = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0);
const SHIFTS = [
  [7, 12, 17, 22],
  [5, 9, 14, 20],
  [4, 11, 16, 23],
  [6, 10, 15, 21],
];
/** which message word step i adds */
function wordOf(i: number): number {
  const round = i >> 4;
  return [i, 5 * i + 1, 3 * i + 5, 7 * i][round]! % 16;
}
const INITIAL = [0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476];

// locals of md5(blocks) -> 0: the digest goes to DIGEST_AT
const BLOCKS = 0;
const P = 1;
/** the digest so far (A, B, C, D) and a block's working copy (a, b, c, d) */
const STATE = [2, 3, 4, 5];
const WORK = [6, 7, 8, 9];

/** the round function of step i on b, c, d (RFC 1321, 3.4, in the usual equivalent forms) */
function roundFunction(i: number, b: number, c: number, d: number): number[] {
  switch (i >> 4) {
    case 0: // F = (b & c) | (~b & d) = d ^ (b & (c ^ d))
      return [...get(d), ...get(b), ...get(c), ...get(d), XOR, AND, XOR];
    case 1: // G = (b & d) | (c & ~d) = c ^ (d & (b ^ c))
      return [...get(c), ...get(d), ...get(b), ...get(c), XOR, AND, XOR];
    case 2: // H = b ^ c ^ d
      return [...get(b), ...get(c), XOR, ...get(d), XOR];
    default: // I = c ^ (b | ~d)
      return [...get(c), ...get(b), ...get(d), ...i32(-1), XOR, OR, XOR];
  }
}

/** the 64 steps over the block at P: a = b + ((a + f(b, c, d) + sine + word) <<< shift), then rotate the roles */
function blockSteps(): number[] {
  const code: number[] = [];
  let [a, b, c, d] = WORK as [number, number, number, number];
  for (let i = 0; i < 64; i++) {
    code.push(
      ...get(b),
      ...get(a),
      ...roundFunction(i, b, c, d),
      ADD,
      ...i32(SINES[i]!),
      ADD,
      ...get(P),
      ...load32At(4 * wordOf(i)),
      ADD,
      ...i32(SHIFTS[i >> 4]![i % 4]!),
      ROTL,
      ADD,
      ...set(a),
    );
    [a, b, c, d] = [d, a, b, c];
  }
  return code;
}

// biome-ignore format: instructions with their text form beside them
const BODY = [
  ...vector([[9, 0x7f]]), //                     (local $p $A $B $C $D $a $b $c $d i32)
  ...STATE.flatMap((local, k) => [...i32(INITIAL[k]!), ...set(local)]), // A, B, C, D = MD5's initial values
  ...i32(INPUT_AT), ...set(P), //               p = INPUT_AT
  ...BLOCK, //                                  block $done
  ...LOOP, //                                     loop $block
  ...get(BLOCKS), EQZ, ...brIf(1), //               blocks == 0: br_if $done
  ...STATE.flatMap((local, k) => [...get(local), ...set(WORK[k]!)]), // a, b, c, d = A, B, C, D
  ...blockSteps(),
  ...STATE.flatMap((local, k) => addTo(local, get(WORK[k]!))), // A += a, B += b, ...
  ...addTo(P, i32(64)), ...get(BLOCKS), ...i32(1), SUB, ...set(BLOCKS),
  ...br(0), //                                      br $block
  END_, //                                        end
  END_, //                                      end
  ...STATE.flatMap((local, k) => [...i32(0), ...get(local), ...store32At(DIGEST_AT + 4 * k)]), // the digest
  ...i32(0),
  END_, //                                      end of the function
];

const wasm = instantiateWasm<(blocks: number) => number>({
  name: 'md5',
  params: 1,
  body: BODY,
  memoryBytes: MEMORY_BYTES,
});
const words = wasm === null ? null : new Uint32Array(wasm.bytes.buffer);
const digestView = wasm === null ? null : Buffer.from(wasm.bytes.buffer, DIGEST_AT, 16);

/** Whether md5() runs in WebAssembly for inputs up to MD5_WASM_MAX_BYTES (false: node:crypto). */
export const md5InWasm = wasm !== null;

/**
 * The MD5 digest of data[start, end). The returned bytes may be overwritten by the next call:
 * read them first.
 */
export function md5(data: Uint8Array, start: number, end: number): Buffer {
  const length = end - start;
  if (wasm === null || words === null || digestView === null || length > MD5_WASM_MAX_BYTES) {
    return hash('md5', data.subarray(start, end), 'buffer');
  }
  const { bytes } = wasm;
  bytes.set(new Uint8Array(data.buffer, data.byteOffset + start, length), INPUT_AT);
  // the padding: 0x80, zeros up to 8 bytes before a block's end, the length in bits (64-bit little-endian)
  const blocks = ((length + 8) >>> 6) + 1;
  const lengthAt = INPUT_AT + blocks * 64 - 8;
  bytes[INPUT_AT + length] = 0x80;
  bytes.fill(0, INPUT_AT + length + 1, lengthAt);
  words[lengthAt >> 2] = (length * 8) >>> 0;
  words[(lengthAt >> 2) + 1] = Math.floor(length / 2 ** 29);
  wasm.run(blocks);
  return digestView;
}
