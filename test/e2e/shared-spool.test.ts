// More than one node (README, "More than one node"): two daemons share one spool_dir, each with
// its own state_dir (its queue and its mailbox indexes), as two nodes mounting one NFS export
// would. Both deliver to and serve the same mailboxes; a POP3 session on one gives [IN-USE] to a
// second session on the other; neither trusts its index without checking the file the other
// changed; and deliveries through both with POP3 expunges on both lose and double nothing.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import {
  cleanupAllTempDirs,
  type Daemon,
  DOMAIN,
  envForTest,
  eventually,
  freePort,
  logsSoFar,
  note,
  Pop3Client,
  pop3Wire,
  readMailbox,
  sendRaw,
  type TestEnv,
} from './harness.js';

after(cleanupAllTempDirs);

interface Node {
  env: TestEnv & { pop3Port: number };
  daemon: Daemon;
}

/** Two daemons, one spool: node 2 uses node 1's spool_dir and has its own state_dir. */
async function twoNodes(t: { after: (fn: () => Promise<void> | void) => void }): Promise<[Node, Node]> {
  const node = async (sharedSpool?: string): Promise<Node> => {
    const pop3Port = await freePort();
    const { env, start } = await envForTest(t, {
      ...(sharedSpool === undefined ? {} : { sharedSpool }),
      config: { pop3: { listen: [`127.0.0.1:${pop3Port}`] }, auth: { failure_delay: '50ms' } },
    });
    return { env: Object.assign(env, { pop3Port }), daemon: await start() };
  };
  const first = await node();
  const second = await node(first.env.spoolDir);
  assert.notEqual(first.env.stateDir, second.env.stateDir);
  return [first, second];
}

/** Sends `message` to `user` through `node`; resolves with the Message-ID once it got 250. */
async function deliver(node: Node, user: string, subject: string): Promise<string> {
  const message = note(subject);
  const result = await sendRaw(node.env.port, { from: 'sender@client.test', to: [`${user}@${DOMAIN}`], message });
  assert.equal(result.end?.code, 250, `${subject}: ${JSON.stringify(result.end ?? result.rcpt)}`);
  return /^Message-ID: (\S+)/m.exec(message)![1]!;
}

/** Every queue of both nodes is empty: what got 250 is in its mailbox. */
async function queuesEmpty(nodes: Node[]): Promise<void> {
  await eventually(() => nodes.every((n) => n.env.queued().length === 0), 20_000, 'both queues empty');
}

function messageIdsIn(path: string): string[] {
  return readMailbox(path).messages.map((m) => /^Message-ID: (\S+)/im.exec(m.original.toString('latin1'))![1]!);
}

test('both nodes deliver to and serve one mailbox; a second POP3 session on the other gets [IN-USE]', async (t) => {
  const [one, two] = await twoNodes(t);
  await deliver(one, 'alice', 'via node 1');
  await deliver(two, 'alice', 'via node 2');
  await queuesEmpty([one, two]);
  assert.equal(readMailbox(one.env.mailbox('alice')).messages.length, 2);

  const session = await Pop3Client.login(one.env.pop3Port, 'alice');
  assert.deepEqual([...(await session.sizes()).keys()], [1, 2]);
  const { client: other } = await Pop3Client.connect(two.env.pop3Port);
  assert.equal(await other.cmd('USER alice'), '+OK send PASS');
  assert.equal(await other.cmd('PASS secret-pw'), '-ERR [IN-USE] Mailbox is in use by another POP3 session');
  // delivery never waits for a POP3 session, on either node
  await deliver(two, 'alice', 'while node 1 serves');
  await queuesEmpty([one, two]);
  assert.equal(readMailbox(one.env.mailbox('alice')).messages.length, 3);
  // the +OK of QUIT comes once the session lock is gone: node 2 may serve the mailbox at once
  assert.match(await session.quit(), /^\+OK/);
  assert.equal(await other.cmd('USER alice'), '+OK send PASS');
  assert.match(await other.cmd('PASS secret-pw'), /^\+OK alice has 3 messages/);
  await other.quit();
  await logsSoFar(two.daemon, two.env.port);
  assert.equal(two.daemon.find((e) => e.msg === 'mailbox in use by a session on another node').length, 1);
});

test('an index is checked against the file: node 1 sees what node 2 changed', async (t) => {
  const [one, two] = await twoNodes(t);
  for (let i = 1; i <= 4; i += 1) await deliver(one, 'alice', `message ${i}`);
  await queuesEmpty([one, two]);
  const mailbox = one.env.mailbox('alice');

  // node 1 reads everything: its index (in its own state_dir) now describes the mailbox
  const first = await Pop3Client.login(one.env.pop3Port, 'alice');
  const uidlsBefore = await first.uidls();
  for (let n = 1; n <= 4; n += 1) assert.deepEqual((await first.message(`RETR ${n}`)).body, pop3Wire(mailbox, n));
  await first.quit();

  // node 2 deletes two messages and receives a longer one: same file, other content
  const changer = await Pop3Client.login(two.env.pop3Port, 'alice');
  assert.match(await changer.cmd('DELE 1'), /^\+OK/);
  assert.match(await changer.cmd('DELE 3'), /^\+OK/);
  assert.match(await changer.quit(), /^\+OK .*2 messages deleted/);
  await deliver(two, 'alice', `a longer one ${'x'.repeat(500)}`);
  await queuesEmpty([one, two]);

  // node 1's next session shows the mailbox as it is, not as its index remembers it
  const again = await Pop3Client.login(one.env.pop3Port, 'alice');
  const sizes = await again.sizes();
  assert.equal(sizes.size, 3);
  for (let n = 1; n <= 3; n += 1) {
    const wire = pop3Wire(mailbox, n);
    assert.equal(sizes.get(n), wire.length, `LIST ${n}`);
    assert.deepEqual((await again.message(`RETR ${n}`)).body, wire, `RETR ${n}`);
  }
  const uidls = await again.uidls();
  assert.deepEqual([uidls.get(1), uidls.get(2)], [uidlsBefore.get(2), uidlsBefore.get(4)], 'UIDLs kept');
  assert.ok(![...uidlsBefore.values()].includes(uidls.get(3)!), 'the new message has a new UIDL');
  await again.quit();
  const check = await Pop3Client.login(two.env.pop3Port, 'alice');
  assert.deepEqual(await check.uidls(), uidls, 'both nodes give the same UIDLs');
  await check.quit();
});

test('deliveries through both nodes while POP3 clients expunge on both: nothing lost or doubled', async (t) => {
  const nodes = await twoNodes(t);
  const users = ['alice', 'bob'];
  const sent = new Map<string, string[]>(users.map((u) => [u, []]));
  /** Message-IDs each user's POP3 clients retrieved and saw deleted (QUIT said +OK) */
  const removed = new Map<string, string[]>(users.map((u) => [u, []]));
  let sending = true;

  const sender = async (index: number) => {
    for (let i = 0; i < 15; i += 1) {
      const user = users[(index + i) % users.length]!;
      sent.get(user)!.push(await deliver(nodes[(index + i) % 2]!, user, `sender ${index} message ${i}`));
    }
  };
  /** Logs in on one node or the other, retrieves everything, deletes it, and QUITs; again and again. */
  const reader = async (user: string, nodeIndex: number) => {
    for (let round = 0; sending || round < 2; round += 1) {
      const node = nodes[(nodeIndex + round) % 2]!;
      const { client } = await Pop3Client.connect(node.env.pop3Port);
      await client.cmd(`USER ${user}`);
      const login = await client.cmd('PASS secret-pw');
      if (login.startsWith('-ERR [IN-USE]')) {
        await client.quit();
        continue;
      }
      assert.match(login, /^\+OK/);
      const ids: string[] = [];
      for (const n of (await client.sizes()).keys()) {
        const { status, body } = await client.message(`RETR ${n}`);
        assert.match(status, /^\+OK/);
        ids.push(/^Message-ID: (\S+)/im.exec(body.toString('latin1'))![1]!);
        assert.match(await client.cmd(`DELE ${n}`), /^\+OK/);
      }
      const quit = await client.quit();
      if (quit.startsWith('+OK')) removed.get(user)!.push(...ids);
    }
  };
  const readers = [reader('alice', 0), reader('alice', 1), reader('bob', 0), reader('bob', 1)];
  await Promise.all([sender(0), sender(1), sender(2), sender(3)]);
  await queuesEmpty(nodes);
  sending = false;
  await Promise.all(readers);

  for (const user of users) {
    const everything = [...removed.get(user)!, ...messageIdsIn(nodes[0].env.mailbox(user))].sort();
    assert.deepEqual(everything, [...sent.get(user)!].sort(), `${user}: every message exactly once`);
    assert.equal(new Set(everything).size, everything.length);
  }
  // each node did its part of both
  for (const { daemon, env } of nodes) {
    await logsSoFar(daemon, env.port);
    assert.ok(daemon.find((e) => e.msg === 'mailbox updated').length > 0);
  }
});
