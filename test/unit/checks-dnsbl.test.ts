// Unit tests for src/checks/dnsbl.ts and bounded-cache.ts: query names (RFC 5782: reversed
// octets, IPv6 nibbles), listing answers, failures that never list, and the per-TTL, bounded cache.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BoundedCache } from '../../src/checks/bounded-cache.js';
import { CheckDns } from '../../src/checks/dns-lookup.js';
import { Dnsbl, dnsblQueryName } from '../../src/checks/dnsbl.js';
import { startDnsZone, type DnsZoneServer } from '../support/dns-zone.js';
import { FakeClock } from '../support/fake-clock.js';

describe('dnsblQueryName', () => {
  it('reverses IPv4 octets and IPv6 nibbles (RFC 5782 2.1, 2.4)', () => {
    assert.equal(dnsblQueryName('192.0.2.99', 'bl.example'), '99.2.0.192.bl.example');
    assert.equal(dnsblQueryName('::ffff:192.0.2.99', 'bl.example'), '99.2.0.192.bl.example');
    assert.equal(
      dnsblQueryName('2001:db8:1:2:3:4:567:89ab', 'bl.example'),
      'b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example',
    );
    assert.equal(dnsblQueryName('2001:DB8::1', 'z'), `1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.z`);
    assert.equal(dnsblQueryName('::1', 'z'), `1.${'0.'.repeat(31)}z`);
    assert.equal(dnsblQueryName('64:ff9b::192.0.2.1', 'z'), `1.0.2.0.0.0.0.c.${'0.'.repeat(16)}b.9.f.f.4.6.0.0.z`);
    assert.equal(dnsblQueryName('not an address', 'z'), null);
  });
});

describe('Dnsbl', () => {
  let zone: DnsZoneServer;
  before(async () => {
    zone = await startDnsZone({
      '2.2.0.192.listed.test': { a: ['127.0.0.4'] },
      '2.2.0.192.refusing.test': { a: ['127.255.255.254'] },
      '2.2.0.192.slow.test': { silent: true },
    });
  });
  after(() => zone.close());

  it('names the first zone listing the client; refusals, timeouts and NXDOMAIN do not list', async () => {
    const dnsbl = new Dnsbl(new CheckDns([zone.server], 300), new FakeClock());
    const verdict = await dnsbl.check('192.0.2.2', ['clean.test', 'refusing.test', 'slow.test', 'listed.test']);
    assert.deepEqual(verdict.listing, { zone: 'listed.test', client: '192.0.2.2', answer: '127.0.0.4' });
    assert.deepEqual(verdict.failures, [{ zone: 'slow.test', code: 'ETIMEOUT' }]);
    assert.deepEqual(await dnsbl.check('192.0.2.3', ['listed.test']), { listing: null, failures: [] });
  });

  it('reuses an answer for its TTL, then asks again', async () => {
    const clock = new FakeClock();
    const dnsbl = new Dnsbl(new CheckDns([zone.server], 2000), clock);
    const asked = () => zone.queries.filter((q) => q === '2.2.0.192.listed.test/1').length;
    const before = asked();
    assert.notEqual((await dnsbl.check('192.0.2.2', ['listed.test'])).listing, null);
    assert.notEqual((await dnsbl.check('192.0.2.2', ['listed.test'])).listing, null);
    assert.equal(asked(), before + 1);
    clock.advance(60_000); // the test server's TTL
    assert.notEqual((await dnsbl.check('192.0.2.2', ['listed.test'])).listing, null);
    assert.equal(asked(), before + 2);
  });
});

describe('BoundedCache', () => {
  it('forgets entries after their TTL and never holds more than its bound (oldest out first)', () => {
    const clock = new FakeClock();
    const cache = new BoundedCache<number>(2, clock);
    cache.set('a', 1, 1000);
    cache.set('b', 2, 5000);
    cache.set('c', 3, 5000);
    assert.equal(cache.size, 2);
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.get('b'), 2);
    clock.advance(5000);
    assert.equal(cache.get('c'), undefined);
    cache.set('d', 4, 0);
    assert.equal(cache.get('d'), undefined);
  });
});
