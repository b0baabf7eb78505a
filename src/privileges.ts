// Running as root only as long as it takes to bind the ports: started as root, mailsrv
// prepares its directories for the configured `user`/`group`, binds its listeners, then drops
// to that user (setgroups, setgid, setuid, in that order) before it touches any mail, and
// checks that root cannot be regained. It never runs as root past that point.
// Started as another user (systemd's User= with CAP_NET_BIND_SERVICE, or a developer) it
// changes nothing and runs as that user.
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { access, chmod, lchown, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface Identity {
  user: string;
  uid: number;
  group: string;
  gid: number;
}

export class PrivilegeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PrivilegeError';
  }
}

export function startedAsRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The uid and gid of `user` and `group` through the system's name service (getent: files, LDAP, ...). */
export function resolveIdentity(user: string, group: string): Identity {
  const uid = lookup('passwd', user, 'user');
  const gid = lookup('group', group, 'group');
  if (uid === 0)
    throw new PrivilegeError(
      `config key 'user' names ${user} (uid 0): mailsrv does not run as root; use an unprivileged user such as "mail"`,
    );
  if (gid === 0)
    throw new PrivilegeError(
      `config key 'group' names ${group} (gid 0): mailsrv does not keep root's group; ` +
        'use an unprivileged group such as "mail"',
    );
  return { user, uid, group, gid };
}

function lookup(database: 'passwd' | 'group', name: string, key: 'user' | 'group'): number {
  let line: string;
  try {
    line = execFileSync('getent', [database, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    throw new PrivilegeError(`config key '${key}': no such ${key} "${name}" on this system`);
  }
  // passwd: name:x:uid:gid:... ; group: name:x:gid:members
  return Number(line.split(':')[2]);
}

/**
 * Creates the spool and state directories (spool 0770, state and its parts 0700) and, when
 * started as root, gives the state directories to the daemon's user. A spool shared with the
 * Unix accounts (accounts = "system") is made as Debian's /var/mail is: root, the daemon's
 * group, mode 2775, so users reach their mailboxes in it. A spool directory that
 * already existed keeps its owner (/var/mail is root:mail 2775 on Debian) and only has to be
 * writable by the user. Only these named directories are handed over, with lchown: root never
 * walks a tree the daemon's user controls (it could swap a directory for a link to /etc
 * mid-walk and have root chown what it points to).
 */
export async function prepareDirectories(
  dirs: { spool: string; state: string[]; sharedSpool?: boolean },
  identity: Identity | null,
): Promise<void> {
  const shared = dirs.sharedSpool === true && identity !== null;
  const spoolCreated = await makeDirectory(dirs.spool, shared ? 0o2775 : 0o770);
  for (const dir of dirs.state) await makeDirectory(dir, 0o700);
  if (identity === null) return;
  if (spoolCreated) await lchown(dirs.spool, shared ? 0 : identity.uid, identity.gid);
  if (spoolCreated && shared) await chmod(dirs.spool, 0o2775); // chown clears the setgid bit
  for (const dir of dirs.state) await lchown(dir, identity.uid, identity.gid);
}

/** Creates `dir` with `mode` (missing parents 0755, so the daemon's user can get through them); false if it existed. */
async function makeDirectory(dir: string, mode: number): Promise<boolean> {
  await mkdir(dirname(dir), { recursive: true, mode: 0o755 });
  try {
    await mkdir(dir, { mode });
    await chmod(dir, mode); // whatever the umask
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** Becomes `identity` for good; throws (the daemon exits) if anything is left of root. */
export function dropPrivileges(identity: Identity): void {
  process.setgroups!([identity.gid]);
  process.setgid!(identity.gid);
  process.setuid!(identity.uid);
  const ids = [process.getuid!(), process.geteuid!(), process.getgid!(), process.getegid!()];
  if (ids.join() !== [identity.uid, identity.uid, identity.gid, identity.gid].join()) {
    throw new PrivilegeError(`privilege drop incomplete: uid/euid/gid/egid are ${ids.join('/')}`);
  }
  let regained = false;
  try {
    process.setuid!(0);
    regained = true;
  } catch {
    // expected: root is gone
  }
  if (regained) throw new PrivilegeError('privilege drop failed: setuid(0) still works');
}

/** After the drop: the directories the daemon writes must be writable by it. */
export async function checkWritable(dirs: Record<string, string>): Promise<void> {
  for (const [key, dir] of Object.entries(dirs)) {
    try {
      await access(dir, constants.R_OK | constants.W_OK | constants.X_OK);
    } catch {
      throw new PrivilegeError(
        `${key} (${dir}) is not writable by uid ${process.getuid?.()}: give it to the configured user/group`,
      );
    }
  }
}
