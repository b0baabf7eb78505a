// `mailsrv check` with accounts = "system" (README, "Using the box's Unix accounts"): the aliases
// against the box's accounts, the PAM service file and binding, and every mailbox in spool_dir
// that belongs to a mail account but that the daemon could not take (another owner, a mode that
// shuts out group mail, e.g. 0600 left by another MDA): each is named with the command that fixes
// it. It only reads: deliveries to such a mailbox wait in the queue until it is fixed.
import type { Stats } from 'node:fs';
import { lstat, opendir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PAM_SERVICE_DIR } from '../accounts/pam-service.js';
import { SystemAccounts } from '../accounts/system-accounts.js';
import { normalizeUsername } from '../auth/username.js';
import { localDomainMatcher } from '../config/domains.js';
import type { Config } from '../config/schema.js';
import { checkAliases, type Aliases } from '../delivery/aliases.js';
import { systemUsers, withUserSource } from '../delivery/directory.js';
import { accountOwner, checkMailboxFile, UntrustedMailboxError } from '../mbox/trust.js';
import { type Identity, startedAsRoot } from '../privileges.js';

interface Findings {
  errors: string[];
  warnings: string[];
}

export async function checkSystemAccounts(
  config: Config,
  aliases: Aliases,
  identity: Identity | null,
  findings: Findings,
): Promise<void> {
  const accounts = new SystemAccounts({ minUid: config.system_min_uid });
  const problems = await withUserSource(systemUsers(accounts), (users) =>
    checkAliases(users, aliases, localDomainMatcher(config)),
  );
  findings.errors.push(...problems.map((problem) => `${config.aliases_file}: ${problem}`));
  await checkPam(config, findings);
  if (!startedAsRoot()) {
    findings.warnings.push(
      'accounts = "system": mailsrv must be started as root (its helper keeps root to check passwords and ' +
        'create mailboxes); run `mailsrv check` as root to check the mailboxes too',
    );
  }
  if (identity !== null) await checkMailboxes(config, accounts, identity, findings);
}

async function checkPam(config: Config, findings: Findings): Promise<void> {
  const file = join(PAM_SERVICE_DIR, config.pam_service);
  try {
    await stat(file);
  } catch {
    findings.errors.push(
      `key 'pam_service': ${file} does not exist (PAM would use /etc/pam.d/other): ` +
        '`mailsrv init --accounts system` writes one using pam_unix',
    );
  }
  try {
    createRequire(import.meta.url)('node-linux-pam');
  } catch (err) {
    findings.errors.push(
      `accounts = "system": the PAM binding node-linux-pam cannot be loaded (${(err as Error).message}): ` +
        'install libpam0g-dev, then `npm rebuild node-linux-pam`',
    );
  }
}

/** Every mailbox of a mail account in spool_dir the daemon could not append to or serve, with its fix. */
async function checkMailboxes(
  config: Config,
  accounts: SystemAccounts,
  identity: Identity,
  findings: Findings,
): Promise<void> {
  let dir;
  try {
    dir = await opendir(config.spool_dir);
  } catch {
    return; // checkDirectory reports a missing or unusable spool_dir
  }
  for await (const entry of dir) {
    const login = entry.name;
    if (normalizeUsername(login) !== login || login.endsWith('.lock')) continue;
    const account = await accounts.find(login).catch(() => null);
    if (account === null) continue;
    const path = join(config.spool_dir, login);
    const st = await lstat(path).catch(() => null);
    if (st === null) continue;
    const problem = mailboxProblem(path, st, account.uid, identity);
    if (problem === null) continue;
    findings.errors.push(
      `mailbox ${path}: ${problem}; mail for ${login} waits in the queue until it is fixed: ` +
        `chown ${login}:${identity.group} ${path} && chmod 0660 ${path}`,
    );
  }
}

function mailboxProblem(path: string, st: Stats, uid: number, identity: Identity): string | null {
  if (!st.isFile()) return 'not a regular file';
  try {
    checkMailboxFile(path, st, accountOwner(uid));
  } catch (err) {
    if (err instanceof UntrustedMailboxError) return err.reason;
    throw err;
  }
  const mode = `0${(st.mode & 0o777).toString(8)}`;
  const shift = st.uid === identity.uid ? 6 : st.gid === identity.gid ? 3 : 0;
  if (((st.mode >> shift) & 0o6) !== 0o6)
    return `user ${identity.user}/group ${identity.group} cannot read and write it (mode ${mode})`;
  return null;
}
