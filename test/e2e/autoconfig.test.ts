// E2E: mail client setup from the real daemon ([autoconfig] listen on HTTP and HTTPS): curl fetches
// Thunderbird's clientConfig from both paths and posts Outlook's autodiscover request; Python's
// XML parser reads the answers as Thunderbird's reader checks them, and the servers they name
// take the login they name. Wrong paths, methods, domains and oversized or slow requests are
// refused; SIGHUP's new certificate is served on HTTPS; without TLS the ports are announced plain.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateSelfSigned } from '../../src/tls/selfsigned.js';
import {
  authPlain,
  connectPop3s,
  connectSmtpTls,
  connectSocket,
  type Daemon,
  DOMAIN,
  envForTest,
  freePort,
  HOSTNAME,
  makeEnv,
  PASSWORD,
  PYTHON,
  REPO_ROOT,
  startDaemon,
  type TestEnv,
  withTimeout,
} from './harness.js';

const SECOND_DOMAIN = 'second.test';
const READER = join(REPO_ROOT, 'test', 'support', 'autoconfig-reader.py');
const CLIENT_CONFIG = '/mail/config-v1.1.xml';
const WELL_KNOWN = '/.well-known/autoconfig/mail/config-v1.1.xml';
const AUTODISCOVER = '/autodiscover/autodiscover.xml';

/** Outlook's autodiscover request for `address` (written as is: the caller escapes it). */
function outlookRequest(address: string): string {
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">',
    '  <Request>',
    `    <EMailAddress>${address}</EMailAddress>`,
    '    <AcceptableResponseSchema>' +
      'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a' +
      '</AcceptableResponseSchema>',
    '  </Request>',
    '</Autodiscover>',
  ].join('\n');
}

interface HttpResult {
  /** curl's exit code (60: the certificate did not verify) */
  exit: number | null;
  status: number;
  headers: string;
  body: string;
}

/** One request with curl; `https`: to HOSTNAME (resolved to 127.0.0.1), verified against `ca` (a file). */
function curl(
  target: { port: number; https?: { caFile: string } },
  path: string,
  options: { method?: string; body?: string; headers?: string[] } = {},
): HttpResult {
  const url = target.https ? `https://${HOSTNAME}:${target.port}${path}` : `http://127.0.0.1:${target.port}${path}`;
  // headers into a file: curl 7.88 crashes writing them to /dev/stderr when that is a pipe
  const headerFile = join(mkdtempSync(join(tmpdir(), 'autoconfig-curl-')), 'headers');
  const args = ['-sS', '--max-time', '20', '-D', headerFile, '-o', '-', '-w', '\n%{http_code}'];
  if (target.https) args.push('--cacert', target.https.caFile, '--resolve', `${HOSTNAME}:${target.port}:127.0.0.1`);
  if (options.method) args.push('-X', options.method);
  if (options.body !== undefined) args.push('--data-binary', '@-');
  for (const header of options.headers ?? []) args.push('-H', header);
  const result = spawnSync('curl', [...args, url], { encoding: 'utf8', input: options.body ?? '' });
  if (result.error) throw result.error;
  const headers = existsSync(headerFile) ? readFileSync(headerFile, 'utf8') : '';
  rmSync(dirname(headerFile), { recursive: true });
  const cut = result.stdout.lastIndexOf('\n');
  return {
    exit: result.status,
    status: Number(result.stdout.slice(cut + 1)),
    headers,
    body: result.stdout.slice(0, cut),
  };
}

/** The answer as Python's XML parser reads it (test/support/autoconfig-reader.py). */
function readXml(kind: 'clientconfig' | 'autodiscover', xml: string): Record<string, unknown> {
  const result = spawnSync(PYTHON, [READER, kind], { input: xml, encoding: 'utf8' });
  assert.equal(result.status, 0, `the reader failed on:\n${xml}\n${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

function server(type: string, port: number, socketType: string) {
  return {
    type,
    hostname: HOSTNAME,
    port,
    socketType,
    username: '%EMAILLOCALPART%',
    authentication: 'password-cleartext',
  };
}

describe('client autoconfig over HTTP and HTTPS', () => {
  let env: TestEnv;
  let daemon: Daemon;
  const port = { pop3: 0, pop3s: 0, submission: 0, smtps: 0, http: 0, https: 0 };
  let http: { port: number };
  let https: { port: number; https: { caFile: string } };

  before(async () => {
    for (const key of Object.keys(port) as (keyof typeof port)[]) port[key] = await freePort();
    env = await makeEnv({
      tls: true,
      config: {
        domains: [DOMAIN, SECOND_DOMAIN],
        smtp: { submission: [`127.0.0.1:${port.submission}`], smtps: [`127.0.0.1:${port.smtps}`] },
        pop3: { listen: [`127.0.0.1:${port.pop3}`], pop3s: [`127.0.0.1:${port.pop3s}`] },
        autoconfig: { listen: [`127.0.0.1:${port.http}`, `https://127.0.0.1:${port.https}`] },
      },
    });
    http = { port: port.http };
    https = { port: port.https, https: { caFile: env.tls!.certFile } };
    daemon = await startDaemon(env);
  });

  after(async () => {
    await daemon?.kill9();
    await env?.cleanup();
  });

  test("Thunderbird's clientConfig from both paths, over HTTP and HTTPS: the ports listened on", async () => {
    const expected = {
      domains: [DOMAIN, SECOND_DOMAIN, HOSTNAME],
      incoming: [server('pop3', port.pop3s, 'SSL'), server('pop3', port.pop3, 'STARTTLS')],
      outgoing: [server('smtp', port.smtps, 'SSL'), server('smtp', port.submission, 'STARTTLS')],
    };
    for (const target of [http, https]) {
      for (const path of [CLIENT_CONFIG, WELL_KNOWN]) {
        const asked = curl(target, `${path}?emailaddress=${encodeURIComponent(`bob@${SECOND_DOMAIN}`)}`);
        assert.equal(asked.status, 200, asked.body);
        assert.match(asked.headers, /^content-type: application\/xml/im);
        assert.deepEqual(readXml('clientconfig', asked.body), { id: SECOND_DOMAIN, ...expected });
        // Thunderbird's first try on autoconfig.DOMAIN may come without the address
        const bare = curl(target, path);
        assert.equal(bare.status, 200, bare.body);
        assert.deepEqual(readXml('clientconfig', bare.body), { id: DOMAIN, ...expected });
      }
    }
    await daemon.waitForLog(
      (e) => e.msg === 'autoconfig request' && e.path === WELL_KNOWN && e.status === 200,
      10_000,
      'the "autoconfig request" log line',
    );
  });

  test('the announced servers take the login they name: the local part and the password', async () => {
    const config = readXml('clientconfig', curl(https, `${CLIENT_CONFIG}?emailaddress=alice%40${DOMAIN}`).body);
    const [incoming] = config.incoming as ReturnType<typeof server>[];
    const [outgoing] = config.outgoing as ReturnType<typeof server>[];
    const user = `alice@${DOMAIN}`.split('@')[0]!; // %EMAILLOCALPART%
    const pop3 = await connectPop3s(incoming!.port, env.tls!.cert);
    try {
      assert.match(await pop3.client.cmd(`USER ${user}`), /^\+OK/);
      assert.match(await pop3.client.cmd(`PASS ${PASSWORD}`), /^\+OK/);
    } finally {
      pop3.client.destroy();
    }
    const smtp = await connectSmtpTls(outgoing!.port, env.tls!.cert);
    try {
      assert.equal((await smtp.client.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.client.cmd(`AUTH PLAIN ${authPlain(user)}`)).code, 235);
    } finally {
      smtp.client.destroy();
    }
  });

  test("Outlook's autodiscover: POP3 and SMTP entries for the request's address, escaped", async () => {
    for (const target of [http, https]) {
      const reply = curl(target, AUTODISCOVER, {
        method: 'POST',
        body: outlookRequest(`alice@${DOMAIN}`),
        headers: ['Content-Type: text/xml; charset=utf-8'],
      });
      assert.equal(reply.status, 200, reply.body);
      const entry = (type: string, portNumber: number) => ({
        Type: type,
        Server: HOSTNAME,
        Port: String(portNumber),
        LoginName: 'alice',
        DomainRequired: 'off',
        SPA: 'off',
        SSL: 'on',
        Encryption: 'SSL',
        AuthRequired: 'on',
      });
      assert.deepEqual(readXml('autodiscover', reply.body), {
        accountType: 'email',
        action: 'settings',
        protocols: [entry('POP3', port.pop3s), entry('SMTP', port.smtps)],
      });
    }
    // Outlook's spelling of the path; an address with characters XML must escape
    const odd = curl(http, '/Autodiscover/Autodiscover.xml', {
      method: 'POST',
      body: outlookRequest(`o'brien&amp;co@${SECOND_DOMAIN}`),
    });
    assert.equal(odd.status, 200, odd.body);
    const protocols = readXml('autodiscover', odd.body).protocols as { LoginName: string }[];
    assert.deepEqual(
      protocols.map((p) => p.LoginName),
      ["o'brien&co", "o'brien&co"],
    );
  });

  test('other paths 404, other methods 405, other domains 404, bad addresses 400', () => {
    for (const path of [
      '/',
      '/mail/config-v1.1.xml.bak',
      '/mail/',
      '/autodiscover/other.xml',
      '//mail/config-v1.1.xml',
    ]) {
      assert.equal(curl(http, path).status, 404, path);
    }
    const post = curl(http, CLIENT_CONFIG, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.match(post.headers, /^allow: GET, HEAD/im);
    const get = curl(http, AUTODISCOVER);
    assert.equal(get.status, 405);
    assert.match(get.headers, /^allow: POST/im);
    assert.equal(curl(http, `${CLIENT_CONFIG}?emailaddress=bob%40elsewhere.test`).status, 404);
    assert.equal(curl(http, AUTODISCOVER, { method: 'POST', body: outlookRequest('bob@elsewhere.test') }).status, 404);
    assert.equal(curl(http, `${CLIENT_CONFIG}?emailaddress=${encodeURIComponent('<b>@x')}`).status, 400);
    assert.equal(curl(http, AUTODISCOVER, { method: 'POST', body: '<Autodiscover/>' }).status, 400);
  });

  test('bounded: 16 KiB of body (413), 8 KiB of headers (431), 10 s per connection', async () => {
    const big = curl(http, AUTODISCOVER, { method: 'POST', body: outlookRequest(`alice@${DOMAIN}`).padEnd(20_000) });
    assert.equal(big.status, 413);
    const chunked = curl(http, AUTODISCOVER, {
      method: 'POST',
      body: ' '.repeat(20_000),
      headers: ['Transfer-Encoding: chunked'],
    });
    assert.equal(chunked.status, 413);
    assert.equal(curl(http, CLIENT_CONFIG, { headers: [`X-Filler: ${'x'.repeat(9000)}`] }).status, 431);
    // a client that never finishes its request is cut at the deadline (the guard only ends a hang)
    const unfinished = async (target: number, start: string) => {
      const socket = await connectSocket(target, {}, 10_000);
      socket.on('error', () => {});
      const closed = new Promise((resolve) => socket.once('close', resolve));
      socket.write(start);
      await withTimeout(closed, 60_000, `a request left unfinished on port ${target} was never cut`);
    };
    await Promise.all([
      unfinished(port.http, 'GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: x\r\n'),
      unfinished(port.https, '\x16\x03\x01'), // a TLS handshake begun
    ]);
  });

  test('SIGHUP: HTTPS serves the new certificate from the next connection on', async () => {
    const oldCa = join(env.dir, 'old-ca.pem');
    await writeFile(oldCa, env.tls!.cert);
    const fresh = await generateSelfSigned(HOSTNAME, 10);
    await writeFile(env.tls!.certFile, fresh.cert);
    await writeFile(env.tls!.keyFile, fresh.key);
    const freshCa = join(env.dir, 'fresh-ca.pem');
    await writeFile(freshCa, fresh.cert);
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog((e) => e.msg === 'reloaded config, users, aliases and TLS certificate');
    const withFresh = curl({ port: port.https, https: { caFile: freshCa } }, CLIENT_CONFIG);
    assert.equal(withFresh.status, 200, `${withFresh.exit} ${withFresh.headers}`);
    const withOld = curl({ port: port.https, https: { caFile: oldCa } }, CLIENT_CONFIG);
    assert.notEqual(withOld.exit, 0, 'the old certificate is no longer served');
  });
});

test('without TLS: POP3 and submission are announced plain', async (t) => {
  const ports = { pop3: await freePort(), submission: await freePort(), http: await freePort() };
  const { start } = await envForTest(t, {
    config: {
      smtp: { submission: [`127.0.0.1:${ports.submission}`] },
      pop3: { listen: [`127.0.0.1:${ports.pop3}`] },
      autoconfig: { listen: [`http://127.0.0.1:${ports.http}`] },
    },
  });
  await start();
  const reply = curl({ port: ports.http }, CLIENT_CONFIG);
  assert.equal(reply.status, 200, reply.body);
  const config = readXml('clientconfig', reply.body);
  assert.deepEqual(config.incoming, [server('pop3', ports.pop3, 'plain')]);
  assert.deepEqual(config.outgoing, [server('smtp', ports.submission, 'plain')]);
  const discovered = curl({ port: ports.http }, AUTODISCOVER, {
    method: 'POST',
    body: outlookRequest(`bob@${DOMAIN}`),
  });
  const protocols = readXml('autodiscover', discovered.body).protocols as Record<string, string>[];
  assert.deepEqual(
    protocols.map((p) => [p.Type, p.Port, p.SSL, p.Encryption]),
    [
      ['POP3', String(ports.pop3), 'off', 'None'],
      ['SMTP', String(ports.submission), 'off', 'None'],
    ],
  );
});
