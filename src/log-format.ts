// The log formats besides pino's JSON (README "Logs"): `mailsrv start --log-format pretty` for
// a person at a terminal, `logfmt` for tools that read key=value lines. Each JSON line pino
// writes is turned into one line of the chosen format; JSON lines never come through here.

export const LOG_FORMATS = ['json', 'pretty', 'logfmt'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export type TextLogFormat = Exclude<LogFormat, 'json'>;

type Entry = Record<string, unknown>;

/** The fields every line starts with (in this order), not repeated among the others. */
const LEADING = new Set(['time', 'level', 'msg']);
/** the pretty format leaves out `service` too: it is always mailsrv */
const NOT_PRETTY = new Set([...LEADING, 'service']);
/** a logfmt value is written bare only without these: space, `=`, `"`, `\` and control characters */
const NEEDS_QUOTES = /[\s="\\\u0000-\u001f\u007f]/;
/** what a logfmt key may not contain: they become `_` */
const NOT_IN_KEY = /[\s="\\\u0000-\u001f\u007f]/g;

/**
 * A logfmt value: bare when it can be, else in double quotes with `"`, `\` and control
 * characters escaped (`\"`, `\\`, `\n`, `\u0001`); an empty value is `""`.
 */
export function logfmtValue(value: string): string {
  return value !== '' && !NEEDS_QUOTES.test(value) ? value : JSON.stringify(value);
}

/** A value as text: a string as it is, a list comma-separated, anything else as JSON. */
function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(text).join(',');
  return JSON.stringify(value);
}

/** The `key=value` pairs of `value`: nested objects as dotted keys (`tls.validTo=...`). */
function pairs(key: string, value: unknown, out: string[]): void {
  if (value === undefined) return;
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
    for (const [name, inner] of Object.entries(value)) pairs(`${key}.${name}`, inner, out);
    return;
  }
  out.push(`${key.replace(NOT_IN_KEY, '_')}=${logfmtValue(text(value))}`);
}

function otherPairs(entry: Entry, skip: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(entry)) if (!skip.has(key)) pairs(key, value, out);
  return out;
}

/** `HH:MM:SS.mmm LEVEL msg key=value ...`: the time of day in UTC (as in the JSON), no `service`. */
export function prettyLine(entry: Entry): string {
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 23) : String(entry.time ?? '');
  const level = String(entry.level ?? '').toUpperCase();
  return [`${time} ${level.padEnd(5)} ${String(entry.msg ?? '')}`, ...otherPairs(entry, NOT_PRETTY)].join(' ');
}

/** `time=... level=... msg=... key=value ...`: every field of the JSON line, nested keys dotted. */
export function logfmtLine(entry: Entry): string {
  const out: string[] = [];
  for (const key of LEADING) pairs(key, entry[key], out);
  return [...out, ...otherPairs(entry, LEADING)].join(' ');
}

/** One JSON line as pino writes it, in `format`, newline-terminated; a line that is not JSON is left as it is. */
export function formatLogLine(json: string, format: TextLogFormat): string {
  let entry: unknown;
  try {
    entry = JSON.parse(json);
  } catch {
    return json;
  }
  if (entry === null || typeof entry !== 'object') return json;
  return `${format === 'pretty' ? prettyLine(entry as Entry) : logfmtLine(entry as Entry)}\n`;
}
