// mailsrv's version, from its package.json: `mailsrv --version` prints it, the daemon logs it at start.
import { readFileSync } from 'node:fs';

export const MAILSRV_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
