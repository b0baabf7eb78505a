// Who receives mail here: the users file and the aliases file, loaded together and
// replaced together on reload (SIGHUP), so a lookup never sees half of a change.
import { loadUsers, type UserDb } from '../auth/users.js';
import { loadAliases, resolveRecipient } from './aliases.js';

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
    return {
      directory: new Directory(users, aliases.aliases, isLocalDomain),
      problems: [...users.problems, ...aliases.problems],
    };
  }

  resolve(localPart: string): { local: string[]; remote: string[] } | null {
    return resolveRecipient(localPart, this.users, this.aliases, this.isLocalDomain);
  }
}
