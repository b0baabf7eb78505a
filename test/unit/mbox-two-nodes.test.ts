// Two nodes sharing one spool, each with its own state_dir (README "More than one node"), acted
// out in this process by switching its node name: what one node leaves behind when it is killed
// must keep the other from doubling a delivery or touching a torn mailbox.
// - a message a killed node appended but never recorded, then deleted by the other node's POP3
//   update, is found settled when the killed node starts again (not delivered twice);
// - a POP3 update killed part way (a real SIGKILL) keeps the other node off the mailbox until the
//   node that began it finishes it;
// - a marker or a notes file that another account left in the spool counts for nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { appendMessage, type MessageToAppend } from '../../src/mbox/append.js';
import { expungeMessages, recoverInterruptedExpunges } from '../../src/mbox/expunge.js';
import { acquireDotlock, MailboxLockedError } from '../../src/mbox/lock.js';
import { setThisNode, thisNode } from '../../src/mbox/node.js';
import { clearOwnUpdateMarkers, forgetOwnCrashes } from '../../src/mbox/node-recovery.js';
import { settleInterruptedAppend } from '../../src/mbox/probe.js';
import { runCrashChild } from '../support/crash-hooks.js';
import type { ChildArgs } from '../support/expunge-crash-child.js';
import { messageOf, snapshotOf, writeMailbox } from '../support/mbox-expunge-fixtures.js';

const CHILD = new URL('../support/expunge-crash-child.ts', import.meta.url).pathname;
const host = hostname().split('.')[0];
const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'mbox-two-nodes-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Acts as the node whose state_dir is `stateDir`; returns its name. */
function actAs(stateDir: string): string {
  setThisNode(stateDir);
  return thisNode();
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

function delivery(id: string): MessageToAppend {
  return {
    source: Readable.from([Buffer.from(`Subject: ${id}\r\n\r\nbody of ${id}\r\n`)]),
    sender: 'a@b.test',
    date: new Date('2026-12-06T12:00:00Z'),
    addHeaders: [`X-Delivery-ID: ${id}`],
  };
}

let counter = 0;
async function freshSpool(): Promise<{ spool: string; mailbox: string; nodeA: string; nodeB: string }> {
  const run = join(dir, `run${++counter}`);
  const spool = join(run, 'spool');
  await fs.mkdir(spool, { recursive: true });
  const mailbox = join(spool, 'user');
  await writeMailbox(mailbox, 3);
  return { spool, mailbox, nodeA: join(run, 'state-a'), nodeB: join(run, 'state-b') };
}

describe('two nodes on one spool', () => {
  it('a delivery a killed node did not record, deleted meanwhile by the other node, is not made again', async () => {
    const { spool, mailbox, nodeA, nodeB } = await freshSpool();
    // node B appends Q1.0 and is killed before its queue records it: its lock stays, noting the append
    const nameB = actAs(nodeB);
    const { offset, bytes } = await appendMessage({
      ...delivery('Q1.0'),
      mailboxPath: mailbox,
      sizeLimit: 0,
      lockTimeoutMs: 1000,
    });
    const size = (await fs.stat(mailbox)).size;
    const note = `append ${String(size).padStart(16, '0')} ${host} ${bootId}\n`;
    await fs.writeFile(`${mailbox}.lock`, `${await deadPid()}\nhost ${host}\nnode ${nameB}\n${note}`);

    // node A's POP3 client deletes it (and message 1): A breaks B's stale lock first
    actAs(nodeA);
    const snapshot = await snapshotOf(mailbox);
    assert.equal(snapshot.messages.length, 4);
    await expungeMessages(snapshot, new Set([1, 3]), { journalDir: join(nodeA, 'journal'), lockTimeoutMs: 1000 });
    const notes = await fs.readFile(join(spool, '.user.unsettled'), 'latin1');
    assert.match(notes, new RegExp(`^crashed ${nameB} \\d+\\n`), 'B noted before its lock was broken');
    assert.match(notes, /\ndeleted Q1\.0\n/, "A's update recorded what it deleted of B's");
    assert.doesNotMatch(notes, /deleted .*\n.*deleted/s, 'message 1 carries no delivery id: nothing for it');

    // B starts again: its recovery finds Q1.0 settled, and a delivery nobody deleted is not
    actAs(nodeB);
    const settle = (deliveryId: string) =>
      settleInterruptedAppend({ mailboxPath: mailbox, offset, expectedBytes: bytes, deliveryId, lockTimeoutMs: 1000 });
    assert.equal(await settle('Q1.0'), true);
    assert.equal(await settle('Q2.0'), false);
    assert.deepEqual(await forgetOwnCrashes(spool, { timeoutMs: 1000, now: Date.now() }), []);
    await assert.rejects(fs.stat(join(spool, '.user.unsettled')), { code: 'ENOENT' }, 'the last note took the file');
  });

  it('while no node is noted as crashed, a POP3 update records nothing', async () => {
    const { spool, mailbox, nodeA } = await freshSpool();
    actAs(nodeA);
    await appendMessage({ ...delivery('Q3.0'), mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 1000 });
    await expungeMessages(await snapshotOf(mailbox), new Set([3]), {
      journalDir: join(nodeA, 'journal'),
      lockTimeoutMs: 1000,
    });
    const sideFiles = (await fs.readdir(spool)).filter((name) => name.startsWith('.'));
    assert.deepEqual(sideFiles, [], 'no marker and no notes left');
  });

  it('a POP3 update killed part way keeps the other node off the mailbox until its own node finishes it', async () => {
    const { spool, mailbox, nodeA, nodeB } = await freshSpool();
    await writeMailbox(mailbox, 200);
    const journalDir = join(nodeA, 'journal');
    const args: ChildArgs = {
      mode: 'expunge',
      mailbox,
      journalDir,
      nodeStateDir: nodeA,
      deleted: [0],
      // killed halfway through its second write of the mailbox: the mailbox is torn
      crash: { op: 'write', target: 'mailbox', nth: 2, torn: true },
      chunkBytes: 4096,
    };
    assert.equal((await runCrashChild(CHILD, 'EXPUNGE_CHILD', args)).killed, true);
    const torn = await fs.readFile(mailbox);

    // node B: its dead lock is stale, but the marker names A; nothing is appended, nothing read
    actAs(nodeB);
    await assert.rejects(
      appendMessage({ ...delivery('Q4.0'), mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 200 }),
      (err: Error) => err instanceof MailboxLockedError && /an update by node \S+ was cut short/.test(err.message),
    );
    assert.deepEqual(await fs.readFile(mailbox), torn);

    // node A starts again: redoes its journal, takes its marker away; then B appends
    actAs(nodeA);
    await recoverInterruptedExpunges(journalDir, () => undefined);
    await clearOwnUpdateMarkers(spool);
    const expected = Buffer.concat(Array.from({ length: 199 }, (_, i) => messageOf(i + 1)));
    assert.deepEqual(await fs.readFile(mailbox), expected);
    actAs(nodeB);
    await appendMessage({ ...delivery('Q4.0'), mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 1000 });
    assert.match(await fs.readFile(mailbox, 'latin1'), /X-Delivery-ID: Q4\.0\n/);
  });

  // found by the crash loop: a node killed between creating its marker and writing it
  it('a marker cut short (empty) keeps nobody off the mailbox, and the next start removes it', async () => {
    const { spool, mailbox, nodeA, nodeB } = await freshSpool();
    await fs.writeFile(join(spool, '.user.updating'), '', { mode: 0o600 });
    actAs(nodeB);
    await appendMessage({ ...delivery('Q6.0'), mailboxPath: mailbox, sizeLimit: 0, lockTimeoutMs: 200 });
    actAs(nodeA);
    await clearOwnUpdateMarkers(spool);
    await assert.rejects(fs.stat(join(spool, '.user.updating')), { code: 'ENOENT' });
  });

  it('a marker or notes file another account left in the spool counts for nothing', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to make a file of another account');
    const { spool, mailbox, nodeA } = await freshSpool();
    const foreign = [
      [join(spool, '.user.updating'), 'some-node:0123456789\n'],
      [join(spool, '.user.unsettled'), 'crashed some-node:0123456789 9999999999999\ndeleted Q5.0\n'],
    ] as const;
    for (const [path, content] of foreign) {
      await fs.writeFile(path, content);
      await fs.chown(path, 65534, 65534);
    }
    actAs(nodeA);
    const lock = await acquireDotlock(mailbox, { timeoutMs: 200 });
    await lock.release();
    const settled = await settleInterruptedAppend({
      mailboxPath: mailbox,
      offset: (await fs.stat(mailbox)).size,
      expectedBytes: 100,
      deliveryId: 'Q5.0',
      lockTimeoutMs: 1000,
    });
    assert.equal(settled, false, 'a foreign notes file does not settle a delivery');
  });
});
