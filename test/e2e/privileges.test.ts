// e2e: started as root, the daemon binds its ports and then runs as the configured user
// (seen in /proc/PID/status), hands its state directory to that user, delivers mail as it,
// and refuses to run as root or as a user that does not exist. Skipped unless run as root.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { resolveIdentity } from '../../src/privileges.js';
import {
  cleanupAllTempDirs,
  DAEMON_USER,
  deliverOverSmtp,
  makeEnv,
  RUN_AS_ROOT,
  runCli,
  startDaemon,
} from './harness.js';

after(cleanupAllTempDirs);

/** The four ids of a /proc/PID/status line (real, effective, saved, filesystem). */
function ids(status: string, field: 'Uid' | 'Gid'): number[] {
  const line = status.split('\n').find((l) => l.startsWith(`${field}:`))!;
  return line.split(/\s+/).slice(1).map(Number);
}

/** The reason of the daemon's `cannot start` log line. */
function startError(stdout: string): string {
  const line = stdout.split('\n').find((l) => l.includes('"cannot start"'));
  assert.ok(line, `no "cannot start" line in: ${stdout}`);
  return String((JSON.parse(line) as { err: string }).err);
}

describe('privileges', { skip: RUN_AS_ROOT ? false : 'run as root to test the privilege drop' }, () => {
  it('started as root, runs as `user`/`group` with no other groups, owns its state and new mailboxes', async () => {
    const env = await makeEnv();
    const daemon = await startDaemon(env);
    try {
      const { uid, gid } = resolveIdentity(DAEMON_USER!.user, DAEMON_USER!.group);
      assert.ok(daemon.find((e) => e.msg === 'privileges dropped' && e.uid === uid).length === 1, daemon.output());
      const status = readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8');
      assert.deepEqual(ids(status, 'Uid'), [uid, uid, uid, uid], status);
      assert.deepEqual(ids(status, 'Gid'), [gid, gid, gid, gid], status);
      const groups = status.split('\n').find((l) => l.startsWith('Groups:'))!;
      assert.deepEqual(
        groups.split(/\s+/).slice(1).filter(Boolean).map(Number),
        [gid],
        "root's supplementary groups are gone",
      );

      for (const path of [env.stateDir, join(env.stateDir, 'queue'), join(env.stateDir, 'mailsrv.pid')]) {
        assert.equal(statSync(path).uid, uid, `${path} belongs to the daemon's user`);
      }
      await deliverOverSmtp(daemon, env, 'alice', 'Subject: hi\r\n\r\nbody\r\n');
      const box = statSync(env.mailbox('alice'));
      assert.equal(box.uid, uid);
      assert.equal(box.mode & 0o777, 0o600);
      assert.equal(await daemon.stop(), 0);
    } finally {
      await daemon.kill9();
    }
  });

  it('refuses user = "root", an unknown user or group, and a spool it cannot write, naming the key', async () => {
    const cases: { config: Record<string, string>; expect: RegExp }[] = [
      { config: { user: 'root' }, expect: /'user'.*root/ },
      { config: { user: 'no-such-user-x' }, expect: /'user'.*no such user "no-such-user-x"/ },
      { config: { group: 'no-such-group-x' }, expect: /'group'.*no such group "no-such-group-x"/ },
    ];
    for (const { config, expect } of cases) {
      const env = await makeEnv({ config });
      const result = runCli(['start', '-c', env.configPath]);
      assert.equal(result.code, 1, `${JSON.stringify(config)}: ${result.stdout}${result.stderr}`);
      assert.match(startError(result.stdout), expect);
    }

    // an existing spool directory keeps its owner: root's 0755 is not writable for the daemon
    const env = await makeEnv();
    const spool = join(env.dir, 'root-spool');
    mkdirSync(spool, { mode: 0o755 });
    await env.writeConfig({ ...env.config, spool_dir: spool });
    const result = runCli(['start', '-c', env.configPath]);
    assert.equal(result.code, 1);
    assert.match(startError(result.stdout), /spool_dir \(.*root-spool\) is not writable by uid \d+/);
  });
});
