// SRS addresses (src/forward/srs.ts): the SRS0 form, reversal, the hash (no case, keyed), the
// timestamp window including the 1024-day wrap, and the secret file made once with mode 0600.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadSrsSecret, MAX_AGE_DAYS, Srs } from '../../src/forward/srs.js';

const DAY = 86_400_000;
const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');

function localPartOf(address: string): string {
  return address.slice(0, address.lastIndexOf('@'));
}

test('forward makes SRS0=HHHH=TT=domain=user@hostname and reverse gives the sender back', () => {
  const srs = new Srs(SECRET, () => 20_000 * DAY);
  const address = srs.forward('Jane.Doe@Example.ORG', 'mx.here.test');
  assert.match(address, /^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=example\.org=Jane\.Doe@mx\.here\.test$/);
  assert.equal(srs.reverse(localPartOf(address)), 'Jane.Doe@example.org');
  // some MTAs lowercase the whole address
  assert.equal(srs.reverse(localPartOf(address).toLowerCase()), 'jane.doe@example.org');
  // a user with "=" in it
  const odd = srs.forward('a=b@example.org', 'mx.here.test');
  assert.equal(srs.reverse(localPartOf(odd)), 'a=b@example.org');
});

test('reverse: not SRS is undefined; another key, an altered part or an old timestamp is null', () => {
  const now = 20_000 * DAY;
  const srs = new Srs(SECRET, () => now);
  const local = localPartOf(srs.forward('jane@example.org', 'mx.here.test'));
  assert.equal(srs.reverse('jane'), undefined);
  assert.equal(new Srs(Buffer.from('another secret, another server!!'), () => now).reverse(local), null);
  assert.equal(srs.reverse(local.replace('=example.org=', '=example.net=')), null);
  assert.equal(srs.reverse(local.replace('=jane', '=joan')), null);
  assert.equal(new Srs(SECRET, () => now + MAX_AGE_DAYS * DAY).reverse(local), 'jane@example.org');
  assert.equal(new Srs(SECRET, () => now + (MAX_AGE_DAYS + 1) * DAY).reverse(local), null);
});

test('the timestamp wraps after 1024 days without breaking the window', () => {
  const lastDayOfCycle = (1024 * 30 + 1023) * DAY;
  const local = localPartOf(new Srs(SECRET, () => lastDayOfCycle).forward('jane@example.org', 'h.test'));
  assert.equal(new Srs(SECRET, () => lastDayOfCycle + 2 * DAY).reverse(local), 'jane@example.org');
});

test('loadSrsSecret makes the secret once (0600) and reads it afterwards', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-srs-'));
  try {
    const file = join(dir, 'srs.key');
    const first = await loadSrsSecret(file, null);
    assert.equal(first.length, 32);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const text = await readFile(file, 'utf8');
    assert.deepEqual(await loadSrsSecret(file, null), first);
    assert.equal(await readFile(file, 'utf8'), text);
  } finally {
    await rm(dir, { recursive: true });
  }
});
