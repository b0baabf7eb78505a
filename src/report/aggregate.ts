// The aggregation behind `mailsrv report` (README "Logs"): mailsrv's pino log lines, one at a
// time, into totals, per-hour traffic and top lists, in bounded memory (BoundedCounter, at most
// MAX_HOURS hours). Lines that are not JSON are counted, never fatal. The events and fields read
// are those the daemon logs: 'connect' (listener), 'queued' (from, size), 'delivered' (to),
// 'deferred' / 'bounced' / 'expired' (reason), 'reject' (reply), a refused maildrop file
// (reason), the connection-limit refusals, 'login' and 'login failed' (user, client; SMTP AUTH
// lines carry the SASL `method`, POP3 lines do not).
import { BoundedCounter, type CountedKey } from './counter.js';

/** Distinct keys each top list holds before it forgets the less frequent half. */
const DEFAULT_MAX_KEYS = 10_000;
/** Hours of traffic held (31 days); older hours are dropped from the per-hour table. */
const MAX_HOURS = 31 * 24;
const HOUR_MS = 3_600_000;

export interface HourTraffic {
  received: number;
  delivered: number;
  deferred: number;
  bounced: number;
  rejected: number;
}

export interface ReportTotals extends HourTraffic {
  receivedBytes: number;
  /** recipients returned to their sender after max_queue_lifetime (also counted in `bounced` per hour) */
  expired: number;
  connections: number;
  connectionsRefused: number;
  pop3Logins: number;
  smtpLogins: number;
  authFailures: number;
  pop3AuthFailures: number;
  smtpAuthFailures: number;
}

/** The top lists of a report, in the order it prints them. */
export const LIST_NAMES = [
  'connectionsByListener',
  'topSenders',
  'topRecipients',
  'rejectionReasons',
  'deferralReasons',
  'bounceReasons',
  'pop3LoginsByUser',
  'smtpLoginsByUser',
  'authFailuresByClient',
  'authFailuresByUser',
] as const;
export type ListName = (typeof LIST_NAMES)[number];

export interface ReportSummary extends Record<ListName, CountedKey[]> {
  /** times of the first and last line counted (ISO), null when none was */
  first: string | null;
  last: string | null;
  /** lines older than this (ISO) were skipped (--since) */
  since: string | null;
  lines: { total: number; notJson: number; other: number; beforeSince: number };
  totals: ReportTotals;
  /** every hour from the first to the last counted (UTC, ISO hour start), quiet hours included */
  hours: ({ hour: string } & HourTraffic)[];
  /** older hours were dropped (more than MAX_HOURS) */
  hoursTruncated: boolean;
  /** the lists whose counts may be too low (more distinct keys than were held) */
  approximate: ListName[];
}

export interface ReportOptions {
  /** epoch ms: lines logged before it are skipped; null: every line counts */
  cutoff: number | null;
  maxKeys?: number;
}

type LogLine = Record<string, unknown>;

const TOO_MANY_CONNECTIONS = /^[a-z0-9]+: too many connections( from one address)?$/;

export class MailLogReport {
  private readonly totals: ReportTotals = {
    received: 0,
    receivedBytes: 0,
    delivered: 0,
    deferred: 0,
    bounced: 0,
    expired: 0,
    rejected: 0,
    connections: 0,
    connectionsRefused: 0,
    pop3Logins: 0,
    smtpLogins: 0,
    authFailures: 0,
    pop3AuthFailures: 0,
    smtpAuthFailures: 0,
  };
  private readonly lines = { total: 0, notJson: 0, other: 0, beforeSince: 0 };
  private readonly hours = new Map<number, HourTraffic>();
  private hoursTruncated = false;
  private first: number | null = null;
  private last: number | null = null;
  private readonly lists: Record<ListName, BoundedCounter>;

  constructor(private readonly options: ReportOptions) {
    const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    this.lists = Object.fromEntries(LIST_NAMES.map((name) => [name, new BoundedCounter(maxKeys)])) as Record<
      ListName,
      BoundedCounter
    >;
  }

  /** One log line (without its line end); blank lines are ignored. */
  addLine(text: string): void {
    if (text.trim() === '') return;
    this.lines.total += 1;
    let line: unknown;
    try {
      line = JSON.parse(text);
    } catch {
      this.lines.notJson += 1;
      return;
    }
    const time = logLineTime(line);
    if (time === null || typeof (line as LogLine).msg !== 'string') {
      this.lines.other += 1;
      return;
    }
    if (this.options.cutoff !== null && time < this.options.cutoff) {
      this.lines.beforeSince += 1;
      return;
    }
    this.first = this.first === null ? time : Math.min(this.first, time);
    this.last = this.last === null ? time : Math.max(this.last, time);
    this.count(line as LogLine, time);
  }

  /** Lines that are not one whole JSON line (too long to read, say) count as not JSON. */
  addUnreadable(): void {
    this.lines.total += 1;
    this.lines.notJson += 1;
  }

  summary(top: number): ReportSummary {
    const lists = Object.fromEntries(LIST_NAMES.map((name) => [name, this.lists[name].top(top)]));
    return {
      first: isoOrNull(this.first),
      last: isoOrNull(this.last),
      since: isoOrNull(this.options.cutoff),
      lines: { ...this.lines },
      totals: { ...this.totals },
      hours: this.hourTable(),
      hoursTruncated: this.hoursTruncated,
      ...(lists as Record<ListName, CountedKey[]>),
      approximate: LIST_NAMES.filter((name) => this.lists[name].approximate),
    };
  }

  private count(line: LogLine, time: number): void {
    const { totals, lists } = this;
    const msg = line.msg as string;
    switch (msg) {
      case 'connect':
        totals.connections += 1;
        lists.connectionsByListener.add(text(line.listener) || '?');
        return;
      case 'queued': {
        const size = natural(line.size);
        totals.received += 1;
        totals.receivedBytes += size;
        lists.topSenders.add(address(line.from), size);
        this.hour(time).received += 1;
        return;
      }
      case 'delivered':
        totals.delivered += 1;
        lists.topRecipients.add(address(line.to));
        this.hour(time).delivered += 1;
        return;
      case 'deferred':
        totals.deferred += 1;
        lists.deferralReasons.add(reasonOf(line.reason));
        this.hour(time).deferred += 1;
        return;
      case 'bounced':
      case 'expired':
        totals[msg] += 1;
        lists.bounceReasons.add(`${msg === 'expired' ? 'expired: ' : ''}${reasonOf(line.reason)}`);
        this.hour(time).bounced += 1;
        return;
      case 'reject':
        this.rejected(time, reasonOf(line.reply));
        return;
      case 'maildrop file rejected and removed':
        this.rejected(time, `maildrop: ${reasonOf(line.reason)}`);
        return;
      case 'login': {
        const smtp = line.method !== undefined;
        totals[smtp ? 'smtpLogins' : 'pop3Logins'] += 1;
        lists[smtp ? 'smtpLoginsByUser' : 'pop3LoginsByUser'].add(text(line.user) || '?');
        return;
      }
      case 'login failed':
        totals.authFailures += 1;
        totals[line.method !== undefined ? 'smtpAuthFailures' : 'pop3AuthFailures'] += 1;
        lists.authFailuresByClient.add(text(line.client) || '?');
        lists.authFailuresByUser.add(text(line.user) || '?');
        return;
    }
    if (TOO_MANY_CONNECTIONS.test(msg)) totals.connectionsRefused += 1;
  }

  private rejected(time: number, reason: string): void {
    this.totals.rejected += 1;
    this.lists.rejectionReasons.add(reason);
    this.hour(time).rejected += 1;
  }

  private hour(time: number): HourTraffic {
    const key = Math.floor(time / HOUR_MS);
    let hour = this.hours.get(key);
    if (hour === undefined) {
      hour = { received: 0, delivered: 0, deferred: 0, bounced: 0, rejected: 0 };
      this.hours.set(key, hour);
      if (this.hours.size > MAX_HOURS) {
        this.hours.delete(Math.min(...this.hours.keys()));
        this.hoursTruncated = true;
      }
    }
    return hour;
  }

  private hourTable(): ReportSummary['hours'] {
    if (this.hours.size === 0) return [];
    const keys = [...this.hours.keys()];
    const newest = Math.max(...keys);
    const oldest = Math.max(Math.min(...keys), newest - MAX_HOURS + 1);
    const table: ReportSummary['hours'] = [];
    for (let key = oldest; key <= newest; key++) {
      const traffic = this.hours.get(key) ?? { received: 0, delivered: 0, deferred: 0, bounced: 0, rejected: 0 };
      table.push({ hour: new Date(key * HOUR_MS).toISOString(), ...traffic });
    }
    return table;
  }
}

/** A parsed line's time (pino's ISO `time`, or epoch ms); null when it has none. */
export function logLineTime(line: unknown): number | null {
  if (typeof line !== 'object' || line === null) return null;
  const { time } = line as LogLine;
  const ms = typeof time === 'string' ? Date.parse(time) : typeof time === 'number' ? time : Number.NaN;
  return Number.isFinite(ms) ? ms : null;
}

/** An hour of the table as people read it: "2026-12-06T08:00:00.000Z" → "2026-12-06 08:00". */
export function hourName(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function natural(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 0;
}

/** An envelope address as a key: lower case; the null sender as `<>`. */
function address(value: unknown): string {
  return text(value).toLowerCase() || '<>';
}

/** A reply or reason as a key: the addresses in it are blanked so one reason is one key. */
function reasonOf(value: unknown): string {
  return text(value).replace(/<[^<>]*>/g, '<address>') || '?';
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
