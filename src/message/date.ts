// Dates as mail writes them: the RFC 5322 header form, and a cache for any date text (this one,
// the mbox From_ line's) that every message of one second shares.

/**
 * `format`, remembering its last text: a date in the same second as the last one gets that text
 * again (formatting costs more than the check, and a busy second stamps many messages).
 */
export function oncePerSecond(format: (date: Date) => string): (date: Date) => string {
  let last = { second: Number.NaN, text: '' };
  return (date) => {
    const second = Math.floor(date.getTime() / 1000);
    if (second !== last.second) last = { second, text: format(date) };
    return last.text;
  };
}

/** "Wed, 25 Nov 2026 11:54:57 +0000" */
export const rfc5322Date = oncePerSecond((date) => date.toUTCString().replace(/GMT$/, '+0000'));
