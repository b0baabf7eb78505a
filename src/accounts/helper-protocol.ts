// The pipe protocol between the daemon and its root helper (README, "Using the box's Unix
// accounts"): each message is a frame, a 4-byte big-endian length and that many bytes of JSON
// (at most MAX_FRAME). The daemon sends requests, each with its own id; the helper answers each
// once, in any order, and also sends events (a worker started or exited). The helper accepts only
// the two requests below, and only when validateRequest() passes them: a name that is not a
// valid login, a mailbox path other than spool_dir/<login>, an oversized or malformed field is
// refused before anything runs; an account below system_min_uid is refused once it is looked up.
import { resolve } from 'node:path';
import { normalizeUsername } from '../auth/username.js';

export const MAX_FRAME = 8192;
const HEADER = 4;
/** PAM takes C strings; Linux-PAM answers at most PAM_MAX_RESP_SIZE (512) bytes per prompt */
export const MAX_PASSWORD_BYTES = 512;
const MAX_RHOST = 64;

/** Checks a login's password through PAM (auth, then account management: locked, expired). */
export interface AuthRequest {
  id: number;
  op: 'auth';
  user: string;
  password: string;
  /** the client's address (PAM_RHOST) */
  rhost: string;
}

/** Creates spool_dir/<user> for the account, group mail, mode 0660, when it is missing. */
export interface MailboxRequest {
  id: number;
  op: 'mailbox';
  user: string;
  path: string;
}

export type HelperRequest = AuthRequest | MailboxRequest;

export type HelperResponse =
  | { id: number; ok: true }
  /** `checked`: PAM ran (false: refused before it, no such account) */
  | { id: number; ok: false; error: 'denied'; checked: boolean }
  /** the request was refused by the validator, or failed (the detail says why) */
  | { id: number; ok: false; error: 'invalid' | 'failed'; detail: string };

export type HelperEvent =
  | { event: 'started'; pid: number }
  | { event: 'exited'; pid: number; code: number | null; signal: string | null }
  /** the helper cannot work at all (PAM binding missing); it exits */
  | { event: 'fatal'; detail: string };

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

export function encodeFrame(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  if (body.length > MAX_FRAME) throw new FrameError(`frame of ${body.length} bytes exceeds ${MAX_FRAME}`);
  const header = Buffer.alloc(HEADER);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

/** Cuts a byte stream into frames; throws FrameError on a bad length or bad JSON (the stream is then unusable). */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): unknown[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const values: unknown[] = [];
    while (this.pending.length >= HEADER) {
      const length = this.pending.readUInt32BE(0);
      if (length === 0 || length > MAX_FRAME) throw new FrameError(`bad frame length ${length}`);
      if (this.pending.length < HEADER + length) break;
      const body = this.pending.subarray(HEADER, HEADER + length).toString('utf8');
      this.pending = this.pending.subarray(HEADER + length);
      try {
        values.push(JSON.parse(body));
      } catch {
        throw new FrameError('frame is not JSON');
      }
    }
    return values;
  }
}

/** The id of a request-shaped value, or null (the keeper answers by id, so it needs one). */
export function requestId(value: unknown): number | null {
  const id = (value as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : null;
}

/** The request a value is, or why it is refused. Nothing but these exact shapes passes. */
export function validateRequest(value: unknown, spoolDir: string): HelperRequest | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const request = value as Record<string, unknown>;
  const id = requestId(request);
  if (id === null) return 'bad id';
  const { op, user } = request;
  if (typeof user !== 'string' || normalizeUsername(user) !== user) return 'user is not a valid login name';
  if (op === 'auth') {
    if (!sameKeys(request, ['id', 'op', 'user', 'password', 'rhost'])) return 'unexpected fields';
    const { password, rhost } = request;
    if (typeof password !== 'string' || password === '') return 'no password';
    if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES || password.includes('\0'))
      return 'password too long or with NUL';
    if (typeof rhost !== 'string' || rhost.length > MAX_RHOST || !/^[0-9a-f.:]*$/i.test(rhost)) return 'bad rhost';
    return { id, op, user, password, rhost };
  }
  if (op === 'mailbox') {
    if (!sameKeys(request, ['id', 'op', 'user', 'path'])) return 'unexpected fields';
    const path = resolve(spoolDir, user);
    if (typeof request.path !== 'string' || resolve(request.path) !== path) return 'path is not spool_dir/<user>';
    return { id, op, user, path };
  }
  return 'unknown op';
}

/** After the lookup: the account must exist and be a mail user (uid >= system_min_uid). */
export function accountRefusal(account: { uid: number } | null, minUid: number): string | null {
  if (account === null) return 'no such account';
  if (account.uid < minUid) return `uid ${account.uid} is below system_min_uid ${minUid}`;
  return null;
}

function sameKeys(value: Record<string, unknown>, keys: string[]): boolean {
  const own = Object.keys(value);
  return own.length === keys.length && keys.every((key) => Object.hasOwn(value, key));
}
