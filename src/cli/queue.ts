// `mailsrv queue [list]` shows the queue as Postfix's mailq does, read straight from
// state_dir/queue (whether or not the daemon runs; nothing is changed); `queue flush` asks the
// running daemon to retry every deferred recipient now; `queue delete ID...|ALL` drops messages
// and tells the daemon. The queue belongs to the daemon's user: these are for root or that user.
import { readdir, rm } from 'node:fs/promises';
import type { Command } from 'commander';
import type { Config } from '../config/schema.js';
import { isErrno } from '../fsutil.js';
import { describeStatus, type DeliveryStatus } from '../message/status.js';
import { statePaths } from '../paths.js';
import { isQueueId } from '../queue/id.js';
import { QUEUE_SIGNAL, requestFlush } from '../queue/signal.js';
import { QueueStore, type QueueEntry } from '../queue/store.js';
import { signalDaemonOrFail } from './daemon-signal.js';
import { fail } from './fail.js';
import { loadConfigOrExit } from './load-config.js';

interface ConfigOption {
  config?: string;
}

export function registerQueueCommands(program: Command): void {
  const queue = program
    .command('queue')
    .description('show the queue (list, the default), retry it now (flush), drop messages (delete)');

  queue
    .command('list', { isDefault: true })
    .description(
      'each message: id, size, age, sender, and each recipient not yet delivered with its state and last error',
    )
    .option('-c, --config <file>', 'config file')
    .option('--json', 'print the queue as JSON, for scripts')
    .action(async (opts: ConfigOption & { json?: boolean }) => {
      await printQueue(loadConfigOrExit(opts.config), opts.json ?? false);
    });

  queue
    .command('flush')
    .description('ask the running daemon to retry every deferred message now')
    .option('-c, --config <file>', 'config file')
    .action(async (opts: ConfigOption) => {
      await flushQueue(loadConfigOrExit(opts.config));
    });

  queue
    .command('delete')
    .description('remove messages from the queue (ALL: every message), then tell the running daemon')
    .argument('<ids...>', 'queue ids as `mailsrv queue` shows them, or ALL')
    .option('-c, --config <file>', 'config file')
    .action(async (ids: string[], opts: ConfigOption) => {
      await deleteMessages(loadConfigOrExit(opts.config), ids);
    });
}

/** `queue list` (and `sendmail -bp`). */
export async function printQueue(config: Config, json: boolean): Promise<void> {
  const store = new QueueStore(config.state_dir);
  let entries: QueueEntry[];
  try {
    entries = await store.listEntries((id, err) =>
      process.stderr.write(`mailsrv: warning: queue file ${id} cannot be read: ${err.message}\n`),
    );
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) failOnQueue(config, store.dir, err); // no queue directory yet: nothing queued
    entries = [];
  }
  const now = Date.now();
  process.stdout.write(
    json
      ? `${JSON.stringify(
          entries.map((entry) => describeEntry(entry, now)),
          null,
          2,
        )}\n`
      : formatQueue(entries, now),
  );
}

/** `queue flush` (and `sendmail -q`). */
export async function flushQueue(config: Config): Promise<void> {
  const { flushRequest } = statePaths(config.state_dir);
  try {
    await requestFlush(flushRequest);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) failOnQueue(config, flushRequest, err);
  }
  const pid = await signalDaemonOrFail(config, QUEUE_SIGNAL);
  if (pid === null) {
    await rm(flushRequest, { force: true });
    fail('mailsrv is not running');
  }
  process.stdout.write(`mailsrv (pid ${pid}) is retrying the deferred mail now\n`);
}

async function deleteMessages(config: Config, ids: string[]): Promise<void> {
  const bad = ids.filter((id) => id !== 'ALL' && !isQueueId(id));
  if (bad.length > 0)
    fail(
      `not a queue id: ${bad.map((id) => JSON.stringify(id)).join(', ')} ` +
        '(16 letters and digits, as `mailsrv queue` shows them)',
    );
  const store = new QueueStore(config.state_dir);
  let targets: string[];
  try {
    targets = ids.includes('ALL') ? (await readdir(store.dir)).filter(isQueueId) : [...new Set(ids)];
  } catch (err) {
    failOnQueue(config, store.dir, err);
  }
  const unknown: string[] = [];
  let deleted = 0;
  for (const id of targets) {
    try {
      await store.remove(id);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) failOnQueue(config, store.dir, err);
      unknown.push(id);
      continue;
    }
    deleted += 1;
    process.stdout.write(`${id}: deleted\n`);
  }
  if (deleted > 0) await signalDaemonOrFail(config, QUEUE_SIGNAL);
  if (deleted > 0 || ids.includes('ALL')) process.stdout.write(`${counted(deleted, 'message')} deleted\n`);
  if (unknown.length > 0) fail(`no such message in the queue: ${unknown.join(', ')}`);
}

function failOnQueue(config: Config, dir: string, err: unknown): never {
  const denied = isErrno(err, 'EACCES') || isErrno(err, 'EPERM');
  fail(`cannot use the queue ${dir}: ${(err as Error).message}${denied ? `; ${ownerHint(config)}` : ''}`);
}

function ownerHint(config: Config): string {
  return (
    `the queue belongs to the user mailsrv runs as (config key user: "${config.user}"): ` +
    'run this as root or as that user'
  );
}

// ---------------------------------------------------------------- the listing

type ShownState = 'pending' | 'deferred' | 'failed';

interface ShownRecipient {
  address: string;
  state: ShownState;
  attempts: number;
  /** ISO time of the next attempt (pending, deferred), else null */
  nextAttemptAt: string | null;
  /** the last attempt's status on one line (the remote reply, or "4.2.2 mailbox of alice is full") */
  lastError: string | null;
  lastStatus: DeliveryStatus | null;
}

interface ShownEntry {
  id: string;
  /** ISO time */
  arrivalTime: string;
  ageSeconds: number;
  size: number;
  /** '' is the null sender */
  sender: string;
  recipients: ShownRecipient[];
}

/** An entry as `queue list --json` shows it: only the recipients not delivered yet. */
function describeEntry(entry: QueueEntry, now: number): ShownEntry {
  const { envelope } = entry;
  const recipients = envelope.recipients.flatMap((recipient, index): ShownRecipient[] => {
    const progress = entry.progress[index];
    if (progress === undefined || progress.state === 'delivered') return [];
    const state: ShownState = progress.state === 'failed' ? 'failed' : progress.attempts > 0 ? 'deferred' : 'pending';
    return [
      {
        address: recipient.address,
        state,
        attempts: progress.attempts,
        nextAttemptAt: state === 'failed' ? null : new Date(progress.nextAttemptAt).toISOString(),
        lastError: progress.lastStatus === undefined ? null : describeStatus(progress.lastStatus),
        lastStatus: progress.lastStatus ?? null,
      },
    ];
  });
  return {
    id: envelope.id,
    arrivalTime: new Date(envelope.receivedAt).toISOString(),
    ageSeconds: Math.max(0, Math.floor((now - envelope.receivedAt) / 1000)),
    size: entry.size,
    sender: envelope.sender,
    recipients,
  };
}

/**
 * The mailq-like listing:
 *
 *   -Queue ID------- --Size-- -Age- -Sender/Recipient-------
 *   0QFW3TKLZ6M4H9PX     1234    3m sender@example.org
 *       alice@example.org  deferred, 3 attempts, next attempt in 42s
 *           4.2.0 mailbox of alice is locked by another program
 *
 *   1 message, 1234 bytes
 */
function formatQueue(entries: QueueEntry[], now: number): string {
  if (entries.length === 0) return 'queue is empty\n';
  const lines = ['-Queue ID------- --Size-- -Age- -Sender/Recipient-------'];
  let bytes = 0;
  for (const entry of entries) {
    const shown = describeEntry(entry, now);
    bytes += shown.size;
    const sender = shown.sender === '' ? '<>' : printable(shown.sender);
    lines.push(
      `${shown.id} ${String(shown.size).padStart(8)} ` +
        `${duration(now - entry.envelope.receivedAt).padStart(5)} ${sender}`,
    );
    for (const recipient of shown.recipients) {
      lines.push(`    ${printable(recipient.address)}  ${stateText(recipient, now)}`);
      if (recipient.lastError !== null) lines.push(`        ${printable(recipient.lastError)}`);
    }
    lines.push('');
  }
  lines.push(`${counted(entries.length, 'message')}, ${counted(bytes, 'byte')}`);
  return `${lines.join('\n')}\n`;
}

function stateText(recipient: ShownRecipient, now: number): string {
  if (recipient.state !== 'deferred') return recipient.state;
  const wait = Date.parse(recipient.nextAttemptAt!) - now;
  return (
    `deferred, ${counted(recipient.attempts, 'attempt')}, ` +
    `next attempt ${wait > 0 ? `in ${duration(wait)}` : 'due now'}`
  );
}

/** 42s, 3m, 2h, 1d: the largest unit that fits, rounded down. */
function duration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/** Text from the queue (a remote server's reply included) without control characters, for a terminal. */
function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

function counted(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
