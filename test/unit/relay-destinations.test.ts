// src/relay/destinations.ts against a real DNS server on 127.0.0.1 (dns2): MX order and the
// shuffle of equal preferences, the implicit MX, null MX, unknown domains and DNS failures,
// the relayhost and address literals.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DestinationError, DestinationResolver } from '../../src/relay/destinations.js';
import { startDnsZone, type DnsZoneServer, type Zone } from '../support/dns-zone.js';

const mxHosts = (count: number, priority: number): [number, string][] =>
  Array.from({ length: count }, (_, i) => [priority, `mx${i}.many.test`]);

const zone: Zone = {
  'remote.test': {
    mx: [
      [20, 'mx2.remote.test'],
      [10, 'mx1.remote.test'],
      [30, 'mx3.remote.test'],
    ],
  },
  'mx1.remote.test': { a: ['127.0.0.11'] },
  'mx2.remote.test': { a: ['127.0.0.12'], aaaa: ['::1'] },
  'mx3.remote.test': { a: ['127.0.0.13'] },
  'equal.test': {
    mx: [
      [10, 'a.equal.test'],
      [10, 'b.equal.test'],
      [10, 'c.equal.test'],
      [5, 'first.equal.test'],
    ],
  },
  'a.equal.test': { a: ['127.0.1.1'] },
  'b.equal.test': { a: ['127.0.1.2'] },
  'c.equal.test': { a: ['127.0.1.3'] },
  'first.equal.test': { a: ['127.0.1.0'] },
  'nomx.test': { a: ['127.0.2.1'], aaaa: ['::1'] },
  'xn--bcher-kva.test': { mx: [[10, 'mx.xn--bcher-kva.test']] },
  'mx.xn--bcher-kva.test': { a: ['127.0.2.2'] },
  'empty.test': {},
  'null.test': { mx: [[0, '']] },
  'servfail.test': { rcode: 2 },
  'silent.test': { silent: true },
  'half.test': {
    mx: [
      [10, 'noaddress.half.test'],
      [20, 'mx.half.test'],
    ],
  },
  'noaddress.half.test': {},
  'mx.half.test': { a: ['127.0.3.1'] },
  'dangling.test': { mx: [[10, 'gone.dangling.test']] },
  'broken.test': { mx: [[10, 'mx.broken.test']] },
  'mx.broken.test': { rcode: 2 },
  'many.test': { mx: mxHosts(15, 10) },
  ...Object.fromEntries(mxHosts(15, 10).map(([, host], i) => [host, { a: [`127.0.4.${i}`] }])),
};

describe('relay destinations', () => {
  let dns: DnsZoneServer;
  let queries: string[] = [];
  let dnsServer = '';

  before(async () => {
    dns = await startDnsZone(zone);
    queries = dns.queries;
    dnsServer = dns.server;
  });
  after(() => dns.close());

  const resolver = (options: ConstructorParameters<typeof DestinationResolver>[1] = {}, relayhost = '') =>
    new DestinationResolver({ relayhost, dnsServers: [dnsServer] }, { queryTimeoutMs: 200, ...options });

  async function failure(promise: Promise<unknown>): Promise<DestinationError> {
    const err = await promise.then(
      () => assert.fail('expected a DestinationError'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof DestinationError, String(err));
    return err;
  }

  it('orders MX hosts by preference, each with its IPv4 then IPv6 addresses, on port 25', async () => {
    const destinations = await resolver().resolve('Remote.Test.');
    assert.deepEqual(destinations, [
      { host: 'mx1.remote.test', address: '127.0.0.11', port: 25 },
      { host: 'mx2.remote.test', address: '127.0.0.12', port: 25 },
      { host: 'mx2.remote.test', address: '::1', port: 25 },
      { host: 'mx3.remote.test', address: '127.0.0.13', port: 25 },
    ]);
  });

  it('shuffles MX hosts of equal preference, after the better ones', async () => {
    const hostsWith = async (random: () => number) =>
      (await resolver({ random }).resolve('equal.test')).map((d) => d.host);
    // Fisher-Yates over [a, b, c]: always j = 0 gives [b, c, a]; always j = i keeps [a, b, c]
    assert.deepEqual(await hostsWith(() => 0), ['first.equal.test', 'b.equal.test', 'c.equal.test', 'a.equal.test']);
    assert.deepEqual(await hostsWith(() => 0.999), [
      'first.equal.test',
      'a.equal.test',
      'b.equal.test',
      'c.equal.test',
    ]);
    const seenSecond = new Set<string>();
    for (let i = 0; i < 60; i++) seenSecond.add((await hostsWith(Math.random))[1]!);
    // each of the three comes second at some point (all missing one: (2/3)^60 * 3 ≈ 1e-10)
    assert.equal(seenSecond.size, 3);
  });

  it('delivers to the domain itself when it has no MX (implicit MX)', async () => {
    assert.deepEqual(await resolver().resolve('nomx.test'), [
      { host: 'nomx.test', address: '127.0.2.1', port: 25 },
      { host: 'nomx.test', address: '::1', port: 25 },
    ]);
  });

  it('looks up an internationalized domain by its A-label', async () => {
    assert.deepEqual(await resolver().resolve('Bücher.test'), [
      { host: 'mx.xn--bcher-kva.test', address: '127.0.2.2', port: 25 },
    ]);
  });

  it('fails for good when a domain has neither MX nor address', async () => {
    const err = await failure(resolver().resolve('empty.test'));
    assert.equal(err.status.permanent, true);
    assert.equal(err.status.code, '5.4.4');
    assert.match(err.message, /^5\.4\.4 .*empty\.test/);
  });

  it('fails for good on a null MX (RFC 7505)', async () => {
    const err = await failure(resolver().resolve('null.test'));
    assert.equal(err.status.permanent, true);
    assert.equal(err.message, '5.1.10 domain null.test does not accept mail (null MX)');
  });

  it('fails for good on an unknown domain (NXDOMAIN)', async () => {
    const err = await failure(resolver().resolve('nowhere.test'));
    assert.equal(err.status.permanent, true);
    assert.equal(err.message, '5.1.2 domain nowhere.test not found');
  });

  // a resolver left at its default timeouts would wait for the silent server far beyond the test's limit
  it('fails only for now on SERVFAIL and on a DNS server that does not answer, in bounded time', {
    timeout: 30_000,
  }, async () => {
    const servfail = await failure(resolver().resolve('servfail.test'));
    assert.equal(servfail.status.permanent, false);
    assert.match(servfail.message, /^4\.4\.3 MX lookup for servfail\.test failed: ESERVFAIL$/);
    const silent = await failure(resolver().resolve('silent.test'));
    assert.equal(silent.status.permanent, false);
    assert.match(silent.message, /ETIMEOUT/);
  });

  it('skips MX hosts without an address; none with one is permanent, a failed lookup temporary', async () => {
    assert.deepEqual(await resolver().resolve('half.test'), [{ host: 'mx.half.test', address: '127.0.3.1', port: 25 }]);
    const dangling = await failure(resolver().resolve('dangling.test'));
    assert.equal(dangling.status.permanent, true);
    assert.equal(dangling.message, '5.4.4 no MX host of dangling.test has an address');
    const broken = await failure(resolver().resolve('broken.test'));
    assert.equal(broken.status.permanent, false);
    assert.match(broken.message, /^4\.4\.3 .*mx\.broken\.test: ESERVFAIL/);
  });

  it('tries at most 10 addresses', async () => {
    const destinations = await resolver().resolve('many.test');
    assert.equal(destinations.length, 10);
  });

  it('sends everything to the relayhost without looking up MX records', async () => {
    queries.length = 0;
    assert.deepEqual(await resolver({}, '127.0.0.1:2525').resolve('remote.test'), [
      { host: '127.0.0.1', address: '127.0.0.1', port: 2525 },
    ]);
    assert.deepEqual(await resolver({}, '[::1]:587').resolve('[192.0.2.1]'), [
      { host: '::1', address: '::1', port: 587 },
    ]);
    // a name is resolved like any local name (/etc/hosts first), on port 25 unless told
    const byName = await resolver({}, 'localhost').resolve('remote.test');
    assert.ok(byName.length > 0);
    for (const destination of byName) {
      assert.equal(destination.host, 'localhost');
      assert.equal(destination.port, 25);
      assert.match(destination.address, /^(127\.|::1$)/);
    }
    assert.deepEqual(queries, []);
  });

  it('takes address literals as they are', async () => {
    assert.deepEqual(await resolver().resolve('[192.0.2.1]'), [{ host: '192.0.2.1', address: '192.0.2.1', port: 25 }]);
    assert.deepEqual(await resolver().resolve('[IPv6:2001:db8::1]'), [
      { host: '2001:db8::1', address: '2001:db8::1', port: 25 },
    ]);
    const bad = await failure(resolver().resolve('[2001:db8::1]'));
    assert.equal(bad.status.permanent, true);
    assert.equal(bad.status.code, '5.1.3');
  });
});
