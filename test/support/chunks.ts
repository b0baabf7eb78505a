// Splits test input into chunks at arbitrary cut points, so stream parsers can be checked
// against every way the network or the file system might cut their input.

/** `text` cut at `cuts` (taken modulo its length + 1, deduplicated, sorted); no empty chunks. */
export function splitAt(text: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const parts: string[] = [];
  let last = 0;
  for (const p of points) {
    parts.push(text.slice(last, p));
    last = p;
  }
  parts.push(text.slice(last));
  return parts.filter((p) => p.length > 0);
}
