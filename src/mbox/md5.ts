// MD5 (RFC 1321) of the short inputs of the UIDL rule (uidl.ts: a message's hashed header lines,
// typically one to four 64-byte blocks) with hash-wasm's WebAssembly MD5 and one reused hasher:
// node:crypto's one-shot hash costs ~1.4 µs a call however short the input (OpenSSL's per-call
// set-up), this under 1 µs for 150 bytes; over 100,000 messages that is ~15% of a 1 GB
// mailbox's scan. The digest is MD5's, so every UIDL stays the same. Until the hasher is ready
// (it is made once, asynchronously, when this module loads) and where WebAssembly is unavailable
// (node --jitless), node:crypto hashes.
import { hash } from 'node:crypto';
import { createMD5, type IHasher } from 'hash-wasm';

let hasher: IHasher | null = null;

/** Resolves once the WebAssembly hasher is in use (true), or is known to be unavailable (false). */
export const md5Ready: Promise<boolean> = createMD5().then(
  (made) => {
    hasher = made;
    return true;
  },
  () => false,
);

/** The MD5 digest of data[start, end). */
export function md5(data: Uint8Array, start: number, end: number): Buffer {
  const input = data.subarray(start, end);
  if (hasher === null) return hash('md5', input, 'buffer');
  hasher.init();
  hasher.update(input);
  const digest = hasher.digest('binary');
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
}
