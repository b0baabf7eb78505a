// The config schema: defaults, errors that name the key and value, and the reference
// config documenting every key.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { describeKeys } from '../../src/config/schema.js';
import { durationMs, listenOptions, parseListen, parseNetwork } from '../../src/config/units.js';

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'test.toml');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

test('an empty file gives every default', () => {
  const config = parseConfig('');
  assert.equal(config.message_size_limit, 10_240_000);
  assert.deepEqual(config.smtp.listen, ['0.0.0.0:25', '[::]:25']);
  assert.equal(config.smtp.max_recipients, 100);
  assert.deepEqual(config.relay.retry, ['1m', '5m', '15m', '1h']);
  assert.equal(config.log.level, 'info');
});

test('a bad value names the key, the value and what is allowed', () => {
  const [problem] = problemsOf('[smtp]\nmax_clients = "lots"\n');
  assert.match(problem!, /test\.toml: key 'smtp\.max_clients': expected number.*got "lots"/);
});

test('unknown keys are errors, at the top and in sections', () => {
  const problems = problemsOf('colour = 1\n[smtp]\nlisten_on = []\n');
  assert.ok(problems.some((p) => p.includes("unknown key 'colour'")));
  assert.ok(problems.some((p) => p.includes("unknown key 'smtp.listen_on'")));
});

test('durations, listen addresses and networks are checked', () => {
  const problems = problemsOf(
    'mynetworks = ["10.0.0.0/33"]\n[smtp]\nlisten = ["localhost"]\n[relay]\nretry = ["5 minutes"]\n',
  );
  assert.equal(problems.length, 3);
  assert.ok(problems.some((p) => p.includes("'mynetworks.0'")));
  assert.ok(problems.some((p) => p.includes("'smtp.listen.0'")));
  assert.ok(problems.some((p) => p.includes("'relay.retry.0'")));
});

test('TOML syntax errors give the line', () => {
  const [problem] = problemsOf('hostname = "a"\nsize = = 3\n');
  assert.match(problem!, /^test\.toml:2: not valid TOML/);
});

test('unit parsers', () => {
  assert.equal(durationMs('30s'), 30_000);
  assert.equal(durationMs('5d'), 432_000_000);
  assert.throws(() => durationMs('5'));
  assert.deepEqual(parseListen('[::1]:2525'), { host: '::1', port: 2525 });
  assert.deepEqual(parseListen('0.0.0.0:25'), { host: '0.0.0.0', port: 25 });
  assert.equal(parseListen('0.0.0.0:70000'), null);
  assert.equal(parseListen('[nonsense]:25'), null);
  assert.deepEqual(parseNetwork('::1/128'), { address: '::1', prefix: 128, family: 'ipv6' });
  assert.deepEqual(parseNetwork('192.0.2.7'), { address: '192.0.2.7', prefix: 32, family: 'ipv4' });
  assert.equal(parseNetwork('192.0.2.0/x'), null);
});

test('config/mailsrv.toml documents every key and is itself valid', () => {
  const text = readFileSync(new URL('../../config/mailsrv.toml', import.meta.url), 'utf8');
  parseConfig(text, 'mailsrv.toml');
  let section = '';
  const documented = new Set<string>();
  for (const line of text.split('\n')) {
    const header = /^\[(\w+)\]/.exec(line);
    if (header) section = `${header[1]}.`;
    const key = /^(\w+)\s*=/.exec(line);
    if (key) documented.add(section + key[1]);
  }
  for (const { key } of describeKeys()) assert.ok(documented.has(key), `config/mailsrv.toml lacks ${key}`);
});

test('config/dev.toml is valid', () => {
  parseConfig(readFileSync(new URL('../../config/dev.toml', import.meta.url), 'utf8'), 'dev.toml');
});

test('implicit-TLS listeners need a certificate; a certificate needs a key', () => {
  assert.match(
    problemsOf('[tls]\ncert = ""\nkey = ""\n[smtp]\nsmtps = ["0.0.0.0:465"]\n')[0]!,
    /key 'smtp\.smtps': implicit-TLS listeners need tls\.cert/,
  );
  assert.match(
    problemsOf('[tls]\ncert = ""\nkey = ""\n[pop3]\npop3s = ["0.0.0.0:995"]\n')[0]!,
    /key 'pop3\.pop3s': implicit-TLS/,
  );
  assert.match(
    problemsOf('[tls]\ncert = "/c.pem"\nkey = ""\n')[0]!,
    /key 'tls\.key': a certificate \(tls\.cert\) needs its private key/,
  );
  assert.equal(parseConfig('[tls]\ncert = ""\n').tls.cert, '', 'no TLS: the key is not needed');
  const withCert = parseConfig('[smtp]\nsmtps = ["0.0.0.0:465"]\n');
  assert.deepEqual(withCert.smtp.smtps, ['0.0.0.0:465'], 'the default cert path counts as set');
});

test('[auth] defaults: 2 s first delay, lockout after 10 failures for 15 minutes; senders must match the login', () => {
  const config = parseConfig('');
  assert.deepEqual(config.auth, { failure_delay: '2s', max_failures: 10, lockout: '15m', cache_ttl: '15m' });
  assert.equal(config.smtp.sender_login_match, true);
});

test('IPv6 listeners are IPv6-only, so "0.0.0.0:25" and "[::]:25" can both be opened', () => {
  assert.deepEqual(listenOptions(parseListen('[::]:25')!), { host: '::', port: 25, ipv6Only: true });
  assert.deepEqual(listenOptions(parseListen('0.0.0.0:25')!), { host: '0.0.0.0', port: 25, ipv6Only: false });
});

test('dns_servers takes IP addresses only (a host name would crash the resolver)', () => {
  assert.deepEqual(parseConfig('dns_servers = ["127.0.0.1:5353", "192.0.2.1", "[::1]:53"]\n').dns_servers, [
    '127.0.0.1:5353',
    '192.0.2.1',
    '[::1]:53',
  ]);
  assert.match(problemsOf('dns_servers = ["ns.example:53"]\n')[0]!, /key 'dns_servers\.0': expected an IP address/);
});

test('relay.dns_servers, the former name of dns_servers, still works; setting both is an error naming both', () => {
  assert.deepEqual(parseConfig('[relay]\ndns_servers = ["127.0.0.1:5353"]\n').dns_servers, ['127.0.0.1:5353']);
  assert.match(
    problemsOf('dns_servers = ["127.0.0.1:53"]\n[relay]\ndns_servers = ["127.0.0.1:5353"]\n')[0]!,
    /relay\.dns_servers.*former name of dns_servers/,
  );
});

test('[acme]: off by default; an https directory, names, an address; implicit TLS needs no tls.cert with it', () => {
  const config = parseConfig('');
  assert.deepEqual(config.acme, { directory: '', email: '', names: [], http_listen: ['0.0.0.0:80'], ca_file: '' });
  const acme = '[acme]\ndirectory = "https://acme.test/dir"\n';
  const withAcme = parseConfig(`[smtp]\nsmtps = ["0.0.0.0:465"]\n[tls]\ncert = ""\nkey = ""\n${acme}`);
  assert.equal(withAcme.acme.directory, 'https://acme.test/dir');
  assert.match(problemsOf('[tls]\ncert = ""\n[pop3]\npop3s = ["0.0.0.0:995"]\n')[0]!, /or acme\.directory/);
  assert.match(problemsOf('[acme]\ndirectory = "http://acme.test/dir"\n')[0]!, /key 'acme\.directory': expected/);
  assert.match(problemsOf(`${acme}names = ["*.example.org"]\n`)[0]!, /key 'acme\.names\.0': expected a domain/);
  assert.match(problemsOf(`${acme}email = "not an address"\n`)[0]!, /key 'acme\.email': expected/);
  assert.match(problemsOf(`${acme}http_listen = []\n`)[0]!, /key 'acme\.http_listen': ACME \(HTTP-01\) needs/);
});
