// Dates as message headers write them (RFC 5322 section 3.3).

/** "Wed, 25 Nov 2026 11:54:57 +0000" */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}
