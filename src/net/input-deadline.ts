// Deadlines for what a client sends, SMTP and POP3 alike (as Postfix's per-request deadline):
// the idle timeout only measures silence, so a client trickling a byte every few seconds would
// otherwise hold its connection, its max_clients slot and (POP3) its mailbox for ever.
// - a command line must be complete within the idle timeout that holds at its first byte;
// - a message (SMTP DATA, from the 354 on) gets one idle timeout plus a second for every
//   MIN_DATA_RATE bytes received: a slow but honest link sends any size, a trickle is cut.
// Bytes count as they arrive. While the client waits for the server (a command being answered,
// a message being stored, a TLS handshake) it owes nothing: a deadline that falls due then
// starts the request's clock afresh.
import { type Clock, systemClock, type Timer } from '../clock.js';

/** Bytes per second a message must average beyond its first idle timeout (Postfix's smtpd_min_data_rate). */
export const MIN_DATA_RATE = 500;

const LF = 0x0a;

/** What was cut: a command line, or a message. */
export type DeadlineKind = 'command' | 'data';

export interface DeadlineExpiry {
  kind: DeadlineKind;
  /** since the first byte of the line, or since the 354 */
  elapsedMs: number;
  /** bytes of the message received (0 for a command line) */
  bytes: number;
}

export interface InputDeadlineOptions {
  /** the idle timeout that holds now */
  limitMs(): number;
  /** the client is waiting for the server now, not the other way round */
  serverBusy(): boolean;
  /** called once when a deadline passes; the caller answers and closes */
  expired(expiry: DeadlineExpiry): void;
  clock?: Clock;
}

export class InputDeadline {
  /** between: no line begun (or the connection ended); command: a line is arriving; data: a message is */
  private phase: 'between' | DeadlineKind = 'between';
  private startedAt = 0;
  private bytes = 0;
  private timer: Timer | null = null;
  private readonly clock: Clock;

  constructor(private readonly options: InputDeadlineOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Bytes from the client, as they arrive. */
  received(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.phase === 'data') {
      this.bytes += chunk.length;
      return;
    }
    const lastLf = chunk.lastIndexOf(LF);
    if (lastLf === chunk.length - 1) this.settle();
    else if (lastLf >= 0 || this.phase === 'between') this.start('command');
  }

  /** The message of a DATA begins (its 354 is out). */
  dataStarted(): void {
    this.start('data');
  }

  /** The message has been answered (or there was none): its deadline ends. */
  messageEnded(): void {
    if (this.phase === 'data') this.settle();
  }

  /** Nothing is owed now: a TLS handshake begins (what came before it is dropped), or the connection closed. */
  settle(): void {
    this.phase = 'between';
    this.timer?.cancel();
    this.timer = null;
  }

  /** Applies a changed idle timeout (stress mode, SIGHUP) to the request in progress. */
  follow(): void {
    if (this.phase !== 'between') this.arm();
  }

  private start(kind: DeadlineKind): void {
    this.phase = kind;
    this.startedAt = this.clock.now();
    this.bytes = 0;
    this.arm();
  }

  private dueAt(): number {
    const allowance = this.phase === 'data' ? Math.floor((this.bytes * 1000) / MIN_DATA_RATE) : 0;
    return this.startedAt + this.options.limitMs() + allowance;
  }

  private arm(): void {
    this.timer?.cancel();
    this.timer = this.clock.setTimeout(() => this.check(), Math.max(0, this.dueAt() - this.clock.now())).unref();
  }

  private check(): void {
    this.timer = null;
    const { phase } = this;
    if (phase === 'between') return;
    const now = this.clock.now();
    if (this.options.serverBusy()) {
      this.start(phase);
      return;
    }
    if (now < this.dueAt()) {
      this.arm();
      return;
    }
    this.phase = 'between';
    this.options.expired({ kind: phase, elapsedMs: now - this.startedAt, bytes: this.bytes });
  }
}
