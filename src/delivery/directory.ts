// Who receives mail here: the users file and the aliases file, loaded together and
// replaced together on reload (SIGHUP), so a lookup never sees half of a change. postmaster
// always exists (RFC 5321 4.5.1): when no user or alias reaches anyone for it, its mail goes
// to the mailbox of that name, and loading says so.
import { normalizeUsername } from '../auth/username.js';
import { loadUsers, type UserDb } from '../auth/users.js';
import { loadAliases, POSTMASTER, postmasterProblem, resolveRecipient } from './aliases.js';

export class Directory {
  private constructor(
    readonly users: UserDb,
    readonly aliases: Map<string, string[]>,
    private readonly isLocalDomain: (domain: string) => boolean,
  ) {}

  /** Loads both files; the problems are reported by the caller (a bad line is skipped). */
  static async load(
    usersFile: string,
    aliasesFile: string,
    isLocalDomain: (domain: string) => boolean,
  ): Promise<{ directory: Directory; problems: string[] }> {
    const users = await loadUsers(usersFile);
    const aliases = await loadAliases(aliasesFile);
    const postmaster = postmasterProblem(users, aliases.aliases, isLocalDomain);
    return {
      directory: new Directory(users, aliases.aliases, isLocalDomain),
      problems: [...users.problems, ...aliases.problems, ...(postmaster === null ? [] : [postmaster])],
    };
  }

  /** Whether `user` has a mailbox here: every user, and postmaster. */
  hasMailbox(user: string): boolean {
    return user === POSTMASTER || this.users.has(user);
  }

  resolve(localPart: string): { local: string[]; remote: string[] } | null {
    const resolved = resolveRecipient(localPart, this.users, this.aliases, this.isLocalDomain);
    if (resolved === null && normalizeUsername(localPart) === POSTMASTER) return { local: [POSTMASTER], remote: [] };
    return resolved;
  }
}
