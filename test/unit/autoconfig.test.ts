// Client autoconfig, the parts without a network: the [autoconfig] listen entries and the rules
// tying them to other keys, what is announced (ports, order, socket types, domains), which
// account a request asks about, and the XML escaping. The answers as clients read them are
// checked end to end in test/e2e/autoconfig.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { autodiscoverXml, requestedAddress } from '../../src/autoconfig/autodiscover.js';
import { clientConfigXml } from '../../src/autoconfig/client-config.js';
import { accountQuery, mailSite, servicePorts } from '../../src/autoconfig/site.js';
import { escapeXml, unescapeXml } from '../../src/autoconfig/xml.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { listenersOverlap, parseHttpListen, parseListen } from '../../src/config/units.js';

const MAIL = [
  'hostname = "MX.example.org"',
  'domains = ["example.org", "Example.net"]',
  '[tls]',
  'cert = "/etc/mailsrv/tls/cert.pem"',
  '[smtp]',
  'submission = ["0.0.0.0:587", "[::]:587"]',
  'smtps = ["0.0.0.0:465"]',
  '[pop3]',
  'listen = ["0.0.0.0:110"]',
  'pop3s = ["0.0.0.0:995", "[::]:995"]',
].join('\n');

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'test.toml');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  return [];
}

test('listen entries: host:port (optionally http://) for HTTP, https://host:port for HTTPS', () => {
  assert.deepEqual(parseHttpListen('0.0.0.0:80'), { host: '0.0.0.0', port: 80, https: false });
  assert.deepEqual(parseHttpListen('http://127.0.0.1:8080'), { host: '127.0.0.1', port: 8080, https: false });
  assert.deepEqual(parseHttpListen('https://[::]:443'), { host: '::', port: 443, https: true });
  for (const bad of ['https://', 'ftp://0.0.0.0:21', 'https://0.0.0.0', 'HTTPS://0.0.0.0:443', '0.0.0.0:443/'])
    assert.equal(parseHttpListen(bad), null, bad);
  assert.match(problemsOf(`${MAIL}\n[autoconfig]\nlisten = ["https://[::1]"]`).join('\n'), /autoconfig\.listen\.0/);
});

test('two listeners clash on one port at one address or at the wildcard of its family', () => {
  const at = (text: string) => parseListen(text)!;
  assert.ok(listenersOverlap(at('0.0.0.0:80'), at('0.0.0.0:80')));
  assert.ok(listenersOverlap(at('0.0.0.0:80'), at('192.0.2.1:80')));
  assert.ok(listenersOverlap(at('[2001:db8::1]:80'), at('[::]:80')));
  assert.ok(!listenersOverlap(at('0.0.0.0:80'), at('[::]:80')));
  assert.ok(!listenersOverlap(at('192.0.2.1:80'), at('192.0.2.2:80')));
  assert.ok(!listenersOverlap(at('0.0.0.0:80'), at('0.0.0.0:8080')));
});

test('config rules: HTTPS needs a certificate, POP3 and submission must be listened on, ACME keeps its port', () => {
  assert.deepEqual(problemsOf(`${MAIL}\n[autoconfig]\nlisten = ["0.0.0.0:80", "https://0.0.0.0:443"]`), []);
  const noTls = MAIL.replace('cert = "/etc/mailsrv/tls/cert.pem"', 'cert = ""')
    .replace(/smtps = .*/, 'smtps = []')
    .replace(/pop3s = .*/, 'pop3s = []');
  assert.deepEqual(problemsOf(`${noTls}\n[autoconfig]\nlisten = ["0.0.0.0:80"]`), []);
  assert.match(
    problemsOf(`${noTls}\n[autoconfig]\nlisten = ["https://0.0.0.0:443"]`).join('\n'),
    /autoconfig\.listen.*"https:\/\/" listeners need tls\.cert/,
  );
  const acme = `\n[acme]\ndirectory = "https://acme.test/dir"`;
  assert.deepEqual(problemsOf(`${noTls}${acme}\n[autoconfig]\nlisten = ["https://0.0.0.0:443"]`), []);
  assert.match(
    problemsOf(`${MAIL}${acme}\n[autoconfig]\nlisten = ["127.0.0.1:80"]`).join('\n'),
    /autoconfig\.listen.*also in acme\.http_listen/,
  );
  const noPop3 = MAIL.replace('listen = ["0.0.0.0:110"]', 'listen = []').replace(/pop3s = .*/, 'pop3s = []');
  assert.match(
    problemsOf(`${noPop3}\n[autoconfig]\nlisten = ["0.0.0.0:80"]`).join('\n'),
    /set pop3\.listen or pop3\.pop3s/,
  );
  const noSubmission = MAIL.replace(/submission = .*/, 'submission = []').replace(/smtps = .*/, 'smtps = []');
  assert.match(
    problemsOf(`${noSubmission}\n[autoconfig]\nlisten = ["0.0.0.0:80"]`).join('\n'),
    /set smtp\.submission or smtp\.smtps/,
  );
  assert.deepEqual(problemsOf(noPop3), [], 'off ([]), nothing is required');
});

test('announced: each port once, implicit TLS first; STARTTLS with a certificate, plain without', () => {
  const config = parseConfig(MAIL);
  const ports = servicePorts(config);
  assert.deepEqual(ports, { pop3s: [995], pop3: [110], smtps: [465], submission: [587] });
  assert.deepEqual(mailSite(config, ports, true), {
    hostname: 'MX.example.org',
    domains: ['example.org', 'example.net', 'mx.example.org'],
    incoming: [
      { port: 995, socketType: 'SSL' },
      { port: 110, socketType: 'STARTTLS' },
    ],
    outgoing: [
      { port: 465, socketType: 'SSL' },
      { port: 587, socketType: 'STARTTLS' },
    ],
  });
  const plain = mailSite(config, ports, false);
  assert.deepEqual(plain.incoming[1], { port: 110, socketType: 'plain' });
  assert.deepEqual(plain.outgoing[1], { port: 587, socketType: 'plain' });
});

test('the account asked about: a local domain (any case), else refused; none means the first domain', () => {
  const site = mailSite(parseConfig(MAIL), servicePorts(parseConfig(MAIL)), true);
  assert.deepEqual(accountQuery(site, null), { kind: 'account', domain: 'example.org', localPart: null });
  assert.deepEqual(accountQuery(site, 'Fred@EXAMPLE.net'), {
    kind: 'account',
    domain: 'example.net',
    localPart: 'Fred',
  });
  assert.deepEqual(accountQuery(site, 'fred@elsewhere.test'), { kind: 'other domain' });
  for (const bad of ['fred', '', 'a b@example.org', '<x>@example.org', '-f@example.org'])
    assert.deepEqual(accountQuery(site, bad), { kind: 'malformed' }, bad);
});

test('autodiscover requests: the EMailAddress, with or without a namespace prefix, entities read', () => {
  assert.equal(requestedAddress('<Request><EMailAddress> a@b.test </EMailAddress></Request>'), 'a@b.test');
  assert.equal(requestedAddress('<r:EMailAddress>o&apos;b&amp;c@b.test</r:EMailAddress>'), "o'b&c@b.test");
  assert.equal(requestedAddress('<Request><LegacyDN>/o=x</LegacyDN></Request>'), null);
  assert.equal(requestedAddress('<EMailAddress></EMailAddress>'), null);
});

test('every value in an answer is escaped', () => {
  assert.equal(
    escapeXml(`<a href="x">Tom & Jerry's</a>`),
    '&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&apos;s&lt;/a&gt;',
  );
  assert.equal(unescapeXml(escapeXml(`<&>"'`)), `<&>"'`);
  assert.equal(unescapeXml('&#60;&amp;lt;'), '&#60;&lt;');
  const site = mailSite(parseConfig(MAIL), servicePorts(parseConfig(MAIL)), true);
  assert.match(autodiscoverXml(site, "o'b&c"), /<LoginName>o&apos;b&amp;c<\/LoginName>/);
  assert.doesNotMatch(autodiscoverXml(site, '<x>'), /<x>/);
  assert.match(clientConfigXml(site, 'example.net'), /<emailProvider id="example.net">/);
});
