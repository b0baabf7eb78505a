// The decoy password hash a login for an unknown (or malformed, or hashless) user is checked
// against, so that it costs what a real user's check costs and timing tells nothing. It is an
// {ARGON2ID} hash of a random password, made with the same argon2 parameters (m, t, p) as the
// users file's first {ARGON2ID} hash (the cost of argon2 is set by them: a file of `doveadm pw`
// hashes at m=65536 and one of older m=19456 hashes differ 3x), or with the default ones of new
// passwords when the file has none. One decoy per parameter set, made once.
import { randomBytes } from 'node:crypto';
import { hash as argon2Hash } from '@node-rs/argon2';
import { hashPassword } from './password.js';
import type { UserDb } from './users.js';

const ARGON2ID = 2; // @node-rs/argon2's Algorithm.Argon2id (a const enum, not exported at run time)
const PARAMS = /^\{ARGON2ID\}\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/i;
/** parameters beyond these are not copied (a hostile or broken users file must not make the decoy huge) */
const MAX_MEMORY_KIB = 1024 * 1024;
const MAX_TIME = 16;
const MAX_LANES = 16;

export class DecoyHashes {
  private readonly byParams = new Map<string, Promise<string>>();
  private readonly byDb = new WeakMap<UserDb, Promise<string>>();

  /** The decoy for this users file (computed on first use, then cached). */
  for(users: UserDb): Promise<string> {
    let decoy = this.byDb.get(users);
    if (decoy === undefined) {
      decoy = this.make(firstArgon2Params(users));
      this.byDb.set(users, decoy);
      decoy.catch(() => this.byDb.delete(users));
    }
    return decoy;
  }

  private make(params: { m: number; t: number; p: number } | null): Promise<string> {
    const key = params === null ? 'default' : `${params.m},${params.t},${params.p}`;
    let decoy = this.byParams.get(key);
    if (decoy === undefined) {
      const secret = randomBytes(18).toString('base64');
      decoy =
        params === null
          ? hashPassword(secret)
          : argon2Hash(secret, { algorithm: ARGON2ID, memoryCost: params.m, timeCost: params.t, parallelism: params.p }).then((h) => `{ARGON2ID}${h}`);
      this.byParams.set(key, decoy);
      // a failure is the caller's (it rejects the login with [SYS/TEMP]); forget it so the next one retries
      decoy.catch(() => this.byParams.delete(key));
    }
    return decoy;
  }
}

function firstArgon2Params(users: UserDb): { m: number; t: number; p: number } | null {
  for (const name of users.names()) {
    const match = PARAMS.exec(users.hashOf(name) ?? '');
    if (match === null) continue;
    const [m, t, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
    if (m >= 8 * p && m <= MAX_MEMORY_KIB && t >= 1 && t <= MAX_TIME && p >= 1 && p <= MAX_LANES) return { m, t, p };
  }
  return null;
}
