// E2E: running under systemd. contrib/mailsrv.service passes `systemd-analyze verify` without a
// single complaint and keeps the hardening README "Running under systemd" promises; and the
// daemon started with NOTIFY_SOCKET sends real sd_notify datagrams (to a python3 AF_UNIX
// SOCK_DGRAM receiver standing in for systemd): READY=1 once it logged `ready`, RELOADING=1
// then READY=1 around a SIGHUP, STOPPING=1 at SIGTERM.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Daemon, envForTest, eventually, MAILSRV_BIN, PYTHON, REPO_ROOT } from './harness.js';

const UNIT = join(REPO_ROOT, 'contrib', 'mailsrv.service');

const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

test('contrib/mailsrv.service passes systemd-analyze verify and is hardened', {
  skip: hasSystemdAnalyze ? false : 'systemd-analyze is not installed (Debian package "systemd")',
}, async (t) => {
  const { env } = await envForTest(t);
  const text = readFileSync(UNIT, 'utf8');
  // verify checks that ExecStart exists: the checkout's bin/mailsrv stands in for the installed one
  const copy = join(env.dir, 'mailsrv.service');
  await writeFile(copy, text.replace('/usr/local/bin/mailsrv', MAILSRV_BIN), { mode: 0o644 });
  await chmod(copy, 0o644); // whatever the umask
  const result = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  assert.equal(`${result.stdout}${result.stderr}`.trim(), '', 'no warning at all');

  const settings = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(line);
    if (m) settings.set(m[1]!, m[2]!);
  }
  const expected: Record<string, string> = {
    Type: 'notify',
    NotifyAccess: 'all',
    ExecReload: '/bin/kill -HUP $MAINPID',
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    PrivateTmp: 'yes',
    CapabilityBoundingSet: 'CAP_NET_BIND_SERVICE',
    AmbientCapabilities: 'CAP_NET_BIND_SERVICE',
    StateDirectory: 'mailsrv',
    ReadWritePaths: '/var/mail',
    StandardOutput: 'journal',
  };
  for (const [key, value] of Object.entries(expected)) assert.equal(settings.get(key), value, key);
});

/** Prints one line per datagram received on the socket path argv[1]; "bound" first. */
const RECEIVER = `
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)  # the daemon sends as its own user after the privilege drop
print("bound", flush=True)
while True:
    # a plain recv: the file descriptor systemd-notify's barrier passes is closed by the kernel,
    # which is what systemd does with it, so systemd-notify returns
    data = s.recv(65536)
    print(data.decode().replace("\\n", "|"), flush=True)
`;

test('NOTIFY_SOCKET gets READY=1, RELOADING=1 and READY=1, STOPPING=1 as real datagrams', async (t) => {
  const { env } = await envForTest(t);
  const socketPath = join(env.dir, 'notify');
  const receiver = spawn(PYTHON, ['-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => receiver.kill('SIGKILL'));
  let receiverOutput = '';
  receiver.stdout.setEncoding('utf8');
  receiver.stdout.on('data', (chunk: string) => {
    receiverOutput += chunk;
  });
  receiver.stderr.on('data', (chunk: Buffer) => {
    receiverOutput += chunk.toString();
  });
  await eventually(() => receiverOutput.startsWith('bound\n'), 10_000, `the receiver binds (${receiverOutput})`);
  /** the datagrams so far, without systemd-notify's barriers */
  const received = () =>
    receiverOutput
      .split('\n')
      .slice(1, -1)
      .filter((d) => d !== 'BARRIER=1');

  const child = spawn(process.execPath, [MAILSRV_BIN, 'start', '-c', env.configPath], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NOTIFY_SOCKET: socketPath },
  });
  const daemon = new Daemon(child);
  t.after(() => daemon.kill9());
  await eventually(() => received().some((d) => d.startsWith('READY=1')), 15_000, `READY=1 (${receiverOutput})`);
  // the log line and the datagram travel by different pipes: wait for the line, it was written first
  await daemon.waitForLog((e) => e.msg === 'ready', 10_000, 'the ready log line');
  assert.match(received()[0]!, /^READY=1\|STATUS=serving; 0 message\(s\) in the queue$/);

  child.kill('SIGHUP');
  await eventually(() => received().length >= 3, 15_000, `the reload's notifications (${receiverOutput})`);
  assert.equal(received()[1], 'RELOADING=1');
  assert.match(received()[2]!, /^READY=1\|STATUS=serving/);
  await daemon.waitForLog((e) => e.msg.startsWith('reloaded'), 10_000, 'the reload log line');
  assert.equal(daemon.find((e) => e.msg.startsWith('reloaded')).length, 1, 'one reload');

  assert.equal(await daemon.stop(), 0);
  await eventually(() => received().length >= 4, 10_000, `STOPPING=1 (${receiverOutput})`);
  assert.deepEqual(received().slice(3), ['STOPPING=1']);
});
