// The daemon's Prometheus registry (README "Monitoring"): the counters and the histogram that
// metrics.ts increments as events happen, the gauges read from the running daemon on each
// scrape (queue, sessions, certificate, last reload, event-loop lag), and prom-client's default
// process metrics. Loaded only when `[metrics] listen` is set.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** What the gauges read from the running daemon at each scrape. */
export interface Readings {
  version: string;
  /** the listener names connections are counted under (mx, submission, smtps, pop3, pop3s) */
  listeners: string[];
  queue(): { messages: number; oldestReceivedAt: number | null };
  sessions(): { smtp: number; pop3: number };
  /** the served certificate's names and notAfter; null: TLS is off */
  certificate(): { names: string[]; expires: Date } | null;
  /** the last SIGHUP: when, and whether it was applied; null: none yet */
  lastReload(): { at: number; ok: boolean } | null;
  now(): number;
}

/** Event-loop delays are sampled this often (ms); a stall shorter than this may go unseen. */
const LOOP_SAMPLE_MS = 20;

/** Local deliveries take milliseconds; remote ones seconds, or hours when deferred. */
const DELIVERY_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600];

export function createInstruments(readings: Readings) {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const connections = new Counter({
    name: 'mailsrv_connections_total',
    help: 'Connections accepted, per listener (refused ones included).',
    labelNames: ['listener'] as const,
    registers,
  });
  const received = new Counter({
    name: 'mailsrv_messages_received_total',
    help: 'Messages accepted over SMTP or from mailsrv sendmail.',
    registers,
  });
  const delivered = new Counter({
    name: 'mailsrv_messages_delivered_total',
    help: 'Recipients delivered: into a local mailbox or to a remote server.',
    labelNames: ['kind'] as const,
    registers,
  });
  const deliverySeconds = new Histogram({
    name: 'mailsrv_delivery_seconds',
    help: 'Time from receiving a message to delivering it to one recipient.',
    labelNames: ['kind'] as const,
    buckets: DELIVERY_BUCKETS,
    registers,
  });
  const deferred = new Counter({
    name: 'mailsrv_messages_deferred_total',
    help: 'Delivery attempts that failed temporarily (the recipient waits for a retry).',
    registers,
  });
  const bounced = new Counter({
    name: 'mailsrv_messages_bounced_total',
    help: 'Recipients that failed for good or expired (returned to the sender).',
    registers,
  });
  const rejected = new Counter({
    name: 'mailsrv_messages_rejected_total',
    help: 'SMTP commands and connections refused, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const pop3Logins = new Counter({
    name: 'mailsrv_pop3_logins_total',
    help: 'POP3 login attempts, by result (ok, invalid, throttled, busy, unavailable).',
    labelNames: ['result'] as const,
    registers,
  });
  const pop3RetrievedBytes = new Counter({
    name: 'mailsrv_pop3_retrieved_bytes_total',
    help: 'Octets of messages sent by POP3 RETR.',
    registers,
  });
  const authFailures = new Counter({
    name: 'mailsrv_auth_failures_total',
    help: 'Failed logins (a wrong name or password), by protocol.',
    labelNames: ['protocol'] as const,
    registers,
  });
  // every known series from 0, so that rate() and alerts work from the first scrape
  for (const listener of readings.listeners) connections.inc({ listener }, 0);
  for (const kind of ['local', 'remote']) {
    delivered.inc({ kind }, 0);
    deliverySeconds.zero({ kind });
  }
  for (const result of ['ok', 'invalid', 'throttled']) pop3Logins.inc({ result }, 0);
  for (const protocol of ['smtp', 'pop3']) authFailures.inc({ protocol }, 0);

  new Gauge({
    name: 'mailsrv_queue_messages',
    help: 'Messages in the queue.',
    registers,
    collect() {
      this.set(readings.queue().messages);
    },
  });
  new Gauge({
    name: 'mailsrv_queue_oldest_seconds',
    help: 'Age of the oldest message in the queue (0 when it is empty).',
    registers,
    collect() {
      const oldest = readings.queue().oldestReceivedAt;
      this.set(oldest === null ? 0 : Math.max(0, (readings.now() - oldest) / 1000));
    },
  });
  new Gauge({
    name: 'mailsrv_sessions',
    help: 'Client connections open now, by protocol.',
    labelNames: ['protocol'] as const,
    registers,
    collect() {
      const { smtp, pop3 } = readings.sessions();
      this.set({ protocol: 'smtp' }, smtp);
      this.set({ protocol: 'pop3' }, pop3);
    },
  });
  new Gauge({
    name: 'mailsrv_tls_certificate_expiry_timestamp_seconds',
    help: 'When the served TLS certificate expires (Unix time), labelled with its names; absent when TLS is off.',
    labelNames: ['names'] as const,
    registers,
    collect() {
      const certificate = readings.certificate();
      this.reset();
      if (certificate !== null) this.set({ names: certificate.names.join(',') }, certificate.expires.getTime() / 1000);
    },
  });
  new Gauge({
    name: 'mailsrv_config_last_reload_successful',
    help: 'Whether the last SIGHUP reload was applied (1) or failed (0); 1 before any.',
    registers,
    collect() {
      this.set(readings.lastReload()?.ok === false ? 0 : 1);
    },
  });
  new Gauge({
    name: 'mailsrv_build_info',
    help: 'Always 1; the version of the running mailsrv is a label.',
    labelNames: ['version'] as const,
    registers,
  }).set({ version: readings.version }, 1);

  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loopDelay.enable();
  new Gauge({
    name: 'mailsrv_eventloop_lag_seconds',
    help: 'Longest event-loop delay since the previous scrape.',
    registers,
    collect() {
      // a sample is the time between two timer ticks: what exceeds the tick is the lag
      this.set(Math.max(0, loopDelay.max / 1e9 - LOOP_SAMPLE_MS / 1000));
      loopDelay.reset();
    },
  });

  return {
    registry,
    connections,
    received,
    delivered,
    deliverySeconds,
    deferred,
    bounced,
    rejected,
    pop3Logins,
    pop3RetrievedBytes,
    authFailures,
  };
}

export type Instruments = ReturnType<typeof createInstruments>;
