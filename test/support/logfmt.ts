// Reads a logfmt line (`key=value key="quoted \"value\""`) into its pairs, as logfmt tools do:
// a bare value ends at a space, a quoted one is a JSON string. Fails on anything else.
import assert from 'node:assert/strict';

export function parseLogfmt(line: string): [string, string][] {
  const pairs: [string, string][] = [];
  const pair = /([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)/y;
  while (pair.lastIndex < line.length) {
    const match = pair.exec(line);
    assert.ok(match, `not logfmt at ${pair.lastIndex}: ${line}`);
    const [, key, raw] = match as unknown as [string, string, string];
    pairs.push([key, raw.startsWith('"') ? (JSON.parse(raw) as string) : raw]);
  }
  return pairs;
}
