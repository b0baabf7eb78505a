// ACME renewal against pebble, in process on a fake clock (the daemon's certificate part with
// real HTTP-01, real files and a real ACME server; only time is moved by the test): the first
// order, the renewal 30 days before expiry while the ACME server is down (logged, retried after
// 1 then 2 minutes, the current certificate kept), and the renewal going through once a server
// answers again, the new certificate stored and handed over.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { AcmeCertificates } from '../../src/acme/certificates.js';
import { RENEW_BEFORE_MS } from '../../src/acme/renewal.js';
import { configSchema } from '../../src/config/schema.js';
import type { TlsCredentials } from '../../src/tls/credentials.js';
import { startDnsZone } from '../support/dns-zone.js';
import { FakeClock } from '../support/fake-clock.js';
import { Pebble } from '../support/pebble.js';
import { TcpGate } from '../support/tcp-gate.js';
import { freePort, HOSTNAME } from './harness.js';

interface Line {
  msg: string;
  [key: string]: unknown;
}

/** A logger whose lines the test reads, and a wait for the n-th line with a message. */
function capturingLogger() {
  const lines: Line[] = [];
  const listeners = new Set<() => void>();
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString('utf8').split('\n')) if (text !== '') lines.push(JSON.parse(text) as Line);
      for (const listener of [...listeners]) listener();
      done();
    },
  });
  const nth = (msg: string, n: number) =>
    new Promise<Line>((resolve) => {
      const check = () => {
        const found = lines.filter((line) => line.msg === msg);
        if (found.length < n) return;
        listeners.delete(check);
        resolve(found[n - 1]!);
      };
      listeners.add(check);
      check();
    });
  return { logger: pino({ level: 'info' }, stream), lines, nth };
}

test('renewal 30 days before expiry: retried while the ACME server is down, then swapped in', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-acme-renewal-'));
  const dns = await startDnsZone({ [HOSTNAME]: { a: ['127.0.0.1'] } });
  const httpPort = await freePort();
  let pebble = await Pebble.start({ dir, dnsServer: dns.server, httpPort });
  const gate = await TcpGate.start(pebble.port, 'open');
  const { logger, nth } = capturingLogger();
  const config = configSchema.parse({
    hostname: HOSTNAME,
    acme: {
      directory: `https://127.0.0.1:${gate.port}/dir`,
      http_listen: [`127.0.0.1:${httpPort}`],
      ca_file: pebble.caFile,
    },
  });
  const acme = (await AcmeCertificates.open(config, dir, logger))!;
  t.after(async () => {
    await acme.stop();
    await gate.close();
    await pebble.stop();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  });
  await acme.listen();

  const handed: TlsCredentials[] = [];
  const clock = new FakeClock(Date.now());
  acme.start(clock, (credentials) => void handed.push(credentials));
  await nth('ACME certificate issued and in use', 1);
  assert.equal(handed.length, 1);
  const first = new X509Certificate(handed[0]!.cert);
  assert.equal(first.issuer, (await pebble.intermediate()).subject);
  assert.equal(acme.serving(null), handed[0]);

  // the ACME server goes away; time moves to the renewal, a day at a time
  await pebble.stop();
  gate.set('refuse');
  const renewAt = handed[0]!.validTo.getTime() - RENEW_BEFORE_MS;
  while (clock.now() < renewAt) await clock.runTimer('renewal step');
  const failure1 = await nth('ACME order failed; the current certificate stays, retrying', 1);
  assert.equal(Date.parse(failure1.retryAt as string), renewAt + 60_000);
  await clock.runTimer('first retry', (at) => at === renewAt + 60_000);
  const failure2 = await nth('ACME order failed; the current certificate stays, retrying', 2);
  assert.equal(Date.parse(failure2.retryAt as string), renewAt + 60_000 + 120_000);
  assert.equal(handed.length, 1, 'nothing handed over while the orders fail');
  assert.equal(acme.serving(null), handed[0], 'the current certificate stays');

  // a server answers again (a new pebble: a new CA); the next retry renews
  pebble = await Pebble.start({ dir, dnsServer: dns.server, httpPort });
  gate.set('open', pebble.port);
  await clock.runTimer('second retry');
  await nth('ACME certificate issued and in use', 2);
  assert.equal(handed.length, 2);
  const renewed = new X509Certificate(handed[1]!.cert);
  assert.equal(renewed.issuer, (await pebble.intermediate()).subject);
  assert.notEqual(renewed.fingerprint256, first.fingerprint256);
  assert.equal(acme.serving(null), handed[1]);
  assert.equal(new X509Certificate(await readFile(join(dir, 'cert.pem'))).fingerprint256, renewed.fingerprint256);
  await nth('ACME renewal scheduled', 2);
});
