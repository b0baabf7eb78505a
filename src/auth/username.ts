// User names (README, "Users and aliases"): lowercase `[a-z0-9][a-z0-9._-]*`, at most 64 characters, matched
// case-insensitively. A name that passes can never name a path outside the spool: no `/`,
// no leading dot (so not `.` or `..`), no NUL, no control characters.

/** A valid, already lowercased user name. */
export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;

export const USERNAME_MAX_LENGTH = 64;

/** The canonical (lowercased) form of a user name, or null when the name is not allowed. */
export function normalizeUsername(name: string): string | null {
  if (name.length === 0 || name.length > USERNAME_MAX_LENGTH) return null;
  if (USERNAME_PATTERN.test(name)) return name; // already canonical (the usual case)
  // Lowercase ASCII only: String.prototype.toLowerCase maps some non-ASCII letters onto
  // ASCII ones (U+212A KELVIN SIGN becomes "k"), which would let two spellings name one user.
  const lower = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return USERNAME_PATTERN.test(lower) ? lower : null;
}
