// Who receives mail here: the users (the users file, or the box's Unix accounts when
// accounts = "system") and the aliases file, loaded together and replaced together on reload
// (SIGHUP), so a lookup never sees half of a change. postmaster always exists (RFC 5321
// 4.5.1): when no user or alias reaches anyone for it, its mail goes to the mailbox of that
// name, and loading says so.
//
// Unix accounts are looked up as names come up (system-accounts.ts); the alias rules in
// aliases.ts stay synchronous: they run against what is known, every name they asked about that
// is not known yet is looked up, and they run again until they asked about nothing new.
import type { SystemAccounts } from '../accounts/system-accounts.js';
import { normalizeUsername } from '../auth/username.js';
import { loadUsers, type UserDb } from '../auth/users.js';
import type { SecretReader } from '../secret-reader.js';
import { loadAliases, POSTMASTER, postmasterProblem, resolveRecipient, type UserLookup } from './aliases.js';

/** Where the users come from: every answer known at once (users file), or looked up (system). */
export interface UserSource {
  /** whether `name` is a user; undefined: it has to be looked up first */
  known(name: string): boolean | undefined;
  /** looks the names up; rejects when the system cannot say */
  lookUp(name: string): Promise<boolean>;
}

/** The users file as a source: every name is known. */
export function fileUsers(users: UserDb): UserSource {
  return { known: (name) => users.has(name), lookUp: async (name) => users.has(name) };
}

/** The box's accounts (uid >= system_min_uid) as a source. */
export function systemUsers(accounts: SystemAccounts): UserSource {
  return {
    known: (name) => {
      const account = accounts.known(name);
      return account === undefined ? undefined : account !== null;
    },
    lookUp: async (name) => (await accounts.find(name)) !== null,
  };
}

/** A users file with nobody in it (accounts = "system" reads none). */
const NO_USERS: UserDb = { has: () => false, hashOf: () => undefined, names: () => [], problems: [] };

export class Directory {
  private constructor(
    /** the users file (empty when accounts = "system") */
    readonly users: UserDb,
    private readonly source: UserSource,
    readonly aliases: Map<string, string[]>,
    private readonly isLocalDomain: (domain: string) => boolean,
  ) {}

  /**
   * Loads the users file (through `readSecret`, or directly) or takes the system's accounts, and
   * the aliases file; the problems are reported by the caller (a bad line is skipped).
   */
  static async load(
    files: { usersFile: string; aliasesFile: string },
    isLocalDomain: (domain: string) => boolean,
    accounts: SystemAccounts | null = null,
    readSecret?: SecretReader,
  ): Promise<{ directory: Directory; problems: string[] }> {
    const users = accounts === null ? await loadUsers(files.usersFile, readSecret) : NO_USERS;
    const source = accounts === null ? fileUsers(users) : systemUsers(accounts);
    const aliases = await loadAliases(files.aliasesFile);
    const directory = new Directory(users, source, aliases.aliases, isLocalDomain);
    const postmaster = await directory.withUsers((lookup) => postmasterProblem(lookup, aliases.aliases, isLocalDomain));
    return {
      directory,
      problems: [...users.problems, ...aliases.problems, ...(postmaster === null ? [] : [postmaster])],
    };
  }

  /** Whether `user` has a mailbox here: every user, and postmaster. */
  async hasMailbox(user: string): Promise<boolean> {
    if (user === POSTMASTER) return true;
    return this.source.known(user) ?? (await this.source.lookUp(user));
  }

  async resolve(localPart: string): Promise<{ local: string[]; remote: string[] } | null> {
    const resolved = await this.withUsers((lookup) =>
      resolveRecipient(localPart, lookup, this.aliases, this.isLocalDomain),
    );
    if (resolved === null && normalizeUsername(localPart) === POSTMASTER) return { local: [POSTMASTER], remote: [] };
    return resolved;
  }

  /**
   * Runs a synchronous rule over the users: again after looking up the names it asked about that
   * were not known, until it asks about nothing new (each round learns a name, so it ends).
   */
  withUsers<T>(rule: (users: UserLookup) => T): Promise<T> {
    return withUserSource(this.source, rule);
  }
}

/** Directory.withUsers for any source (`mailsrv check` runs the alias checks this way). */
export async function withUserSource<T>(source: UserSource, rule: (users: UserLookup) => T): Promise<T> {
  // made only once a name is not known at once (most rules run once, over known names)
  let learnt: Map<string, boolean> | undefined;
  for (;;) {
    let unknown: Set<string> | undefined;
    const result = rule({
      has: (name) => {
        const answer = learnt?.get(name) ?? source.known(name);
        if (answer === undefined) {
          unknown ??= new Set();
          unknown.add(name);
        }
        return answer ?? false;
      },
    });
    if (unknown === undefined) return result;
    learnt ??= new Map();
    const names = [...unknown];
    const answers = await Promise.all(names.map((name) => source.lookUp(name)));
    for (const [i, name] of names.entries()) learnt.set(name, answers[i]!);
  }
}
