// A full disk (spool and state on a small tmpfs): SMTP answers 452 4.3.1 instead of 250, a POP3
// update fails cleanly with -ERR [SYS/TEMP], nothing already stored is damaged, and once space
// is freed mail flows and the update runs again. Needs root (mount).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DOMAIN, envForTest, freePort, Pop3Client, readMailbox, RUN_AS_ROOT, sendRaw } from './harness.js';

const message = (subject: string, kb: number) =>
  `From: a@client.test\r\nSubject: ${subject}\r\n\r\n${'x'
    .repeat(76)
    .concat('\r\n')
    .repeat(kb * 13)}`;

/** Writes filler files into `dir` until the disk refuses one more byte. */
function fill(dir: string): void {
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(dir, `filler-${i}`), Buffer.alloc(16 * 1024));
    } catch {
      try {
        writeFileSync(join(dir, `filler-last`), Buffer.alloc(512));
      } catch {
        return;
      }
    }
  }
}

describe('full disk', { skip: !RUN_AS_ROOT && 'needs root to mount a tmpfs' }, () => {
  test('452 4.3.1 and -ERR [SYS/TEMP] while full, nothing stored damaged, all well once space is freed', async (t) => {
    const pop3Port = await freePort();
    const { env, start } = await envForTest(t, {
      config: { pop3: { listen: [`127.0.0.1:${pop3Port}`] }, plaintext_auth_networks: ['127.0.0.0/8'] },
    });
    const disk = mkdtempSync(join(tmpdir(), 'mailsrv-disk-')); // outside env.dir: removed on its own
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0777', 'tmpfs', disk], { encoding: 'utf8' });
    assert.equal(mounted.status, 0, `mount: ${mounted.stderr}`);
    t.after(() => {
      spawnSync('umount', ['-l', disk]);
      rmSync(disk, { recursive: true, force: true });
    });
    const spool = join(disk, 'spool');
    const state = join(disk, 'state');
    mkdirSync(spool, { mode: 0o777 });
    mkdirSync(state, { mode: 0o777 });
    await env.writeConfig({ ...env.config, spool_dir: spool, state_dir: state });
    const daemon = await start();
    const box = join(spool, 'alice');
    for (const subject of ['one', 'two']) {
      const r = await sendRaw(env.port, {
        from: 'a@client.test',
        to: [`alice@${DOMAIN}`],
        message: message(subject, 2),
      });
      assert.equal(r.end?.code, 250);
    }
    const stored = readFileSync(box);
    const pop = await Pop3Client.login(pop3Port, 'alice'); // logged in while there was room

    fill(join(disk, 'state'));
    const refused = await sendRaw(env.port, {
      from: 'a@client.test',
      to: [`alice@${DOMAIN}`],
      message: message('three', 20),
    });
    assert.equal(refused.end?.code, 452, `while full: ${refused.end?.raw}`);
    assert.match(refused.end!.raw, /^452 4\.3\.1 /);
    assert.deepEqual(readFileSync(box), stored, 'the mailbox is as it was');
    assert.deepEqual(env.queued(), [], 'nothing queued');

    assert.match(await pop.cmd('DELE 1'), /^\+OK/);
    assert.match(await pop.quit(), /^-ERR \[SYS\/TEMP\]/, 'the update cannot run on a full disk');
    assert.deepEqual(readFileSync(box), stored, 'the failed update changed nothing');
    await assert.rejects(Pop3Client.login(pop3Port, 'alice'), /-ERR \[SYS\/TEMP\]/, 'no new session either');

    for (const name of spawnSync('ls', [join(disk, 'state')], { encoding: 'utf8' }).stdout.split('\n')) {
      if (name.startsWith('filler')) rmSync(join(disk, 'state', name));
    }
    const accepted = await sendRaw(env.port, {
      from: 'a@client.test',
      to: [`alice@${DOMAIN}`],
      message: message('three', 20),
    });
    assert.equal(accepted.end?.code, 250, `once space is freed: ${accepted.end?.raw}`);
    const again = await Pop3Client.login(pop3Port, 'alice');
    assert.match(await again.cmd('DELE 1'), /^\+OK/);
    assert.match(await again.quit(), /^\+OK/);
    const subjects = readMailbox(box).messages.map((m) => /^Subject: (.*)$/m.exec(m.original.toString())?.[1]);
    assert.deepEqual(subjects, ['two', 'three']);
    assert.equal(await daemon.stop(), 0);
  });
});
