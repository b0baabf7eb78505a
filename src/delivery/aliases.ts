// The aliases file (README, "Users and aliases") in /etc/aliases syntax, and recipient resolution through it.
//
//   name: target, target      # only whole-line comments; names are matched case-insensitively
//     target                  # a line starting with whitespace continues the previous entry
//
// Targets: a local name (a user or another alias), `\name` (the user itself, never expanded
// as an alias, the sendmail idiom for "keep a copy"), or a remote address `local@domain`
// (the local part may be quoted). `|command`, `:include:file` and `/file` targets are not
// supported: they are dropped with a problem reported. Expansion follows Postfix: recursive,
// each alias expanded once, and a name met again inside its own expansion is delivered to
// the user of that name (if there is one) instead of being expanded again.
import { readFile } from 'node:fs/promises';
import { normalizeUsername } from '../auth/username.js';
import { splitAddress } from '../message/address.js';

export type Aliases = Map<string, string[]>;

/** The user-name view resolution needs; UserDb from auth/users.ts fits. */
export interface UserLookup {
  has(name: string): boolean;
}

export interface Resolution {
  /** Normalized local user names, without duplicates. */
  local: string[];
  /** Remote addresses (domain lowercased), without duplicates. */
  remote: string[];
}

/** Expansion stops this many aliases deep: a chain this long is a mistake, not a design. */
const MAX_ALIAS_DEPTH = 20;

/** An address `local@domain`, the local part a dot-atom-ish word or a quoted string. */
const ADDRESS = /^(?<local>"(?:[^"\\\r\n]|\\.)*"|[^\s"@,:<>()[\]\\]+)@(?<domain>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)$/i;

/** Splits on commas outside double quotes. */
function splitTargets(text: string): string[] {
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && quoted && i + 1 < text.length) {
      current += c + text[++i]!;
    } else if (c === '"') {
      quoted = !quoted;
      current += c;
    } else if (c === ',' && !quoted) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts.map((part) => part.trim()).filter((part) => part !== '');
}

/** The stored form of one target, or a problem saying why it is dropped. */
function parseTarget(target: string): { target: string } | { problem: string } {
  const bare = target.startsWith('"') && target.endsWith('"') && !target.includes('@') ? target.slice(1, -1) : target;
  if (bare.startsWith('|')) return { problem: `command target ${JSON.stringify(target)} is not supported` };
  if (bare.toLowerCase().startsWith(':include:'))
    return { problem: `${JSON.stringify(target)}: :include: is not supported` };
  if (bare.startsWith('/')) return { problem: `file target ${JSON.stringify(target)} is not supported` };
  const address = ADDRESS.exec(target);
  if (address) return { target: `${address.groups!.local}@${address.groups!.domain!.toLowerCase()}` };
  const keep = bare.startsWith('\\');
  const name = normalizeUsername(keep ? bare.slice(1) : bare);
  if (name === null) return { problem: `bad target ${JSON.stringify(target)} (not a user name or local@domain)` };
  return { target: keep ? `\\${name}` : name };
}

/** Parses an aliases file. Names are lowercased; problems are `file:line: message`. */
export function parseAliases(text: string, fileName: string): { aliases: Aliases; problems: string[] } {
  const aliases: Aliases = new Map();
  const problems: string[] = [];
  // One entry: its name and where its targets are, line by line (for problem line numbers).
  let entry: { name: string | null; line: number; targets: string[] } | null = null;

  const finish = () => {
    if (entry === null || entry.name === null) return;
    if (entry.targets.length === 0) {
      problems.push(`${fileName}:${entry.line}: alias "${entry.name}" has no usable target; ignored`);
    } else {
      aliases.set(entry.name, [...new Set(entry.targets)]);
    }
  };
  const addTargets = (list: string, line: number) => {
    for (const raw of splitTargets(list)) {
      const parsed = parseTarget(raw);
      if ('problem' in parsed) problems.push(`${fileName}:${line}: ${parsed.problem}; target ignored`);
      else entry!.targets.push(parsed.target);
    }
  };

  text.split('\n').forEach((rawLine, index) => {
    const lineNo = index + 1;
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    if (/^\s/.test(line)) {
      if (entry === null) problems.push(`${fileName}:${lineNo}: continuation line without an alias before it; ignored`);
      else if (entry.name !== null) addTargets(line, lineNo);
      return;
    }
    finish();
    const colon = line.indexOf(':');
    if (colon < 0) {
      problems.push(`${fileName}:${lineNo}: expected "name: target, target"; line ignored`);
      entry = { name: null, line: lineNo, targets: [] };
      return;
    }
    const written = line
      .slice(0, colon)
      .trim()
      .replace(/^"(.*)"$/, '$1');
    const name = normalizeUsername(written);
    if (name === null) {
      problems.push(`${fileName}:${lineNo}: bad alias name ${JSON.stringify(written)}; entry ignored`);
    } else if (aliases.has(name)) {
      problems.push(`${fileName}:${lineNo}: duplicate alias "${name}"; the first entry is used`);
    }
    // A rejected entry still swallows its continuation lines, so they are not misread.
    entry = { name: name === null || aliases.has(name) ? null : name, line: lineNo, targets: [] };
    if (entry.name !== null) addTargets(line.slice(colon + 1), lineNo);
  });
  finish();
  return { aliases, problems };
}

/** Reads and parses an aliases file; a missing file has no aliases. Throws when it cannot be read. */
export async function loadAliases(path: string): Promise<{ aliases: Aliases; problems: string[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { aliases: new Map(), problems: [] };
    throw new Error(`cannot read aliases file ${path}: ${(err as Error).message}`);
  }
  return parseAliases(text, path);
}

/**
 * Where mail for `localPart` (of a local domain) goes: the local users and remote addresses
 * its alias expansion reaches, or the user itself. Null when the name is neither a user nor
 * an alias, or when its expansion reaches no one (a loop without a user in it). `postmaster`
 * (RFC 5321 4.5.1), when neither a user nor an alias, resolves as `root` does.
 */
export function resolveRecipient(
  localPart: string,
  users: UserLookup,
  aliases: Aliases,
  localDomains: (domain: string) => boolean,
): Resolution | null {
  let name = normalizeUsername(localPart);
  if (name === null) return null;
  if (name === 'postmaster' && !users.has(name) && !aliases.has(name)) name = 'root';
  if (!aliases.has(name)) return users.has(name) ? { local: [name], remote: [] } : null;

  const local = new Set<string>();
  const remote = new Set<string>();
  const expanded = new Set<string>(); // aliases already expanded once
  const open = new Set<string>(); // aliases being expanded (the current chain)

  const deliverToUser = (user: string) => {
    if (users.has(user)) local.add(user);
  };
  const visit = (target: string, depth: number): void => {
    if (target.startsWith('\\')) {
      deliverToUser(target.slice(1));
      return;
    }
    if (target.includes('@')) {
      const user = localNameOf(target, localDomains);
      if (user === undefined) remote.add(target);
      else if (user !== null) visit(user, depth);
      return;
    }
    const targets = aliases.get(target);
    if (targets === undefined || open.has(target) || depth >= MAX_ALIAS_DEPTH) {
      deliverToUser(target);
      return;
    }
    if (expanded.has(target)) return; // its whole expansion is already collected
    expanded.add(target);
    open.add(target);
    for (const next of targets) visit(next, depth + 1);
    open.delete(target);
  };
  visit(name, 0);

  if (local.size === 0 && remote.size === 0) return null;
  return { local: [...local], remote: [...remote] };
}

/**
 * Problems a whole users + aliases pair has, for `mailsrv check`, each named once at its cause:
 * an alias target naming neither a user nor an alias (with the aliases that therefore reach no
 * one), aliases that reach no one only through each other (a loop), postmaster reaching no one.
 */
export function checkAliases(
  users: UserLookup,
  aliases: Aliases,
  localDomains: (domain: string) => boolean = () => false,
): string[] {
  const unknown: { alias: string; target: string; name: string }[] = [];
  for (const [name, targets] of aliases) {
    for (const target of targets) {
      const local = localNameOf(target, localDomains);
      if (local === undefined) continue;
      const known = local !== null && (users.has(local) || (!target.startsWith('\\') && aliases.has(local)));
      if (!known) unknown.push({ alias: name, target, name: local ?? target });
    }
  }
  const reachingNoOne = [...aliases.keys()].filter(
    (name) => resolveRecipient(name, users, aliases, localDomains) === null,
  );
  const problems: string[] = [];
  const explained = new Set<string>();
  for (const { alias, target, name } of unknown) {
    const stranded = reachingNoOne.filter((name) => aliasesExpandedFrom(name, aliases, localDomains).has(alias));
    for (const name of stranded) explained.add(name);
    const userOnly = target.startsWith('\\');
    problems.push(
      `alias "${alias}": target "${target}" is not a known user${userOnly ? '' : ' or alias'}` +
        (stranded.length === 0 ? '' : `, so ${stranded.join(', ')} reach${stranded.length === 1 ? 'es' : ''} no user`) +
        (stranded.includes(POSTMASTER) ? ` (postmaster's mail goes to the mailbox spool_dir/postmaster)` : '') +
        `: add the user "${name}"${userOnly ? '' : ` or a line "${name}: USER" to the aliases`}`,
    );
  }
  for (const name of reachingNoOne) {
    if (!explained.has(name)) problems.push(`alias "${name}" reaches no user or address: an alias loop`);
  }
  const postmaster = postmasterProblem(users, aliases, localDomains);
  if (postmaster !== null && !explained.has(POSTMASTER)) problems.unshift(postmaster);
  return problems;
}

/** The aliases whose expansion the expansion of `name` goes through, `name` included. */
function aliasesExpandedFrom(name: string, aliases: Aliases, localDomains: (domain: string) => boolean): Set<string> {
  const seen = new Set<string>();
  const pending = [name];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (seen.has(next) || !aliases.has(next)) continue;
    seen.add(next);
    for (const target of aliases.get(next)!) {
      if (target.startsWith('\\')) continue;
      const local = localNameOf(target, localDomains);
      if (local !== undefined && local !== null) pending.push(local);
    }
  }
  return seen;
}

/** RFC 5321 4.5.1: mail to postmaster is always accepted, reaching someone or not. */
export const POSTMASTER = 'postmaster';

/**
 * The warning when postmaster reaches no user through the users and aliases files (its mail
 * then goes to the mailbox `spool_dir/postmaster`, see Directory), or null.
 */
export function postmasterProblem(
  users: UserLookup,
  aliases: Aliases,
  localDomains: (domain: string) => boolean,
): string | null {
  if (resolveRecipient(POSTMASTER, users, aliases, localDomains) !== null) return null;
  return (
    'postmaster does not resolve to any user, so its mail goes to the mailbox spool_dir/postmaster: ' +
    'add a "postmaster: USER" alias (or "root: USER")'
  );
}

/** The local name a target names: null for a local address with a bad name, undefined for a remote one. */
function localNameOf(target: string, localDomains: (domain: string) => boolean): string | null | undefined {
  if (target.startsWith('\\')) return target.slice(1);
  const parts = splitAddress(target);
  if (parts === null) return target;
  if (!localDomains(parts.domain)) return undefined;
  return normalizeUsername(parts.localPart.replace(/^"(.*)"$/, '$1'));
}
