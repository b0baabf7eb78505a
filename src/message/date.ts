// Dates as message headers write them (RFC 5322 section 3.3).

/** The last second formatted: every message of that second is stamped with the same text. */
let last = { second: Number.NaN, text: '' };

/** "Wed, 25 Nov 2026 11:54:57 +0000" */
export function rfc5322Date(date: Date): string {
  const second = Math.floor(date.getTime() / 1000);
  if (second !== last.second) last = { second, text: date.toUTCString().replace(/GMT$/, '+0000') };
  return last.text;
}
