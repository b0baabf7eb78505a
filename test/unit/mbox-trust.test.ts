// src/mbox/trust.ts on real files: a mailbox with a second hard link, one that group or others
// may write, and one another account owns are refused; the daemon's own (and root's) are not.
import assert from 'node:assert/strict';
import { chmod, chown, link, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { checkMailboxFile, type MailboxOwner, UntrustedMailboxError } from '../../src/mbox/trust.js';

const RUN_AS_ROOT = process.getuid?.() === 0;
const me = process.geteuid?.() ?? 0;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailsrv-trust-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function mailbox(name: string, mode = 0o600): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, 'From a@b Thu Nov 26 10:00:00 2026\n\nbody\n\n');
  await chmod(path, mode);
  return path;
}

async function verdict(path: string, owner: MailboxOwner = { uid: me, groupWritable: false }): Promise<string> {
  try {
    checkMailboxFile(path, await stat(path), owner);
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof UntrustedMailboxError, String(err));
    return err.reason;
  }
}

test("the daemon's own 0600 mailbox is trusted; group write only where the mode allows it", async () => {
  assert.equal(await verdict(await mailbox('own')), 'ok');
  const shared = await mailbox('shared', 0o660);
  assert.equal(await verdict(shared), 'mode 0660 lets group or others write');
  assert.equal(await verdict(shared, { uid: me, groupWritable: true }), 'ok');
});

test('a mailbox anyone may write, or with a second hard link, is refused', async () => {
  assert.equal(await verdict(await mailbox('world', 0o666)), 'mode 0666 lets group or others write');
  const linked = await mailbox('linked');
  await link(linked, join(dir, 'elsewhere'));
  assert.equal(await verdict(linked), 'it has 2 hard links');
});

test('a mailbox another account owns is refused; root-owned is trusted', {
  skip: !RUN_AS_ROOT && 'needs root to chown',
}, async () => {
  const foreign = await mailbox('foreign');
  await chown(foreign, 1, 1);
  assert.equal(await verdict(foreign, { uid: 65534, groupWritable: false }), 'owned by uid 1, not 65534');
  const rootOwned = await mailbox('root-owned');
  assert.equal(await verdict(rootOwned, { uid: 65534, groupWritable: false }), 'ok');
});
