// The benchmarks start their own mailsrv from a temp directory. Run as root, that daemon
// drops to `user`/`group` as a real installation does: this hands the directory (and the
// mailboxes a bench wrote into it) to `nobody`, and gives the config lines that name it.
import { chmod } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';

const USER = 'nobody';
const GROUP = 'nogroup';

/** TOML lines to put at the top of the bench's config ('' when not root). */
export async function daemonUserConfig(dir: string): Promise<string> {
  if (process.getuid?.() !== 0) return '';
  await chmod(dir, 0o755);
  execFileSync('chown', ['-R', `${USER}:${GROUP}`, dir]);
  return `user = "${USER}"\ngroup = "${GROUP}"\n`;
}
