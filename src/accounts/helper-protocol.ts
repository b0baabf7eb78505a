// The pipe protocol between the daemon and its root helper (README, "Using the box's Unix
// accounts"): each message is a frame, a 4-byte big-endian length and that many bytes of JSON
// (a request at most MAX_REQUEST_FRAME, an answer at most MAX_ANSWER_FRAME: a secret file).
// The daemon sends requests, each with its own id; the helper answers each once, in any order,
// and also sends events (a worker started or exited). The helper accepts only the three requests
// below, and only when validateRequest() passes them: a name that is not a valid login, a
// mailbox path other than spool_dir/<login>, a secret file the config did not name at start, an
// oversized or malformed field is refused before anything runs; an account below
// system_min_uid is refused once it is looked up.
import { isAbsolute, resolve } from 'node:path';
import { normalizeUsername } from '../auth/username.js';
import { MAX_SECRET_BYTES } from '../secret-reader.js';

export const MAX_REQUEST_FRAME = 8192;
/** a secret file in base64, with room for the JSON around it */
export const MAX_ANSWER_FRAME = Math.ceil(MAX_SECRET_BYTES / 3) * 4 + 1024;
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

/** Reads a secret file the config named when the helper started (README, "Privileges"). */
export interface SecretRequest {
  id: number;
  op: 'secret';
  path: string;
}

export type HelperRequest = AuthRequest | MailboxRequest | SecretRequest;

/** What validateRequest() lets through: fixed when the helper starts. */
export interface HelperScope {
  spoolDir: string;
  /** false: the Unix accounts are not used (accounts = "file"); auth and mailbox are refused */
  accounts: boolean;
  /** the absolute paths of the secret files the helper may read */
  secretFiles: readonly string[];
}

export type HelperResponse =
  | { id: number; ok: true }
  /** a secret file's bytes in base64; null: it does not exist */
  | { id: number; ok: true; content: string | null }
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

export function encodeFrame(value: unknown, maxFrame = MAX_REQUEST_FRAME): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  if (body.length > maxFrame) throw new FrameError(`frame of ${body.length} bytes exceeds ${maxFrame}`);
  const header = Buffer.alloc(HEADER);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

/** Cuts a byte stream into frames; throws FrameError on a bad length or bad JSON (the stream is then unusable). */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrame = MAX_REQUEST_FRAME) {}

  push(chunk: Buffer): unknown[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const values: unknown[] = [];
    while (this.pending.length >= HEADER) {
      const length = this.pending.readUInt32BE(0);
      if (length === 0 || length > this.maxFrame) throw new FrameError(`bad frame length ${length}`);
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

/**
 * Reads frames from `stream` as its bytes arrive: each value to `onValue`, in order. A bad frame
 * (length or JSON) goes to `onBadFrame` with its error, and the rest of that chunk is dropped.
 */
export function readFrames(
  stream: NodeJS.ReadableStream,
  maxFrame: number,
  onValue: (value: unknown) => void,
  onBadFrame: (err: FrameError) => void,
): void {
  const reader = new FrameReader(maxFrame);
  stream.on('data', (chunk: Buffer) => {
    let values: unknown[];
    try {
      values = reader.push(chunk);
    } catch (err) {
      onBadFrame(err as FrameError);
      return;
    }
    for (const value of values) onValue(value);
  });
}

/** The id of a request-shaped value, or null (the keeper answers by id, so it needs one). */
export function requestId(value: unknown): number | null {
  const id = (value as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : null;
}

/** The request a value is, or why it is refused. Nothing but these exact shapes passes. */
export function validateRequest(value: unknown, scope: HelperScope): HelperRequest | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const request = value as Record<string, unknown>;
  const id = requestId(request);
  if (id === null) return 'bad id';
  const { op, user } = request;
  if (op === 'secret') {
    if (!sameKeys(request, ['id', 'op', 'path'])) return 'unexpected fields';
    const { path } = request;
    if (typeof path !== 'string' || !isAbsolute(path) || resolve(path) !== path || !scope.secretFiles.includes(path))
      return 'path is not a secret file named by the config at start';
    return { id, op, path };
  }
  if (op !== 'auth' && op !== 'mailbox') return 'unknown op';
  if (!scope.accounts) return 'accounts = "file": no Unix account requests';
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
  if (!sameKeys(request, ['id', 'op', 'user', 'path'])) return 'unexpected fields';
  const path = resolve(scope.spoolDir, user);
  if (typeof request.path !== 'string' || resolve(request.path) !== path) return 'path is not spool_dir/<user>';
  return { id, op, user, path };
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
