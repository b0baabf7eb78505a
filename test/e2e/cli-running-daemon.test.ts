// E2E: the commands that talk to a running daemon. `mailsrv user add|passwd|del` reach it at
// once (mail to a user just added is accepted, not refused with 550 5.1.1 until someone sends
// SIGHUP), `mailsrv reload` makes it re-read its files, and a second `mailsrv start` on the same
// state_dir stops at once, naming the pid that runs (and `mailsrv check` accepts its ports as ours).
import assert from 'node:assert/strict';
import { appendFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { DOMAIN, envForTest, runCli, sendRaw, startDaemon, withTimeout } from './harness.js';

describe('the CLI and a running daemon', () => {
  test('mailsrv user add reaches the running daemon: the new user gets mail at once; del too', async (t) => {
    const { env, start } = await setup(t);
    const daemon = await start();
    const mailTo = (user: string) =>
      sendRaw(env.port, {
        from: 'sender@client.test',
        to: [`${user}@${DOMAIN}`],
        message: 'Subject: hi\r\n\r\nhi\r\n',
      });
    assert.equal((await mailTo('newbie')).rcpt[0]!.code, 550, 'an unknown user is refused');

    const reloads = daemon.find((e) => e.msg.startsWith('reloaded')).length;
    const added = runCli(['user', 'add', 'newbie', '--password-stdin', '-c', env.configPath], { input: 'pw-newbie\n' });
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^user "newbie" added to .*\nthe running mailsrv \(pid \d+\) reloads the users file\n$/);
    await daemon.waitForLogs((e) => e.msg.startsWith('reloaded'), reloads + 1, 10_000, 'the reload');
    assert.equal((await mailTo('newbie')).rcpt[0]!.code, 250, 'the user just added is refused');

    const deleted = runCli(['user', 'del', 'newbie', '-c', env.configPath]);
    assert.equal(deleted.code, 0, deleted.stderr);
    await daemon.waitForLogs((e) => e.msg.startsWith('reloaded'), reloads + 2, 10_000, 'the second reload');
    assert.equal((await mailTo('newbie')).rcpt[0]!.code, 550, 'the user just deleted still gets mail');
  });

  test('mailsrv reload: the daemon re-reads the aliases; not running: exit 1', async (t) => {
    const { env, start } = await setup(t);
    const stopped = runCli(['reload', '-c', env.configPath]);
    assert.deepEqual([stopped.code, stopped.stderr], [1, 'mailsrv: mailsrv is not running\n']);

    const daemon = await start();
    await appendFile(env.aliasesFile, 'team: alice\n');
    const r = runCli(['reload', '-c', env.configPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^mailsrv \(pid \d+\) is reloading; its log says what changed\n$/);
    await daemon.waitForLog((e) => e.msg.startsWith('reloaded'), 10_000, 'the reload');
    const sent = await sendRaw(env.port, {
      from: 'sender@client.test',
      to: [`team@${DOMAIN}`],
      message: 'Subject: hi\r\n\r\nhi\r\n',
    });
    assert.equal(sent.rcpt[0]!.code, 250, 'the alias added before the reload is unknown');
  });

  test('a second mailsrv start on the same state_dir exits 1 naming the running pid, not a busy port', async (t) => {
    const { env, start } = await setup(t);
    const first = await start();
    const second = startDaemon(env).then(
      async (d) => {
        await d.kill9();
        return 'started';
      },
      (err: Error) => err.message,
    );
    const outcome = await withTimeout(second, 15_000, 'the second start did not return');
    assert.match(outcome, /daemon exited \(code 1/, outcome);
    assert.match(outcome, new RegExp(`already running as pid ${first.pid}`), outcome);
    assert.doesNotMatch(outcome, /EADDRINUSE/);
    assert.ok(first.running, 'the first daemon was disturbed');
    const checked = runCli(['check', '-c', env.configPath]);
    assert.equal(checked.code, 0, `check counts the running mailsrv's own ports as busy: ${checked.stderr}`);
  });
});

const setup = envForTest;
