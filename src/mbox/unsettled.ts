// Deliveries a crashed node may not have recorded (README "More than one node"). A node records
// in its queue that a message is delivered only after the append's fsync; killed in between, it
// finds the message in the mailbox when it starts again (probe.ts) — unless a POP3 client of
// another node deleted it meanwhile. So whoever breaks the stale lock of a node that was appending
// notes that node in `spool_dir/.<mailbox>.unsettled`; while such a note is there, every POP3
// update of the mailbox first records the delivery ids of the messages it deletes; the crashed
// node looks there for what it cannot find in the mailbox, and once its recovery is done takes its
// note away (the file goes with the last note). Notes older than 30 days are dropped, and the
// file stops growing at 4 MiB (a delivery whose id did not fit may then be made again).
// Format: docs/formats.md, "Unsettled deliveries".
import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDir, isErrno, readAt, writeAll } from '../fsutil.js';
import { mailboxOfSideFile, readOwnSideFile, sideFilePath } from './side-file.js';

const SUFFIX = '.unsettled';
const MAX_BYTES = 4 * 1024 * 1024;
const NOTE_LIFETIME_MS = 30 * 24 * 60 * 60 * 1000;
/** The trace headers (X-Delivery-ID among them) open every message: this much of it is read. */
const HEADER_READ_BYTES = 8 * 1024;
const DELIVERY_ID = /\nX-Delivery-ID: (\S+)\r?\n/;

/** What the file says: the crashed nodes (with when they were noted) and the deleted delivery ids. */
export interface Unsettled {
  crashed: Map<string, number>;
  deleted: Set<string>;
}

const unsettledPath = (mailboxPath: string): string => sideFilePath(mailboxPath, SUFFIX);

/** The mailbox a file name in the spool is the unsettled-deliveries file of, or null. */
export const mailboxOfUnsettled = (name: string): string | null => mailboxOfSideFile(name, SUFFIX);

/** Reads the file (null if there is none, or it is not this account's). Notes past their lifetime are left out. */
export async function readUnsettled(mailboxPath: string, now: number): Promise<Unsettled | null> {
  const text = await readOwnSideFile(unsettledPath(mailboxPath), MAX_BYTES);
  if (text === null) return null;
  const result: Unsettled = { crashed: new Map(), deleted: new Set() };
  for (const line of text.split('\n')) {
    const [kind, value, at] = line.split(' ');
    if (kind === 'crashed' && value && Number(at) > now - NOTE_LIFETIME_MS) result.crashed.set(value, Number(at));
    else if (kind === 'deleted' && value) result.deleted.add(value);
  }
  return result;
}

/** Appends the lines durably; false (nothing written) when the file would pass its bound. */
async function appendLines(mailboxPath: string, lines: string[]): Promise<boolean> {
  const path = unsettledPath(mailboxPath);
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW;
  const handle = await fs.open(path, flags, 0o600);
  let created = false;
  try {
    const st = await handle.stat();
    if (st.uid !== process.geteuid?.()) throw new Error(`${path} belongs to another account`);
    created = st.size === 0;
    const text = Buffer.from(lines.join(''), 'latin1');
    if (st.size + text.length > MAX_BYTES) return false;
    await writeAll(handle, [text]);
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (created) await fsyncDir(dirname(path));
  return true;
}

/**
 * A stale lock of `node`, which was appending, is being broken: notes the node (durably) before
 * anyone can delete what it appended. Once per node.
 */
export async function noteCrashedNode(mailboxPath: string, node: string, now: number): Promise<void> {
  if ((await readUnsettled(mailboxPath, now))?.crashed.has(node)) return;
  await appendLines(mailboxPath, [`crashed ${node} ${now}\n`]);
}

/**
 * A POP3 update, its lock held, before it writes the mailbox: while a crashed node is noted,
 * records the delivery ids of the messages about to be deleted. Returns how many it recorded.
 */
export async function recordDeletions(
  mailboxPath: string,
  mailbox: FileHandle,
  spans: { offset: number; spanLength: number }[],
  now: number,
): Promise<number> {
  const unsettled = await readUnsettled(mailboxPath, now);
  if (unsettled === null || unsettled.crashed.size === 0) return 0;
  const lines: string[] = [];
  const header = Buffer.alloc(HEADER_READ_BYTES);
  for (const span of spans) {
    const n = await readAt(mailbox, header, 0, Math.min(HEADER_READ_BYTES, span.spanLength), span.offset);
    const text = header.toString('latin1', 0, n);
    const end = text.indexOf('\n\n');
    const id = DELIVERY_ID.exec(end < 0 ? text : text.slice(0, end + 1))?.[1];
    if (id !== undefined && !unsettled.deleted.has(id)) lines.push(`deleted ${id}\n`);
  }
  return lines.length > 0 && (await appendLines(mailboxPath, lines)) ? lines.length : 0;
}

/** Whether a POP3 update recorded the delivery as deleted (so it was made: not to be made again). */
export async function wasDeleted(mailboxPath: string, deliveryId: string, now: number): Promise<boolean> {
  return (await readUnsettled(mailboxPath, now))?.deleted.has(deliveryId) ?? false;
}

/**
 * `node` has settled all it had under way (its start): takes its note away, with any past
 * its lifetime; the file goes when no note is left. The caller holds the mailbox's lock.
 */
export async function forgetNode(mailboxPath: string, node: string, now: number): Promise<void> {
  const unsettled = await readUnsettled(mailboxPath, now);
  if (unsettled === null) return;
  unsettled.crashed.delete(node);
  const path = unsettledPath(mailboxPath);
  if (unsettled.crashed.size === 0) {
    await fs.unlink(path).catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) throw err;
    });
    await fsyncDir(dirname(path));
    return;
  }
  const lines = [
    ...[...unsettled.crashed].map(([name, at]) => `crashed ${name} ${at}\n`),
    ...[...unsettled.deleted].map((id) => `deleted ${id}\n`),
  ];
  const temp = `${path}.new`;
  const handle = await fs.open(
    temp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    await writeAll(handle, [Buffer.from(lines.join(''), 'latin1')]);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, path);
  await fsyncDir(dirname(path));
}
