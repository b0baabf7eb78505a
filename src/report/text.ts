// `mailsrv report` for people: a pflogsumm-like text summary of a ReportSummary.
import { hourName, type ListName, type ReportSummary } from './aggregate.js';

const LISTS: { name: ListName; title: string; bytes?: boolean }[] = [
  { name: 'topSenders', title: 'Senders by messages (messages, bytes)', bytes: true },
  { name: 'topRecipients', title: 'Recipients by deliveries' },
  { name: 'rejectionReasons', title: 'Rejections by reason' },
  { name: 'deferralReasons', title: 'Deferrals by reason' },
  { name: 'bounceReasons', title: 'Bounces by reason' },
  { name: 'pop3LoginsByUser', title: 'POP3 logins by user' },
  { name: 'smtpLoginsByUser', title: 'SMTP AUTH logins by user' },
  { name: 'authFailuresByClient', title: 'Failed logins by client address' },
  { name: 'authFailuresByUser', title: 'Failed logins by user' },
];

const TRAFFIC = ['received', 'delivered', 'deferred', 'bounced', 'rejected'] as const;

export function formatReport(summary: ReportSummary): string {
  const { totals, lines } = summary;
  const out: string[] = [];
  const span = summary.first === null ? 'no mail log lines' : `${summary.first} to ${summary.last}`;
  out.push(`mailsrv report: ${span}${summary.since === null ? '' : ` (since ${summary.since})`}`, '');
  const listeners = summary.connectionsByListener.map(({ key, count }) => `${key} ${count}`).join(', ');
  const rows: [string, number, string][] = [
    ['received', totals.received, `messages, ${totals.receivedBytes} bytes`],
    ['delivered', totals.delivered, 'recipients'],
    ['deferred', totals.deferred, 'delivery attempts'],
    ['bounced', totals.bounced, 'recipients'],
    ['expired', totals.expired, 'recipients (max_queue_lifetime)'],
    ['rejected', totals.rejected, 'recipients and maildrop files'],
    ['connections', totals.connections, listeners === '' ? '' : `(${listeners})`],
    ['connections refused', totals.connectionsRefused, '(connection limits)'],
    ['POP3 logins', totals.pop3Logins, ''],
    ['SMTP AUTH logins', totals.smtpLogins, ''],
    ['failed logins', totals.authFailures, `(POP3 ${totals.pop3AuthFailures}, SMTP ${totals.smtpAuthFailures})`],
    [
      'log lines',
      lines.total,
      `(${lines.notJson} not JSON, ${lines.other} other, ${lines.beforeSince} before --since)`,
    ],
  ];
  out.push('Grand totals');
  for (const [label, value, note] of rows)
    out.push(`  ${label.padEnd(20)}${String(value).padStart(8)}  ${note}`.trimEnd());
  out.push('', `Per-hour traffic (UTC${summary.hoursTruncated ? ', the newest hours only' : ''})`);
  out.push(`  ${'hour'.padEnd(16)}${TRAFFIC.map((name) => name.padStart(10)).join('')}`);
  for (const hour of summary.hours) {
    out.push(`  ${hourName(hour.hour).padEnd(16)}${TRAFFIC.map((name) => String(hour[name]).padStart(10)).join('')}`);
  }
  if (summary.hours.length === 0) out.push('  (none)');
  for (const { name, title, bytes } of LISTS) {
    const approximate = summary.approximate.includes(name) ? ' (approximate: too many distinct keys)' : '';
    out.push('', `${title}${approximate}`);
    for (const { key, count, bytes: size } of summary[name]) {
      out.push(`  ${String(count).padStart(8)}${bytes ? String(size).padStart(12) : ''}  ${printable(key)}`);
    }
    if (summary[name].length === 0) out.push('  (none)');
  }
  return `${out.join('\n')}\n`;
}

/** A key as the terminal may show it: control characters (from a client's input) as `?`. */
function printable(key: string): string {
  return key.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}
