// Bench-only preload for the mailsrv daemon: `node --import ./bench/loop-lag.mjs bin/mailsrv
// start ...` with MAILSRV_BENCH_LAG_FILE=/path/lag.json. It measures the event loop's delay
// with perf_hooks.monitorEventLoopDelay and writes {p50, p99, max, mean} in milliseconds (and
// the sample count) to that file every 250 ms. Creating `<file>.reset` starts a new histogram
// (the bench does this before each scenario; the file is removed to acknowledge). No product
// code is involved. Plain JavaScript because plain `node` loads it, without tsx.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';
import { existsSync, unlinkSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';

const RESOLUTION_MS = 5;
const file = process.env.MAILSRV_BENCH_LAG_FILE;
// Only the daemon's main thread, and not the processes it may start: they inherit execArgv.
delete process.env.MAILSRV_BENCH_LAG_FILE;
if (file && isMainThread) {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  // a sample is the time between two ticks of a RESOLUTION_MS timer: the lag is what exceeds it
  const ms = (ns) => Math.max(0, Math.round((ns - RESOLUTION_MS * 1e6) / 1e4) / 100);
  // the file is written asynchronously: a synchronous write or rename can wait hundreds of ms
  // behind a large fsync of the daemon's on the same file system, which would be measured as lag
  let writing = false;
  const write = () => {
    if (writing) return;
    try {
      if (existsSync(`${file}.reset`)) {
        histogram.reset();
        unlinkSync(`${file}.reset`);
      }
    } catch {
      // retried at the next tick
    }
    const count = histogram.count;
    const stats =
      count === 0
        ? { p50: 0, p99: 0, max: 0, mean: 0, count }
        : {
            p50: ms(histogram.percentile(50)),
            p99: ms(histogram.percentile(99)),
            max: ms(histogram.max),
            mean: ms(histogram.mean),
            count,
          };
    writing = true;
    writeFile(`${file}.tmp`, JSON.stringify({ ...stats, at: Date.now() }))
      .then(() => rename(`${file}.tmp`, file))
      .catch(() => undefined) // the bench reads what it can; a failed write is retried at the next tick
      .finally(() => {
        writing = false;
      });
  };
  setInterval(write, 250).unref();
}
