// `npm run bench`: the one benchmark harness. It starts mailsrv (from dist/) and, as root, the
// reference servers (Postfix for SMTP, Dovecot for POP3, via bench/reference/*.sh) on loopback
// ports, runs the same loads against each in one run, and prints one table per scenario with
// the ratio; --json and --svg write the results and a chart, --markdown the tables.
//
//   npm run bench                          # everything, mailsrv vs Postfix/Dovecot (~15 min)
//   npm run bench -- --quick               # small sizes (a minute or two)
//   npm run bench -- --suite smtp          # or pop3, or memory (idle connections, one 50 MB message),
//                                          # or checks (mailsrv with its inbound checks on vs off)
//   npm run bench -- --target 127.0.0.1:25 --mbox /var/mail/bench --compare none
//                                          # any server instead of mailsrv; the protocol is
//                                          # told by its greeting (give one SMTP and/or one POP3)
//   npm run bench -- --compare 127.0.0.1:2525 --compare-mbox var/mail/bench
//                                          # compare with a running server instead of the reference
//   options: --connections 1,10,50,200 --messages 5000 --size 1024 (SMTP, one message per
//            connection; --large-messages 1000 --large-size 100k at --large-connections 10)
//            --big 100000x10k --small 10000x4k (POP3 mailboxes) --reps 20 --cold-reps 2
//            --dele-reps 2 --smtp-warm-up 5000 (untimed messages before each SMTP run; 0: none)
//            --smtp-rounds 5 (timed rounds of each SMTP row, the servers taking turns; the median counts)
//            --inflight 32 --generator smtp-source|node --pass bench
//            --pop3 cold,warm,retr,dele (the POP3 scenarios to run: login+STAT cold, login+STAT warm,
//            RETR of everything, DELE 1 + QUIT; e.g. `--suite pop3 --pop3 retr` skips the slow 1 GB ones)
//            --hash argon2id|sha512-crypt (the users' password hash, the same on every server)
//            --idle 200,1000,2500,5000,10000 (memory: idle connections in all, half SMTP, half POP3;
//            the references greet only as many as their process limits allow)
//            --big-message 50m (memory: one message in over SMTP and out over POP3)
//            --checks-connections 10 (checks: the SMTP load's connections, 1 KiB messages as --size)
//            --spool DIR / --compare-spool DIR (external POP3 servers: where their users
//            big and small have their mbox files; the bench copies its mailboxes there)
//            --json FILE --svg FILE --markdown FILE --cache-dir /var/tmp/mailsrv-bench
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { copyFile, open, stat } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closeAll, greetingTimes, openFileLimit, openIdle, type IdleConnections } from './memory-load.js';
import { cachedMbox, deleteFirstAndQuit, loginStat, Pop3Client, retrieveAll } from './pop3-load.js';
import { markdown, scenarioTable, svgChart, type Metric, type Report, type Scenario } from './report.js';
import {
  externalEndpoint,
  PASSWORD,
  POP3_USERS,
  referenceUnavailable,
  startDovecot,
  startMailsrv,
  startPostfix,
  type Endpoint,
  type LoopLag,
  type PasswordScheme,
  type Pop3Endpoint,
  type SmtpEndpoint,
} from './servers.js';
import { CHECKED_SENDER, EMPTY_DNSBL, startChecksDns } from './checks-dns.js';
import { makeMessage, runSmtpLoad, sendOne, SMTP_SOURCE, type SmtpLoadResult } from './smtp-load.js';
import { medianBy, memoryNow, memorySampler, parseBytes, parseHostPort, percentiles, sleep } from './util.js';

/**
 * RETRs of the untimed warm-up before each timed RETR run: V8 goes on optimizing mailsrv's RETR
 * path over the first ~20,000, and with 2,000 the first timed pass ran ~1.3x slower than later ones.
 */
const RETR_WARM_UP = 10_000;
/**
 * The fewest RETRs a RETR row times: the mailbox is read through as many times as that takes,
 * each pass a session of its own. One pass of 10,000 pipelined RETRs lasts ~0.1 s for mailsrv,
 * and single passes of it moved by up to 1.5x from run to run.
 */
const RETR_TIMED_MIN = 30_000;

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    suite: { type: 'string', default: 'all' },
    target: { type: 'string', multiple: true },
    compare: { type: 'string', multiple: true },
    rcpt: { type: 'string', default: 'bench@bench.test' },
    mbox: { type: 'string' },
    'compare-mbox': { type: 'string' },
    pass: { type: 'string', default: PASSWORD },
    hash: { type: 'string', default: 'argon2id' },
    spool: { type: 'string' },
    'compare-spool': { type: 'string' },
    connections: { type: 'string' },
    messages: { type: 'string' },
    size: { type: 'string', default: '1024' },
    'large-messages': { type: 'string' },
    'large-size': { type: 'string', default: '100k' },
    'large-connections': { type: 'string', default: '10' },
    big: { type: 'string' },
    small: { type: 'string' },
    reps: { type: 'string' },
    'cold-reps': { type: 'string' },
    'dele-reps': { type: 'string' },
    'smtp-warm-up': { type: 'string' },
    'smtp-rounds': { type: 'string' },
    inflight: { type: 'string', default: '32' },
    pop3: { type: 'string', default: 'cold,warm,retr,dele' },
    generator: { type: 'string' },
    idle: { type: 'string' },
    'big-message': { type: 'string', default: '50m' },
    'checks-connections': { type: 'string', default: '10' },
    json: { type: 'string' },
    svg: { type: 'string' },
    markdown: { type: 'string' },
    'cache-dir': { type: 'string', default: '/var/tmp/mailsrv-bench' },
  },
});

const quick = a.quick!;
const num = (text: string | undefined, fallback: number) => (text === undefined ? fallback : Number(text));
const mailboxSpec = (text: string | undefined, fallback: string, name: string) => {
  const m = /^(\d+)x(.+)$/.exec(text ?? fallback);
  if (!m) throw new Error(`--${name}: expected COUNTxSIZE, e.g. 10000x4k`);
  return { count: Number(m[1]), size: parseBytes(m[2]!, name) };
};
const opts = {
  connections: (a.connections ?? '1,10,50,200').split(',').map(Number),
  messages: num(a.messages, quick ? 500 : 5000),
  size: parseBytes(a.size!, 'size'),
  largeMessages: num(a['large-messages'], quick ? 200 : 1000),
  largeSize: parseBytes(a['large-size']!, 'large-size'),
  largeConnections: Number(a['large-connections']),
  big: mailboxSpec(a.big, quick ? '10000x10k' : '100000x10k', 'big'),
  small: mailboxSpec(a.small, quick ? '2000x4k' : '10000x4k', 'small'),
  reps: num(a.reps, quick ? 10 : 20),
  coldReps: num(a['cold-reps'], quick ? 1 : 2),
  deleReps: num(a['dele-reps'], quick ? 1 : 2),
  smtpWarmUp: num(a['smtp-warm-up'], quick ? 200 : 5000),
  smtpRounds: Math.max(1, num(a['smtp-rounds'], quick ? 1 : 5)),
  inflight: Number(a.inflight),
  generator: (a.generator ?? (existsSync(SMTP_SOURCE) ? 'smtp-source' : 'node')) as 'smtp-source' | 'node',
  idle: (a.idle ?? (quick ? '200,1000,2000' : '200,1000,2500,5000,10000')).split(',').map(Number),
  bigMessage: parseBytes(a['big-message']!, 'big-message'),
  checksConnections: a['checks-connections']!.split(',').map(Number),
  pop3: new Set(a.pop3!.split(',')),
};
for (const name of opts.pop3)
  if (!['cold', 'warm', 'retr', 'dele'].includes(name)) throw new Error('--pop3: cold, warm, retr and/or dele');
if (!['all', 'smtp', 'pop3', 'memory', 'checks'].includes(a.suite!))
  throw new Error('--suite: all, smtp, pop3, memory or checks');
if (!['argon2id', 'sha512-crypt'].includes(a.hash!)) throw new Error('--hash: argon2id or sha512-crypt');
if (!['smtp-source', 'node'].includes(opts.generator)) throw new Error('--generator: smtp-source or node');

const log = (text: string) => process.stderr.write(`bench: ${text}\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130)); // runs the cleanups

// ------------------------------------------------------------------ measuring one run

interface Taken<T> {
  value: T;
  peakBytes: number | null;
  lag: LoopLag | undefined;
}

/** Runs `work` against one endpoint, with its memory sampled and (mailsrv) its loop lag reset and read. */
async function measured<T>(endpoint: Endpoint, intervalMs: number, work: () => Promise<T>): Promise<Taken<T>> {
  await endpoint.lag?.reset();
  const pid = await endpoint.rootPid();
  const sampler = pid === undefined ? undefined : memorySampler(pid, intervalMs);
  const value = await work();
  const peakBytes = sampler ? await sampler.stop() : null;
  const lag = await endpoint.lag?.read();
  return { value, peakBytes, lag };
}

const MiB = 1024 * 1024;
const metric = (
  label: string,
  better: Metric['better'],
  values: (number | null | undefined)[],
  digits = 0,
): Metric => ({
  label,
  better,
  values: values.map((v) => (v === undefined || v === null || Number.isNaN(v) ? null : v)),
  digits,
});

/** Memory and loop-lag rows, the same in every scenario. */
function commonMetrics(taken: Taken<unknown>[]): Metric[] {
  return [
    metric(
      'peak memory, MiB',
      'lower',
      taken.map((t) => (t.peakBytes === null ? null : t.peakBytes / MiB)),
      1,
    ),
    metric(
      'event-loop lag p50, ms',
      'none',
      taken.map((t) => t.lag?.p50),
      2,
    ),
    metric(
      'event-loop lag p99, ms',
      'none',
      taken.map((t) => t.lag?.p99),
      2,
    ),
    metric(
      'event-loop lag max, ms',
      'none',
      taken.map((t) => t.lag?.max),
      1,
    ),
  ];
}

// ------------------------------------------------------------------ SMTP

async function smtpScenario(
  endpoints: SmtpEndpoint[],
  messages: number,
  connections: number,
  size: number,
  chart: boolean,
  from = 'bench@load.test',
): Promise<Scenario> {
  const kib = size >= 1024 ? `${Math.round(size / 1024)} KiB` : `${size} B`;
  const warmUp = Math.min(messages, opts.smtpWarmUp);
  const runLoad = (ep: SmtpEndpoint, count: number) =>
    runSmtpLoad({
      host: ep.host,
      port: ep.port,
      messages: count,
      connections,
      size,
      from,
      rcpt: ep.rcpt,
      generator: opts.generator,
      stallMs: 60_000,
      ...(ep.mbox ? { mbox: ep.mbox } : {}),
    });
  // rounds[i][e]: round i of endpoint e; the servers take turns, so a slow stretch of the box
  // falls on both rather than on whichever server it happened to meet
  const rounds: Taken<SmtpLoadResult>[][] = [];
  for (let round = 0; round < opts.smtpRounds; round++) {
    const taken: Taken<SmtpLoadResult>[] = [];
    for (const ep of endpoints) {
      if (round === 0 && warmUp > 0) {
        // the same load, untimed, first: what is measured is a server that has been running (V8
        // has compiled mailsrv's hot path; Postfix has its smtpd and delivery processes up)
        log(`SMTP ${kib} × ${warmUp} warm-up, ${connections} connection(s) → ${ep.name}`);
        await runLoad(ep, warmUp);
      }
      log(`SMTP ${kib} × ${messages}, ${connections} connection(s), round ${round + 1} → ${ep.name}`);
      // the previous runs' dirty pages (the other server's mail and queue files among them) go to
      // disk now, not during this run's fsyncs
      spawnSync('sync');
      await sleep(1000);
      taken.push(await measured(ep, 250, () => runLoad(ep, messages)));
    }
    rounds.push(taken);
  }
  // end to end where the mbox is watched, else until the last 250
  const endToEnd = (x: SmtpLoadResult) => x.messages / (x.deliveredSeconds ?? x.acceptedSeconds);
  // each server's median round, every figure of the table from that one round
  const taken = endpoints.map((_, e) =>
    medianBy(
      rounds.map((round) => round[e]!),
      (t) => endToEnd(t.value),
    ),
  );
  const r = taken.map((t) => t.value);
  const lat = r.map((x) => percentiles(x.latencies));
  const load =
    opts.generator === 'smtp-source'
      ? `\`smtp-source -s ${connections} -m ${messages} -l ${size} -f ${from} -t <rcpt> ` +
        '-M load.bench.test HOST:PORT`; latency from a probe client sending one message per connection ' +
        `every 50 ms beside it (${lat.map((l) => l.samples).join(' / ')} samples)`
      : `built-in client, ${connections} sessions, one message of ${size} payload octets per connection ` +
        '(every message a latency sample)';
  const warmedUp = warmUp > 0 ? `; each server after an untimed warm-up of ${warmUp} messages of the same load` : '';
  // with one round there is nothing to say about rounds
  const rounded = opts.smtpRounds > 1;
  const roundsDone = rounded
    ? `; ${opts.smtpRounds} timed rounds, the servers taking turns; the table is each server's median round`
    : '';
  const perRound = (e: number) => rounds.map((round) => endToEnd(round[e]!.value).toFixed(0)).join(' / ');
  const roundNotes = rounded
    ? [
        'msg/s in each round (end to end, or until the last 250 where no mbox is watched): ' +
          endpoints.map((ep, e) => `${ep.name} ${perRound(e)}`).join('; '),
      ]
    : [];
  return {
    id: `smtp-${kib.replace(' ', '').toLowerCase()}-c${connections}`,
    protocol: 'smtp',
    title:
      `SMTP, ${kib} messages, ${connections} connection${connections === 1 ? '' : 's'}, ${messages} messages, ` +
      'one per connection: until all are in the mbox',
    load: load + warmedUp + roundsDone,
    servers: endpoints.map((e) => e.name),
    metrics: [
      metric(
        'msg/s end to end (in the mbox)',
        'higher',
        r.map((x) => (x.deliveredSeconds ? x.messages / x.deliveredSeconds : null)),
      ),
      metric(
        'msg/s accepted (last 250)',
        'higher',
        r.map((x) => x.messages / x.acceptedSeconds),
      ),
      metric(
        'MB/s end to end (payload)',
        'higher',
        r.map((x) => (x.deliveredSeconds ? x.payloadBytes / 1e6 / x.deliveredSeconds : null)),
        1,
      ),
      metric(
        'latency p50, ms',
        'lower',
        lat.map((l) => l.p50),
        1,
      ),
      metric(
        'latency p95, ms',
        'lower',
        lat.map((l) => l.p95),
        1,
      ),
      metric(
        'latency p99, ms',
        'lower',
        lat.map((l) => l.p99),
        1,
      ),
      ...commonMetrics(taken),
    ],
    ...(chart ? { connections } : {}),
    notes: roundNotes,
  };
}

// ------------------------------------------------------------------ SMTP with the inbound checks

/** Fails the run unless the checks-on mbox shows SPF and DMARC passing: the checks ran, and ran as meant. */
async function expectChecked(mbox: string): Promise<void> {
  const file = await open(mbox, 'r');
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(16384), 0, 16384, 0);
    const head = buffer.subarray(0, bytesRead).toString('latin1');
    const results = /^Authentication-Results: .*(?:\r?\n[ \t].*)*/m.exec(head)?.[0];
    if (!results || !/spf=pass/.test(results) || !/dmarc=pass/.test(results))
      throw new Error(`${mbox}: the first message has no Authentication-Results with spf=pass and dmarc=pass`);
  } finally {
    await file.close();
  }
}

/**
 * The same smtp-source load against mailsrv with its inbound checks on (SPF, DKIM, DMARC, DNSBL
 * against the bench's DNS server) and against the usual mailsrv (the load's address in
 * mynetworks: nothing checked).
 */
async function checksScenario(
  checksOn: SmtpEndpoint,
  checksOff: SmtpEndpoint,
  dnsQueries: string[],
  connections: number,
): Promise<Scenario> {
  const asked = dnsQueries.length;
  const s = await smtpScenario([checksOn, checksOff], opts.messages, connections, opts.size, false, CHECKED_SENDER);
  await expectChecked(checksOn.mbox!);
  return {
    ...s,
    id: `checks-${s.id}`,
    title: `${s.title}; inbound checks on (SPF, DKIM, DMARC, DNSBL) vs off`,
    notes: [
      `checks on: mynetworks = ["127.0.0.99/32"], [checks] spf = "tag", dkim = "tag", dmarc = "enforce", ` +
        `dnsbl = ["${EMPTY_DNSBL}"], dns_servers = a local DNS server (SPF ip4:127.0.0.0/8 -all, ` +
        `DMARC p=reject, DNSBL zone empty). It was asked ${dnsQueries.length - asked} questions during the run ` +
        `and ${dnsQueries.length} since mailsrv started (${[...new Set(dnsQueries)].join(', ')}): one sender ` +
        "domain and one client address, so mailsrv's caches answer nearly every lookup and this is the checks' " +
        'own work, not DNS round trips. Checks off: mynetworks = ["127.0.0.0/8"], as in the other SMTP runs.',
    ],
  };
}

// ------------------------------------------------------------------ POP3

/** How many passes through a mailbox of `count` messages a RETR row times (see RETR_TIMED_MIN). */
function retrPasses(count: number): number {
  return Math.max(1, Math.ceil(RETR_TIMED_MIN / count));
}

type RetrRun = Awaited<ReturnType<typeof retrieveAll>>;

/** The passes of a RETR row as one run: their octets, their time (logins not counted), every latency. */
function joinPasses(passes: RetrRun[]): RetrRun {
  const latencies = new Float64Array(passes.reduce((n, p) => n + p.latencies.length, 0));
  let at = 0;
  for (const p of passes) {
    latencies.set(p.latencies, at);
    at += p.latencies.length;
  }
  return {
    bytes: passes.reduce((n, p) => n + p.bytes, 0),
    seconds: passes.reduce((n, p) => n + p.seconds, 0),
    latencies,
  };
}

/** Evicts the mailboxes from the page cache: all of it when allowed (root), else file by file. */
function dropCaches(paths: string[]): string {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return 'page cache dropped (echo 3 > /proc/sys/vm/drop_caches)';
  } catch {
    for (const path of paths) spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
    return 'mailbox files evicted from the page cache (dd iflag=nocache)';
  }
}

interface Pop3Box {
  user: string;
  count: number;
  size: number;
}

async function pop3Scenarios(endpoints: Pop3Endpoint[], pass: string): Promise<Scenario[]> {
  const big: Pop3Box = { user: POP3_USERS[0], ...opts.big };
  const small: Pop3Box = { user: POP3_USERS[1], ...opts.small };
  log(
    `POP3 mailboxes: ${big.count} × ${big.size} and ${small.count} × ${small.size} octets ` +
      `(cached in ${a['cache-dir']})`,
  );
  const sources = new Map<Pop3Box, string>();
  for (const box of [big, small]) sources.set(box, await cachedMbox(a['cache-dir']!, box.count, box.size));
  for (const ep of endpoints) for (const box of [big, small]) await ep.install?.(box.user, sources.get(box)!);
  // the copies on disk before anything is timed: no server's first fsync writes them back
  spawnSync('sync');
  const bigMB = ((await stat(sources.get(big)!)).size / 1e6).toFixed(0);
  const servers = endpoints.map((e) => e.name);
  const scenarios: Scenario[] = [];
  const emit = (s: Scenario) => {
    scenarios.push(s);
    console.log(`\n${scenarioTable(s)}\n`);
  };
  const expectCount = (label: string, count: number, box: Pop3Box) => {
    if (count !== box.count) throw new Error(`${label}: STAT says ${count} messages, the mailbox has ${box.count}`);
  };
  const latencyRows = (label: string, taken: Taken<number[]>[]) => {
    const p = taken.map((t) => percentiles(t.value));
    return [
      metric(
        `${label} p50, ms`,
        'lower',
        p.map((x) => x.p50),
        1,
      ),
      metric(
        `${label} p95, ms`,
        'lower',
        p.map((x) => x.p95),
        1,
      ),
      metric(
        `${label} p99, ms`,
        'lower',
        p.map((x) => x.p99),
        1,
      ),
      metric(
        `${label} max, ms`,
        'lower',
        taken.map((t) => Math.max(...t.value)),
        1,
      ),
    ];
  };

  // login+STAT on the big mailbox, cold: no index, nothing in memory, not in the page cache
  if (opts.pop3.has('cold')) {
    const taken: Taken<number[]>[] = [];
    let how = '';
    for (const ep of endpoints) {
      log(`POP3 login+STAT cold, ${big.count} messages → ${ep.name}`);
      const times: number[] = [];
      let peak: number | null = null;
      let lag: LoopLag | undefined;
      for (let rep = 0; rep < opts.coldReps; rep++) {
        await ep.forget?.(big.user);
        await ep.restart?.();
        how = dropCaches(endpoints.flatMap((e) => (e.mailboxPath ? [e.mailboxPath(big.user)] : [])));
        const t = await measured(ep, 100, async () => {
          const s = await loginStat(ep.host, ep.port, big.user, pass);
          expectCount(ep.name, s.count, big);
          await s.client.quit();
          return s.ms;
        });
        times.push(t.value);
        peak = t.peakBytes === null ? peak : Math.max(peak ?? 0, t.peakBytes);
        lag = t.lag;
      }
      taken.push({ value: times, peakBytes: peak, lag });
    }
    emit({
      id: 'pop3-stat-big-cold',
      protocol: 'pop3',
      title:
        `POP3 login+STAT, ${big.count.toLocaleString('en-US')} messages / ${bigMB} MB mbox, ` +
        'cold (no index, server restarted, page cache dropped)',
      load: `connect, USER, PASS (${a.hash}), STAT; ${opts.coldReps} time(s); ${how}`,
      servers,
      metrics: [...latencyRows('login+STAT', taken), ...commonMetrics(taken)],
      notes: [],
    });
  }

  // login+STAT warm, on each mailbox: index present, file in the page cache
  for (const box of opts.pop3.has('warm') ? [big, small] : []) {
    const taken: Taken<number[]>[] = [];
    for (const ep of endpoints) {
      log(`POP3 login+STAT warm, ${box.count} messages → ${ep.name}`);
      const first = await loginStat(ep.host, ep.port, box.user, pass); // makes the index if there is none
      await first.client.quit();
      taken.push(
        await measured(ep, 100, async () => {
          const times: number[] = [];
          for (let rep = 0; rep < opts.reps; rep++) {
            const s = await loginStat(ep.host, ep.port, box.user, pass);
            expectCount(ep.name, s.count, box);
            await s.client.quit();
            times.push(s.ms);
          }
          return times;
        }),
      );
    }
    emit({
      id: `pop3-stat-${box.user}-warm`,
      protocol: 'pop3',
      title:
        `POP3 login+STAT, ${box.count.toLocaleString('en-US')} × ${Math.round(box.size / 1024)} KiB messages, ` +
        'warm (index present, file cached)',
      load:
        `connect, USER, PASS (${a.hash}), STAT, QUIT; ${opts.reps} sessions one after another ` +
        '(after one unmeasured session)',
      servers,
      metrics: [...latencyRows('login+STAT', taken), ...commonMetrics(taken)],
      notes: [],
    });
  }

  // RETR of every message: small mailbox pipelined, big mailbox one at a time, each after a warm-up
  for (const [box, inflight] of opts.pop3.has('retr')
    ? ([
        [small, opts.inflight],
        [big, 1],
      ] as const)
    : []) {
    const taken: Taken<RetrRun>[] = [];
    const passCount = retrPasses(box.count);
    for (const ep of endpoints) {
      log(`POP3 RETR all ${box.count}, ${inflight} in flight → ${ep.name}`);
      // a warm-up of the first messages, not timed: what is measured is a server that has been
      // running (mailsrv's JIT has compiled the RETR path; Dovecot's caches are filled)
      const warm = await loginStat(ep.host, ep.port, box.user, pass);
      await retrieveAll(warm.client, Math.min(warm.count, RETR_WARM_UP), inflight);
      await warm.client.quit();
      taken.push(
        await measured(ep, 100, async () => {
          const passes: RetrRun[] = [];
          while (passes.length < passCount) {
            const s = await loginStat(ep.host, ep.port, box.user, pass);
            expectCount(ep.name, s.count, box);
            passes.push(await retrieveAll(s.client, s.count, inflight));
            await s.client.quit();
          }
          return joinPasses(passes);
        }),
      );
    }
    const r = taken.map((t) => t.value);
    const lat = r.map((x) => percentiles(x.latencies));
    emit({
      id: `pop3-retr-${box.user}-${inflight === 1 ? 'serial' : `pipelined${inflight}`}`,
      protocol: 'pop3',
      title:
        `POP3 RETR of all ${box.count.toLocaleString('en-US')} × ${Math.round(box.size / 1024)} KiB messages, ` +
        `${inflight === 1 ? 'one at a time' : `${inflight} RETRs in flight (PIPELINING)`}`,
      load:
        `after a warm-up (RETR of the first ${Math.min(box.count, RETR_WARM_UP)} in another session), ` +
        `${passCount} time(s) login+STAT and RETR 1..${box.count}` +
        `${inflight === 1 ? ', each sent when the previous reply ended' : `, ${inflight} outstanding at any time`}` +
        '; MB/s counts every octet received',
      servers,
      metrics: [
        metric(
          'MB/s',
          'higher',
          r.map((x) => x.bytes / 1e6 / x.seconds),
          1,
        ),
        metric(
          'msg/s',
          'higher',
          r.map((x) => x.latencies.length / x.seconds),
        ),
        metric(
          'seconds',
          'lower',
          r.map((x) => x.seconds),
          2,
        ),
        metric(
          'RETR latency p50, ms',
          'lower',
          lat.map((l) => l.p50),
          3,
        ),
        metric(
          'RETR latency p95, ms',
          'lower',
          lat.map((l) => l.p95),
          3,
        ),
        metric(
          'RETR latency p99, ms',
          'lower',
          lat.map((l) => l.p99),
          3,
        ),
        ...commonMetrics(taken),
      ],
      notes: [],
    });
  }

  // DELE 1 + QUIT on the big mailbox (the server rewrites ~all of it)
  if (opts.pop3.has('dele')) {
    const taken: Taken<{ quitMs: number; nextStatMs: number }[]>[] = [];
    for (const ep of endpoints) {
      log(`POP3 DELE 1 + QUIT, ${big.count} messages → ${ep.name}`);
      taken.push(
        await measured(ep, 100, async () => {
          const times: { quitMs: number; nextStatMs: number }[] = [];
          for (let rep = 0; rep < opts.deleReps; rep++) {
            const s = await loginStat(ep.host, ep.port, big.user, pass);
            times.push(await deleteFirstAndQuit(s.client, { host: ep.host, port: ep.port, user: big.user, pass }));
          }
          return times;
        }),
      );
    }
    const quit = taken.map((t) => ({ ...t, value: t.value.map((v) => v.quitMs) }));
    const nextStat = taken.map((t) => ({ ...t, value: t.value.map((v) => v.nextStatMs) }));
    emit({
      id: 'pop3-dele-big',
      protocol: 'pop3',
      title: `POP3 DELE 1 + QUIT on the ${bigMB} MB mailbox (the first message goes: the whole file moves)`,
      load:
        `login+STAT (not timed), then DELE 1 and QUIT timed until QUIT's reply, and until a next session's ` +
        `STAT answers (it waits for the rewrite); ${opts.deleReps} time(s), each removing the then-first message`,
      servers,
      metrics: [
        ...latencyRows('DELE 1 + QUIT', quit),
        ...latencyRows('DELE 1 + QUIT + next login+STAT', nextStat),
        ...commonMetrics(taken),
      ],
      notes: [],
    });
  }
  return scenarios;
}

// ------------------------------------------------------------------ memory

/** An SMTP and a POP3 server measured together (mailsrv: one process; the references: Postfix and Dovecot). */
interface ServerPair {
  name: string;
  smtp: SmtpEndpoint;
  pop3: Pop3Endpoint;
}

/** The memory of the pair's processes now (one process counted once). */
async function pairMemory(pair: ServerPair): Promise<number | null> {
  const roots = new Set<number>();
  for (const ep of [pair.smtp, pair.pop3]) {
    const pid = await ep.rootPid();
    if (pid === undefined) return null;
    roots.add(pid);
  }
  let sum = 0;
  for (const pid of roots) sum += await memoryNow(pid);
  return sum;
}

/** Idle connections, half SMTP and half POP3, at each step of --idle: memory and a fresh client's greeting. */
async function idleScenarios(pairs: ServerPair[]): Promise<Scenario[]> {
  const GREETING_SAMPLES = 20;
  const scenarios: Scenario[] = [];
  const full = new Set<ServerPair>(); // servers that stopped greeting at an earlier step
  for (const total of opts.idle) {
    const half = Math.ceil(total / 2);
    const rows = {
      memory: [] as (number | null)[],
      greeted: [] as number[],
      smtp: [] as number[][],
      pop3: [] as number[][],
    };
    for (const pair of pairs) {
      const smtp: IdleConnections = { sockets: [], greeted: 0 };
      const pop3: IdleConnections = { sockets: [], greeted: 0 };
      try {
        const skipped = full.has(pair);
        if (!skipped) {
          log(`${total} idle connections (${half} SMTP + ${half} POP3) → ${pair.name}`);
          const smtpAll = await openIdle(pair.smtp.host, pair.smtp.port, half, smtp);
          const pop3All = await openIdle(pair.pop3.host, pair.pop3.port, half, pop3);
          if (!smtpAll || !pop3All) full.add(pair);
          await sleep(2000); // let the server settle (and a collector run) before the reading
        }
        const greeted = smtp.greeted + pop3.greeted;
        rows.greeted.push(greeted);
        // with fewer connections than asked the figure is for those it greeted
        rows.memory.push(skipped ? null : await pairMemory(pair));
        rows.smtp.push(full.has(pair) ? [] : await greetingTimes(pair.smtp.host, pair.smtp.port, GREETING_SAMPLES));
        rows.pop3.push(full.has(pair) ? [] : await greetingTimes(pair.pop3.host, pair.pop3.port, GREETING_SAMPLES));
        if (full.has(pair) && greeted > 0) log(`${pair.name} greeted only ${greeted} of ${total}`);
      } finally {
        closeAll(smtp);
        closeAll(pop3);
      }
      await sleep(1000);
    }
    const p = (times: number[][], q: 'p50' | 'p99') => times.map((t) => (t.length ? percentiles(t)[q] : null));
    const max = (times: number[][]) => times.map((t) => (t.length ? Math.max(...t) : null));
    scenarios.push({
      id: `memory-idle-${total}`,
      protocol: 'memory',
      title:
        `${total.toLocaleString('en-US')} idle connections ` +
        `(${half.toLocaleString('en-US')} SMTP + ${half.toLocaleString('en-US')} POP3, each greeted, then silent)`,
      load:
        "connections opened 100 at a time, each kept once greeted; memory 2 s after the last (all the server's " +
        `processes); then ${GREETING_SAMPLES} fresh clients per protocol, one after another, ` +
        'timed from connect to greeting',
      servers: pairs.map((pair) => pair.name),
      metrics: [
        metric(
          'memory with the connections open, MiB',
          'lower',
          rows.memory.map((b) => (b === null ? null : b / MiB)),
          1,
        ),
        metric('connections greeted', 'higher', rows.greeted),
        metric('fresh SMTP greeting p50, ms', 'lower', p(rows.smtp, 'p50'), 1),
        metric('fresh SMTP greeting max, ms', 'lower', max(rows.smtp), 1),
        metric('fresh POP3 greeting p50, ms', 'lower', p(rows.pop3, 'p50'), 1),
        metric('fresh POP3 greeting max, ms', 'lower', max(rows.pop3), 1),
      ],
      notes: [...full].map(
        (pair) =>
          `${pair.name} stopped greeting new connections before this step: ` +
          'its limits (Postfix smtpd processes, Dovecot login processes)',
      ),
    });
  }
  return scenarios;
}

/**
 * One message of --big-message octets in over SMTP and out over POP3 (RETR, DELE): the growth of the server's
 * memory.
 */
async function bigMessageScenario(pair: ServerPair, pass: string): Promise<Scenario> {
  const size = opts.bigMessage;
  const mib = `${Math.round(size / MiB)} MiB`;
  log(`one ${mib} message in over SMTP, out over POP3 → ${pair.name}`);
  const message = makeMessage(size, 'bench@load.test', pair.smtp.rcpt, 1);
  // one login first, so the measured one is a credential-cache hit: Argon2id's 64 MiB per check is not the message's
  const warmup = await Pop3Client.open(pair.pop3.host, pair.pop3.port, pair.name);
  await warmup.ok('USER bench');
  await warmup.ok(`PASS ${pass}`);
  await warmup.quit();
  await sleep(1000);
  const root = await pair.smtp.rootPid();
  const before = root === undefined ? null : await memoryNow(root);
  const timings = { smtp: 0, pop3: 0, bytes: 0 };
  const taken = await measured(pair.smtp, 20, async () => {
    let started = performance.now();
    await sendOne(pair.smtp.host, pair.smtp.port, 'bench@load.test', pair.smtp.rcpt, message, 600_000);
    timings.smtp = (performance.now() - started) / 1000;
    const client = await Pop3Client.open(pair.pop3.host, pair.pop3.port, pair.name);
    await client.ok('USER bench');
    await client.ok(`PASS ${pass}`);
    const count = Number((await client.ok('STAT')).status.split(' ')[1]);
    started = performance.now();
    timings.bytes = (await client.ok(`RETR ${count}`, true)).bytes;
    timings.pop3 = (performance.now() - started) / 1000;
    if (timings.bytes < size)
      throw new Error(`${pair.name}: RETR ${count} gave ${timings.bytes} octets, the message has ${size}`);
    await client.ok(`DELE ${count}`);
    await client.quit();
  });
  const peak = taken.peakBytes;
  return {
    id: `memory-message-${Math.round(size / MiB)}m`,
    protocol: 'memory',
    title: `One ${mib} message in over SMTP, out over POP3 (RETR, DELE): the server's memory`,
    load:
      'one SMTP session sending it (EHLO, MAIL, RCPT, DATA) until the 250, then USER/PASS (a login made just before, ' +
      'unmeasured, so this one needs no password hash), RETR of it, DELE, QUIT; memory sampled every 20 ms ' +
      "and the kernel's peak RSS (reset before)",
    servers: [pair.name],
    metrics: [
      metric('memory before, MiB', 'lower', [before === null ? null : before / MiB], 1),
      metric('peak memory, MiB', 'lower', [peak === null ? null : peak / MiB], 1),
      metric(
        'growth (peak - before), MiB',
        'lower',
        [peak === null || before === null ? null : (peak - before) / MiB],
        1,
      ),
      metric('SMTP until the 250, s', 'lower', [timings.smtp], 2),
      metric('POP3 RETR, MB/s', 'higher', [timings.bytes / 1e6 / timings.pop3], 1),
      ...commonMetrics([taken]).slice(1),
    ],
    notes: [],
  };
}

// ------------------------------------------------------------------ the endpoints

/** "smtp" or "pop3", from the greeting of a server. */
function protocolOf(host: string, port: number): Promise<'smtp' | 'pop3'> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host, port });
    socket.setEncoding('latin1');
    let text = '';
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (!text.includes('\n')) return;
      socket.destroy();
      if (text.startsWith('220')) resolve('smtp');
      else if (text.startsWith('+OK')) resolve('pop3');
      else reject(new Error(`${host}:${port}: neither SMTP nor POP3 greets so: ${text.trim()}`));
    });
    socket.on('error', (err) => reject(new Error(`${host}:${port}: ${err.message}`)));
    setTimeout(() => reject(new Error(`${host}:${port}: no greeting within 10 s`)), 10_000).unref();
  });
}

/** An external POP3 server whose users' mailboxes live in `spool` (or are already in place). */
function externalPop3(ep: Endpoint, spool: string | undefined): Pop3Endpoint {
  if (!spool) return ep;
  return {
    ...ep,
    async install(user, source) {
      const target = join(spool, user);
      const owner = await stat(spool);
      await copyFile(source, target);
      spawnSync('chown', [`${owner.uid}:${owner.gid}`, target]);
    },
    mailboxPath: (user) => join(spool, user),
  };
}

async function main(): Promise<void> {
  const started = new Date();
  const want = (p: 'smtp' | 'pop3' | 'memory' | 'checks') => a.suite === 'all' || a.suite === p;
  const stops: (() => Promise<void>)[] = [];
  let smtpSubject: SmtpEndpoint | undefined;
  let pop3Subject: Pop3Endpoint | undefined;
  let smtpOther: SmtpEndpoint | undefined;
  let pop3Other: Pop3Endpoint | undefined;
  /** the bench started its own mailsrv (no --target), so it can start one with the checks on too */
  let ownMailsrv = false;
  /** Dovecot is started once the SMTP scenarios are over (see below) */
  let dovecotWanted = false;
  const notes: string[] = [];
  try {
    if (a.target?.length) {
      for (const text of a.target) {
        const { host, port } = parseHostPort(text, 'target');
        const ep = externalEndpoint(host, port);
        if ((await protocolOf(host, port)) === 'smtp')
          smtpSubject = { ...ep, rcpt: a.rcpt!, ...(a.mbox ? { mbox: a.mbox } : {}) };
        else pop3Subject = externalPop3(ep, a.spool);
      }
    } else {
      log('starting mailsrv');
      // the memory suite's idle connections: one end in this process, one in the daemon (which inherits the limit)
      const fits = opts.idle.filter((total) => total + 1000 <= openFileLimit());
      if (want('memory') && fits.length < opts.idle.length)
        log(
          `--idle: ${opts.idle.filter((t) => !fits.includes(t)).join(', ')} left out: ` +
            `more than the open-file limit ${openFileLimit()} allows (raise it: ulimit -n)`,
        );
      opts.idle = fits;
      const idleMax = want('memory') ? Math.max(0, ...opts.idle) : 0;
      // room for each protocol's half of the idle connections, below stress mode's ¾ (which cuts idle timeouts)
      const own = await startMailsrv(a.hash as PasswordScheme, Math.max(1000, idleMax + 100));
      stops.push(own.stop);
      smtpSubject = own.smtp;
      pop3Subject = own.pop3;
      ownMailsrv = true;
    }
    if (want('checks') && !ownMailsrv)
      notes.push('no checks runs: they need the mailsrv the bench starts (no --target)');
    const compares = a.compare ?? ['reference'];
    for (const text of compares) {
      if (text === 'none' || text === 'reference') continue;
      const { host, port } = parseHostPort(text, 'compare');
      const ep = externalEndpoint(host, port);
      if ((await protocolOf(host, port)) === 'smtp')
        smtpOther = { ...ep, rcpt: a.rcpt!, ...(a['compare-mbox'] ? { mbox: a['compare-mbox'] } : {}) };
      else pop3Other = externalPop3(ep, a['compare-spool']);
    }
    if (!compares.includes('none')) {
      const why = referenceUnavailable();
      if (why && (!smtpOther || !pop3Other)) notes.push(`no reference servers: ${why}`);
      if (!why && !smtpOther && smtpSubject && (want('smtp') || want('memory'))) {
        log('starting Postfix (bench/reference/postfix.sh)');
        const postfix = await startPostfix();
        stops.push(postfix.stop);
        smtpOther = postfix.smtp;
      }
      dovecotWanted = !why && !pop3Other && pop3Subject !== undefined && (want('pop3') || want('memory'));
    }
    for (const note of notes) log(note);

    const scenarios: Scenario[] = [];
    if (want('smtp') && smtpSubject) {
      const eps = smtpOther ? [smtpSubject, smtpOther] : [smtpSubject];
      for (const c of opts.connections) {
        const s = await smtpScenario(eps, opts.messages, c, opts.size, true);
        scenarios.push(s);
        console.log(`\n${scenarioTable(s)}\n`);
      }
      const s = await smtpScenario(eps, opts.largeMessages, opts.largeConnections, opts.largeSize, false);
      scenarios.push(s);
      console.log(`\n${scenarioTable(s)}\n`);
    }
    // servers that only some scenarios use run only while those do: the others are measured
    // without their timers and wake-ups on the two cores (mailsrv at one connection made ~10%
    // fewer messages a second with the checks daemon, its DNS server and Dovecot idle beside it)
    if (want('checks') && ownMailsrv && smtpSubject) {
      log('starting a DNS server and mailsrv with the inbound checks on');
      const dns = await startChecksDns();
      try {
        const checked = await startMailsrv(a.hash as PasswordScheme, 1000, {
          dnsServer: dns.server,
          dnsbl: EMPTY_DNSBL,
        });
        try {
          for (const c of opts.checksConnections) {
            const checksOn = { ...checked.smtp, name: 'mailsrv, checks on' };
            const checksOff = { ...smtpSubject, name: 'mailsrv, checks off' };
            const s = await checksScenario(checksOn, checksOff, dns.queries, c);
            scenarios.push(s);
            console.log(`\n${scenarioTable(s)}\n`);
          }
        } finally {
          await checked.stop();
        }
      } finally {
        await dns.close();
      }
    }
    if (dovecotWanted) {
      log('starting Dovecot (bench/reference/dovecot.sh)');
      const dovecot = await startDovecot(a.hash as PasswordScheme);
      stops.push(dovecot.stop);
      pop3Other = dovecot.pop3;
    }
    if (want('pop3') && pop3Subject) {
      scenarios.push(...(await pop3Scenarios(pop3Other ? [pop3Subject, pop3Other] : [pop3Subject], a.pass!)));
    }
    if (want('memory') && smtpSubject && pop3Subject) {
      const subject: ServerPair = { name: smtpSubject.name, smtp: smtpSubject, pop3: pop3Subject };
      const pairs =
        smtpOther && pop3Other
          ? [subject, { name: `${smtpOther.name}+${pop3Other.name}`, smtp: smtpOther, pop3: pop3Other }]
          : [subject];
      // the message first, while the daemon has not yet held thousands of connections
      for (const s of [await bigMessageScenario(subject, a.pass!), ...(await idleScenarios(pairs))]) {
        scenarios.push(s);
        console.log(`\n${scenarioTable(s)}\n`);
      }
    }

    const cpu = cpus();
    const report: Report = {
      started: started.toISOString(),
      finished: new Date().toISOString(),
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim().replace(/ --$/, ''),
      machine: {
        cpus: cpu.length,
        cpuModel: cpu[0]?.model ?? '?',
        memoryGiB: Math.round(totalmem() / 1024 ** 3),
        kernel: release(),
        node: process.version,
      },
      quick,
      scenarios,
    };
    if (a.json) writeFileSync(a.json, `${JSON.stringify(report, null, 2)}\n`);
    if (a.svg) writeFileSync(a.svg, svgChart(report, 'msg/s end to end (in the mbox)'));
    if (a.markdown) writeFileSync(a.markdown, markdown(report));
    for (const [flag, file] of [
      ['json', a.json],
      ['svg', a.svg],
      ['markdown', a.markdown],
    ] as const)
      if (file) log(`--${flag}: wrote ${file}`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err: Error) => log(`stopping: ${err.message}`));
  }
}

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error(`bench: ${(err as Error).stack ?? err}`);
  process.exit(1);
}
