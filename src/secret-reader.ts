// How the daemon reads the secret files it loads again on SIGHUP (the users file, the TLS
// certificate and key, the DKIM keys, the relayhost password; README, "Privileges"): a
// SecretReader. Started as root, the reader asks the root helper, which reads the files the
// config named at start (root-only files stay root-only; one it refuses is read directly);
// else it reads them directly.
// Both refuse a file larger than MAX_SECRET_BYTES.
import { constants } from 'node:fs';
import { open, readlink } from 'node:fs/promises';
import { isErrno } from './fsutil.js';

/** The most a secret file may hold (a users file of a few thousand users, a long certificate chain). */
export const MAX_SECRET_BYTES = 1024 * 1024;

/** The bytes of a secret file; null when it does not exist. Rejects when it cannot be read. */
export type SecretReader = (path: string) => Promise<Buffer | null>;

/** Reads `path` as this process may (symlinks followed, as for any config file). */
export const readSecretDirectly: SecretReader = (path) => readBounded(path, false);

/**
 * Reads `path` refusing symlinks anywhere on the way (the root helper: a name it may read must
 * not lead elsewhere): the final name is opened with O_NOFOLLOW, and the opened file's own
 * name (/proc/self/fd) must be `path` itself, so a symlinked directory is refused too.
 */
export const readSecretNoSymlinks: SecretReader = (path) => readBounded(path, true);

async function readBounded(path: string, noSymlinks: boolean): Promise<Buffer | null> {
  let file;
  try {
    const flags = constants.O_RDONLY | constants.O_NONBLOCK | (noSymlinks ? constants.O_NOFOLLOW : 0);
    file = await open(path, flags);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    if (isErrno(err, 'ELOOP')) throw new Error(`${path} is a symlink: name the file itself`);
    throw err;
  }
  try {
    if (noSymlinks) {
      const opened = await readlink(`/proc/self/fd/${file.fd}`);
      if (opened !== path) throw new Error(`${path} leads to ${opened} through a symlink: name the file itself`);
    }
    const info = await file.stat();
    if (!info.isFile()) throw new Error(`${path} is not a regular file`);
    if (info.size > MAX_SECRET_BYTES) throw new Error(`${path} is larger than ${MAX_SECRET_BYTES} bytes`);
    // one byte more than stat said: a file that grew meanwhile is refused, not cut short
    const buffer = Buffer.alloc(info.size + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) throw new Error(`${path} changed while it was read; try again`);
    }
    return buffer.subarray(0, length);
  } finally {
    await file.close();
  }
}
