// Unit tests for src/checks/forged-results.ts and auth-results.ts: Authentication-Results fields
// naming our host (or unreadable) removed from the top-level header block, at any chunking;
// every other byte kept; our own field formatted as RFC 8601 wants.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authenticationResults, authservId } from '../../src/checks/auth-results.js';
import { ForgedResultsFilter } from '../../src/checks/forged-results.js';

const HOST = 'mx.example.org';

function filter(input: string, chunking: 'whole' | 'bytes' = 'whole'): { output: string; dkimSignatures: number } {
  const buf = Buffer.from(input, 'latin1');
  const chunks = chunking === 'whole' ? [buf] : [...buf].map((b) => Buffer.from([b]));
  const f = new ForgedResultsFilter(HOST);
  const out: Buffer[] = [];
  for (const chunk of chunks) f.write(chunk, out);
  f.end(out);
  return { output: Buffer.concat(out).toString('latin1'), dkimSignatures: f.dkimSignatures };
}

function both(input: string): string {
  const whole = filter(input).output;
  assert.equal(filter(input, 'bytes').output, whole, 'byte-by-byte chunking gives the same output');
  return whole;
}

describe('ForgedResultsFilter', () => {
  it('passes a message without Authentication-Results byte for byte (CRLF, LF, no body, bare CR)', () => {
    for (const message of [
      'From: a@b\r\nSubject: x\r\n\r\nbody\r\n',
      'From: a@b\nSubject: x\n\nbody',
      'Subject: only header',
      'Subject: a\rb\r\n folded\r\nnot a header line\r\n\r\n',
      '\r\nbody only\r\n',
    ]) {
      assert.equal(both(message), message);
    }
  });

  it('removes fields naming our host, whatever their form, and keeps the others', () => {
    const input = [
      `Authentication-Results: ${HOST}; spf=pass`,
      'Authentication-Results: other.example; dkim=pass',
      `authentication-results  : ${HOST.toUpperCase()};\r\n\tdkim=pass\r\n\theader.d=x`,
      `Authentication-Results: (comment (nested) \\) here)\r\n "${HOST}"; none`,
      `Authentication-Results: ${HOST}`,
      'Authentication-Results: (unterminated comment',
      'Subject: kept',
      '',
      `Authentication-Results: ${HOST}; in the body, kept`,
      '',
    ].join('\r\n');
    assert.equal(
      both(input),
      [
        'Authentication-Results: other.example; dkim=pass',
        'Subject: kept',
        '',
        `Authentication-Results: ${HOST}; in the body, kept`,
        '',
      ].join('\r\n'),
    );
  });

  it('keeps a field of another host whose id starts like ours', () => {
    const input = `Authentication-Results: ${HOST}.evil.example; spf=pass\r\n\r\n`;
    assert.equal(both(input), input);
  });

  it('removes a huge field of ours, and one whose id is pushed past the bytes held', () => {
    const ours = `Authentication-Results: ${HOST}; x=${'y'.repeat(20_000)}\r\n`;
    const padded = `Authentication-Results: (${'z'.repeat(9000)}) other.example; spf=pass\r\n`;
    const other = `Authentication-Results: other.example; x=${'y'.repeat(20_000)}\r\n`;
    assert.equal(both(`${ours}${padded}${other}Subject: s\r\n\r\nbody`), `${other}Subject: s\r\n\r\nbody`);
  });

  it('counts the DKIM-Signature fields of the header block only', () => {
    const input = 'DKIM-Signature: a\r\ndkim-signature : b\r\nSubject: c\r\n\r\nDKIM-Signature: d\r\n';
    assert.equal(filter(input).dkimSignatures, 2);
    assert.equal(filter(input, 'bytes').dkimSignatures, 2);
  });
});

describe('authservId', () => {
  it('reads a token or quoted string after white space and comments', () => {
    assert.equal(authservId(' mx.example.org; spf=pass'), 'mx.example.org');
    assert.equal(authservId('\r\n\tMX.Example.Org 1; none'), 'mx.example.org');
    assert.equal(authservId(' (a (b) \\( c) "mx\\"x"; none'), 'mx"x');
    assert.equal(authservId(' mx.example.org\r\n'), 'mx.example.org');
  });

  it('gives null when none can be read', () => {
    assert.equal(authservId(''), null);
    assert.equal(authservId(' (never closed'), null);
    assert.equal(authservId(' "never closed'), null);
    assert.equal(authservId(' cut-off-at-the-end'), null);
  });
});

describe('authenticationResults', () => {
  it('writes one result a folded line, quoting values and comments that need it', () => {
    const field = authenticationResults(HOST, [
      { method: 'spf', result: 'pass', comment: 'ok (really)', properties: { 'smtp.mailfrom': 'a@b.example' } },
      { method: 'dkim', result: 'none', properties: {} },
      { method: 'dmarc', result: 'fail', properties: { 'header.from': 'x y;z' } },
    ]);
    assert.equal(
      field,
      `Authentication-Results: ${HOST};\r\n\tspf=pass (ok \\(really\\)) smtp.mailfrom=a@b.example;\r\n\t` +
        'dkim=none;\r\n\tdmarc=fail header.from="x y;z"',
    );
    assert.equal(authservId(field.slice(field.indexOf(':') + 1)), HOST);
  });
});
