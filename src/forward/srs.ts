// The Sender Rewriting Scheme for mail an alias forwards to a remote address (README,
// "Forwarding: SRS and ARC"): the envelope sender user@domain leaves as
// SRS0=HHHH=TT=domain=user@hostname, so the next hop's SPF check sees our domain; a bounce sent
// back to that address is turned into the original sender again. HHHH is a keyed hash
// (HMAC-SHA1, base64, 4 characters, compared without case) of TT, domain and user, so nobody
// can make us relay to an address of their choice; TT is the day (base32, 1024-day cycle), and
// an address older than MAX_AGE_DAYS is refused. The format is Shevek's (Mail::SRS, libsrs2).
import { createHmac, randomBytes } from 'node:crypto';
import { chown, open, readFile } from 'node:fs/promises';
import { isErrno } from '../fsutil.js';
import type { Identity } from '../privileges.js';
import { splitAddress } from '../message/address.js';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const DAY_MS = 86_400_000;
/** The timestamp wraps every 1024 days (two base32 characters). */
const TIMESTAMP_CYCLE = 1024;
/** How long a bounce may take to come back (libsrs2's default). */
export const MAX_AGE_DAYS = 21;
const HASH_LENGTH = 4;
const SECRET_BYTES = 32;

export class Srs {
  constructor(
    private readonly secret: Buffer,
    private readonly now: () => number = Date.now,
  ) {}

  /** The SRS0 address at `hostname` standing for `sender` (user@domain). */
  forward(sender: string, hostname: string): string {
    const parts = splitAddress(sender)!;
    const timestamp = encodeDay(this.today());
    const hash = this.hash(timestamp, parts.domain, parts.localPart);
    return `SRS0=${hash}=${timestamp}=${parts.domain}=${parts.localPart}@${hostname}`;
  }

  /**
   * The original sender an SRS0 local part stands for; null when it is not ours or no longer
   * valid (bad hash, expired); undefined when the local part is not an SRS address at all.
   */
  reverse(localPart: string): string | null | undefined {
    const match = /^SRS0[=+-]([^=]+)=([^=]{2})=([^=]+)=(.+)$/i.exec(localPart);
    if (!match) return undefined;
    const [, hash, timestamp, domain, user] = match as unknown as [string, string, string, string, string];
    const expected = this.hash(timestamp.toUpperCase(), domain, user);
    if (hash.toLowerCase() !== expected.toLowerCase()) return null;
    const day = decodeDay(timestamp);
    if (day === null) return null;
    const age = (((this.today() - day) % TIMESTAMP_CYCLE) + TIMESTAMP_CYCLE) % TIMESTAMP_CYCLE;
    return age <= MAX_AGE_DAYS ? `${user}@${domain}` : null;
  }

  private today(): number {
    return Math.floor(this.now() / DAY_MS) % TIMESTAMP_CYCLE;
  }

  private hash(timestamp: string, domain: string, user: string): string {
    const mac = createHmac('sha1', this.secret);
    // the domain's case carries no meaning; the user's might, but some MTAs lowercase it all
    mac.update(timestamp.toUpperCase()).update(domain.toLowerCase()).update(user.toLowerCase());
    return mac.digest('base64').slice(0, HASH_LENGTH);
  }
}

function encodeDay(day: number): string {
  return BASE32[Math.floor(day / 32)]! + BASE32[day % 32]!;
}

function decodeDay(timestamp: string): number | null {
  const high = BASE32.indexOf(timestamp[0]!.toUpperCase());
  const low = BASE32.indexOf(timestamp[1]!.toUpperCase());
  return high < 0 || low < 0 ? null : high * 32 + low;
}

/**
 * The secret of state_dir/srs.key: made once (random, mode 0600, owned by the daemon's user), then
 * read at every start, so SRS addresses handed out before a restart still reverse.
 */
export async function loadSrsSecret(file: string, identity: Identity | null): Promise<Buffer> {
  try {
    const handle = await open(file, 'wx', 0o600);
    try {
      await handle.writeFile(randomBytes(SECRET_BYTES).toString('hex'));
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (identity !== null) await chown(file, identity.uid, identity.gid);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
  }
  const secret = Buffer.from((await readFile(file, 'utf8')).trim(), 'hex');
  if (secret.length < 16) throw new Error(`${file} holds no usable SRS secret (remove it to make a new one)`);
  return secret;
}
