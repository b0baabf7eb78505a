// A config written by `mailsrv init`, made runnable by a test: spool and state in the test's
// directory instead of /var, and free loopback ports instead of 25, 587, 465, 110 and 995
// (`mailsrv check` binds each for a moment, and other tests use port 25).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './net.js';

/** Rewrites `configFile` in place; returns the ports now used, in the order the file lists them. */
export async function localizeInitConfig(configFile: string, dir: string): Promise<number[]> {
  const text = await readFile(configFile, 'utf8');
  let local = text
    .replace('spool_dir = "/var/mail"', `spool_dir = "${join(dir, 'spool')}"`)
    .replace('state_dir = "/var/lib/mailsrv"', `state_dir = "${join(dir, 'state')}"`);
  if (local === text) throw new Error(`${configFile} does not look like a config from mailsrv init`);
  const standardPorts = /\["0\.0\.0\.0:\d+", "\[::\]:\d+"\]/;
  const ports: number[] = [];
  while (standardPorts.test(local)) {
    const port = await freePort();
    ports.push(port);
    local = local.replace(standardPorts, `["127.0.0.1:${port}"]`);
  }
  await writeFile(configFile, local);
  return ports;
}
