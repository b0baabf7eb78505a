// The decoy password hash a login for an unknown (or malformed, or hashless) user is checked
// against, so that it costs what a real user's check costs and timing tells nothing. It is an
// {ARGON2ID} hash with the same argon2 parameters (m, t, p) as the users file's first
// {ARGON2ID} hash (the cost of argon2 is set by them: a file of `doveadm pw` hashes at m=65536
// and one of older m=19456 hashes differ 3x), or with those of new passwords when the file has
// none. Its salt and hash value are random bytes: checking a password against it runs argon2
// with those parameters like any other check, and no password can match. Nothing is hashed
// to make it, so the daemon never spends argon2's memory (64 MiB) or time before a login.
import { randomBytes } from 'node:crypto';
import { ARGON2ID_PARAMS } from './password.js';
import type { UserDb } from './users.js';

const PARAMS = /^\{ARGON2ID\}\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/i;
/** parameters beyond these are not copied (a hostile or broken users file must not make the decoy huge) */
const MAX_MEMORY_KIB = 1024 * 1024;
const MAX_TIME = 16;
const MAX_LANES = 16;
/** octets of salt and of hash value, as in the hashes `mailsrv user add` and `doveadm pw` write */
const SALT_BYTES = 16;
const HASH_BYTES = 32;

interface Argon2Params {
  m: number;
  t: number;
  p: number;
}

export class DecoyHashes {
  private readonly byDb = new WeakMap<UserDb, string>();

  /** The decoy for this users file (made on first use, then kept while the file is loaded). */
  for(users: UserDb): string {
    let decoy = this.byDb.get(users);
    if (decoy === undefined) {
      decoy = decoyHash(firstArgon2Params(users) ?? ARGON2ID_PARAMS);
      this.byDb.set(users, decoy);
    }
    return decoy;
  }
}

/** `{ARGON2ID}$argon2id$v=19$m=..,t=..,p=..$salt$hash` (PHC string: base64 without padding) of random bytes. */
export function decoyHash({ m, t, p }: Argon2Params): string {
  const b64 = (bytes: number) => randomBytes(bytes).toString('base64').replace(/=+$/, '');
  return `{ARGON2ID}$argon2id$v=19$m=${m},t=${t},p=${p}$${b64(SALT_BYTES)}$${b64(HASH_BYTES)}`;
}

function firstArgon2Params(users: UserDb): Argon2Params | null {
  for (const name of users.names()) {
    const match = PARAMS.exec(users.hashOf(name) ?? '');
    if (match === null) continue;
    const [m, t, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
    if (m >= 8 * p && m <= MAX_MEMORY_KIB && t >= 1 && t <= MAX_TIME && p >= 1 && p <= MAX_LANES) return { m, t, p };
  }
  return null;
}
