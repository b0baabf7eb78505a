// E2E: failed logins against the real daemon delay, they do not lock out (README, "Logins: SMTP
// AUTH and POP3"). A flood of wrong passwords for alice from one address: bob from the same
// address (a NAT) logs in without a penalty, and alice's right password logs in after one, over
// the other protocol. A sprayer trying many user names: past 5 × max_failures every user from its
// address waits a penalty, and still logs in; from mynetworks nobody does. Clients appear as
// different addresses by binding 127.0.x.y; the daemon's log says who waited.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  authPlain,
  type Daemon,
  type LogEntry,
  makePop3Env,
  PASSWORD,
  Pop3Client,
  type Reply,
  smtpDialog,
  startDaemon,
  type TestEnv,
} from './harness.js';

/** auth.max_failures in this file's config: an address's limit is five times this */
const MAX_FAILURES = 3;
/** in the harness's mynetworks (127.0.0.2/32) */
const MYNETWORKS_CLIENT = '127.0.0.2';

describe('failed logins delay, per user and address; they never lock anyone out', () => {
  let env: TestEnv & { pop3Port: number };
  let daemon: Daemon;

  before(async () => {
    env = await makePop3Env({
      users: ['alice', 'bob', 'carol'],
      config: {
        plaintext_auth_networks: ['127.0.0.0/8'],
        // no credential cache: every login below goes through the penalties
        auth: { failure_delay: '100ms', max_failures: MAX_FAILURES, lockout: '1h', cache_ttl: '0s' },
      },
    });
    daemon = await startDaemon(env);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    if (env) await env.cleanup();
  });

  /** SMTP AUTH PLAIN with each password in turn on one connection from `localAddress`: the AUTH replies. */
  async function smtpLogins(localAddress: string, user: string, passwords: string[]): Promise<Reply[]> {
    const lines = ['EHLO client.test', ...passwords.map((password) => `AUTH PLAIN ${authPlain(user, password)}`)];
    const replies = await smtpDialog(env.port, lines, { localAddress, timeoutMs: 120_000 });
    return replies.slice(2);
  }

  /**
   * Waits for the protocol's 'login' line of `user` from `client` and returns the daemon's
   * 'login after a penalty' line for it, if any: it comes just before.
   */
  async function penaltyOf(user: string, client: string): Promise<LogEntry | undefined> {
    const isLogin = (e: LogEntry) => e.msg === 'login' && e.user === user && e.client === client;
    await daemon.waitForLog(isLogin, 10_000, `the login of ${user} from ${client}`);
    const index = daemon.logs.findIndex(isLogin);
    const previous = daemon.logs.slice(0, index).findLast((e) => e.user === user && e.client === client);
    return previous?.msg === 'login after a penalty' ? previous : undefined;
  }

  test('a flood for alice from one address: bob there logs in at once, alice after a penalty', async () => {
    const nat = '127.0.5.1';
    // two connections guessing in parallel: past max_failures the checks wait, and still fail
    const flood = await Promise.all([1, 2].map((n) => smtpLogins(nat, 'alice', [`wrong-${n}a`, `wrong-${n}b`])));
    for (const reply of flood.flat()) assert.equal(reply.raw, '535 5.7.8 Authentication credentials invalid');
    const failed = await daemon.waitForLogs((e) => e.msg === 'login failed' && e.client === nat, 4);
    const penalized = failed.filter((e) => e.client === nat && typeof e.penaltyMs === 'number');
    assert.ok(penalized.length >= 1, `the 4th check waited a penalty: ${JSON.stringify(failed)}`);

    // bob behind the same address: no penalty
    const [bob] = await smtpLogins(nat, 'bob', [PASSWORD]);
    assert.match(bob!.raw, /^235 /);
    assert.equal(await penaltyOf('bob', nat), undefined, "alice's failures do not delay bob");

    // alice's right password, over POP3 (the counts are the protocols' together): delayed, not refused
    const client = await Pop3Client.login(env.pop3Port, 'alice', PASSWORD, { localAddress: nat, timeoutMs: 120_000 });
    await client.quit();
    const penalty = await penaltyOf('alice', nat);
    assert.ok(penalty !== undefined && Number(penalty.penaltyMs) > 0, JSON.stringify(penalty));
  });

  test('a sprayer: past 5 x max_failures every user there waits, then logs in; not from mynetworks', async () => {
    const sprayer = '127.0.5.2';
    for (const client of [sprayer, MYNETWORKS_CLIENT]) {
      // 5 × max_failures user names, one wrong password each, over five connections at once
      const rounds = await Promise.all(
        [0, 1, 2, 3, 4].map((c) =>
          smtpDialog(
            env.port,
            ['EHLO client.test', ...[0, 1, 2].map((n) => `AUTH PLAIN ${authPlain(`nobody-${c}-${n}`, 'guess')}`)],
            { localAddress: client, timeoutMs: 120_000 },
          ),
        ),
      );
      assert.equal(rounds.flatMap((replies) => replies.slice(2)).length, 5 * MAX_FAILURES);
      assert.ok(rounds.every((replies) => replies.slice(2).every((reply) => reply.code === 535)));
    }
    const [outside] = await smtpLogins(sprayer, 'carol', [PASSWORD]);
    assert.match(outside!.raw, /^235 /, 'delayed, not refused');
    const penalty = await penaltyOf('carol', sprayer);
    assert.ok(penalty !== undefined && Number(penalty.penaltyMs) > 0, JSON.stringify(penalty));

    const [inside] = await smtpLogins(MYNETWORKS_CLIENT, 'carol', [PASSWORD]);
    assert.match(inside!.raw, /^235 /);
    assert.equal(await penaltyOf('carol', MYNETWORKS_CLIENT), undefined, 'mynetworks has no address count');
  });
});
