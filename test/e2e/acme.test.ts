// E2E: certificates by ACME against Debian's pebble on loopback, which validates HTTP-01 for
// real (it resolves the name with the test's DNS server and fetches the challenge from the
// daemon's acme.http_listen). The ACME directory is reached through a TCP gate the test holds
// or opens, so it decides when the order may go on. Checked: the temporary self-signed
// certificate and then the [tls] one served before the first issuance; the issued certificate
// (pebble's CA, the configured names) on STARTTLS, smtps, STLS and pop3s while sessions opened
// before the swap go on; `mailsrv status`; a restart serving the stored certificate without a new order;
// an unreachable ACME server logged with its retry while the stored certificate still serves;
// the challenge listener's answers to anything else.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { type DnsZoneServer, startDnsZone } from '../support/dns-zone.js';
import { Pebble } from '../support/pebble.js';
import { TcpGate } from '../support/tcp-gate.js';
import {
  connectPop3s,
  connectSmtpTls,
  connectSocket,
  type ConfigTree,
  type Daemon,
  deepMerge,
  freePort,
  HOSTNAME,
  makeEnv,
  Pop3Client,
  pop3Stls,
  runCli,
  SmtpClient,
  startDaemon,
  startTls,
  type TestEnv,
  withTimeout,
} from './harness.js';

const ISSUED = 'ACME certificate issued and in use';
const FAILED = 'ACME order failed; the current certificate stays, retrying';
const SECOND_NAME = 'mail.test.local';

/** A TLS handshake that accepts any certificate: the test looks at what it got. */
async function handshakeAnyCertificate(socket: Socket): Promise<TLSSocket> {
  const secure = tlsConnect({ socket, servername: HOSTNAME, rejectUnauthorized: false });
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      secure.once('error', reject);
      secure.once('secureConnect', () => resolve());
    }),
    10_000,
    'TLS handshake did not complete',
  );
  return secure;
}

function leaf(socket: TLSSocket): X509Certificate {
  return new X509Certificate((socket.getPeerCertificate(true) as PeerCertificate).raw);
}

/** What an HTTP request to the challenge listener gets. */
function httpGet(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers });
    req.on('response', (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('certificates by ACME (pebble)', () => {
  let env: TestEnv;
  let dns: DnsZoneServer;
  let pebble: Pebble;
  let gate: TcpGate;
  let daemon: Daemon;
  let config: ConfigTree;
  let pop3sPort: number;
  let pop3Port: number;
  let smtpsPort: number;
  let httpPort: number;
  let root: string;
  let issued: X509Certificate;

  before(async () => {
    dns = await startDnsZone({ [HOSTNAME]: { a: ['127.0.0.1'] }, [SECOND_NAME]: { a: ['127.0.0.1'] } });
    httpPort = await freePort();
    pop3sPort = await freePort();
    pop3Port = await freePort();
    smtpsPort = await freePort();
    env = await makeEnv({ config: { pop3: { pop3s: [] } } });
    pebble = await Pebble.start({ dir: env.dir, dnsServer: dns.server, httpPort });
    root = await pebble.root();
    gate = await TcpGate.start(pebble.port, 'hold');
    config = deepMerge(env.config, {
      smtp: { smtps: [`127.0.0.1:${smtpsPort}`] },
      pop3: { listen: [`127.0.0.1:${pop3Port}`], pop3s: [`127.0.0.1:${pop3sPort}`] },
      acme: {
        directory: `https://127.0.0.1:${gate.port}/dir`,
        email: 'postmaster@example.test',
        http_listen: [`127.0.0.1:${httpPort}`],
        ca_file: pebble.caFile,
      },
    });
    await env.writeConfig(config);
  });

  after(async () => {
    if (daemon) await daemon.stop().catch(() => daemon.kill9());
    await gate?.close();
    await pebble?.stop();
    await dns?.close();
    await env?.cleanup();
  });

  test('issues a certificate from pebble and swaps it into every TLS listener under open sessions', async () => {
    daemon = await startDaemon(env);
    await daemon.waitForLog((e) => e.msg === 'ACME order started');

    // before the first issuance (the order waits at the gate): a temporary self-signed certificate
    const { client: smtpPlain } = await SmtpClient.connect(env.port);
    await smtpPlain.cmd('EHLO client.test');
    assert.equal((await smtpPlain.cmd('STARTTLS')).code, 220);
    const smtpSocket = await handshakeAnyCertificate(smtpPlain.socket);
    const smtpBefore = SmtpClient.over(smtpSocket);
    const pop3sSocket = await handshakeAnyCertificate(await connectSocket(pop3sPort, {}, 10_000));
    const pop3Before = Pop3Client.over(pop3sSocket);
    assert.match(await pop3Before.readLine(), /^\+OK/);
    const temporary = leaf(pop3sSocket);
    assert.equal(temporary.issuer, temporary.subject, 'self-signed');
    assert.equal(temporary.subjectAltName, `DNS:${HOSTNAME}`);
    assert.equal(leaf(smtpSocket).fingerprint256, temporary.fingerprint256);
    assert.equal(pebble.orders, 0);

    gate.set('open');
    const event = await daemon.waitForLog((e) => e.msg === ISSUED, 60_000, `"${ISSUED}"`);
    assert.deepEqual(event.names, [HOSTNAME]);
    assert.equal(pebble.orders, 1);

    // new sessions get pebble's certificate, verified up to pebble's root, for the configured name
    const { client: pop3s, socket } = await connectPop3s(pop3sPort, root);
    issued = leaf(socket);
    const intermediate = await pebble.intermediate();
    assert.equal(issued.issuer, intermediate.subject);
    assert.ok(issued.verify(intermediate.publicKey), 'signed by pebble intermediate');
    assert.equal(issued.subjectAltName, `DNS:${HOSTNAME}`);
    assert.equal(new Date(issued.validTo).toISOString(), event.validTo);
    assert.match(await pop3s.cmd('CAPA'), /^\+OK/);
    await pop3s.quit();
    const { client: smtp } = await SmtpClient.connect(env.port);
    await smtp.cmd('EHLO client.test');
    const smtpTls = await startTls(smtp, root);
    assert.equal(leaf(smtpTls.socket as TLSSocket).fingerprint256, issued.fingerprint256);
    assert.equal((await smtpTls.cmd('EHLO client.test')).code, 250);
    await smtpTls.quit();
    const { client: smtps } = await connectSmtpTls(smtpsPort, root);
    assert.equal(leaf(smtps.socket as TLSSocket).fingerprint256, issued.fingerprint256);
    await smtps.quit();
    const { client: pop3 } = await Pop3Client.connect(pop3Port);
    const pop3Tls = await pop3Stls(pop3, root);
    assert.equal(leaf(pop3Tls.socket as TLSSocket).fingerprint256, issued.fingerprint256);
    await pop3Tls.quit();

    // the sessions opened before the swap go on, with the certificate they started with
    assert.equal((await smtpBefore.cmd('EHLO client.test')).code, 250);
    assert.equal((await smtpBefore.cmd('NOOP')).code, 250);
    assert.equal(leaf(smtpSocket).fingerprint256, temporary.fingerprint256);
    assert.match(await pop3Before.cmd('CAPA'), /^\+OK/);
    await smtpBefore.quit();
    await pop3Before.quit();
  });

  test('mailsrv status shows the names and expiry; the key files are 0600', async () => {
    const status = runCli(['status', '-c', env.configPath]);
    assert.equal(status.code, 0, status.stderr);
    const expires = new Date(issued.validTo).toISOString().replace('.000Z', 'Z');
    assert.match(status.stdout, new RegExp(`^  certificate: ${HOSTNAME}, expires ${expires}$`, 'm'));
    for (const file of ['account-key.pem', 'key.pem']) {
      assert.equal(statSync(`${env.stateDir}/acme/${file}`).mode & 0o777, 0o600, file);
    }
  });

  test('the challenge listener answers only challenge paths, within bounds', async () => {
    assert.equal((await httpGet(httpPort, '/')).status, 404);
    assert.equal((await httpGet(httpPort, '/.well-known/acme-challenge/no-such-token')).status, 404);
    assert.equal((await httpGet(httpPort, '/.well-known/acme-challenge/../../etc/passwd')).status, 404);
    assert.equal((await httpGet(httpPort, '/.well-known/acme-challenge/x', { method: 'POST' })).status, 405);
    assert.equal((await httpGet(httpPort, '/', { headers: { 'X-Big': 'a'.repeat(20_000) } })).status, 431);
  });

  test('a restart serves the stored certificate without a new order', async () => {
    await daemon.stop();
    daemon = await startDaemon(env);
    const stored = await daemon.waitForLog((e) => e.msg === 'stored ACME certificate in use');
    assert.equal(stored.validTo, new Date(issued.validTo).toISOString());
    await daemon.waitForLog((e) => e.msg === 'ACME renewal scheduled');
    const { client, socket } = await connectPop3s(pop3sPort, root);
    assert.equal(leaf(socket).fingerprint256, issued.fingerprint256);
    await client.quit();
    assert.equal(daemon.find((e) => e.msg === 'ACME order started').length, 0);
    assert.equal(pebble.orders, 1);
  });

  test('an unreachable ACME server is logged, to be retried in 1 minute; the stored certificate serves', async () => {
    await daemon.stop();
    // a second name: the stored certificate lacks it, so a new order is due at once
    gate.set('refuse');
    await env.writeConfig(deepMerge(config, { acme: { names: [HOSTNAME, SECOND_NAME] } }));
    daemon = await startDaemon(env);
    await daemon.waitForLog((e) => e.msg === 'stored ACME certificate lacks configured names');
    const failure = await daemon.waitForLog((e) => e.msg === FAILED, 30_000, `"${FAILED}"`);
    const retryIn = Date.parse(failure.retryAt as string) - Date.parse(failure.time as string);
    assert.ok(retryIn > 59_000 && retryIn <= 60_000, `retry in ${retryIn} ms`);
    const { client, socket } = await connectPop3s(pop3sPort, root);
    assert.equal(leaf(socket).fingerprint256, issued.fingerprint256);
    await client.quit();
    assert.equal(pebble.orders, 1);
  });

  test('before the first issuance, a configured [tls] certificate is served instead of a self-signed one', async () => {
    await daemon.stop();
    const withTls = await makeEnv({ tls: true });
    try {
      await withTls.writeConfig(
        deepMerge(withTls.config, {
          acme: {
            directory: `https://127.0.0.1:${gate.port}/dir`,
            http_listen: [`127.0.0.1:${httpPort}`],
            ca_file: pebble.caFile,
          },
        }),
      );
      const other = await startDaemon(withTls);
      try {
        await other.waitForLog((e) => e.msg === FAILED, 30_000, `"${FAILED}"`);
        const { client } = await SmtpClient.connect(withTls.port);
        await client.cmd('EHLO client.test');
        const secure = await startTls(client, withTls.tls!.cert);
        assert.equal(
          leaf(secure.socket as TLSSocket).fingerprint256,
          new X509Certificate(withTls.tls!.cert).fingerprint256,
        );
        await secure.quit();
      } finally {
        await other.stop();
      }
    } finally {
      await withTls.cleanup();
    }
  });
});
