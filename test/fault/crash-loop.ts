// The crash loop: rounds of `kill -9` at a random moment while the daemon receives mail from
// several SMTP clients at once (one local recipient: direct delivery; several: the queue; remote
// recipients, alone or with local ones: relayed to a test MX, test/fault/crash-mx.ts, that
// answers some attempts 451 and a few 554, which bounce) and POP3 clients delete messages and
// QUIT, then a restart and a check of every mailbox and of what reached the MX.
// The kill comes after a random number of acknowledgements and deletions, so a round is timed
// by what happened, not by the clock. Invariants after each round: every message that got a
// 250 is in each of its mailboxes exactly once (unless a POP3 QUIT that got +OK deleted it
// there), none is torn, nothing is in a mailbox that was never sent, and the queue drains; each
// acknowledged remote recipient got a whole copy at the MX or a bounce, a second copy (or a
// bounce after a copy) only after a kill cut that delivery short (printed), and nothing reached
// the MX that was never sent.
// With two nodes (README, "More than one node"), two daemons share one spool_dir, each with its
// own state_dir: the clients are spread over both, one of them is killed while the other goes
// on until it is stopped, then both start again and drain their queues.
//
// Alone, for a long run:  node --import tsx test/fault/crash-loop.ts --rounds 1000 [--nodes 2] [--seed N]
// (test/fault/crash-loop.test.ts runs a few rounds of each in `npm test`).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type Daemon,
  DOMAIN,
  eventually,
  freePort,
  makeEnv,
  parseMbox,
  queueIdOf,
  Pop3Client,
  readMailbox,
  SmtpClient,
  startDaemon,
  type TestEnv,
} from '../e2e/harness.js';
import { bodyEnd, key, Ledger, random } from './crash-ledger.js';
import { REMOTE, SENDER_DOMAIN, TestMx } from './crash-mx.js';

const USERS = ['ann', 'ben', 'cid'];
const SMTP_CLIENTS = 6;
const POP3_CLIENTS = 2;

export interface LoopReport {
  rounds: number;
  acknowledged: number;
  /** copies the test MX took, the bounces among them, and how many were second copies after a kill */
  relayed: number;
  bounces: number;
  relayedTwice: number;
  deletedByQuit: number;
  invariantsChecked: number;
}

async function smtpClient(env: TestEnv, ledger: Ledger, rand: () => number, tag: string): Promise<void> {
  for (let n = 0; ; n++) {
    const subject = `${tag}-${n}`;
    const to = [...USERS.filter(() => rand() < 0.5), ...REMOTE.filter(() => rand() < 0.3)];
    if (to.length === 0) to.push(USERS[Math.floor(rand() * USERS.length)]!);
    ledger.sent.set(subject, to);
    // from inside mynetworks: the remote recipients are relayed
    const { client } = await SmtpClient.connect(env.port, { timeoutMs: 5000, localAddress: '127.0.0.2' });
    try {
      await client.cmd(`EHLO ${SENDER_DOMAIN}`);
      await client.cmd(`MAIL FROM:<loop@${SENDER_DOMAIN}>`);
      const accepted: string[] = [];
      for (const recipient of to) {
        const address = recipient.includes('@') ? recipient : `${recipient}@${DOMAIN}`;
        if ((await client.cmd(`RCPT TO:<${address}>`)).code === 250) accepted.push(recipient);
      }
      if ((await client.cmd('DATA')).code !== 354) continue;
      const lines = Array.from({ length: 1 + Math.floor(rand() * 40) }, (_, i) => `line ${i} of ${subject}`);
      const head = `Subject: ${subject}\r\nMessage-ID: <${subject}@${SENDER_DOMAIN}>\r\n`;
      const end = await client.data(`${head}\r\n${lines.join('\r\n')}\r\n${bodyEnd(subject)}\r\n`);
      if (end.code === 250) {
        for (const recipient of accepted) ledger.acknowledged.add(key(recipient, subject));
        ledger.queueIds.set(subject, queueIdOf(end) ?? '?');
      }
    } finally {
      client.destroy();
    }
  }
}

async function pop3Client(port: number, ledger: Ledger, rand: () => number): Promise<void> {
  for (;;) {
    const user = USERS[Math.floor(rand() * USERS.length)]!;
    let client: Pop3Client;
    try {
      client = await Pop3Client.login(port, user, undefined, { timeoutMs: 5000 });
    } catch (err) {
      if (/IN-USE/.test(String(err))) continue; // the other POP3 client has this mailbox
      throw err; // the daemon is gone
    }
    try {
      const listed = await client.multi('LIST');
      const marked: string[] = [];
      for (const entry of listed.lines) {
        const number = Number(entry.split(' ')[0]);
        if (rand() >= 0.3) continue;
        const top = await client.message(`TOP ${number} 0`);
        const subject = /^Subject: (.*)$/m.exec(top.body.toString('latin1'))?.[1]?.trim();
        if (subject !== undefined && (await client.cmd(`DELE ${number}`)).startsWith('+OK')) marked.push(subject);
      }
      for (const s of marked) ledger.maybeDeleted.add(key(user, s));
      if ((await client.cmd('QUIT')).startsWith('+OK')) for (const s of marked) ledger.deleted.add(key(user, s));
    } finally {
      client.destroy();
    }
  }
}

/** Checks every mailbox against the ledger; returns how many facts were checked. */
function checkMailboxes(env: TestEnv, ledger: Ledger): number {
  // (every node's env names the one shared spool)
  let checked = 0;
  for (const user of USERS) {
    const box = readMailbox(env.mailbox(user));
    const seen = new Map<string, number>();
    for (const message of parseMbox(box.raw)) {
      const text = message.original.toString('latin1');
      const subject = /^Subject: (.*)$/m.exec(text)?.[1];
      assert.ok(subject !== undefined, `${user}: a message without a subject (torn?): ${text.slice(0, 200)}`);
      assert.ok(ledger.sent.get(subject)?.includes(user), `${user}: "${subject}" was never sent to them`);
      assert.ok(text.endsWith(`${bodyEnd(subject)}\n`), `${user}: "${subject}" is torn`);
      seen.set(subject, (seen.get(subject) ?? 0) + 1);
      checked += 3;
    }
    for (const [subject, count] of seen) {
      assert.equal(count, 1, `${user}: "${subject}" (${ledger.queueIds.get(subject)}) stored ${count} times`);
      assert.ok(!ledger.deleted.has(key(user, subject)), `${user}: "${subject}" is back after its QUIT`);
      checked += 2;
    }
    for (const k of ledger.acknowledged) {
      const [owner, subject] = k.split(' ') as [string, string];
      if (owner !== user || ledger.deleted.has(k) || ledger.maybeDeleted.has(k)) continue;
      assert.ok(seen.has(subject), `${user}: acknowledged "${subject}" (${ledger.queueIds.get(subject)}) is missing`);
      checked += 1;
    }
  }
  return checked;
}

const nodeName = (index: number) => `node${index + 1}.test.local`;

/** One daemon's environment and its POP3 port. */
interface Node {
  env: TestEnv;
  pop3Port: number;
}

/**
 * `count` environments (1 or 2); a second one shares the first one's spool_dir. Each relays to
 * the test MX under a hostname of its own (its EHLO there names the node).
 */
async function makeNodes(count: number, mx: TestMx): Promise<Node[]> {
  const nodes: Node[] = [];
  for (let i = 0; i < count; i++) {
    const pop3Port = await freePort();
    const env = await makeEnv({
      users: USERS,
      config: {
        hostname: nodeName(i),
        pop3: { listen: [`127.0.0.1:${pop3Port}`] },
        relay: { relayhost: mx.relayhost, retry: ['200ms'] },
        plaintext_auth_networks: ['127.0.0.0/8'],
        smtp: { max_connections_per_ip: 1000 },
      },
      aliases: 'postmaster: ann\n',
      ...(i === 0 ? {} : { sharedSpool: nodes[0]!.env.spoolDir }),
    });
    nodes.push({ env, pop3Port });
  }
  return nodes;
}

/**
 * Runs `rounds` rounds on one environment (or two sharing a spool: `nodes` 2); throws on the
 * first broken invariant.
 */
export async function crashLoop(
  rounds: number,
  seed: number,
  log: (line: string) => void,
  nodeCount = 1,
): Promise<LoopReport> {
  const mx = await TestMx.start(seed);
  const nodes = await makeNodes(nodeCount, mx).catch(async (err: unknown) => {
    await mx.close();
    throw err;
  });
  const ledger = new Ledger();
  const rand = random(seed);
  let invariantsChecked = 0;
  let duplicatesReported = 0;
  let daemons: Daemon[] = [];
  /** every daemon's log, kept for a failure's report */
  const logs: string[] = [];
  const started = async (node: Node) => {
    const running = await startDaemon(node.env);
    logs.push(`--- daemon ${logs.length / 2 + 1} (node ${nodes.indexOf(node) + 1}) ---`);
    const index = logs.length;
    logs.push('');
    void running.waitExit().then(() => {
      logs[index] = running.stdout;
    });
    return running;
  };
  const startAll = async () => {
    daemons = [];
    for (const node of nodes) daemons.push(await started(node));
  };
  try {
    for (let round = 1; round <= rounds; round++) {
      mx.roundStarts();
      await startAll();
      const clients = [
        ...Array.from({ length: SMTP_CLIENTS }, (_, i) =>
          smtpClient(nodes[i % nodeCount]!.env, ledger, random(seed * 1000 + round * 10 + i), `r${round}c${i}`),
        ),
        ...Array.from({ length: POP3_CLIENTS }, (_, i) =>
          pop3Client(nodes[i % nodeCount]!.pop3Port, ledger, random(seed * 7 + round * 13 + i)),
        ),
      ].map((running) => running.catch(() => undefined)); // every client ends when its daemon goes
      // the moment: after a random number of acknowledged messages and confirmed deletions
      const events = () => ledger.acknowledged.size + ledger.deleted.size;
      const killAt = events() + Math.floor(rand() * 60);
      await eventually(() => events() >= killAt, 60_000, `${killAt} acknowledged messages or deletions`, 5);
      // one node dies; the other goes on (its clients too) until it is stopped
      const victim = Math.floor(rand() * nodeCount);
      await daemons[victim]!.kill9();
      for (const [i, daemon] of daemons.entries()) if (i !== victim) await daemon.stop();
      await Promise.all(clients);
      await mx.killed(round, nodeName(victim));
      // restart: recovery, then the queues deliver what they hold
      await startAll();
      let duplicates: string[];
      try {
        for (const { env } of nodes) await eventually(() => env.queued().length === 0, 60_000, 'the queue to drain');
        invariantsChecked += checkMailboxes(nodes[0]!.env, ledger);
        const relayed = mx.check(ledger);
        invariantsChecked += relayed.checked;
        duplicates = relayed.duplicates;
      } catch (err) {
        const report = join(nodes[0]!.env.dir, 'crash-loop-logs.txt');
        const running = daemons.map((d, i) => `--- running daemon, node ${i + 1} ---\n${d.stdout}`);
        writeFileSync(report, [...logs, ...running].join('\n'));
        log(`round ${round} failed; the daemons' logs: ${report} (kept with KEEP_E2E=1)`);
        throw err;
      }
      for (const daemon of daemons) await daemon.stop();
      daemons = [];
      const killed = nodeCount === 1 ? '' : ` (node ${victim + 1} killed)`;
      for (const line of duplicates.slice(duplicatesReported)) log(`  at the test MX again: ${line}`);
      duplicatesReported = duplicates.length;
      log(
        `round ${round}/${rounds}${killed}: ${ledger.acknowledged.size} acknowledged, ${mx.received} relayed ` +
          `(${mx.bounces} bounces, ${duplicatesReported} again after a kill), ${invariantsChecked} invariants held`,
      );
    }
  } finally {
    for (const daemon of daemons) await daemon.kill9();
    // the first env holds the shared spool: it goes last
    for (const { env } of [...nodes].reverse()) await env.cleanup();
    await mx.close();
  }
  return {
    rounds,
    acknowledged: ledger.acknowledged.size,
    relayed: mx.received,
    bounces: mx.bounces,
    relayedTwice: duplicatesReported,
    deletedByQuit: ledger.deleted.size,
    invariantsChecked,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { rounds: { type: 'string' }, seed: { type: 'string' }, nodes: { type: 'string' } },
  });
  const seed = Number(values.seed ?? Date.now() % 100_000);
  const nodeCount = values.nodes === '2' ? 2 : 1;
  console.log(`crash loop, seed ${seed}, ${nodeCount} node(s)`);
  const report = await crashLoop(Number(values.rounds ?? 20), seed, (line) => console.log(line), nodeCount);
  console.log(JSON.stringify(report));
  process.exit(0);
}
