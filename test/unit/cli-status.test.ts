// Unit: what `mailsrv status` prints from a status file: ages as "1d 2h 3m", an expired
// certificate, a stopping daemon, a failed reload.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeStatus, duration } from '../../src/cli/status.js';
import type { DaemonStatus } from '../../src/daemon/status.js';

test('durations read as days, hours and minutes, seconds under a minute', () => {
  assert.equal(duration(0), '0s');
  assert.equal(duration(59_999), '59s');
  assert.equal(duration(60_000), '1m');
  assert.equal(duration(3_600_000), '1h');
  assert.equal(duration(93_784_000), '1d 2h 3m');
  assert.equal(duration(86_400_000 + 60_000), '1d 1m');
  assert.equal(duration(-5000), '0s');
});

test('a stopping daemon with an expired certificate and a failed reload', () => {
  const now = Date.parse('2026-12-06T12:00:00Z');
  const status: DaemonStatus = {
    pid: 42,
    version: '1.2.3',
    startedAt: '2026-12-05T10:00:00.000Z',
    updatedAt: '2026-12-06T11:59:57.000Z',
    state: 'stopping',
    listeners: { smtp: ['0.0.0.0:25', '[::]:25'], pop3s: [] },
    sessions: { smtp: 3, pop3: 1 },
    queue: { messages: 7, oldestReceivedAt: '2026-12-06T07:30:00.000Z' },
    certificate: { names: ['mail.example.org', 'example.org'], expires: '2026-12-01T00:00:00.000Z' },
    lastReload: { at: '2026-12-06T11:00:00.000Z', ok: false, error: 'key smtp.listen: bad' },
  };
  assert.equal(
    describeStatus(status, now),
    'mailsrv 1.2.3 is running, pid 42, up 1d 2h, stopping\n' +
      '  smtp:        0.0.0.0:25, [::]:25\n' +
      '  pop3s:       -\n' +
      '  sessions:    smtp 3, pop3 1\n' +
      '  queue:       7 message(s), oldest 4h 30m old\n' +
      '  certificate: mail.example.org, example.org, expires 2026-12-01T00:00:00Z EXPIRED\n' +
      '  last reload: failed (key smtp.listen: bad), 1h ago\n' +
      '  (as of 3s ago)\n',
  );
});
