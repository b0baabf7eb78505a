// The backup and restore of README "Operating mailsrv", run as the README writes them (the two
// shell blocks are read from README.md): a backup of a running daemon with delivered mail, a
// migrated message with Dovecot's X-UIDL and a message waiting in the queue, restored into
// fresh directories; the daemon started there serves the same mail with the same UIDLs and
// delivers the queue.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  DOMAIN,
  deliverOverSmtp,
  makePop3Env,
  note,
  Pop3Client,
  REPO_ROOT,
  sendRaw,
  startDaemon,
  writeMailbox,
} from './harness.js';

/** The commands of the README's shell block holding `marker`, from it on, without the `sudo` service steps. */
function readmeScript(marker: string): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const block = blocks.find((text) => text.includes(marker));
  assert.ok(block, `README.md has a sh block with ${marker}`);
  const lines = block.slice(block.indexOf(marker)).split('\n');
  return lines.filter((line) => !line.startsWith('sudo ')).join('\n');
}

function runScript(script: string, vars: { STATE: string; SPOOL: string; BACKUP: string }): void {
  const result = spawnSync('bash', ['-c', script], { env: { ...process.env, ...vars }, encoding: 'utf8' });
  assert.equal(result.status, 0, `script failed:\n${script}\n--- stderr ---\n${result.stderr}`);
}

async function uidls(port: number, user: string): Promise<Map<number, string>> {
  const client = await Pop3Client.login(port, user);
  const list = await client.uidls();
  await client.quit();
  return list;
}

/** A message as popa3d + Postfix left it, with the X-UIDL header Dovecot wrote (README "UIDLs"). */
const MIGRATED =
  'From old@client.test Thu Nov 26 10:00:00 2026\n' +
  'Return-Path: <old@client.test>\nX-UIDL: dovecot-uidl-0001\nSubject: from the old server\n\nkept\n\n';

test('a backup of a running daemon restored in fresh directories: same mail and UIDLs, queue delivered', async (t) => {
  const before = await makePop3Env();
  t.after(() => before.cleanup());
  const backupDir = mkdtempSync(join(tmpdir(), 'mailsrv-backup-'));
  t.after(() => rmSync(backupDir, { recursive: true, force: true }));
  writeMailbox(before.mailbox('alice'), MIGRATED);
  // carol's mailbox is unusable (others may write it): her mail waits in the queue
  writeMailbox(before.mailbox('carol'), '');
  chmodSync(before.mailbox('carol'), 0o666);
  const daemon = await startDaemon(before);
  t.after(() => daemon.kill9());

  for (const n of [1, 2]) await deliverOverSmtp(daemon, before, 'alice', note(`for alice ${n}`, 'hello'));
  await deliverOverSmtp(daemon, before, 'bob', note('for bob', 'hi'));
  const queued = await sendRaw(before.port, {
    from: 'sender@client.test',
    to: [`carol@${DOMAIN}`],
    message: note('for carol, queued', 'waiting'),
  });
  assert.equal(queued.end?.code, 250);
  await daemon.waitForLog((e) => e.msg === 'deferred' && e.user === 'carol', 10_000, 'carol deferred');
  const aliceUidls = await uidls(before.pop3Port, 'alice');
  assert.equal(aliceUidls.size, 3);
  assert.equal(aliceUidls.get(1), 'dovecot-uidl-0001');
  assert.deepEqual(before.queued(), [queued.queueId]);

  runScript(readmeScript('# mailsrv backup:'), { STATE: before.stateDir, SPOOL: before.spoolDir, BACKUP: backupDir });
  await daemon.stop();

  const after = await makePop3Env();
  t.after(() => after.cleanup());
  runScript(readmeScript('# mailsrv restore:'), { STATE: after.stateDir, SPOOL: after.spoolDir, BACKUP: backupDir });
  for (const user of ['alice', 'bob'])
    assert.deepEqual(readFileSync(after.mailbox(user)), readFileSync(before.mailbox(user)), `${user}'s mailbox`);
  assert.deepEqual(after.queued(), [queued.queueId], 'the queue is restored');
  chmodSync(after.mailbox('carol'), 0o600); // what `mailsrv check` tells the administrator to fix

  const restored = await startDaemon(after);
  t.after(() => restored.kill9());
  await restored.waitForLog(
    (e) => e.msg === 'delivered' && e.queueId === queued.queueId && e.user === 'carol',
    20_000,
    'the restored queue entry delivered to carol',
  );
  assert.match(readFileSync(after.mailbox('carol'), 'utf8'), /Subject: for carol, queued/);
  assert.deepEqual(await uidls(after.pop3Port, 'alice'), aliceUidls, "alice's UIDLs are those of before");
  const bob = await Pop3Client.login(after.pop3Port, 'bob');
  const retr = await bob.message('RETR 1');
  assert.match(retr.body.toString('utf8'), /Subject: for bob/);
  await bob.quit();
  await restored.stop();
});
