// Unit tests for src/bounce/dsn.ts: the DSN as Python's email package (Debian's python3) reads it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { composeDsn, ORIGINAL_HEADERS_CAP, type DsnRecipient, type DsnReport } from '../../src/bounce/dsn.js';
import { permanent, statusFromReply } from '../../src/message/status.js';

const PYTHON = '/usr/bin/python3';

/** Parses a message with email.message_from_bytes(policy.default) and returns what the tests look at. */
const PARSE_DSN = `
import email, json, sys
from email import policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = msg.get_payload() if msg.is_multipart() else []
status = parts[1].get_payload() if len(parts) > 1 else []
defects = [type(d).__name__ for part in msg.walk() for d in part.defects]
print(json.dumps({
  'contentType': msg.get_content_type(),
  'reportType': msg.get_param('report-type'),
  'headers': {k: str(v) for k, v in msg.items()},
  'from': [(a.display_name, a.addr_spec) for a in msg['From'].addresses],
  'to': [a.addr_spec for a in msg['To'].addresses],
  'partTypes': [p.get_content_type() for p in parts],
  'partEncodings': [p.get('Content-Transfer-Encoding') for p in parts],
  'text': parts[0].get_content() if parts else None,
  'groups': [[(k, str(v)) for k, v in group.items()] for group in status],
  'headersPart': parts[2].get_payload(decode=True).decode('latin-1') if len(parts) > 2 else None,
  'defects': defects,
}))
`;

interface ParsedDsn {
  contentType: string;
  reportType: string;
  headers: Record<string, string>;
  from: [string, string][];
  to: string[];
  partTypes: string[];
  partEncodings: string[];
  text: string;
  groups: [string, string][][];
  headersPart: string;
  defects: string[];
}

function parseWithPython(message: Buffer): ParsedDsn {
  const result = spawnSync(PYTHON, ['-c', PARSE_DSN], { input: message, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  const parsed = JSON.parse(result.stdout) as ParsedDsn;
  // the CRLF line ends are checked on the raw message (assertWellFormedLines)
  return { ...parsed, text: parsed.text.replace(/\r\n/g, '\n') };
}

/** Field value of a delivery-status group (case-insensitive name), or undefined. */
function field(group: [string, string][], name: string): string | undefined {
  return group.find(([key]) => key.toLowerCase() === name.toLowerCase())?.[1];
}

const RECEIVED_AT = Date.parse('2026-11-25T11:00:00Z');
const NOW = new Date('2026-11-25T15:00:00Z');
const ORIGINAL_HEADERS =
  'Received: from laptop.example.org (laptop [192.0.2.7])\r\n' +
  '\tby mail.example.org (mailsrv) with ESMTPSA id 0QFW3TKLZ6M4H9PX;\r\n' +
  '\tWed, 25 Nov 2026 11:00:00 +0000\r\nFrom: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: Lunch?\r\n';
const BODY = 'The secret body text.\r\n';

const bob: DsnRecipient = {
  address: 'bob@remote.test',
  status: statusFromReply('550 5.1.1 <bob@remote.test>: User unknown', 'permanent', 'mx.remote.test'),
  lastAttemptAt: Date.parse('2026-11-25T14:59:00Z'),
};

function report(overrides: Partial<DsnReport> = {}): DsnReport {
  return {
    kind: 'failure',
    reportingHost: 'mail.example.org',
    original: {
      queueId: '0QFW3TKLZ6M4H9PX',
      sender: 'alice@example.org',
      receivedAt: RECEIVED_AT,
      clientHelo: 'laptop.example.org',
    },
    recipients: [bob],
    originalHeaders: Buffer.from(`${ORIGINAL_HEADERS}\r\n${BODY}`),
    now: NOW,
    ...overrides,
  };
}

/** Every line ends in CRLF and none is longer than 998 octets. */
function assertWellFormedLines(message: Buffer): void {
  assert.ok(message.subarray(-2).equals(Buffer.from('\r\n')), 'ends with CRLF');
  let start = 0;
  while (start < message.length) {
    const nl = message.indexOf(0x0a, start);
    assert.ok(nl > start && message[nl - 1] === 0x0d, `bare LF or missing line end at ${start}`);
    assert.ok(nl - 1 - start <= 998, `line at ${start} is ${nl - 1 - start} octets`);
    const bareCr = message.subarray(start, nl - 1).indexOf(0x0d);
    assert.equal(bareCr, -1, `bare CR in line at ${start}`);
    start = nl + 1;
  }
}

describe('composeDsn', () => {
  it('builds a failure DSN that Python reads as multipart/report with three parts', () => {
    const dsn = composeDsn(report());
    assertWellFormedLines(dsn);
    const parsed = parseWithPython(dsn);
    assert.deepEqual(parsed.defects, []);
    assert.equal(parsed.contentType, 'multipart/report');
    assert.equal(parsed.reportType, 'delivery-status');
    assert.deepEqual(parsed.partTypes, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    assert.deepEqual(parsed.from, [['Mail Delivery System', 'MAILER-DAEMON@mail.example.org']]);
    assert.deepEqual(parsed.to, ['alice@example.org']);
    assert.equal(parsed.headers.Subject, 'Undelivered Mail Returned to Sender');
    assert.equal(parsed.headers.Date, 'Wed, 25 Nov 2026 15:00:00 +0000');
    assert.match(parsed.headers['Message-ID']!, /^<[^<>@\s]+@mail\.example\.org>$/);
    assert.equal(parsed.headers['Auto-Submitted'], 'auto-replied');
    assert.equal(parsed.headers['MIME-Version'], '1.0');

    assert.match(parsed.text, /<bob@remote\.test>/);
    assert.match(parsed.text, /mx\.remote\.test replied:\n\s+550 5\.1\.1 <bob@remote\.test>: User unknown\n/);
    assert.match(parsed.text, /0QFW3TKLZ6M4H9PX/);

    const [perMessage, recipient, ...more] = parsed.groups;
    assert.equal(more.length, 0);
    assert.deepEqual(perMessage, [
      ['Reporting-MTA', 'dns; mail.example.org'],
      ['X-Mailsrv-Queue-ID', '0QFW3TKLZ6M4H9PX'],
      ['X-Mailsrv-Sender', 'rfc822; alice@example.org'],
      ['Received-From-MTA', 'dns; laptop.example.org'],
      ['Arrival-Date', 'Wed, 25 Nov 2026 11:00:00 +0000'],
    ]);
    assert.deepEqual(recipient, [
      ['Final-Recipient', 'rfc822; bob@remote.test'],
      ['Action', 'failed'],
      ['Status', '5.1.1'],
      ['Remote-MTA', 'dns; mx.remote.test'],
      ['Diagnostic-Code', 'smtp; 550 5.1.1 <bob@remote.test>: User unknown'],
      ['Last-Attempt-Date', 'Wed, 25 Nov 2026 14:59:00 +0000'],
    ]);
  });

  it('builds a delay DSN: Action delayed, Will-Retry-Until, and how long it waited and until when', () => {
    const willRetryUntil = Date.parse('2026-11-30T11:00:00Z');
    const dsn = composeDsn(
      report({
        kind: 'delay',
        recipients: [
          {
            ...bob,
            status: statusFromReply('451 4.7.1 Greylisted, try again later', 'temporary', 'mx.remote.test'),
            willRetryUntil,
          },
        ],
      }),
    );
    assertWellFormedLines(dsn);
    const parsed = parseWithPython(dsn);
    assert.deepEqual(parsed.defects, []);
    assert.equal(parsed.headers.Subject, 'Delayed Mail (still being retried)');
    const recipient = parsed.groups[1]!;
    assert.equal(field(recipient, 'Action'), 'delayed');
    assert.equal(field(recipient, 'Status'), '4.7.1');
    assert.equal(field(recipient, 'Will-Retry-Until'), 'Mon, 30 Nov 2026 11:00:00 +0000');
    assert.equal(field(recipient, 'Diagnostic-Code'), 'smtp; 451 4.7.1 Greylisted, try again later');
    const text = parsed.text.replace(/\s+/g, ' ');
    assert.match(text, /waiting for 4 hours/);
    assert.match(text, /by Mon, 30 Nov 2026 11:00:00 \+0000/);
    assert.match(text, /451 4\.7\.1 Greylisted, try again later/);
    assert.doesNotMatch(text, /given up/);
  });

  it('reports two recipients, Original-Recipient only when it differs, our own reasons as X-mailsrv', () => {
    const carol: DsnRecipient = {
      address: 'carol@other.test',
      originalAddress: 'team@example.org',
      status: permanent('5.4.6', 'Too many hops (more than 50 Received headers): mail forwarding loop'),
    };
    const parsed = parseWithPython(
      composeDsn(report({ recipients: [{ ...bob, originalAddress: 'bob@remote.test' }, carol] })),
    );
    assert.deepEqual(parsed.defects, []);
    assert.equal(parsed.groups.length, 3);
    const [, first, second] = parsed.groups;
    assert.equal(field(first!, 'Final-Recipient'), 'rfc822; bob@remote.test');
    assert.equal(field(first!, 'Original-Recipient'), undefined);
    assert.equal(field(second!, 'Final-Recipient'), 'rfc822; carol@other.test');
    assert.equal(field(second!, 'Original-Recipient'), 'rfc822; team@example.org');
    assert.equal(field(second!, 'Status'), '5.4.6');
    assert.equal(field(second!, 'Remote-MTA'), undefined);
    assert.equal(
      field(second!, 'Diagnostic-Code'),
      'X-mailsrv; 5.4.6 Too many hops (more than 50 Received headers): mail forwarding loop',
    );
    assert.match(parsed.text, /<bob@remote\.test>/);
    assert.match(parsed.text, /<carol@other\.test> \(you wrote to <team@example\.org>\)/);
    assert.match(parsed.text, /Reason:\n\s+5\.4\.6 Too many hops/);
  });

  it('neutralises CR, LF and NUL in a hostile diagnostic and address', () => {
    const hostile: DsnRecipient = {
      address: 'eve@remote.test\r\nBcc: victim@example.net',
      status: statusFromReply(
        '550 5.7.1 rejected\r\nBcc: victim@example.net\r\n\r\n--fake-boundary\0\n550 second line',
        'permanent',
        'mx.remote.test\r\nX-Injected: 1',
      ),
    };
    const dsn = composeDsn(
      report({
        recipients: [hostile],
        original: { queueId: 'Q\r\nX-Q: 1', sender: 'alice@example.org\r\nCc: x@y', receivedAt: RECEIVED_AT },
        originalHeaders: Buffer.from('Subject: a\0b\rc\r\n\r\n'),
      }),
    );
    assertWellFormedLines(dsn);
    assert.equal(dsn.indexOf(0), -1, 'no NUL');
    const [topHeaders] = dsn.toString('latin1').split('\r\n\r\n');
    assert.doesNotMatch(topHeaders!, /^(Bcc|X-Injected|X-Q|Cc):/im);
    const parsed = parseWithPython(dsn);
    assert.deepEqual(parsed.defects, []);
    assert.deepEqual(parsed.partTypes, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    assert.equal(parsed.headers.Bcc, undefined);
    assert.equal(parsed.headers.Cc, undefined);
    assert.equal(parsed.groups.length, 2);
    const recipient = parsed.groups[1]!;
    assert.deepEqual(
      recipient.map(([name]) => name),
      ['Final-Recipient', 'Action', 'Status', 'Remote-MTA', 'Diagnostic-Code'],
    );
    assert.equal(field(recipient, 'Final-Recipient'), 'rfc822; eve@remote.test Bcc: victim@example.net');
    assert.equal(
      field(recipient, 'Diagnostic-Code'),
      'smtp; 550 5.7.1 rejected Bcc: victim@example.net --fake-boundary 550 second line',
    );
    assert.equal(parsed.headersPart, 'Subject: a b c\r\n');
    // the text part quotes each reply line on its own, indented
    assert.match(parsed.text, /\n\s+550 5\.7\.1 rejected\n\s+Bcc: victim@example\.net\n/);
  });

  it('keeps delivery-status fields ASCII; non-ASCII stays in the UTF-8 text part', () => {
    const recipient: DsnRecipient = {
      address: 'jörg@bücher.test',
      status: statusFromReply('550 5.1.1 Benutzer unbekannt – “jörg”', 'permanent'),
    };
    const dsn = composeDsn(report({ recipients: [recipient], originalHeaders: Buffer.from('Subject: Grüße\r\n\r\n') }));
    assertWellFormedLines(dsn);
    const parsed = parseWithPython(dsn);
    assert.deepEqual(parsed.defects, []);
    const group = parsed.groups[1]!;
    assert.equal(field(group, 'Final-Recipient'), 'utf-8; j\\x{F6}rg@b\\x{FC}cher.test');
    assert.equal(field(group, 'Diagnostic-Code'), 'smtp; 550 5.1.1 Benutzer unbekannt ? ?j?rg?');
    assert.match(parsed.text, /Benutzer unbekannt – “jörg”/);
    assert.match(parsed.text, /<jörg@bücher\.test>/);
    assert.deepEqual(parsed.partEncodings, ['8bit', '7bit', '8bit']);
    assert.equal(parsed.headersPart, Buffer.from('Subject: Grüße\r\n').toString('latin1'));
  });

  it('quotes the original headers only, never the body, with CRLF line ends', () => {
    const lfOnly = Buffer.from(`${ORIGINAL_HEADERS.replace(/\r\n/g, '\n')}\n${BODY.replace(/\r\n/g, '\n')}`);
    for (const originalHeaders of [Buffer.from(`${ORIGINAL_HEADERS}\r\n${BODY}`), lfOnly]) {
      const dsn = composeDsn(report({ originalHeaders }));
      assertWellFormedLines(dsn);
      assert.equal(dsn.indexOf('secret body'), -1);
      const parsed = parseWithPython(dsn);
      assert.equal(parsed.headersPart, ORIGINAL_HEADERS);
    }
  });

  it('truncates the original headers at the cap on a line boundary', () => {
    const line = `X-Filler: ${'x'.repeat(88)}\r\n`; // 100 bytes
    const lines = Math.ceil((ORIGINAL_HEADERS_CAP * 2) / line.length);
    const dsn = composeDsn(report({ originalHeaders: Buffer.from(`${line.repeat(lines)}\r\n${BODY}`) }));
    const parsed = parseWithPython(dsn);
    const kept = Math.floor(ORIGINAL_HEADERS_CAP / line.length);
    assert.equal(parsed.headersPart, line.repeat(kept));
    assert.ok(dsn.length < ORIGINAL_HEADERS_CAP + 8 * 1024, `DSN is ${dsn.length} bytes`);
  });

  it('folds over-long lines: a huge diagnostic and a huge original header line stay under 998 octets', () => {
    const diagnostic = `550 5.7.1 ${'word '.repeat(300)}${'x'.repeat(1500)}`;
    const longHeader = `X-Long: ${'é'.repeat(1200)}`;
    const dsn = composeDsn(
      report({
        recipients: [{ ...bob, status: statusFromReply(diagnostic, 'permanent', 'mx.remote.test') }],
        originalHeaders: Buffer.from(`${longHeader}\r\nSubject: s\r\n\r\n`),
      }),
    );
    assertWellFormedLines(dsn);
    const parsed = parseWithPython(dsn);
    assert.deepEqual(parsed.defects, []);
    assert.match(field(parsed.groups[1]!, 'Diagnostic-Code')!, /^smtp; 550 5\.7\.1 word word/);
    assert.match(parsed.headersPart, /\nSubject: s\r\n$/);
    assert.equal(
      Buffer.from(parsed.headersPart, 'latin1').toString('utf8').replace(/\r\n /g, '').split('\r\n')[0],
      longHeader,
    );
  });

  it('gives each DSN its own Message-ID and boundary', () => {
    const first = parseWithPython(composeDsn(report()));
    const second = parseWithPython(composeDsn(report()));
    assert.notEqual(first.headers['Message-ID'], second.headers['Message-ID']);
    assert.notEqual(first.headers['Content-Type'], second.headers['Content-Type']);
  });

  it('refuses to report to the null sender or about nobody', () => {
    assert.throws(
      () => composeDsn(report({ original: { queueId: 'Q', sender: '', receivedAt: RECEIVED_AT } })),
      RangeError,
    );
    assert.throws(() => composeDsn(report({ recipients: [] })), RangeError);
  });
});
