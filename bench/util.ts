// Small helpers the benchmark modules share: sizes and durations on the command line,
// percentiles, sleeping, and reading a process tree's memory from /proc.
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** "4096", "10k", "512m", "1g" → bytes (binary units). */
export function parseBytes(text: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(text.trim());
  if (!m) throw new Error(`--${name}: expected a size such as 4096, 10k, 512m or 1g (got ${JSON.stringify(text)})`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * unit);
}

/** "host:port" or "[v6]:port" → parts. */
export function parseHostPort(text: string, name: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(text);
  if (!m) throw new Error(`--${name}: expected HOST:PORT (got ${JSON.stringify(text)})`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  samples: number;
}

export function percentiles(values: ArrayLike<number>): Percentiles {
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  return {
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    samples: sorted.length,
  };
}

/** The item whose key is the median (of an even count, the lower of the two middle ones). */
export function medianBy<T>(items: readonly T[], key: (item: T) => number): T {
  if (items.length === 0) throw new RangeError('medianBy of nothing');
  const sorted = [...items].sort((x, y) => key(x) - key(y));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** The pid of the topmost process listening on 127.0.0.1/0.0.0.0:port (undefined if not ours to see). */
export async function listenerPid(port: number): Promise<number | undefined> {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A = LISTEN
      if (parseInt(f[1]!.split(':')[1]!, 16) === port) inodes.add(f[9]!);
    }
  }
  if (inodes.size === 0) return undefined;
  const holders: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fds = await readdir(`/proc/${name}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const link = await readlink(`/proc/${name}/fd/${fd}`).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m && inodes.has(m[1]!)) {
        holders.push(Number(name));
        break;
      }
    }
  }
  // the holder whose parent does not hold the socket (Postfix's master, not its smtpd)
  const parents = await parentsOf();
  return holders.find((pid) => !holders.includes(parents.get(pid) ?? -1)) ?? holders[0];
}

/** pid → parent pid, for every process visible in /proc. */
async function parentsOf(): Promise<Map<number, number>> {
  const parents = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const m = /\) \S (\d+)/.exec(stat);
    if (m) parents.set(Number(name), Number(m[1]));
  }
  return parents;
}

/** The pid and all its descendants. */
export async function processTree(root: number): Promise<number[]> {
  const parents = await parentsOf();
  const tree = [root];
  for (let i = 0; i < tree.length; i++)
    for (const [pid, ppid] of parents) if (ppid === tree[i] && !tree.includes(pid)) tree.push(pid);
  return tree;
}

/** Proportional set size of one process in bytes (shared pages split among their users). */
async function pss(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  const m = /^Pss:\s+(\d+) kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

async function treePss(pids: number[]): Promise<number> {
  let sum = 0;
  for (const pid of pids) sum += await pss(pid);
  return sum;
}

/** A server's memory now, as memorySampler counts it: the RSS of a single process, else the sum of PSS of its tree. */
export async function memoryNow(root: number): Promise<number> {
  const pids = await processTree(root);
  if (pids.length > 1) return treePss(pids);
  const status = await readFile(`/proc/${root}/status`, 'utf8').catch(() => '');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Samples the memory of a server's whole process tree (the sum of PSS, so Postfix's
 * dozens of processes are not charged their shared libraries again and again) every
 * `intervalMs` until stopped, and keeps the peak. For a single process the kernel's own
 * peak (VmHWM, reset at the start) is exact and is used when larger.
 */
export function memorySampler(root: number, intervalMs = 250): { stop: () => Promise<number> } {
  let peak = 0;
  let running = true;
  // reset the kernel's peak RSS of the root process (Linux: clear_refs 5), as far as allowed
  const reset = writeFile(`/proc/${root}/clear_refs`, '5').catch(() => undefined);
  const loop = (async () => {
    await reset;
    while (running) {
      peak = Math.max(peak, await treePss(await processTree(root)));
      await sleep(intervalMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const pids = await processTree(root);
      if (pids.length === 1) {
        const status = await readFile(`/proc/${root}/status`, 'utf8').catch(() => '');
        const m = /VmHWM:\s+(\d+) kB/.exec(status);
        if (m) peak = Math.max(peak, Number(m[1]) * 1024);
      }
      return peak;
    },
  };
}
