// The root helper's worker: the only code that runs as root after the daemon dropped its
// privileges (README, "Using the box's Unix accounts" and "Privileges"). It reads requests from
// stdin, answers on stdout (helper-protocol.ts) and does exactly three things. With
// accounts = "system", each only for a valid login whose account has a uid >= system_min_uid:
// check a password through PAM (authentication, then account management, so a locked or expired
// account is refused), and create a missing mailbox spool_dir/<login> owned by the account, group
// mail, mode 0660. In every mode: read one of the secret files the config named at start (no
// symlinks, at most MAX_SECRET_BYTES). The PAM binding is loaded here only, and only with
// accounts = "system". Any framing error ends the process (the keeper starts a new one).
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fsyncDir } from '../fsutil.js';
import { readSecretNoSymlinks } from '../secret-reader.js';
import {
  type AuthRequest,
  accountRefusal,
  encodeFrame,
  MAX_REQUEST_FRAME,
  readFrames,
  type HelperResponse,
  type HelperScope,
  MAX_ANSWER_FRAME,
  type MailboxRequest,
  requestId,
  validateRequest,
} from './helper-protocol.js';
import { getpwnam } from './system-accounts.js';

export interface HelperSettings extends HelperScope {
  minUid: number;
  pamService: string;
  /** the gid of the daemon's group (mail): mailboxes get it */
  mailGid: number;
}

interface PamBinding {
  pamAuthenticatePromise(options: {
    username: string;
    password: string;
    serviceName: string;
    remoteHost: string;
  }): Promise<number>;
}

/**
 * PAM results that mean "not this password, not now" (a locked account is PAM_AUTH_ERR); the rest
 * are faults of the system (PAM_AUTHINFO_UNAVAIL: the LDAP server is down), answered "try later".
 */
const PAM_REFUSALS = new Set([
  6, // PAM_PERM_DENIED
  7, // PAM_AUTH_ERR
  10, // PAM_USER_UNKNOWN
  11, // PAM_MAXTRIES
  12, // PAM_NEW_AUTHTOK_REQD (the password has expired)
  13, // PAM_ACCT_EXPIRED
  27, // PAM_AUTHTOK_EXPIRED
]);

export function runWorker(settings: HelperSettings): void {
  let pam: PamBinding | null = null;
  try {
    if (settings.accounts) pam = createRequire(import.meta.url)('node-linux-pam') as PamBinding;
  } catch (err) {
    send({ event: 'fatal', detail: `cannot load the PAM binding node-linux-pam: ${(err as Error).message}` });
    process.exitCode = 1;
    return;
  }
  readFrames(
    process.stdin,
    MAX_REQUEST_FRAME,
    (value) => void handle(value, settings, pam).then(send),
    () => process.exit(2),
  );
  process.stdin.on('end', () => process.exit(0));
}

function send(value: unknown): void {
  process.stdout.write(encodeFrame(value, MAX_ANSWER_FRAME));
}

async function handle(value: unknown, settings: HelperSettings, pam: PamBinding | null): Promise<HelperResponse> {
  const request = validateRequest(value, settings);
  const id = requestId(value) ?? -1;
  if (typeof request === 'string') return { id, ok: false, error: 'invalid', detail: request };
  try {
    if (request.op === 'secret') {
      const content = await readSecretNoSymlinks(request.path);
      return { id, ok: true, content: content === null ? null : content.toString('base64') };
    }
    // validateRequest passes account requests only with accounts = "system", when pam is loaded
    return request.op === 'auth' ? await authenticate(request, settings, pam!) : await createMailbox(request, settings);
  } catch (err) {
    return { id, ok: false, error: 'failed', detail: (err as Error).message };
  }
}

async function authenticate(request: AuthRequest, settings: HelperSettings, pam: PamBinding): Promise<HelperResponse> {
  const { id, user, password, rhost } = request;
  if (accountRefusal(await getpwnam(user), settings.minUid) !== null) {
    return { id, ok: false, error: 'denied', checked: false };
  }
  try {
    await pam.pamAuthenticatePromise({ username: user, password, serviceName: settings.pamService, remoteHost: rhost });
    return { id, ok: true };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number' && PAM_REFUSALS.has(code)) return { id, ok: false, error: 'denied', checked: true };
    throw new Error(`PAM service ${settings.pamService}: ${(err as Error).message} (code ${String(code)})`);
  }
}

async function createMailbox(request: MailboxRequest, settings: HelperSettings): Promise<HelperResponse> {
  const { id, user, path } = request;
  const account = await getpwnam(user);
  const refusal = accountRefusal(account, settings.minUid);
  if (account === null || refusal !== null) return { id, ok: false, error: 'invalid', detail: refusal ?? '' };
  let file;
  try {
    // O_EXCL: never follows a link, never touches a file that is already there
    file = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o660);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { id, ok: true };
    throw err;
  }
  try {
    await file.chown(account.uid, settings.mailGid);
    await file.chmod(0o660); // whatever the umask
    await file.sync();
  } finally {
    await file.close();
  }
  await fsyncDir(dirname(path));
  return { id, ok: true };
}
