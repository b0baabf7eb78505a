// E2E: real POP3 clients against the real daemon: curl (LIST, RETR, DELE), Python's poplib
// (Debian's /usr/bin/python3) and fetchmail with "leave messages on server" (--keep --uidl),
// which must fetch every message once and never again.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  deliverOverSmtp,
  makePop3Env,
  PASSWORD,
  pop3Wire,
  PYTHON,
  readMailbox,
  startDaemon,
  type Daemon,
  type TestEnv,
  note,
} from './harness.js';

function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const result = spawnSync(command, args, {
    encoding: 'latin1',
    timeout: 20_000,
    env: options.env ?? process.env,
    input: options.input,
  });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('pop3 with real clients', () => {
  let env: TestEnv & { pop3Port: number };
  let daemon: Daemon;

  before(async () => {
    env = await makePop3Env({ users: ['alice', 'bob', 'carol'] });
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    await env?.cleanup();
  });

  test('curl: LIST, RETR and DELE', async () => {
    const box = env.mailbox('alice');
    await deliverOverSmtp(daemon, env, 'alice', note('curl one', 'hello', '.dot line', 'From here'));
    await deliverOverSmtp(daemon, env, 'alice', note('curl two'));
    const url = `pop3://127.0.0.1:${env.pop3Port}/`;
    const auth = ['-sS', '--max-time', '10', '-u', `alice:${PASSWORD}`];

    const list = run('curl', [...auth, url]);
    assert.equal(list.code, 0, list.stderr);
    const sizes = [1, 2].map((n) => pop3Wire(box, n).length);
    assert.equal(list.stdout, `1 ${sizes[0]}\r\n2 ${sizes[1]}\r\n`);

    const retr = run('curl', [...auth, `${url}1`]);
    assert.equal(retr.code, 0, retr.stderr);
    assert.deepEqual(Buffer.from(retr.stdout, 'latin1'), pop3Wire(box, 1));

    const dele = run('curl', [...auth, '-X', 'DELE 1', '-I', url]);
    assert.equal(dele.code, 0, dele.stderr);
    await daemon.waitForLog((e) => e.msg === 'mailbox updated' && e.user === 'alice');
    assert.equal(readMailbox(box).messages.length, 1);
    assert.match(readMailbox(box).messages[0]!.body.toString(), /Subject: curl two/);
  });

  test('Python poplib: CAPA, STAT, LIST, UIDL, RETR and TOP of every message, byte for byte', async () => {
    const box = env.mailbox('bob');
    await deliverOverSmtp(daemon, env, 'bob', note('py one', '.leading dot', '..two', 'x'));
    await deliverOverSmtp(daemon, env, 'bob', note('py two', 'From the start', '>From quoted', 'y'));
    await deliverOverSmtp(daemon, env, 'bob', note('py three'));
    const script = [
      'import poplib, json, sys, base64',
      'p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)',
      'out = {"welcome": p.getwelcome().decode(), "capa": sorted(p.capa().keys())}',
      'p.user("bob"); p.pass_(sys.argv[2])',
      'count, size = p.stat()',
      'out["stat"] = [count, size]',
      'out["list"] = [l.decode() for l in p.list()[1]]',
      'out["uidl"] = [l.decode() for l in p.uidl()[1]]',
      'out["retr"] = [base64.b64encode(b"".join(l + b"\\r\\n" for l in p.retr(i)[1])).decode()',
      '               for i in range(1, count + 1)]',
      'out["top"] = base64.b64encode(b"".join(l + b"\\r\\n" for l in p.top(1, 0)[1])).decode()',
      'out["quit"] = p.quit().decode()',
      'print(json.dumps(out))',
    ].join('\n');
    const result = run(PYTHON, ['-c', script, String(env.pop3Port), PASSWORD]);
    assert.equal(result.code, 0, result.stderr);
    const out = JSON.parse(result.stdout) as {
      welcome: string;
      capa: string[];
      stat: [number, number];
      list: string[];
      uidl: string[];
      retr: string[];
      top: string;
      quit: string;
    };
    assert.equal(out.welcome, '+OK mailsrv ready');
    assert.ok(out.capa.includes('UIDL') && out.capa.includes('TOP') && out.capa.includes('USER'), out.capa.join(','));
    const wires = [1, 2, 3].map((n) => pop3Wire(box, n));
    assert.deepEqual(out.stat, [3, wires.reduce((s, w) => s + w.length, 0)]);
    assert.deepEqual(
      out.list,
      wires.map((w, i) => `${i + 1} ${w.length}`),
    );
    assert.equal(new Set(out.uidl.map((l) => l.split(' ')[1])).size, 3);
    out.retr.forEach((b64, i) => {
      assert.deepEqual(Buffer.from(b64, 'base64'), wires[i], `RETR ${i + 1}`);
    });
    const head = wires[0]!.toString('latin1');
    assert.equal(Buffer.from(out.top, 'base64').toString('latin1'), head.slice(0, head.indexOf('\r\n\r\n') + 4));
    assert.match(out.quit, /^\+OK/);
    assert.equal(readMailbox(box).messages.length, 3);
  });

  test('fetchmail --keep --uidl fetches every message once, and later only new ones', async () => {
    const box = env.mailbox('carol');
    const subjects = ['fm one', 'fm two', 'fm three'];
    for (const s of subjects) await deliverOverSmtp(daemon, env, 'carol', note(s));
    const home = mkdtempSync(join(tmpdir(), 'mailsrv-fetchmail-'));
    const out = join(home, 'fetched');
    const rc = join(home, 'fetchmailrc');
    writeFileSync(
      rc,
      [
        'set no syslog',
        // sslproto '': no STLS attempt (fetchmail >= 6.4 insists on TLS unless told; this env has no certificate)
        `poll 127.0.0.1 with service ${env.pop3Port} protocol pop3 uidl auth password timeout 20:`,
        `  user "carol" there with password "${PASSWORD}" is "carol" here`,
        `  mda "cat >> ${out}" sslproto ''`,
        '',
      ].join('\n'),
    );
    chmodSync(rc, 0o600);
    const fetch = () =>
      run(
        'fetchmail',
        [
          '-f',
          rc,
          '--idfile',
          join(home, 'ids'),
          '--pidfile',
          join(home, 'pid'),
          '--keep',
          '--uidl',
          '--nodetach',
          '--nosyslog',
          '-v',
        ],
        {
          env: { ...process.env, HOME: home, FETCHMAILHOME: home },
        },
      );
    const fetchedSubjects = () =>
      existsSync(out) ? [...readFileSync(out, 'latin1').matchAll(/^Subject: (.*)$/gm)].map((m) => m[1]) : [];

    const first = fetch();
    assert.equal(first.code, 0, `first run: ${first.stdout}\n${first.stderr}`);
    assert.deepEqual(fetchedSubjects(), subjects);
    assert.equal(readMailbox(box).messages.length, 3, '--keep leaves them on the server');

    const second = fetch();
    assert.equal(second.code, 1, `second run should find no new mail: ${second.stdout}\n${second.stderr}`);
    assert.deepEqual(fetchedSubjects(), subjects, 'nothing fetched twice');

    await deliverOverSmtp(daemon, env, 'carol', note('fm four'));
    const third = fetch();
    assert.equal(third.code, 0, `third run: ${third.stdout}\n${third.stderr}`);
    assert.deepEqual(fetchedSubjects(), [...subjects, 'fm four']);
    // the whole message arrived, body included
    assert.match(readFileSync(out, 'latin1'), /Subject: fm four\n(?:.*\n)*?\nbody of fm four\n/);
  });
});
