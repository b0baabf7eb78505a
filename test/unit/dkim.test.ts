// DKIM: the records printed for DNS (255-byte strings, RSA and Ed25519 key values, SRV records
// of the services configured), the From: domain a message is signed for, the signatures (From
// oversigned, checked with mailauth's verifier) and the signing of a received message: nothing
// read without keys, Date and Message-ID added and signed, a header block too long left alone.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { test } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { pino } from 'pino';
import { configSchema } from '../../src/config/schema.js';
import { DkimKeys, type DomainKeys, loadDkimKeys, type SigningKey } from '../../src/dkim/keys.js';
import { dkimRecordValue, domainRecords, txtStrings } from '../../src/dkim/records.js';
import { dkimSignatures, fromDomain } from '../../src/dkim/sign.js';
import { MAX_SIGNED_HEADER_BYTES, SubmissionSigner } from '../../src/dkim/submission.js';
import { QueueStore } from '../../src/queue/store.js';

function signingKey(type: 'rsa' | 'ed25519', selector: string): SigningKey {
  const { privateKey } = generateKeyPairSync(type as 'rsa', { modulusLength: 2048 });
  return { type, selector, key: privateKey, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

const KEYS: DomainKeys = {
  domain: 'example.test',
  rsa: signingKey('rsa', 'sel'),
  ed25519: signingKey('ed25519', 'sel-ed'),
};

/** A resolver for mailauth serving the DKIM records of KEYS. */
async function resolveKeys(name: string, type: string): Promise<string[][]> {
  for (const key of [KEYS.rsa, KEYS.ed25519!])
    if (type === 'TXT' && name === `${key.selector}._domainkey.${KEYS.domain}`)
      return [[dkimRecordValue(key.key, key.type)]];
  throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
}

/** Each signature's result ("pass", "fail", ...), in the message's order. */
async function verify(message: Buffer): Promise<string[]> {
  const { results } = await dkimVerify(message, { resolver: resolveKeys });
  return results.map((r) => `${r.selector}: ${r.status.result}`);
}

test('txtStrings: one quoted string up to 255 bytes, then more; quotes and backslashes escaped', () => {
  assert.equal(txtStrings('v=spf1 mx -all'), '"v=spf1 mx -all"');
  assert.equal(txtStrings('say "hi" \\o/'), '"say \\"hi\\" \\\\o/"');
  const long = 'a'.repeat(255) + 'b'.repeat(255) + 'c'.repeat(90);
  assert.equal(txtStrings(long), `"${'a'.repeat(255)}" "${'b'.repeat(255)}" "${'c'.repeat(90)}"`);
  assert.equal(txtStrings(''), '""');
});

test('DKIM record values: RSA as SubjectPublicKeyInfo, Ed25519 as its 32 bytes (RFC 8463)', () => {
  const rsa = /^v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)$/.exec(dkimRecordValue(KEYS.rsa.key, 'rsa'));
  assert.ok(rsa);
  const spki = createPublicKey({ key: Buffer.from(rsa[1]!, 'base64'), format: 'der', type: 'spki' });
  assert.equal(spki.asymmetricKeyDetails?.modulusLength, 2048);
  const ed = /^v=DKIM1; k=ed25519; p=([A-Za-z0-9+/=]+)$/.exec(dkimRecordValue(KEYS.ed25519!.key, 'ed25519'));
  assert.ok(ed);
  assert.equal(Buffer.from(ed[1]!, 'base64').length, 32);
});

test('domainRecords: DKIM, SPF, DMARC, MX, SRV records of the ports configured (0 "." when none), autoconfig', () => {
  const config = configSchema.parse({
    hostname: 'mail.example.test',
    smtp: { submission: ['0.0.0.0:587'], smtps: [] },
    pop3: { listen: ['[::]:110'], pop3s: ['0.0.0.0:995'] },
  });
  assert.deepEqual(domainRecords(config, 'example.test', []), [
    '; example.test',
    '; no DKIM key: make one with `mailsrv dkim keygen example.test`, then run this again',
    'example.test. 3600 IN TXT "v=spf1 mx -all"',
    '_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"',
    'example.test. 3600 IN MX 10 mail.example.test.',
    '_submission._tcp.example.test. 3600 IN SRV 0 1 587 mail.example.test.',
    '_submissions._tcp.example.test. 3600 IN SRV 0 0 0 .',
    '_pop3s._tcp.example.test. 3600 IN SRV 0 1 995 mail.example.test.',
    '_pop3._tcp.example.test. 3600 IN SRV 0 1 110 mail.example.test.',
    'autoconfig.example.test. 3600 IN CNAME mail.example.test.',
  ]);
  const withKey = domainRecords(config, 'example.test', [KEYS.rsa]);
  assert.match(withKey[1]!, /^sel\._domainkey\.example\.test\. 3600 IN TXT "v=DKIM1; k=rsa; p=[^"]{200,}" "[^"]+"$/);
});

test('fromDomain: the one From: address, folded or quoted; none for no From, two From or no address', () => {
  const head = (...lines: string[]) => Buffer.from(lines.map((l) => `${l}\r\n`).join(''));
  assert.equal(fromDomain(head('Subject: x', 'From: "Doe, J." <j@Example.TEST>')), 'example.test');
  assert.equal(fromDomain(head('From: J Doe', '  <j@fold.test>', 'To: a@b.test')), 'fold.test');
  assert.equal(fromDomain(head('FROM:j@plain.test')), 'plain.test');
  assert.equal(fromDomain(head('Subject: no from')), null);
  assert.equal(fromDomain(head('From: a@one.test', 'From: b@two.test')), null);
  assert.equal(fromDomain(head('From: undisclosed-senders:;')), null);
});

test('signatures: RSA then Ed25519, relaxed/relaxed, From oversigned; a From added later fails them', async () => {
  const message = Buffer.from(
    'From: A <a@example.test>\r\nTo: b@else.test\r\nSubject:  spaced   out\r\nX-Other: not signed\r\n' +
      '\r\nbody  \r\n\r\n',
  );
  const { fields, errors } = await dkimSignatures(Readable.from([message]), KEYS, new Date());
  assert.deepEqual(errors, []);
  const signatures = fields.split(/\r\n(?=DKIM-Signature:)/);
  assert.equal(signatures.length, 2);
  assert.match(signatures[0]!, /a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;/);
  assert.match(signatures[1]!, /a=ed25519-sha256; c=relaxed\/relaxed; d=example\.test;/);
  const h = /h=([^;]+);/
    .exec(fields.replace(/\r\n /g, ' '))![1]!
    .split(':')
    .map((f) => f.trim().toLowerCase());
  assert.deepEqual(h.sort(), ['from', 'from', 'subject', 'to']);
  const signed = Buffer.concat([Buffer.from(fields), message]);
  assert.deepEqual(await verify(signed), ['sel: pass', 'sel-ed: pass']);
  // relaxed: whitespace and unsigned headers may change on the way
  const rewrapped = Buffer.from(
    signed.toString().replace('X-Other: not signed', 'X-Other: changed').replace('  spaced   out', ' spaced out'),
  );
  assert.deepEqual(await verify(rewrapped), ['sel: pass', 'sel-ed: pass']);
  const forged = Buffer.from(signed.toString().replace('To: b@else.test', 'From: evil@else.test\r\nTo: b@else.test'));
  assert.deepEqual(await verify(forged), ['sel: fail', 'sel-ed: fail']);
});

/** A pending entry of a fresh store holding `message`, submitted (Message-ID and Date would be added). */
async function received(message: string) {
  const store = new QueueStore(await mkdtemp(join(tmpdir(), 'mailsrv-dkim-')));
  await store.init();
  const pending = store.begin({
    sender: 'a@example.test',
    receivedAt: Date.now(),
    client: { ip: '127.0.0.1', helo: 'c.test', protocol: 'ESMTPSA', hostname: '', submitted: true },
    recipients: [{ address: 'b@else.test', target: { kind: 'remote' } }],
  });
  await pending.write(Readable.from([Buffer.from(message)]));
  return pending;
}

function signer(keys: DkimKeys, logs: { msg: string }[] = []) {
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  return new SubmissionSigner(() => ({ keys, hostname: 'mail.example.test' }), logger);
}

test('SubmissionSigner: without keys the message is not even read', async () => {
  const pending = await received('From: a@example.test\r\n\r\nx\r\n');
  let opened = false;
  const size = await signer(new DkimKeys()).sign({
    envelope: pending.envelope,
    messageSize: pending.messageSize,
    openData: () => {
      opened = true;
      return pending.openData();
    },
    prepend: () => assert.fail('nothing to prepend'),
  });
  assert.equal(size, pending.messageSize);
  assert.equal(opened, false);
  await pending.discard();
});

test('SubmissionSigner: a From: domain without a key is left as it is', async () => {
  const message = 'From: a@other.test\r\n\r\nx\r\n';
  const pending = await received(message);
  await signer(new DkimKeys(new Map([['example.test', KEYS]]))).sign(pending);
  assert.equal(await text(pending.openData()), message);
  await pending.discard();
});

test('SubmissionSigner: Message-ID and Date are added above the message and signed with it', async () => {
  const logs: { msg: string }[] = [];
  const pending = await received('From: a@example.test\r\nSubject: s\r\n\r\nx\r\n');
  const size = await signer(new DkimKeys(new Map([['example.test', KEYS]])), logs).sign(pending);
  const signed = Buffer.from(await text(pending.openData()));
  assert.equal(size, signed.length);
  const id = pending.envelope.id;
  assert.match(signed.toString(), new RegExp(`\r\nMessage-ID: <${id}@mail\\.example\\.test>\r\nDate: [^\r]+\r\nFrom:`));
  assert.match(signed.toString(), /h=[^;]*Date[^;]*;/);
  assert.deepEqual(await verify(signed), ['sel: pass', 'sel-ed: pass']);
  assert.ok(logs.some((l) => l.msg === 'dkim signed'));
  await pending.discard();
});

test('SubmissionSigner: a header block longer than the cap is sent unsigned, with a warning', async () => {
  const logs: { msg: string }[] = [];
  const long = `X-Long: ${'y'.repeat(900)}\r\n`.repeat(Math.ceil(MAX_SIGNED_HEADER_BYTES / 900) + 10);
  const message = `From: a@example.test\r\n${long}\r\nbody\r\n`;
  const pending = await received(message);
  await signer(new DkimKeys(new Map([['example.test', KEYS]])), logs).sign(pending);
  assert.equal(await text(pending.openData()), message);
  assert.ok(logs.some((l) => l.msg.startsWith('header block too long to sign')));
  await pending.discard();
});

test('loadDkimKeys: local domains and hostname; short, wrong-type and lone Ed25519 keys are problems', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailsrv-dkim-keys-'));
  await mkdir(join(dir, 'keys'));
  const write = (name: string, pem: string) => writeFile(join(dir, 'keys', name), pem);
  const pem = (type: 'rsa' | 'ed25519', bits = 2048) =>
    generateKeyPairSync(type as 'rsa', { modulusLength: bits }).privateKey.export({ type: 'pkcs8', format: 'pem' });
  await write('good.test.key', pem('rsa') as string);
  await write('good.test.ed25519.key', pem('ed25519') as string);
  await write('short.test.key', pem('rsa', 1024) as string);
  await write('swapped.test.key', pem('ed25519') as string);
  await write('lone.test.ed25519.key', pem('ed25519') as string);
  const config = configSchema.parse({
    hostname: 'mail.good.test',
    domains: ['good.test', 'short.test', 'swapped.test', 'lone.test'],
    dkim: { keys_dir: join(dir, 'keys') },
  });
  const { keys, unsigned, problems } = await loadDkimKeys(config);
  assert.deepEqual(keys.domains(), ['good.test']);
  assert.equal(keys.forDomain('GOOD.test')?.ed25519?.selector, 'mailsrv-ed');
  assert.deepEqual(unsigned, ['short.test', 'swapped.test', 'lone.test', 'mail.good.test']);
  assert.equal(problems.length, 3, problems.join('\n'));
  assert.match(problems[0]!, /short\.test\.key: an RSA key of 1024 bits/);
  assert.match(problems[1]!, /swapped\.test\.key: a ed25519 key, expected rsa/);
  assert.match(problems[2]!, /lone\.test\.ed25519\.key: not used without .*lone\.test\.key/);
});
