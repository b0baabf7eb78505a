// What the running daemon says about itself (README "Monitoring"): version, uptime, listeners,
// sessions, queue, certificate, last reload and whether it is stopping. `mailsrv status` reads
// it from the status file (status-file.ts); the metrics gauges read it on each scrape.
import { X509Certificate } from 'node:crypto';
import type { Config } from '../config/schema.js';
import type { TlsCredentials } from '../tls/credentials.js';

export interface DaemonStatus {
  pid: number;
  version: string;
  startedAt: string;
  /** when this snapshot was taken */
  updatedAt: string;
  state: 'running' | 'stopping';
  listeners: Record<string, string[]>;
  sessions: { smtp: number; pop3: number };
  queue: { messages: number; oldestReceivedAt: string | null };
  /** null: TLS is off */
  certificate: { names: string[]; expires: string } | null;
  /** the last SIGHUP; null: none since the start */
  lastReload: { at: string; ok: boolean; error?: string } | null;
}

/** Where the live figures come from. */
/** The listen addresses by name, as the status file lists them. */
export function listenersOf(config: Config): Record<string, string[]> {
  const { smtp, pop3, metrics, autoconfig } = config;
  return {
    smtp: smtp.listen,
    submission: smtp.submission,
    smtps: smtp.smtps,
    pop3: pop3.listen,
    pop3s: pop3.pop3s,
    metrics: metrics.listen,
    autoconfig: autoconfig.listen,
  };
}

export interface StatusSources {
  queue(): { messages: number; oldestReceivedAt: number | null };
  sessions(): { smtp: number; pop3: number };
  tls(): TlsCredentials | null;
}

export interface ReloadResult {
  at: number;
  ok: boolean;
  error?: string;
}

export class DaemonState {
  readonly startedAt = Date.now();
  private reload: ReloadResult | null = null;
  private stopping = false;
  /** the names of the last certificate seen (parsed once per certificate) */
  private names: { cert: Buffer; names: string[] } | null = null;

  constructor(
    readonly version: string,
    /** listener addresses by kind (smtp, submission, smtps, pop3, pop3s, metrics), as bound at start */
    readonly listeners: Record<string, string[]>,
    readonly sources: StatusSources,
  ) {}

  /** false once the stop has begun */
  get serving(): boolean {
    return !this.stopping;
  }

  markStopping(): void {
    this.stopping = true;
  }

  /** A SIGHUP reload ended: applied (null) or failed with `error`. */
  reloaded(error: Error | null): void {
    this.reload = error === null ? { at: Date.now(), ok: true } : { at: Date.now(), ok: false, error: error.message };
  }

  get lastReload(): ReloadResult | null {
    return this.reload;
  }

  /** The served certificate's names and expiry; null: TLS is off. */
  certificate(): { names: string[]; expires: Date } | null {
    const tls = this.sources.tls();
    return tls === null ? null : { names: this.certificateNames(tls.cert), expires: tls.validTo };
  }

  snapshot(): DaemonStatus {
    const queue = this.sources.queue();
    const certificate = this.certificate();
    return {
      pid: process.pid,
      version: this.version,
      startedAt: new Date(this.startedAt).toISOString(),
      updatedAt: new Date().toISOString(),
      state: this.stopping ? 'stopping' : 'running',
      listeners: this.listeners,
      sessions: this.sources.sessions(),
      queue: {
        messages: queue.messages,
        oldestReceivedAt: queue.oldestReceivedAt === null ? null : new Date(queue.oldestReceivedAt).toISOString(),
      },
      certificate: certificate === null ? null : { ...certificate, expires: certificate.expires.toISOString() },
      lastReload:
        this.reload === null
          ? null
          : { at: new Date(this.reload.at).toISOString(), ok: this.reload.ok, error: this.reload.error },
    };
  }

  /** The DNS names of the certificate's subjectAltName, else its subject CN. */
  private certificateNames(cert: Buffer): string[] {
    if (this.names?.cert !== cert) {
      const x509 = new X509Certificate(cert);
      const dns = (x509.subjectAltName ?? '')
        .split(', ')
        .filter((entry) => entry.startsWith('DNS:'))
        .map((entry) => entry.slice(4));
      const cn = /^CN=(.*)$/m.exec(x509.subject)?.[1];
      this.names = { cert, names: dns.length > 0 ? dns : cn !== undefined ? [cn] : [] };
    }
    return this.names.names;
  }
}
