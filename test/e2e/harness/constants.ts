// What every part of the e2e harness agrees on: where the checkout and the built daemon are,
// the test host name, domain and password, and whether tests run as root (then every daemon
// drops to `nobody`, and this process creates its files world-usable: umask 0).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI_ENTRY = join(REPO_ROOT, 'dist', 'cli', 'main.js');
export const MAILSRV_BIN = join(REPO_ROOT, 'bin', 'mailsrv');
export const PYTHON = '/usr/bin/python3';
export const HOSTNAME = 'mx.test.local';
export const DOMAIN = 'example.test';
export const PASSWORD = 'secret-pw';

/**
 * Run as root (CI), every daemon drops to `nobody` as a real installation drops to `mail`; the
 * files tests create for it (mailboxes, locks, certificates) must then be usable by that user, so
 * this process creates them world-readable and -writable. A test never needs that as another user.
 */
export const RUN_AS_ROOT = process.getuid?.() === 0;
export const DAEMON_USER = RUN_AS_ROOT ? { user: 'nobody', group: 'nogroup' } : null;
if (RUN_AS_ROOT) process.umask(0);

/**
 * Why a test cannot run mailsrv as the unprivileged user `uid` (root only), or null if it can:
 * a checkout below a directory only root may enter (`mktemp -d`) keeps everyone else out of
 * bin/ and dist/.
 */
export function cannotRunAs(uid: number, gid: number): string | null {
  if (!RUN_AS_ROOT) return 'needs root to run as another user';
  const probe = spawnSync('test', ['-r', join(REPO_ROOT, 'dist', 'cli', 'main.js')], { uid, gid });
  return probe.status === 0
    ? null
    : `uid ${uid} cannot read this checkout (${REPO_ROOT}): it lies below a directory only root may enter`;
}

/** Throws a clear error when the daemon has not been built. */
export function requireBuild(): void {
  if (!existsSync(CLI_ENTRY)) {
    throw new Error(`${CLI_ENTRY} is missing: run \`npm run build\` before the e2e tests`);
  }
}
