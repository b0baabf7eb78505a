// Reads a TOML config file and validates it against the schema. Errors name the key,
// the bad value and what is allowed, one problem a line.
import { readFileSync } from 'node:fs';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = '/etc/mailsrv/mailsrv.toml';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** The config path a command uses: -c, else $MAILSRV_CONFIG, else the default. */
export function configPath(option: string | undefined): string {
  return option ?? process.env.MAILSRV_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new ConfigError([
        `no config file ${path}: write one with \`sudo mailsrv init\`, ` +
          'or name yours with -c FILE or $MAILSRV_CONFIG',
      ]);
    throw new ConfigError([`${path}: cannot read config: ${(err as Error).message}`]);
  }
  return parseConfig(text, path);
}

export function parseConfig(text: string, path = 'config'): Config {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    const where = err instanceof TomlError ? `${path}:${err.line}` : path;
    throw new ConfigError([`${where}: not valid TOML: ${(err as Error).message.split('\n')[0]}`]);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(result.error.issues.map((issue) => describeIssue(issue, raw, path)));
  return result.data;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown, path: string): string {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const names = issue.keys.map((name) => (key ? `${key}.${name}` : name));
    return `${path}: unknown key ${names.map((n) => `'${n}'`).join(', ')}`;
  }
  const value = valueAt(raw, issue.path);
  const got = value === undefined ? '' : ` (got ${JSON.stringify(value)})`;
  return `${path}: key '${key}': ${issue.message.replace(/^Invalid input: /, '')}${got}`;
}

function valueAt(raw: unknown, path: PropertyKey[]): unknown {
  let node = raw;
  for (const part of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}
