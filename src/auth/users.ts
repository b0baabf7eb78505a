// The users file (README, "Users and aliases"), Dovecot passwd-file style: one user a line, `name:{SCHEME}hash`,
// optionally followed by more `:`-separated fields (ignored here, kept on rewrite); `#` comments
// and blank lines. Reading it for the daemon and `mailsrv check`, and the read-modify-write
// edits behind `mailsrv user add/passwd/del`, which keep every other line as it was and
// replace the file atomically (temp file, fsync, rename, fsync of the directory), mode 0600,
// each under the file's dotlock (`<file>.lock`) so that two edits at once both land.
//
// A user whose hash is missing or of an unsupported scheme is reported as a problem but still
// exists (mail for it is delivered; it cannot log in), so a typo in a hash bounces no mail.
// Duplicate names: the first line counts, as in Dovecot.
import { randomBytes } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { acquireDotlock } from '../mbox/lock.js';
import { readSecretDirectly, type SecretReader } from '../secret-reader.js';
import { hashPassword, isSupportedScheme, schemeOf } from './password.js';
import { normalizeUsername, USERNAME_MAX_LENGTH } from './username.js';

/** The users of one users file; every lookup is case-insensitive. */
export interface UserDb {
  has(name: string): boolean;
  /** The stored `{SCHEME}hash` of a user, or undefined when there is no such user. */
  hashOf(name: string): string | undefined;
  /** Every user name (lowercased), in file order. */
  names(): string[];
  /** What was wrong in the file, as `file:line: message`. */
  readonly problems: string[];
}

/** A users-file edit that cannot be done (bad name, user exists, no such user, ...). */
export class UsersFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsersFileError';
  }
}

const NAME_RULE =
  `user names are 1 to ${USERNAME_MAX_LENGTH} letters, ` +
  "digits, '.', '_' or '-', " +
  'starting with a letter or digit';

/** One line split into its fields: the name before the first `:`, the hash, the rest. */
interface UserLine {
  name: string;
  hash: string;
  /** Everything after the hash field, starting with its `:` (or empty). */
  extra: string;
}

/** The fields of a user line, or null for a comment or blank line. A line without `:` has hash ''. */
function splitUserLine(line: string): UserLine | null {
  if (line.trim() === '' || line.trimStart().startsWith('#')) return null;
  const colon = line.indexOf(':');
  if (colon < 0) return { name: line.trim(), hash: '', extra: '' };
  const rest = line.slice(colon + 1);
  const end = rest.indexOf(':');
  return {
    name: line.slice(0, colon).trim(),
    hash: (end < 0 ? rest : rest.slice(0, end)).trim(),
    extra: end < 0 ? '' : rest.slice(end),
  };
}

/** Lines of a text without their end-of-line (LF or CRLF), and without the empty piece after a final newline. */
function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

export function parseUsersFile(text: string, fileName: string): { users: Map<string, string>; problems: string[] } {
  const users = new Map<string, string>();
  const problems: string[] = [];
  splitLines(text).forEach((line, index) => {
    const fields = splitUserLine(line);
    if (fields === null) return;
    const where = `${fileName}:${index + 1}`;
    const name = normalizeUsername(fields.name);
    if (name === null) {
      problems.push(`${where}: bad user name ${JSON.stringify(fields.name)} (${NAME_RULE}); line ignored`);
      return;
    }
    if (users.has(name)) {
      problems.push(`${where}: duplicate user "${name}"; the first entry is used`);
      return;
    }
    users.set(name, fields.hash);
    if (fields.hash === '') {
      problems.push(`${where}: user "${name}" has no password hash (expected name:{SCHEME}hash); it cannot log in`);
      return;
    }
    const scheme = schemeOf(fields.hash);
    if (scheme === null) {
      problems.push(`${where}: password hash of user "${name}" has no {SCHEME} prefix; it cannot log in`);
    } else if (!isSupportedScheme(scheme)) {
      problems.push(
        `${where}: user "${name}" has unknown password scheme {${scheme}} ` +
          `(supported: {ARGON2ID}, {ARGON2I}, {BLF-CRYPT}, {SHA512-CRYPT}); it cannot log in`,
      );
    }
  });
  return { users, problems };
}

/** The text of the users file, or null when it does not exist. */
async function readUsersText(path: string, read: SecretReader = readSecretDirectly): Promise<string | null> {
  try {
    return (await read(path))?.toString('utf8') ?? null;
  } catch (err) {
    throw new UsersFileError(`cannot read users file ${path}: ${(err as Error).message}`);
  }
}

/**
 * Reads the users file (through `read`: the root helper on SIGHUP); a missing file is an empty one.
 * Throws UsersFileError when it cannot be read.
 */
export async function loadUsers(path: string, read?: SecretReader): Promise<UserDb> {
  const { users, problems } = parseUsersFile((await readUsersText(path, read)) ?? '', path);
  const lookup = (name: string) => {
    const normalized = normalizeUsername(name);
    return normalized === null ? undefined : users.get(normalized);
  };
  return {
    has: (name) => lookup(name) !== undefined,
    hashOf: lookup,
    names: () => [...users.keys()],
    problems,
  };
}

function requireName(name: string): string {
  const normalized = normalizeUsername(name);
  if (normalized === null) throw new UsersFileError(`bad user name ${JSON.stringify(name)}: ${NAME_RULE}`);
  return normalized;
}

async function requireHash(plain: string): Promise<string> {
  if (plain === '') throw new UsersFileError('empty password refused');
  return hashPassword(plain);
}

/** Index of the lines that belong to user `name` (already normalized). */
function linesOf(lines: string[], name: string): number[] {
  return lines.flatMap((line, index) => {
    const fields = splitUserLine(line);
    return fields !== null && normalizeUsername(fields.name) === name ? [index] : [];
  });
}

/** How long an edit waits for another one (`mailsrv user` run twice at once) to finish. */
const EDIT_LOCK_TIMEOUT_MS = 30_000;

/**
 * One read-modify-write of the users file under its dotlock: `edit` gets the lines as they are
 * now (none when there is no file yet, then `exists` is false) and returns the new ones.
 */
async function editUsersFile(path: string, edit: (lines: string[], exists: boolean) => string[]): Promise<void> {
  let lock;
  try {
    lock = await acquireDotlock(path, { timeoutMs: EDIT_LOCK_TIMEOUT_MS });
  } catch (err) {
    throw new UsersFileError(`cannot lock users file ${path}: ${(err as Error).message}`);
  }
  try {
    const text = await readUsersText(path);
    await writeAtomically(path, edit(splitLines(text ?? ''), text !== null), text !== null);
  } finally {
    await lock.release();
  }
}

/** Adds a user with a new {ARGON2ID} password; creates the file when missing. Returns the normalized name. */
export async function addUser(path: string, name: string, plain: string): Promise<string> {
  const user = requireName(name);
  const hash = await requireHash(plain);
  await editUsersFile(path, (lines) => {
    if (linesOf(lines, user).length > 0) throw new UsersFileError(`user "${user}" already exists in ${path}`);
    return [...lines, `${user}:${hash}`];
  });
  return user;
}

/** Replaces a user's password hash, keeping the line's other fields. Returns the normalized name. */
export async function setPassword(path: string, name: string, plain: string): Promise<string> {
  const user = requireName(name);
  const hash = await requireHash(plain);
  await editUsersFile(path, (lines, exists) => {
    // With duplicate lines, the first is the one in force (see parseUsersFile).
    const index = linesOf(lines, user)[0];
    if (!exists || index === undefined) throw new UsersFileError(`no such user "${user}" in ${path}`);
    const fields = splitUserLine(lines[index]!)!;
    return lines.map((line, i) => (i === index ? `${fields.name}:${hash}${fields.extra}` : line));
  });
  return user;
}

/** Removes a user (every line of it, when duplicated). Returns the normalized name. */
export async function deleteUser(path: string, name: string): Promise<string> {
  const user = requireName(name);
  await editUsersFile(path, (lines, exists) => {
    const doomed = new Set(linesOf(lines, user));
    if (!exists || doomed.size === 0) throw new UsersFileError(`no such user "${user}" in ${path}`);
    return lines.filter((_, index) => !doomed.has(index));
  });
  return user;
}

/**
 * Replaces `path` with `lines` so that a crash leaves either the old or the new file: write
 * a temp file in the same directory, fsync it, rename it over, fsync the directory. A new
 * file is mode 0600; a replacement keeps the old file's owner, group and mode, less any
 * permission for others (`mailsrv init` run as root makes it root:root 0600, which the root
 * helper reads on SIGHUP; a daemon not started as root reads it as its own user).
 */
async function writeAtomically(path: string, lines: string[], replacing: boolean): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const owner = replacing ? await stat(path) : null;
  try {
    const file = await open(temp, 'wx', 0o600);
    try {
      await file.chmod(owner === null ? 0o600 : owner.mode & 0o770); // whatever the umask
      if (owner !== null) await file.chown(owner.uid, owner.gid);
      await file.writeFile(lines.map((line) => `${line}\n`).join(''), 'utf8');
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw new UsersFileError(`cannot write users file ${path}: ${(err as Error).message}`);
  }
  try {
    const directory = await open(dir, 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  } catch (err) {
    throw new UsersFileError(`users file ${path} was replaced, but syncing ${dir} failed: ${(err as Error).message}`);
  }
}
