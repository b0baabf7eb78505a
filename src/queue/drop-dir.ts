// The drop directory, `state_dir/maildrop/` (Postfix's maildrop; log lines and messages keep
// that name for it, while "maildrop" in the code means the POP3 view of a mailbox, as in RFC
// 1939): where `mailsrv sendmail` leaves mail for the daemon to pick up (pickup.ts), so any
// local user can send whether or not the daemon runs. Anyone may create files there but only
// the daemon can list them. A file is written under a temp name, fsynced, then renamed to its
// final name, so a final name always holds a complete file: one line of JSON with the envelope,
// then the message. The reader treats every file as hostile, since any local user can write one.
// Contract: the directory, the file names and the file format (version 1, strict) are specified
// in docs/formats.md, "Drop directory files"; `mailsrv sendmail` of one version may write what
// the daemon of another reads.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fsyncDir, isErrno, readAt } from '../fsutil.js';
import { isSafeAddress } from '../message/address.js';
import { CrlfLineEnds } from '../message/crlf.js';
import { statePaths } from '../paths.js';
import { isQueueId, newQueueId } from './id.js';

const DROP_FILE_FORMAT_VERSION = 1;
/** Longest envelope line a reader accepts. */
export const MAX_ENVELOPE_LINE = 256 * 1024;
/** Most recipients one drop file may name (their queue envelope must stay well under 1 MiB). */
export const MAX_RECIPIENTS = 1000;

/** sticky, writable and searchable by all, listable by the owner only (like /tmp without read) */
const DIRECTORY_MODE = 0o1733;
/** the daemon's user reads a file through the group or "other" bits (a sender in group mail
 * gets the group's); its random name keeps others out */
const FILE_MODE = 0o644;
const LF = 0x0a;

export interface DropEnvelope {
  /** '' is the null sender */
  sender: string;
  recipients: string[];
}

/** A drop file that can never be queued: its content (or its kind of file) is not acceptable. */
export class DropFileFormatError extends Error {
  /** the file's owner, when known */
  readonly uid: number | undefined;
  constructor(message: string, uid?: number) {
    super(message);
    this.name = 'DropFileFormatError';
    this.uid = uid;
  }
}

/**
 * A final name: a queue id (time-ordered) and 64 random bits, so nobody can guess the name of
 * another user's file. Anything else in the drop directory is a temp file or debris.
 */
export function isDropFileName(name: string): boolean {
  return (
    name.length === 33 && name[16] === '-' && isQueueId(name.slice(0, 16)) && /^[0-9a-f]{16}$/.test(name.slice(17))
  );
}

function newDropFileName(): string {
  return `${newQueueId()}-${randomBytes(8).toString('hex')}`;
}

/** Checks a parsed envelope line strictly; returns just the envelope. */
function checkEnvelope(value: unknown): DropEnvelope {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new DropFileFormatError('the envelope line is not a JSON object');
  const fields = Object.keys(value).sort().join(',');
  if (fields !== 'recipients,sender,v')
    throw new DropFileFormatError(
      `the envelope must have exactly v, sender and recipients (has ${fields.slice(0, 100)})`,
    );
  const { v, sender, recipients } = value as Record<string, unknown>;
  if (v !== DROP_FILE_FORMAT_VERSION) throw new DropFileFormatError(`unsupported format version ${JSON.stringify(v)}`);
  if (typeof sender !== 'string' || (sender !== '' && !isSafeAddress(sender)))
    throw new DropFileFormatError(`bad sender address ${shown(sender)}`);
  if (!Array.isArray(recipients) || recipients.length === 0) throw new DropFileFormatError('no recipients');
  if (recipients.length > MAX_RECIPIENTS)
    throw new DropFileFormatError(`too many recipients (${recipients.length}, at most ${MAX_RECIPIENTS})`);
  for (const recipient of recipients as unknown[]) {
    if (typeof recipient !== 'string' || !isSafeAddress(recipient))
      throw new DropFileFormatError(`bad recipient address ${shown(recipient)}`);
  }
  return { sender, recipients: recipients as string[] };
}

/** A value from an untrusted file, quoted and cut short for an error message. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

/** The first line of a drop file for `envelope` (checked as strictly as a reader will). */
function envelopeLine(envelope: DropEnvelope): Buffer {
  const line = { v: DROP_FILE_FORMAT_VERSION, sender: envelope.sender, recipients: envelope.recipients };
  checkEnvelope(line);
  const bytes = Buffer.from(`${JSON.stringify(line)}\n`, 'utf8');
  if (bytes.length > MAX_ENVELOPE_LINE) throw new DropFileFormatError('the recipient list is too long');
  return bytes;
}

/**
 * Writes one message into the drop directory `dir`: temp file (readable by the daemon's user whatever
 * the umask), envelope line, message, fsync, rename to a final name; then, if this user may
 * (only the owner can open the unlistable directory), an fsync of the directory. On any error,
 * including one from `message`, nothing is left behind. Returns the final name.
 */
export async function writeDropFile(dir: string, envelope: DropEnvelope, message: Readable): Promise<string> {
  const header = envelopeLine(envelope);
  const temp = join(dir, `tmp-${randomBytes(16).toString('hex')}`);
  const name = newDropFileName();
  const file = await open(temp, 'wx', FILE_MODE);
  try {
    try {
      await file.chmod(FILE_MODE);
      await writeFile(file, withHeader(header, message));
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, join(dir, name));
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  try {
    await fsyncDir(dir);
  } catch (err) {
    if (!isErrno(err, 'EACCES')) throw err;
  }
  return name;
}

async function* withHeader(header: Buffer, message: Readable): AsyncGenerator<Buffer> {
  yield header;
  yield* message;
}

/** An open drop file that passed every check; close() it when done. */
export interface DropFile extends DropEnvelope {
  /** the file's owner: who submitted it (the file system says so, not the file) */
  uid: number;
  /** bytes of the message in the file, at most the size limit */
  size: number;
  /** the message, with CRLF line ends (a bare LF, which `mailsrv sendmail` never writes, gets a CR) */
  openMessage(): Readable;
  close(): Promise<void>;
}

/**
 * Opens and checks a drop file: a regular file of its own (not a symbolic link, FIFO or
 * hard link to someone else's file), a valid envelope line, a message of 1 to `sizeLimit`
 * bytes. Throws DropFileFormatError for a file that can never be queued, the file-system error
 * otherwise (ENOENT: it is gone).
 */
export async function openDropFile(path: string, sizeLimit: number): Promise<DropFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, 'ELOOP')) throw new DropFileFormatError('a symbolic link');
    // a socket or device under a drop file name: never a message
    if (isErrno(err, 'ENXIO') || isErrno(err, 'ENODEV') || isErrno(err, 'EISDIR'))
      throw new DropFileFormatError('not a regular file');
    // EACCES and the rest: kept (a file mailsrv cannot read now is not deleted unread), retried
    throw err;
  }
  try {
    const info = await handle.stat();
    const reject = (reason: string) => new DropFileFormatError(reason, info.uid);
    if (!info.isFile()) throw reject('not a regular file');
    if (info.nlink !== 1) throw reject(`a file with ${info.nlink} links`);
    const { envelope, dataOffset } = await readEnvelope(handle).catch((err: unknown) => {
      throw err instanceof DropFileFormatError ? reject(err.message) : err;
    });
    const size = info.size - dataOffset;
    if (size <= 0) throw reject('no message after the envelope line');
    if (size > sizeLimit) throw reject(`message too big (${size} bytes, limit ${sizeLimit})`);
    const opened = handle;
    return {
      ...envelope,
      uid: info.uid,
      size,
      openMessage: () => {
        const source = opened.createReadStream({ start: dataOffset, end: dataOffset + size - 1, autoClose: false });
        const message = new CrlfLineEnds();
        source.on('error', (err) => message.destroy(err));
        return source.pipe(message);
      },
      close: () => opened.close(),
    };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

async function readEnvelope(handle: FileHandle): Promise<{ envelope: DropEnvelope; dataOffset: number }> {
  const buffer = Buffer.alloc(MAX_ENVELOPE_LINE);
  const end = buffer.subarray(0, await readAt(handle, buffer, 0, buffer.length, 0)).indexOf(LF);
  if (end < 0) throw new DropFileFormatError(`no envelope line within the first ${MAX_ENVELOPE_LINE} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(buffer.subarray(0, end)));
  } catch {
    throw new DropFileFormatError('the envelope line is not JSON in UTF-8');
  }
  return { envelope: checkEnvelope(parsed), dataOffset: end + 1 };
}

/**
 * Makes the drop directory usable by every local user; the daemon calls it at start, as root before
 * the privilege drop when started as root (then `owner` is the daemon's user and group, else null).
 * state_dir becomes 0711 (others may pass through, not list; everything else in it keeps 0700),
 * the drop directory is created if missing and gets `owner` and mode 1733. It is opened without following
 * links, so a link planted in its place is refused, never chmod-ed or chown-ed. Returns its path.
 */
export async function prepareDropDir(stateDir: string, owner: { uid: number; gid: number } | null): Promise<string> {
  await chmod(stateDir, 0o711);
  const dir = statePaths(stateDir).dropDir;
  try {
    await mkdir(dir, { mode: DIRECTORY_MODE });
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
  }
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    if (owner !== null) await handle.chown(owner.uid, owner.gid);
    await handle.chmod(DIRECTORY_MODE);
  } finally {
    await handle.close();
  }
  return dir;
}
