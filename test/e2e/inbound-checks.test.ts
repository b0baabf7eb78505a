// e2e: the inbound checks of mail from clients outside mynetworks (README, "Putting it on the
// internet"), against the real daemon and a DNS server of the test's (dns_servers). The daemon
// listens on 127.0.0.1 with mynetworks 127.0.0.2/32; clients bind 127.0.0.5 (outside, SPF-permitted
// by pass.test), 127.0.0.6 (outside, on the test blocklist) or 127.0.0.2 (mynetworks).
// Covered: SPF pass / softfail / fail under enforce (550 5.7.23 at MAIL FROM) / the HELO identity
// of the null sender / timeout, loops, too many lookups and a huge record; DKIM pass (signed here
// with mailauth's dkimSign) and fail on a changed body, malformed signatures; DMARC reject (550
// 5.7.1), quarantine (X-Spam-Flag), a timed-out _dmarc lookup (451 4.7.5); forged
// Authentication-Results removed, others kept, also in a large (spilled, queued) message; DNSBL
// refusal at RCPT, its cache, and mynetworks never looked up.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { dkimSign } from 'mailauth';
import { startDnsZone, type DnsZoneServer, type Zone } from '../support/dns-zone.js';
import {
  DOMAIN,
  HOSTNAME,
  makeEnv,
  readMailbox,
  sendRaw,
  SmtpClient,
  startDaemon,
  type Daemon,
  type TestEnv,
  type TransactionResult,
} from './harness.js';

const OUTSIDE = '127.0.0.5';
const LISTED = '127.0.0.6';
const INSIDE = '127.0.0.2';
const SELECTOR = 'sel';

const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const privateKey = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const publicKey = keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
/** The DKIM key record, split into character-strings of at most 255 bytes as a zone file has it. */
const dkimRecord = (`v=DKIM1; k=rsa; p=${publicKey}`.match(/.{1,255}/g) ?? []) as string[];

const ZONE: Zone = {
  'pass.test': { txt: ['v=spf1 ip4:127.0.0.5 -all'] },
  'helo.pass.test': { txt: ['v=spf1 ip4:127.0.0.5 -all'] },
  'soft.test': { txt: ['v=spf1 ~all'] },
  'signed.test': { txt: ['v=spf1 -all'] },
  '_dmarc.signed.test': { txt: ['v=DMARC1; p=reject'] },
  [`${SELECTOR}._domainkey.signed.test`]: { txt: [dkimRecord] },
  'reject.test': { txt: ['v=spf1 -all'] },
  '_dmarc.reject.test': { txt: ['v=DMARC1; p=reject'] },
  'quarantine.test': { txt: ['v=spf1 -all'] },
  '_dmarc.quarantine.test': { txt: ['v=DMARC1; p=quarantine'] },
  'slowdmarc.test': { txt: ['v=spf1 ip4:127.0.0.5 -all'] },
  '_dmarc.slowdmarc.test': { silent: true },
  'slowspf.test': { silent: true },
  'slowkey.test': { txt: ['v=spf1 -all'] },
  '_dmarc.slowkey.test': { txt: ['v=DMARC1; p=reject'] },
  [`${SELECTOR}._domainkey.slowkey.test`]: { silent: true },
  'loop.test': { txt: ['v=spf1 include:loop.test -all'] },
  'many.test': {
    txt: [`v=spf1 ${Array.from({ length: 11 }, (_, i) => `a:h${i}.many.test`).join(' ')} ip4:127.0.0.5 -all`],
  },
  ...Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`h${i}.many.test`, { a: ['192.0.2.1'] }])),
  // one record of 40 strings, ~4 KB: more than a classic 512-byte UDP answer
  'huge.test': {
    txt: [
      [
        'v=spf1',
        ...Array.from({ length: 40 }, (_, i) => ` ip4:10.${i}.0.0/16 ip4:10.${i}.1.0/24 ip4:10.${i}.2.0/24`),
        ' ip4:127.0.0.5 -all',
      ],
    ],
  },
  '6.0.0.127.bl.test': { a: ['127.0.0.2'] },
};

/** A message with these header lines (CRLF) and a body. */
function message(headers: string[], body = 'Hello.\r\n'): string {
  return `${headers.join('\r\n')}\r\n\r\n${body}`;
}

/** The message with a DKIM-Signature of `domain` on top. */
async function signed(text: string, domain = 'signed.test'): Promise<string> {
  // mailauth signs only what signatureData lists (the top-level keys alone give no signature)
  const { signatures } = await dkimSign(text, {
    signingDomain: domain,
    selector: SELECTOR,
    privateKey,
    signatureData: [{ signingDomain: domain, selector: SELECTOR, privateKey, canonicalization: 'relaxed/relaxed' }],
  });
  return signatures + text;
}

describe('inbound checks', () => {
  let zone: DnsZoneServer;
  let env: TestEnv;
  let daemon: Daemon;

  before(async () => {
    zone = await startDnsZone(ZONE);
    env = await makeEnv({
      config: {
        dns_servers: [zone.server],
        message_size_limit: 2_000_000,
        checks: { spf: 'tag', dkim: 'tag', dmarc: 'enforce', dnsbl: ['bl.test'], dns_timeout: '500ms' },
      },
    });
    daemon = await startDaemon(env);
  });
  after(async () => {
    await daemon.kill9();
    await env.cleanup();
    await zone.close();
  });

  /** Sends from `client`; once accepted, waits until each recipient has it. */
  async function send(
    from: string,
    text: string,
    options: { client?: string; to?: string[]; helo?: string } = {},
  ): Promise<TransactionResult> {
    const to = options.to ?? [`alice@${DOMAIN}`];
    const result = await sendRaw(env.port, {
      from,
      to,
      message: text,
      localAddress: options.client ?? OUTSIDE,
      ...(options.helo ? { helo: options.helo } : {}),
    });
    const queueId = result.queueId;
    if (queueId !== null)
      await daemon.waitForLogs((e) => e.msg === 'delivered' && e.queueId === queueId, to.length, 10_000, 'deliveries');
    return result;
  }

  /** The header block of the stored message with this Subject in `user`'s mailbox (after the trace headers). */
  function storedHeader(subject: string, user = 'alice'): string {
    const found = readMailbox(env.mailbox(user)).messages.find((m) =>
      m.original.toString('latin1').includes(`\nSubject: ${subject}\n`),
    );
    assert.ok(found, `message "${subject}" not in the mailbox of ${user}`);
    const text = found.original.toString('latin1');
    return text.slice(0, text.indexOf('\n\n') + 1);
  }

  /** The one Authentication-Results field of ours, unfolded. */
  function ourResults(header: string): string {
    const fields = header.match(/^Authentication-Results:.*(\n[ \t].*)*/gim) ?? [];
    const ours = fields.filter((f) => f.includes(`Results: ${HOSTNAME};`));
    assert.equal(ours.length, 1, `one Authentication-Results of ours, got:\n${header}`);
    assert.ok(header.startsWith(ours[0]!), `ours on top:\n${header}`);
    return ours[0]!.replace(/\n[ \t]+/g, ' ');
  }

  test('SPF pass, DKIM pass and DMARC pass of a signed message are written into Authentication-Results', async () => {
    const text = await signed(message(['From: <news@signed.test>', 'To: <alice@example.test>', 'Subject: signed']));
    const result = await send('news@pass.test', text);
    assert.equal(result.end?.code, 250, result.end?.raw);
    const results = ourResults(storedHeader('signed'));
    assert.match(results, /spf=pass \(.*\) smtp\.mailfrom=news@pass\.test;/);
    assert.match(results, /dkim=pass header\.d=signed\.test header\.s=sel;/);
    assert.match(results, /dmarc=pass \(p=reject\) header\.from=signed\.test$/);
  });

  test('a changed body fails DKIM, and then DMARC p=reject refuses the message with 550 5.7.1', async () => {
    const text = (await signed(message(['From: <news@signed.test>', 'Subject: changed'], 'Pay 10 EUR.\r\n'))).replace(
      '10 EUR',
      '99 EUR',
    );
    const result = await send('news@signed.test', text);
    assert.equal(result.end?.code, 550, result.end?.raw);
    assert.match(result.end!.raw, /^550 5\.7\.1 Message rejected by the DMARC policy of signed\.test/);
    const logged = await daemon.waitForLog((e) => e.msg === 'authentication' && e.dkim === 'fail');
    assert.equal(logged.dmarc, 'fail');
  });

  test('a changed body of a signed message from a domain without DMARC is delivered with dkim=fail', async () => {
    const text = (await signed(message(['From: <a@pass.test>', 'Subject: tampered'], 'Pay 10 EUR.\r\n'))).replace(
      '10 EUR',
      '99 EUR',
    );
    assert.equal((await send('a@pass.test', text)).end?.code, 250);
    const results = ourResults(storedHeader('tampered'));
    assert.match(results, /dkim=fail \(body hash did not verify\) header\.d=signed\.test/);
    assert.match(results, /dmarc=none header\.from=pass\.test/);
  });

  test('SPF softfail is tagged and the message delivered', async () => {
    const result = await send('a@soft.test', message(['From: <a@soft.test>', 'Subject: softfail']));
    assert.equal(result.end?.code, 250);
    const results = ourResults(storedHeader('softfail'));
    assert.match(results, /spf=softfail \(.*\) smtp\.mailfrom=a@soft\.test;/);
    assert.match(results, /dkim=none;/);
  });

  test('the null sender is SPF-checked by its HELO identity', async () => {
    const result = await send('', message(['From: <a@pass.test>', 'Subject: null sender']), {
      helo: 'helo.pass.test',
    });
    assert.equal(result.end?.code, 250);
    assert.match(ourResults(storedHeader('null sender')), /spf=pass \(.*\) smtp\.helo=helo\.pass\.test;/);
  });

  test('DMARC p=reject: a message failing SPF and unsigned is refused with 550 5.7.1', async () => {
    const result = await send('a@reject.test', message(['From: <boss@reject.test>', 'Subject: forged boss']));
    assert.equal(result.end?.code, 550);
    assert.match(result.end!.raw, /^550 5\.7\.1 Message rejected by the DMARC policy of reject\.test/);
  });

  test('DMARC p=quarantine: delivered with X-Spam-Flag: YES', async () => {
    const result = await send('a@quarantine.test', message(['From: <a@quarantine.test>', 'Subject: quarantined']));
    assert.equal(result.end?.code, 250);
    const header = storedHeader('quarantined');
    assert.match(ourResults(header), /dmarc=fail \(p=quarantine\) header\.from=quarantine\.test$/);
    assert.match(header, /^X-Spam-Flag: YES$/m);
  });

  test('a _dmarc lookup that times out answers 451 4.7.5 at the end of DATA', async () => {
    const result = await send('a@slowdmarc.test', message(['From: <a@slowdmarc.test>', 'Subject: slow dmarc']));
    assert.equal(result.end?.code, 451, result.end?.raw);
    assert.match(result.end!.raw, /^451 4\.7\.5 DMARC policy of slowdmarc\.test could not be looked up/);
  });

  test('an SPF lookup that times out is a temperror: tagged, delivered', async () => {
    const result = await send('a@slowspf.test', message(['From: <a@pass.test>', 'Subject: slow spf']));
    assert.equal(result.end?.code, 250);
    assert.match(ourResults(storedHeader('slow spf')), /spf=temperror \(.*\) smtp\.mailfrom=a@slowspf\.test;/);
  });

  test('a DKIM key lookup that times out is a temperror, and DMARC p=reject then never refuses', async () => {
    const text = await signed(message(['From: <a@slowkey.test>', 'Subject: slow key']), 'slowkey.test');
    const result = await send('a@slowkey.test', text);
    assert.equal(result.end?.code, 250, result.end?.raw);
    const results = ourResults(storedHeader('slow key'));
    assert.match(results, /dkim=temperror \(.*\) header\.d=slowkey\.test/);
    assert.match(results, /dmarc=temperror \(SPF or DKIM lookup failed; p=reject\) header\.from=slowkey\.test$/);
  });

  test('a timed-out key of a signature not aligned with From: changes nothing: DMARC refuses', async () => {
    const text = await signed(message(['From: <boss@reject.test>', 'Subject: slow unaligned key']), 'slowkey.test');
    const result = await send('a@reject.test', text);
    assert.equal(result.end?.code, 550, result.end?.raw);
    assert.match(result.end!.raw, /^550 5\.7\.1 Message rejected by the DMARC policy of reject\.test/);
  });

  test('an SPF include loop and more than 10 DNS-querying mechanisms are permerrors (RFC 7208 4.6.4)', async () => {
    assert.equal((await send('a@loop.test', message(['From: <a@pass.test>', 'Subject: spf loop']))).end?.code, 250);
    assert.match(ourResults(storedHeader('spf loop')), /spf=permerror \(.*\) smtp\.mailfrom=a@loop\.test;/);
    assert.equal((await send('a@many.test', message(['From: <a@pass.test>', 'Subject: spf many']))).end?.code, 250);
    assert.match(
      ourResults(storedHeader('spf many')),
      /spf=permerror \(.*Too many DNS requests.*\) smtp\.mailfrom=a@many\.test;/,
    );
  });

  test('a huge SPF record (about 4 KB of TXT) is evaluated', async () => {
    assert.equal((await send('a@huge.test', message(['From: <a@pass.test>', 'Subject: huge spf']))).end?.code, 250);
    assert.match(ourResults(storedHeader('huge spf')), /spf=pass \(.*\) smtp\.mailfrom=a@huge\.test;/);
  });

  test('malformed DKIM-Signature fields get a result, the message is delivered', async () => {
    const text = message([
      'DKIM-Signature: v=1; a=rsa-sha256; d=; s=; b=@@@',
      'DKIM-Signature: ;;;===;; garbage \x01',
      'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=signed.test; s=sel; h=from; bh=AAAA; b=AAAA',
      'From: <a@pass.test>',
      'Subject: bad signatures',
    ]);
    assert.equal((await send('a@pass.test', text)).end?.code, 250);
    const results = ourResults(storedHeader('bad signatures'));
    assert.match(results, /dkim=permerror \(2 malformed DKIM-Signature fields\);/);
    assert.match(results, /dkim=fail \(body hash did not verify\) header\.d=signed\.test header\.s=sel;/);
  });

  test('a message DMARC cannot judge is refused under enforce: 2 From:, 21 signatures, huge header', async () => {
    const several = await send('a@pass.test', message(['From: <a@pass.test>, <boss@reject.test>', 'Subject: two']));
    assert.equal(several.end?.code, 550);
    assert.match(several.end!.raw, /^550 5\.7\.1 Message cannot be authenticated: 2 From: addresses/);
    const signatures = Array.from({ length: 21 }, (_, i) => `DKIM-Signature: v=1; d=x${i}.test; s=s; b=AAAA`);
    const many = await send('a@pass.test', message([...signatures, 'From: <a@pass.test>', 'Subject: many']));
    assert.equal(many.end?.code, 550);
    assert.match(many.end!.raw, /^550 5\.7\.1 Message cannot be authenticated: more than 20 DKIM-Signature fields/);
    const padding = Array.from({ length: 1200 }, (_, i) => `X-Padding-${i}: ${'p'.repeat(1000)}`);
    const huge = await send('a@pass.test', message([...padding, 'From: <a@pass.test>', 'Subject: huge']));
    assert.equal(huge.end?.code, 550);
    assert.match(huge.end!.raw, /^550 5\.7\.1 Message cannot be authenticated: header block larger than 1048576 bytes/);
  });

  test('Authentication-Results naming our host are removed, others kept', async () => {
    const text = message([
      `Authentication-Results: ${HOSTNAME}; spf=pass smtp.mailfrom=boss@reject.test`,
      'Authentication-Results: other.example; dkim=pass header.d=other.example',
      `Authentication-Results: (a comment first)\r\n\t"${HOSTNAME.toUpperCase()}"; dmarc=pass`,
      'From: <a@pass.test>',
      'Subject: forged results',
    ]);
    assert.equal((await send('a@pass.test', text)).end?.code, 250);
    const header = storedHeader('forged results');
    ourResults(header);
    assert.match(header, /^Authentication-Results: other\.example; dkim=pass header\.d=other\.example$/m);
    assert.equal(header.match(/^Authentication-Results:/gm)?.length, 2, header);
  });

  test('a large signed message (spilled to disk, queued for two users) is verified, its header rewritten', async () => {
    const body = `${'A line of a long message body that goes on and on.\r\n'.repeat(8000)}`;
    const text = await signed(
      message(
        [
          `Authentication-Results: ${HOSTNAME}; dkim=pass header.d=forged.example`,
          'Authentication-Results: other.example; spf=pass',
          'From: <news@signed.test>',
          'Subject: large signed',
        ],
        body,
      ),
    );
    assert.ok(text.length > 300_000);
    const result = await send('news@pass.test', text, { to: [`alice@${DOMAIN}`, `bob@${DOMAIN}`] });
    assert.equal(result.end?.code, 250, result.end?.raw);
    for (const user of ['alice', 'bob']) {
      const header = storedHeader('large signed', user);
      assert.match(ourResults(header), /dkim=pass header\.d=signed\.test/);
      assert.doesNotMatch(header, /forged\.example/);
      assert.match(header, /^Authentication-Results: other\.example; spf=pass$/m);
    }
  });

  test('DNSBL: a listed client is refused at RCPT, from the cache next time; mynetworks is not looked up', async () => {
    const listedName = '6.0.0.127.bl.test/1';
    for (let attempt = 0; attempt < 2; attempt++) {
      const { client } = await SmtpClient.connect(env.port, { localAddress: LISTED });
      try {
        await client.cmd('EHLO client.test');
        assert.equal((await client.cmd('MAIL FROM:<a@pass.test>')).code, 250);
        const rcpt = await client.cmd(`RCPT TO:<alice@${DOMAIN}>`);
        assert.equal(rcpt.raw, '554 5.7.1 Service unavailable; client [127.0.0.6] blocked using bl.test');
      } finally {
        await client.quit();
      }
    }
    assert.equal(zone.queries.filter((q) => q === listedName).length, 1, zone.queries.join('\n'));
    // an outside client that is not listed was looked up (and let through); one in mynetworks was not
    assert.ok(zone.queries.includes('5.0.0.127.bl.test/1'));
    const inside = await send('a@pass.test', message(['From: <a@pass.test>', 'Subject: from inside']), {
      client: INSIDE,
    });
    assert.equal(inside.end?.code, 250);
    assert.ok(!zone.queries.some((q) => q.startsWith('2.0.0.127.bl.test')), zone.queries.join('\n'));
    assert.doesNotMatch(storedHeader('from inside'), /Authentication-Results/);
  });
});

describe('SPF enforce', () => {
  test('spf=fail is refused with 550 5.7.23 as the reply to MAIL FROM; pass and softfail go on', async (t) => {
    const zone = await startDnsZone(ZONE);
    const env = await makeEnv({
      config: {
        dns_servers: [zone.server],
        checks: { spf: 'enforce', dkim: 'off', dmarc: 'off', dns_timeout: '500ms' },
      },
    });
    const daemon = await startDaemon(env);
    t.after(async () => {
      await daemon.kill9();
      await env.cleanup();
      await zone.close();
    });
    const { client } = await SmtpClient.connect(env.port, { localAddress: OUTSIDE });
    try {
      await client.cmd('EHLO client.test');
      const fail = await client.cmd('MAIL FROM:<a@reject.test>');
      assert.equal(fail.code, 550);
      assert.match(fail.raw, /^550 5\.7\.23 SPF check failed: reject\.test does not designate 127\.0\.0\.5/);
      assert.equal((await client.cmd('MAIL FROM:<a@soft.test>')).code, 250);
      await client.cmd('RSET');
      assert.equal((await client.cmd('MAIL FROM:<a@pass.test>')).code, 250);
    } finally {
      await client.quit();
    }
    // a client in mynetworks is never checked
    const inside = await sendRaw(env.port, {
      from: 'a@reject.test',
      to: [`alice@${DOMAIN}`],
      message: message(['Subject: inside']),
      localAddress: INSIDE,
    });
    assert.equal(inside.end?.code, 250);
  });
});
