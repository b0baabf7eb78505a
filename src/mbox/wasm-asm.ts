// What the tiny hand-assembled WebAssembly functions of crlf.ts (RETR's conversion, SIMD) and
// body-lines.ts (the scan's body loop, SIMD) share: the encoding of a
// module with one exported function of i32 parameters and an i32 result and a memory, the
// instructions they use, and its instantiation. Each function gets its own module, so its own
// scratch memory: its caller copies its input there and calls it synchronously, so nothing else
// uses that memory meanwhile. WebAssembly (or its SIMD) may be missing (node --jitless):
// instantiateWasm then returns null and the caller runs its JavaScript fallback.

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

/** a vector of items, each already encoded */
export function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(text: string): number[] {
  return [...uleb(text.length), ...Buffer.from(text, 'latin1')];
}

export const get = (local: number) => [0x20, local]; // local.get
export const set = (local: number) => [0x21, local]; // local.set
export const tee = (local: number) => [0x22, local]; // local.tee
export const i32 = (value: number) => [0x41, ...sleb(value)]; // i32.const
export const ADD = 0x6a; // i32.add
export const SUB = 0x6b; // i32.sub
export const AND = 0x71; // i32.and
export const OR = 0x72; // i32.or
export const SHL = 0x74; // i32.shl
export const CTZ = 0x68; // i32.ctz
export const EQ = 0x46; // i32.eq
export const EQZ = 0x45; // i32.eqz
export const LT_U = 0x49; // i32.lt_u
export const GT_U = 0x4b; // i32.gt_u
export const GE_U = 0x4f; // i32.ge_u
export const BLOCK = [0x02, 0x40]; // block (no result)
export const LOOP = [0x03, 0x40]; // loop (no result)
export const IF = [0x04, 0x40]; // if (no result)
export const END_ = 0x0b; // end (of a block, loop, if or the function)
export const br = (depth: number) => [0x0c, depth];
export const brIf = (depth: number) => [0x0d, depth];
export const RETURN = 0x0f;
export const addTo = (local: number, amount: number[]) => [...get(local), ...amount, ADD, ...set(local)];
const simd = (op: number) => [0xfd, ...uleb(op)];
const MEMARG_BYTE = [0x00, 0x00]; // align 1, offset 0
export const LOAD8 = [0x2d, ...MEMARG_BYTE]; // i32.load8_u
export const STORE8 = [0x3a, ...MEMARG_BYTE]; // i32.store8
export const STORE16 = [0x3b, ...MEMARG_BYTE]; // i32.store16
export const store32At = (offset: number) => [0x36, 0x02, ...uleb(offset)]; // i32.store align 4
export const V128_LOAD = [...simd(0), ...MEMARG_BYTE];
export const V128_STORE = [...simd(11), ...MEMARG_BYTE];
export const V128_OR = simd(80);
/** i8x16.eq of the vector on the stack with (i8x16.splat byte) */
export const bytesEqual = (byte: number) => [...i32(byte), ...simd(15), ...simd(35)];
/** i8x16.bitmask: bit k set where byte k of the vector has its top bit (an i8x16.eq match) */
export const BITMASK = simd(100);

interface WasmFunction {
  name: string;
  /** how many i32 parameters (locals 0 .. params - 1) */
  params: number;
  /** the body: its locals' declaration, its instructions, END */
  body: number[];
  /** bytes of scratch memory it uses */
  memoryBytes: number;
}

/** The function of a module made by instantiateWasm, and its memory. */
interface WasmInstance<F> {
  run: F;
  bytes: Uint8Array;
}

/** The part of the WebAssembly global used here (Node's types for ES2023 do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> & { memory: { buffer: ArrayBuffer } } };
}

/** The binary module exporting `fn` (as fn.name) and its memory (as `memory`). */
function assemble(fn: WasmFunction): Uint8Array {
  const params = Array.from({ length: fn.params }, () => [0x7f]);
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, vector([[0x60, ...vector(params), ...vector([[0x7f]])]])), // (i32 x params) -> i32
    ...section(3, vector([[0]])), // one function of type 0
    ...section(5, vector([[0x00, ...uleb(Math.ceil(fn.memoryBytes / WASM_PAGE))]])), // memory, min pages
    ...section(
      7,
      vector([
        [...name(fn.name), 0x00, 0],
        [...name('memory'), 0x02, 0],
      ]),
    ),
    ...section(10, vector([[...uleb(fn.body.length), ...fn.body]])),
  ]);
}

/** The function and its memory, or null where WebAssembly (or its SIMD) is not available. */
export function instantiateWasm<F>(fn: WasmFunction): WasmInstance<F> | null {
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  const module = assemble(fn);
  if (api === undefined || !api.validate(module)) return null;
  const { exports } = new api.Instance(new api.Module(module));
  return { run: exports[fn.name] as F, bytes: new Uint8Array(exports.memory.buffer) };
}
