// Settling an append interrupted by a crash: a complete message stays, a torn one is cut off,
// and a torn one that another program has appended after is left alone.
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { appendMessage, renderedLength, type MessageToAppend } from '../../src/mbox/append.js';
import { settleInterruptedAppend } from '../../src/mbox/probe.js';

const OLD = 'From old@x.test Mon Jan  5 10:00:00 2026\nSubject: old\n\nold body\n\n';

function message(body: string): MessageToAppend {
  return {
    source: Readable.from([Buffer.from(`Subject: new\r\n\r\n${body}`)]),
    sender: 'a@b.test',
    date: new Date('2026-11-25T12:00:00Z'),
    addHeaders: ['X-Delivery-ID: Q1.0'],
  };
}

async function mailboxWithNewMessage(body: string): Promise<{ path: string; offset: number; expectedBytes: number }> {
  const path = join(await mkdtemp(join(tmpdir(), 'mbox-probe-')), 'user');
  await writeFile(path, OLD);
  const { offset, bytes } = await appendMessage({
    ...message(body),
    mailboxPath: path,
    sizeLimit: 0,
    lockTimeoutMs: 1000,
  });
  assert.equal(await renderedLength(message(body)), bytes);
  return { path, offset, expectedBytes: bytes };
}

const settle = (path: string, offset: number, expectedBytes: number) =>
  settleInterruptedAppend({
    mailboxPath: path,
    offset,
    expectedBytes,
    deliveryId: 'Q1.0',
    lockTimeoutMs: 1000,
  });

test('a complete append is reported delivered and left as it is', async () => {
  const { path, offset, expectedBytes } = await mailboxWithNewMessage('line\r\n'.repeat(1000));
  const before = await readFile(path);
  assert.equal(await settle(path, offset, expectedBytes), true);
  assert.deepEqual(await readFile(path), before);
});

test('a torn append (killed mid-body) is cut back to where it started', async () => {
  const { path, offset, expectedBytes } = await mailboxWithNewMessage('line\r\n'.repeat(1000));
  await truncate(path, offset + 200);
  assert.equal(await settle(path, offset, expectedBytes), false);
  assert.equal(await readFile(path, 'latin1'), OLD);
});

test('nothing written yet: not delivered, file unchanged', async () => {
  const { path, offset, expectedBytes } = await mailboxWithNewMessage('x\r\n');
  await truncate(path, offset);
  assert.equal(await settle(path, offset, expectedBytes), false);
  assert.equal(await readFile(path, 'latin1'), OLD);
});

test("another delivery's whole message where ours was to start is not cut (ours is delivered again)", async () => {
  const { path, offset, expectedBytes } = await mailboxWithNewMessage('x\r\n');
  await truncate(path, offset);
  await appendFile(path, 'From other@x.test Mon Jan  5 10:00:00 2026\nX-Delivery-ID: Q2.0\nSubject: other\n\nbody\n\n');
  const before = await readFile(path);
  assert.equal(await settle(path, offset, expectedBytes), false);
  assert.deepEqual(await readFile(path), before);
});

test("a torn append followed by another program's message is not cut", async () => {
  const { path, offset, expectedBytes } = await mailboxWithNewMessage('line\r\n'.repeat(1000));
  await truncate(path, offset + 200);
  await appendFile(path, '\n\nFrom procmail@x.test Mon Jan  5 10:00:00 2026\nSubject: later\n\nlater\n\n');
  const before = await readFile(path);
  assert.equal(await settle(path, offset, expectedBytes), false);
  assert.deepEqual(await readFile(path), before);
});

test('a mailbox rewritten since (another node expunged): offset inside a message, nothing cut', async () => {
  const path = join(await mkdtemp(join(tmpdir(), 'mbox-probe-')), 'user');
  // ours was to start at the end of a longer mailbox; another node's POP3 update then removed a
  // message before it, so the offset now lies inside the headers of the last message
  const last = 'From other@x.test Mon Jan  5 10:00:00 2026\nReturn-Path: <o@x.test>\nReceived: from x\n\nbody\n\n';
  await writeFile(path, last);
  const before = await readFile(path);
  assert.equal(await settle(path, 45, 400), false);
  assert.deepEqual(await readFile(path), before, 'the last message was torn');
});

test('ours delivered whole, then moved by another node before the restart: found elsewhere, nothing cut', async () => {
  const { path, offset, expectedBytes } = await mailboxWithNewMessage('line\r\n'.repeat(10));
  // the other node expunged the old message in front: ours now starts at 0, the offset is past the end
  const ours = (await readFile(path)).subarray(offset);
  await writeFile(path, ours);
  assert.equal(await settle(path, offset, expectedBytes), true, 'ours was taken for undelivered');
  assert.deepEqual(await readFile(path), ours);
  // and with another delivery's whole message now where ours was to start (offset 0 here)
  const other = Buffer.from('From o@x.test Mon Jan  5 10:00:00 2026\nSubject: o\n\nother\n\n');
  await writeFile(path, Buffer.concat([other, ours]));
  assert.equal(await settle(path, 0, expectedBytes), true);
  assert.deepEqual(await readFile(path), Buffer.concat([other, ours]));
});
