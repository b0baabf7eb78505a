// e2e: MTA-STS outbound (README, "MTA-STS"). The test's DNS server publishes _mta-sts TXT
// records and the MX hosts; an HTTPS server on 127.0.0.50:443 serves each domain's policy with a
// certificate from a test CA (relay.ca_file names it); the MX hosts are SMTP sinks on port 25
// with STARTTLS (so run as root, as CI does; skipped otherwise). Under enforce, mail goes only to
// a listed MX host with a certificate valid for its name: a wrong name, an untrusted CA or an
// unlisted MX defers it. Under testing it is delivered and the problem logged. A failed policy
// fetch keeps the cached policy.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DnsZoneServer, startDnsZone, type Zone } from '../support/dns-zone.js';
import { startSmtpSink, type SmtpSink } from '../support/smtp-sink.js';
import { makeTestCa } from '../support/test-ca.js';
import {
  crlf,
  type Daemon,
  deepMerge,
  makeEnv,
  RUN_AS_ROOT,
  sendRaw,
  startDaemon,
  type LogEntry,
  type TestEnv,
} from './harness.js';

const POLICY_HOST = '127.0.0.50';
const GOOD_MX = '127.0.0.51';
const WRONG_NAME_MX = '127.0.0.52';
const UNTRUSTED_MX = '127.0.0.53';
const MYNETWORKS_CLIENT = '127.0.0.2';

function policy(mode: string, mx: string[]): string {
  return ['version: STSv1', `mode: ${mode}`, ...mx.map((host) => `mx: ${host}`), 'max_age: 86400', ''].join('\r\n');
}

/** Each domain: its MX host's address, its policy (none: no record) and the policy's id. */
const DOMAINS: Record<string, { mx: string; policy?: string }> = {
  'enforced.test': { mx: GOOD_MX, policy: policy('enforce', ['mx.enforced.test']) },
  'wrong-name.test': { mx: WRONG_NAME_MX, policy: policy('enforce', ['*.wrong-name.test']) },
  'untrusted.test': { mx: UNTRUSTED_MX, policy: policy('enforce', ['mx.untrusted.test']) },
  'unlisted.test': { mx: GOOD_MX, policy: policy('enforce', ['mx.elsewhere.test']) },
  'testing.test': { mx: WRONG_NAME_MX, policy: policy('testing', ['mx.elsewhere.test']) },
};

function zoneFor(): Zone {
  const zone: Zone = {};
  for (const [domain, { mx, policy: text }] of Object.entries(DOMAINS)) {
    zone[domain] = { mx: [[10, `mx.${domain}`]] };
    zone[`mx.${domain}`] = { a: [mx] };
    if (text !== undefined) {
      zone[`_mta-sts.${domain}`] = { txt: ['v=STSv1; id=1'] };
      zone[`mta-sts.${domain}`] = { a: [POLICY_HOST] };
    }
  }
  return zone;
}

describe('MTA-STS', {
  skip: RUN_AS_ROOT ? false : 'needs root: the MX hosts listen on port 25, policies on 443',
}, () => {
  let dns: DnsZoneServer;
  let env: TestEnv;
  let daemon: Daemon;
  let policyServer: Server;
  let otherCaDir: string;
  const policyRequests: string[] = [];
  /** hosts whose policy requests get 500 */
  const failing = new Set<string>();
  const sinks: SmtpSink[] = [];

  before(async () => {
    dns = await startDnsZone(zoneFor());
    env = await makeEnv({ config: { dns_servers: [dns.server], relay: { retry: ['200ms'], connect_timeout: '3s' } } });
    const ca = makeTestCa(env.dir);
    otherCaDir = await mkdtemp(join(tmpdir(), 'mailsrv-other-ca-'));
    const otherCa = makeTestCa(otherCaDir);

    const policyCert = ca.issue(Object.keys(DOMAINS).map((domain) => `mta-sts.${domain}`));
    policyServer = createServer(policyCert, (req, res) => {
      const host = (req.headers.host ?? '').toLowerCase();
      policyRequests.push(`${host}${req.url}`);
      const text = DOMAINS[host.replace(/^mta-sts\./, '')]?.policy;
      if (failing.has(host) || text === undefined || req.url !== '/.well-known/mta-sts.txt') {
        res.writeHead(failing.has(host) ? 500 : 404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' }).end(text);
    });
    await new Promise<void>((resolve) => policyServer.listen(443, POLICY_HOST, resolve));

    const tlsSink = async (host: string, credentials: { cert: string; key: string }) => {
      const sink = await startSmtpSink({
        host,
        port: 25,
        server: { disabledCommands: ['AUTH'], ...credentials },
      });
      sinks.push(sink);
    };
    await tlsSink(GOOD_MX, ca.issue(['mx.enforced.test', 'mx.unlisted.test']));
    await tlsSink(WRONG_NAME_MX, ca.issue(['somewhere.else.test']));
    await tlsSink(UNTRUSTED_MX, otherCa.issue(['mx.untrusted.test']));

    await env.writeConfig(deepMerge(env.config, { relay: { ca_file: ca.caFile } }));
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    await Promise.all(sinks.map((sink) => sink.close()));
    await new Promise((resolve) => policyServer?.close(resolve));
    await dns?.close();
    await env?.cleanup();
    if (otherCaDir) await rm(otherCaDir, { recursive: true });
  });

  async function send(to: string, subject: string): Promise<string> {
    const sent = await sendRaw(env.port, {
      from: 'ops@inside.test',
      to: [to],
      message: crlf(`Subject: ${subject}`, '', 'policy check', ''),
      localAddress: MYNETWORKS_CLIENT,
    });
    assert.ok(sent.queueId, JSON.stringify(sent));
    return sent.queueId;
  }

  function outcome(queueId: string): Promise<LogEntry> {
    return daemon.waitForLog(
      (e) => e.queueId === queueId && (e.msg === 'delivered' || e.msg === 'deferred' || e.msg === 'bounced'),
      15_000,
      `the first attempt of ${queueId}`,
    );
  }

  function receivedBy(subject: string) {
    return sinks.flatMap((sink) => sink.messages).find((m) => m.data.includes(`Subject: ${subject}`));
  }

  test('enforce: a listed MX host with a valid certificate gets the mail over TLS', async () => {
    const queueId = await send('user@enforced.test', 'enforced');
    assert.equal((await outcome(queueId)).msg, 'delivered');
    assert.equal(receivedBy('enforced')?.secure, true);
    assert.ok(policyRequests.includes('mta-sts.enforced.test/.well-known/mta-sts.txt'), policyRequests.join());
  });

  test('enforce: a certificate for another name, or from an untrusted CA, defers the mail', async () => {
    for (const domain of ['wrong-name.test', 'untrusted.test']) {
      const queueId = await send(`user@${domain}`, `to ${domain}`);
      const result = await outcome(queueId);
      assert.equal(result.msg, 'deferred', JSON.stringify(result));
      assert.match(String(result.reason), /^4\.7\.5 TLS with mx\./);
    }
  });

  test('enforce: an MX host the policy does not list defers the mail', async () => {
    const result = await outcome(await send('user@unlisted.test', 'unlisted'));
    assert.equal(result.msg, 'deferred');
    assert.match(String(result.reason), /MTA-STS policy of unlisted\.test \(enforce\) lists none of its MX hosts/);
  });

  test('testing: delivered anyway, with the unlisted MX host and the unverified TLS logged', async () => {
    const queueId = await send('user@testing.test', 'testing mode');
    assert.equal((await outcome(queueId)).msg, 'delivered');
    assert.ok(receivedBy('testing mode'));
    const logged = (text: string) => (e: LogEntry) => e.queueId === queueId && e.msg === text;
    await daemon.waitForLog(logged('MTA-STS testing: MX hosts not in the policy'), 5_000);
    await daemon.waitForLog(logged('MTA-STS testing: TLS not verified; delivering anyway'), 5_000);
  });

  test('a policy fetch that fails keeps the cached policy', async () => {
    // a new id makes mailsrv fetch again; the fetch fails; enforce still holds
    dns.zone['_mta-sts.wrong-name.test'] = { txt: ['v=STSv1; id=2'] };
    failing.add('mta-sts.wrong-name.test');
    const fetchesBefore = policyRequests.filter((r) => r.startsWith('mta-sts.wrong-name.test')).length;
    const result = await outcome(await send('other@wrong-name.test', 'after a failed fetch'));
    assert.equal(result.msg, 'deferred', JSON.stringify(result));
    // (the retries of the messages deferred before fetch again too)
    assert.ok(policyRequests.filter((r) => r.startsWith('mta-sts.wrong-name.test')).length > fetchesBefore);
  });
});
