// The Authentication-Results header field (RFC 8601): written for our own results, and read
// far enough to find the authserv-id of one that arrived with the message (one naming our
// hostname is a forgery and is removed; README, "Reading Authentication-Results").

/** One method's result: `method=result (comment) ptype.property=value ...`. */
export interface MethodResult {
  method: 'spf' | 'dkim' | 'dmarc';
  result: string;
  comment?: string;
  /** e.g. { 'smtp.mailfrom': 'a@example.org' } or { 'header.d': 'example.org' } */
  properties: Record<string, string>;
}

/** Longest comment written (a reason from a remote record must not make a huge header). */
const MAX_COMMENT_CHARS = 200;
/** A property value that needs no quoting: no white space, specials that end it, or controls. */
const PLAIN_VALUE = /^[\w.!#$%&'*+/=?^`{|}~@-]+$/;

function propertyValue(value: string): string {
  if (PLAIN_VALUE.test(value)) return value;
  return `"${value.replace(/[\x00-\x1f\x7f]/g, '').replace(/["\\]/g, '\\$&')}"`;
}

function comment(text: string): string {
  const clean = text.replace(/[\x00-\x1f\x7f]/g, ' ').slice(0, MAX_COMMENT_CHARS);
  return `(${clean.replace(/[()\\]/g, '\\$&')})`;
}

/** The whole header field, one result per folded line; `none` when nothing was checked. */
export function authenticationResults(hostname: string, results: MethodResult[]): string {
  const resinfo = results.map((r) =>
    [
      `${r.method}=${r.result}`,
      ...(r.comment ? [comment(r.comment)] : []),
      ...Object.entries(r.properties).map(([name, value]) => `${name}=${propertyValue(value)}`),
    ].join(' '),
  );
  return `Authentication-Results: ${hostname};${resinfo.length === 0 ? ' none' : `\r\n\t${resinfo.join(';\r\n\t')}`}`;
}

/**
 * The authserv-id of an Authentication-Results field, lowercased, from its value (the text
 * after the colon, folding included): after optional white space and comments, a token or
 * quoted string that must end before the text does. null: none found (malformed or cut off).
 */
export function authservId(value: string): string | null {
  let pos = 0;
  // CFWS: white space (folding included) and nested comments with quoted pairs
  for (let depth = 0; pos < value.length; pos++) {
    const c = value[pos]!;
    if (depth > 0 && c === '\\') pos++;
    else if (c === '(') depth++;
    else if (c === ')' && depth > 0) depth--;
    else if (depth === 0 && !/\s/.test(c)) break;
  }
  if (value[pos] === '"') {
    let id = '';
    for (pos++; pos < value.length; pos++) {
      const c = value[pos]!;
      if (c === '"') return id.toLowerCase();
      if (c === '\\') pos++;
      id += value[pos] ?? '';
    }
    return null;
  }
  const token = /^[^\s;()"]+(?=[\s;(])/.exec(value.slice(pos));
  return token ? token[0].toLowerCase() : null;
}
