// A log that cannot be written never stops mail: with stdout on a terminal that went away
// (EIO) or on a full disk (ENOSPC), the daemon keeps accepting and delivering, drops log
// lines, and still stops cleanly on SIGTERM (the terminal case in JSON and in the pretty format).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import {
  DOMAIN,
  MAILSRV_BIN,
  PYTHON,
  REPO_ROOT,
  RUN_AS_ROOT,
  eventually,
  makeEnv,
  readMailbox,
  requireBuild,
  SmtpClient,
  sendRaw,
  type TestEnv,
} from './harness.js';

/** Waits until the daemon accepts SMTP connections (its log cannot tell us). */
async function waitUntilListening(env: TestEnv): Promise<void> {
  await eventually(
    async () => {
      try {
        const { client, greeting } = await SmtpClient.connect(env.port);
        await client.quit();
        return greeting.code === 220;
      } catch {
        return false;
      }
    },
    30_000,
    'the daemon to listen',
  );
}

/** Sends one message to alice and waits until it is in her mailbox. */
async function deliverOne(env: TestEnv, subject: string): Promise<void> {
  const message = `From: a@client.test\r\nTo: alice@${DOMAIN}\r\nSubject: ${subject}\r\n\r\nbody\r\n`;
  const result = await sendRaw(env.port, { from: 'a@client.test', to: [`alice@${DOMAIN}`], message });
  assert.equal(result.end?.code, 250, `message "${subject}" accepted: ${JSON.stringify(result.end)}`);
  const stored = readMailbox(env.mailbox('alice')).raw.toString('latin1');
  assert.ok(stored.includes(`Subject: ${subject}\n`), `"${subject}" is in the mailbox`);
}

// A terminal whose other end closes: Python holds the pty's master side, reads the daemon's
// output until it shows the ready line (argv[1]), then closes it (as an SSH session that drops);
// every later write to the daemon's stdout fails with EIO. The script prints the daemon's exit status.
const PTY_RUNNER = `
import os, pty, subprocess, sys
master, slave = pty.openpty()
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
os.close(slave)
seen = b''
while sys.argv[1].encode() not in seen:
    chunk = os.read(master, 65536)
    if not chunk:
        break
    seen += chunk
os.close(master)
print('closed', child.pid, flush=True)
print('exit', child.wait(), flush=True)
`;

/** The daemon's ready line in each log format, as the terminal shows it. */
const READY_MARKERS = { json: '"msg":"ready"', pretty: ' INFO  ready ' };

for (const [format, readyMarker] of Object.entries(READY_MARKERS)) {
  test(`stdout on a terminal that went away (EIO), ${format} logs: mail flows, SIGTERM stops the daemon`, async (t) => {
    await terminalGoesAway(t, format, readyMarker);
  });
}

async function terminalGoesAway(t: TestContext, format: string, readyMarker: string): Promise<void> {
  requireBuild();
  const env = await makeEnv();
  t.after(() => env.cleanup());
  const daemonCommand = [process.execPath, MAILSRV_BIN, 'start', '-c', env.configPath, '--log-format', format];
  const runner = spawn(PYTHON, ['-c', PTY_RUNNER, readyMarker, ...daemonCommand], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let daemonPid = 0;
  t.after(() => {
    if (daemonPid > 0) process.kill(daemonPid, 'SIGKILL');
    runner.kill('SIGKILL');
  });
  let output = '';
  runner.stdout.setEncoding('utf8');
  runner.stdout.on('data', (chunk: string) => {
    output += chunk;
  });
  await eventually(() => /closed \d+/.test(output), 30_000, 'the terminal to close');
  daemonPid = Number(/closed (\d+)/.exec(output)![1]);
  await waitUntilListening(env);
  for (let i = 1; i <= 3; i++) await deliverOne(env, `after the terminal closed ${i}`);

  process.kill(daemonPid, 'SIGTERM');
  await once(runner, 'exit');
  daemonPid = 0;
  assert.match(output, /exit 0/, `the daemon exited cleanly on SIGTERM: ${output}`);
}

test('stdout on a full disk (ENOSPC): mail flows, SIGTERM stops the daemon', {
  skip: !RUN_AS_ROOT && 'needs root to mount a tmpfs',
}, async (t) => {
  requireBuild();
  const env = await makeEnv();
  t.after(() => env.cleanup());
  const mountPoint = await mkdtemp(join(tmpdir(), 'mailsrv-full-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mountPoint]);
  assert.equal(mounted.status, 0, `mount tmpfs: ${mounted.stderr}`);
  t.after(async () => {
    spawnSync('umount', ['-l', mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });
  // fill the disk, leaving the log file a few bytes at most
  await writeFile(join(mountPoint, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);
  const log = await open(join(mountPoint, 'mailsrv.log'), 'a');
  const daemon = spawn(process.execPath, [MAILSRV_BIN, 'start', '-c', env.configPath], {
    cwd: REPO_ROOT,
    stdio: ['ignore', log.fd, 'ignore'],
  });
  await log.close();
  t.after(() => daemon.kill('SIGKILL'));
  const exited = once(daemon, 'exit');

  await waitUntilListening(env);
  for (let i = 1; i <= 3; i++) await deliverOne(env, `with the log disk full ${i}`);
  daemon.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, 'the daemon exited cleanly on SIGTERM');
});
