// mailsrv's version, from its package.json: `--version`, the `starting` log line, `mailsrv status`
// and the metrics all name the same one.
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function packageVersion(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
    .version;
  return cached;
}
