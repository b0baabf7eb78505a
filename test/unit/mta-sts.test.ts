// MTA-STS policies (src/relay/mta-sts.ts) against a real HTTPS server on loopback with a test
// CA and a resolver that answers from a table: the policy is fetched once per id and cached, a new
// id fetches again, a failed fetch keeps the cached policy and is not retried at once, a missing
// record means no policy (and is believed for a while), a policy over 64 KiB, an untrusted
// certificate or a non-200 answer is no policy; "*." matches one label only.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  FETCH_RETRY_MS,
  listedIn,
  MAX_POLICY_BYTES,
  NO_RECORD_RECHECK_MS,
  type StsPolicy,
  StsPolicies,
} from '../../src/relay/mta-sts.js';
import { makeTestCa, type TestCa } from '../support/test-ca.js';

const POLICY = 'version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmx: *.example.test\r\nmax_age: 600\r\n';

let dir: string;
let ca: TestCa;
let server: Server;
let port: number;
/** what the HTTPS server answers now: [status, body] */
let answer: [number, string] = [200, POLICY];
let fetches = 0;
/** name/TYPE → records; a missing name is NXDOMAIN */
const records = new Map<string, string[] | string[][]>();
const now = { ms: 1_000_000 };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailsrv-sts-'));
  ca = makeTestCa(dir);
  server = createServer(ca.issue(['mta-sts.example.test']), (_req, res) => {
    fetches += 1;
    res.writeHead(answer[0], { 'content-type': 'text/plain' }).end(answer[1]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true });
});

function resolver(name: string, type: string): Promise<string[] | string[][]> {
  const found = records.get(`${name}/${type}`);
  if (found !== undefined) return Promise.resolve(found);
  return Promise.reject(Object.assign(new Error(`${name} not found`), { code: 'ENOTFOUND' }));
}

/** `trusted` null: the system's CAs only */
function policies(trusted: string[] | null = [ca.caPem]): StsPolicies {
  return new StsPolicies({ resolver, ca: trusted ?? undefined, now: () => now.ms, port });
}

function publish(id: string | null): void {
  if (id === null) records.delete('_mta-sts.example.test/TXT');
  else records.set('_mta-sts.example.test/TXT', [[`v=STSv1; id=${id}`]]);
  records.set('mta-sts.example.test/A', ['127.0.0.1']);
}

test('fetched once per id, cached; a new id fetches again; a failed fetch keeps the cache', async () => {
  publish('1');
  answer = [200, POLICY];
  fetches = 0;
  const sts = policies();
  const first = await sts.policyFor('example.test');
  assert.deepEqual(
    { mode: first?.mode, mx: first?.mx, id: first?.id },
    { mode: 'enforce', mx: ['mx.example.test', '*.example.test'], id: '1' },
  );
  await sts.policyFor('Example.TEST');
  assert.equal(fetches, 1);

  publish('2');
  answer = [500, ''];
  assert.equal((await sts.policyFor('example.test'))?.id, '1');
  assert.equal(fetches, 2);
  // not tried again at once
  assert.equal((await sts.policyFor('example.test'))?.id, '1');
  assert.equal(fetches, 2);
  now.ms += FETCH_RETRY_MS + 1;
  answer = [200, POLICY.replace('enforce', 'testing')];
  assert.deepEqual((await sts.policyFor('example.test'))?.mode, 'testing');
  assert.equal(fetches, 3);

  // no record now: the cached policy holds until max_age has passed
  publish(null);
  assert.equal((await sts.policyFor('example.test'))?.mode, 'testing');
  now.ms += 601_000;
  assert.equal(await sts.policyFor('example.test'), null);
});

test('no record: no policy, believed for a while', async () => {
  publish(null);
  fetches = 0;
  const sts = policies();
  assert.equal(await sts.policyFor('example.test'), null);
  publish('1');
  answer = [200, POLICY];
  assert.equal(await sts.policyFor('example.test'), null);
  now.ms += NO_RECORD_RECHECK_MS + 1;
  assert.equal((await sts.policyFor('example.test'))?.mode, 'enforce');
  assert.equal(fetches, 1);
});

test('an oversized policy, an untrusted certificate, a 404 or a bad policy is no policy', async () => {
  publish('1');
  const cases: [string, [number, string], string[] | null][] = [
    ['oversized', [200, `${POLICY}${'x'.repeat(MAX_POLICY_BYTES)}\r\n`], [ca.caPem]],
    ['untrusted', [200, POLICY], null],
    ['404', [404, POLICY], [ca.caPem]],
    ['bad', [200, 'version: STSv1\r\nmode: sometimes\r\nmax_age: 600\r\n'], [ca.caPem]],
  ];
  for (const [what, reply, trusted] of cases) {
    answer = reply;
    assert.equal(await policies(trusted).policyFor('example.test'), null, what);
  }
});

test('listedIn: exact names, and "*." for exactly one more label', () => {
  const policy = { mode: 'enforce', mx: ['mx.example.test', '*.example.test'], maxAge: 600, id: '1' } as StsPolicy;
  assert.equal(listedIn('mx.example.test', policy), true);
  assert.equal(listedIn('MX2.example.test', policy), true);
  assert.equal(listedIn('a.b.example.test', policy), false);
  assert.equal(listedIn('example.test', policy), false);
  assert.equal(listedIn('mx.example.org', policy), false);
});
