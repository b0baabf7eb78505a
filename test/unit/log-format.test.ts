// The pretty and logfmt log formats: what each line looks like, and logfmt's quoting, checked
// by parsing the output back with a logfmt reader written from the format's rules.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatLogLine, logfmtLine, logfmtValue, prettyLine } from '../../src/log-format.js';
import { parseLogfmt } from '../support/logfmt.js';

const DISCONNECT = {
  level: 'info',
  time: '2026-12-06T08:29:52.535Z',
  service: 'mailsrv',
  sessionId: '73502DC9709C',
  client: '127.0.0.1',
  durationMs: 177,
  commands: { ehlo: 1, mail: 1, rcpt: 1, data: 1, quit: 1 },
  total: 5,
  msg: 'disconnect',
};

test('pretty: time of day, level, message, then the fields with nested ones dotted', () => {
  assert.equal(
    prettyLine(DISCONNECT),
    '08:29:52.535 INFO  disconnect sessionId=73502DC9709C client=127.0.0.1 durationMs=177 ' +
      'commands.ehlo=1 commands.mail=1 commands.rcpt=1 commands.data=1 commands.quit=1 total=5',
  );
  assert.equal(
    prettyLine({ level: 'warn', time: '2026-12-06T08:29:52.535Z', reason: 'User unknown', msg: 'reject' }),
    '08:29:52.535 WARN  reject reason="User unknown"',
  );
});

test('logfmt: time, level and msg first, every other field after them, service included', () => {
  assert.equal(
    logfmtLine(DISCONNECT),
    'time=2026-12-06T08:29:52.535Z level=info msg=disconnect service=mailsrv sessionId=73502DC9709C ' +
      'client=127.0.0.1 durationMs=177 commands.ehlo=1 commands.mail=1 commands.rcpt=1 commands.data=1 ' +
      'commands.quit=1 total=5',
  );
  assert.equal(
    logfmtLine({ level: 'info', time: 't', msg: 'ready', smtp: ['127.0.0.1:25', '[::1]:25'], smtps: [], tls: 'off' }),
    'time=t level=info msg=ready smtp=127.0.0.1:25,[::1]:25 smtps="" tls=off',
  );
  assert.equal(
    logfmtLine({ level: 'info', time: 't', msg: 'x', flag: true, none: null, empty: {}, nested: { a: { b: 'c d' } } }),
    'time=t level=info msg=x flag=true none=null empty={} nested.a.b="c d"',
  );
});

test('logfmt quoting: bare where possible; spaces, =, quotes, backslashes, control characters and "" quoted', () => {
  assert.equal(logfmtValue('127.0.0.1'), '127.0.0.1');
  assert.equal(logfmtValue('é→ü'), 'é→ü');
  assert.equal(logfmtValue(''), '""');
  assert.equal(logfmtValue('cannot start'), '"cannot start"');
  assert.equal(logfmtValue('a=b'), '"a=b"');
  assert.equal(logfmtValue('say "hi"'), '"say \\"hi\\""');
  assert.equal(logfmtValue('C:\\dir'), '"C:\\\\dir"');
  assert.equal(logfmtValue('two\nlines\ttab'), '"two\\nlines\\ttab"');
  assert.equal(logfmtValue('bell\u0007'), '"bell\\u0007"');
  assert.equal(logfmtValue('del\u007f'), '"del\u007f"');
});

test('logfmt: any message and field value reads back as it was, one line per entry', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (msg, value) => {
      const line = formatLogLine(JSON.stringify({ level: 'info', time: 't', msg, reason: value }), 'logfmt');
      assert.ok(line.endsWith('\n'));
      assert.equal(line.indexOf('\n'), line.length - 1, 'one line');
      assert.deepEqual(parseLogfmt(line.slice(0, -1)), [
        ['time', 't'],
        ['level', 'info'],
        ['msg', msg],
        ['reason', value],
      ]);
    }),
    { numRuns: 300 },
  );
});

test('keys that logfmt cannot carry get _ for the offending characters', () => {
  assert.equal(logfmtLine({ msg: 'm', 'a key=x': 1 }), 'msg=m a_key_x=1');
});

test('formatLogLine: a pino JSON line in, a newline-terminated line out; non-JSON passes through', () => {
  const json = `${JSON.stringify(DISCONNECT)}\n`;
  assert.equal(formatLogLine(json, 'pretty'), `${prettyLine(DISCONNECT)}\n`);
  assert.equal(formatLogLine(json, 'logfmt'), `${logfmtLine(DISCONNECT)}\n`);
  assert.equal(formatLogLine('not json\n', 'pretty'), 'not json\n');
});
