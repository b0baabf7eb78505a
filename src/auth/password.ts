// Password hashing and verification for the users file (README, "Users and aliases"), in Dovecot's
// `{SCHEME}hash` notation so `doveadm pw` output works as is.
//
// New passwords: {ARGON2ID} with Dovecot's own defaults for `doveadm pw -s ARGON2ID`
// (libsodium "interactive": m=64 MiB, t=2, p=1; one lane because libsodium verifies only that).
// Verified: {ARGON2ID}, {ARGON2I}, {BLF-CRYPT} ($2a$/$2b$/$2y$) and {SHA512-CRYPT} ($6$).
//
// None of this may stall the event loop (SMTP and POP3 share it):
// - argon2 runs in native code on the libuv thread pool (async API); bcryptjs is pure JS
//   (the native @node-rs/bcrypt ships platform packages this registry lacks, so `npm ci`
//   fails with it) but its async compare works in short slices between event-loop turns;
// - SHA512-CRYPT uses unixcrypt, which is synchronous pure JS. Measured on the build box:
//   about 12 ms a verify at the default 5000 rounds (28 ms for the very first, cold call),
//   and the cost grows with `rounds=`: 10000 rounds took 22 ms, passlib's default of
//   656000 took 1.8 s. Even 12 ms would stall every other session, so every SHA512-CRYPT
//   verify runs in a short-lived worker thread (~30 ms to start), given up after 10 s.
import { Worker } from 'node:worker_threads';
import { hash as argon2Hash, verify as argon2Verify, type Algorithm } from '@node-rs/argon2';
import bcrypt from 'bcryptjs';

const SUPPORTED_SCHEMES = ['ARGON2ID', 'ARGON2I', 'BLF-CRYPT', 'SHA512-CRYPT'] as const;
export type Scheme = (typeof SUPPORTED_SCHEMES)[number];

/** The scheme new passwords are stored with. */
const DEFAULT_SCHEME: Scheme = 'ARGON2ID';

// `Algorithm` is a const enum that @node-rs/argon2 does not export at run time, so a
// file-by-file transpiler (tsx) cannot inline `Algorithm.Argon2id`: the value is spelled out.
const ARGON2ID: Algorithm = 2;
/** the argon2 parameters of new passwords: memory (KiB), passes, lanes */
export const ARGON2ID_PARAMS = { m: 65536, t: 2, p: 1 } as const;
const ARGON2ID_OPTIONS = {
  algorithm: ARGON2ID,
  memoryCost: ARGON2ID_PARAMS.m,
  timeCost: ARGON2ID_PARAMS.t,
  parallelism: ARGON2ID_PARAMS.p,
};

/** A verification in a worker thread is abandoned (and rejects) after this long. */
const SHA512_WORKER_TIMEOUT_MS = 10_000;

/** The body each scheme's hash must have: anything else cannot verify. */
const HASH_SHAPE: Record<Scheme, RegExp> = {
  ARGON2ID: /^\$argon2id\$/,
  ARGON2I: /^\$argon2i\$/,
  'BLF-CRYPT': /^\$2[aby]\$/,
  'SHA512-CRYPT': /^\$6\$/,
};

/**
 * The scheme name of a stored `{SCHEME}hash`, uppercased (Dovecot matches scheme names
 * case-insensitively), or null when the value has no `{...}` prefix. The name may be one
 * this server does not support: see isSupportedScheme.
 */
export function schemeOf(stored: string): string | null {
  const match = /^\{([^{}]+)\}/.exec(stored);
  return match ? match[1]!.toUpperCase() : null;
}

export function isSupportedScheme(scheme: string): scheme is Scheme {
  return (SUPPORTED_SCHEMES as readonly string[]).includes(scheme);
}

/** Hashes a new password: `{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$salt$hash`. */
export async function hashPassword(plain: string): Promise<string> {
  return `{${DEFAULT_SCHEME}}${await argon2Hash(plain, ARGON2ID_OPTIONS)}`;
}

/**
 * Whether `plain` is the password of the stored `{SCHEME}hash`. An unknown scheme, a
 * malformed hash or a hash that does not fit its scheme is false. Rejects only when the
 * SHA512-CRYPT worker thread fails (a server fault, not a wrong password). Logins call it
 * through the Authenticator, which bounds how many run at once.
 */
export async function verifyPassword(stored: string, plain: string): Promise<boolean> {
  const scheme = schemeOf(stored);
  if (scheme === null || !isSupportedScheme(scheme)) return false;
  const hashed = stored.slice(scheme.length + 2);
  if (!HASH_SHAPE[scheme].test(hashed)) return false;
  if (scheme === 'SHA512-CRYPT') return sha512VerifyInWorker(plain, hashed);
  try {
    switch (scheme) {
      case 'ARGON2ID':
      case 'ARGON2I':
        return await argon2Verify(hashed, plain);
      case 'BLF-CRYPT':
        // bcryptjs accepts the $2y$ prefix (PHP, htpasswd, Dovecot) as is: checked
        // against a hash made by `htpasswd -B` in the unit test.
        return await bcrypt.compare(plain, hashed);
    }
  } catch {
    // The libraries throw on hashes they cannot parse (bad base64, short output, ...).
    return false;
  }
}

// The worker is evaluated from source (it is small and this keeps it working both from
// src/ under tsx and from dist/); it loads unixcrypt from the same file the main thread uses.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.module).then(({ verify }) => {
  let ok = false;
  try { ok = verify(workerData.plain, workerData.hashed); } catch { ok = false; }
  parentPort.postMessage(ok);
});
`;

function sha512VerifyInWorker(plain: string, hashed: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module: import.meta.resolve('unixcrypt'), plain, hashed },
    });
    // glibc accepts up to 999999999 rounds (about 40 minutes here): never let a hash tie up a thread that long.
    const timer = setTimeout(() => {
      settle(() =>
        reject(
          new Error(`SHA512-CRYPT verification gave up after ${SHA512_WORKER_TIMEOUT_MS / 1000} s: too many rounds`),
        ),
      );
      void worker.terminate();
    }, SHA512_WORKER_TIMEOUT_MS);
    let settled = false;
    const settle = (done: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      done();
    };
    worker.once('message', (ok: unknown) => settle(() => resolve(ok === true)));
    worker.once('error', (err) =>
      settle(() => reject(new Error(`SHA512-CRYPT verification worker failed: ${err.message}`))),
    );
    worker.once('exit', (code) =>
      settle(() => reject(new Error(`SHA512-CRYPT verification worker exited with code ${code} without an answer`))),
    );
  });
}
