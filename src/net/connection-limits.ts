// How many connections one protocol (SMTP or POP3) holds, all its listeners together: at most
// `max_clients`, and at most `max_connections_per_ip` from one client address (mynetworks
// exempt). A connection counts from accept, TLS handshake in progress included, until its
// socket closes. One instance per protocol, shared by its listeners; SIGHUP reconfigures it.
//
// Stress mode, as Postfix's: while more than ¾ of max_clients are in use, clients that have not
// committed to anything yet (SMTP before MAIL FROM, POP3 before login) get a short idle timeout
// (idleTimeoutMs), and the protocol's sessions are told at once (onStressChange) so that the
// timers already running shrink too.
import type { NetworkMatcher } from '../config/networks.js';
import type { Logger } from '../log.js';
import { countConnection, countConnectionRefused } from '../metrics/metrics.js';

/** The idle timeout of a client not yet committed while its protocol is under stress. */
export const STRESS_IDLE_TIMEOUT_MS = 10_000;
/** The share of max_clients in use beyond which a protocol is under stress. */
const STRESS_SHARE = 3 / 4;

export interface ConnectionLimitSettings {
  maxClients: number;
  /** connections from one client address */
  maxPerAddress: number;
  /** client addresses the per-address limit does not apply to (mynetworks) */
  exempt: NetworkMatcher;
}

/** Why a connection is turned away. */
export type Refusal = 'max-clients' | 'per-address';

/** What admit() needs of an accepted socket. */
export interface AcceptedSocket {
  readonly remoteAddress?: string | undefined;
  once(event: 'close', listener: () => void): unknown;
}

/** The address a client is counted under: an IPv4-mapped IPv6 address as its IPv4 address. */
function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address.toLowerCase();
}

export class ConnectionLimits {
  private inUse = 0;
  private readonly perAddress = new Map<string, number>();
  private stress = false;
  private readonly stressListeners: (() => void)[] = [];

  constructor(
    /** names the protocol in log lines */
    private readonly protocol: 'smtp' | 'pop3',
    private settings: ConnectionLimitSettings,
    private readonly logger: Logger,
  ) {}

  /** Connections counted now. */
  get connections(): number {
    return this.inUse;
  }

  /** More than ¾ of max_clients are in use. */
  get stressed(): boolean {
    return this.stress;
  }

  /**
   * Counts a freshly accepted socket until it closes; or, over a limit, logs the refusal and
   * returns why (the socket is not counted: the caller answers and closes it). `client` is the
   * address the socket is counted under: its peer, or the client a PROXY header named.
   */
  admit(socket: AcceptedSocket, listener: string, client = socket.remoteAddress ?? ''): Refusal | null {
    const { maxClients, maxPerAddress, exempt } = this.settings;
    countConnection(listener);
    if (this.inUse >= maxClients) {
      countConnectionRefused();
      this.logger.warn({ client, listener, maxClients }, `${this.protocol}: too many connections`);
      return 'max-clients';
    }
    const key = exempt(client) ? null : addressKey(client);
    const fromAddress = key === null ? 0 : (this.perAddress.get(key) ?? 0);
    if (key !== null && fromAddress >= maxPerAddress) {
      countConnectionRefused();
      this.logger.info(
        { client, listener, maxConnectionsPerIp: maxPerAddress },
        `${this.protocol}: too many connections from one address`,
      );
      return 'per-address';
    }
    this.inUse += 1;
    if (key !== null) this.perAddress.set(key, fromAddress + 1);
    socket.once('close', () => this.release(key));
    this.followStress();
    return null;
  }

  /** The idle timeout for a client not yet committed: `normalMs`, or at most 10 s under stress. */
  idleTimeoutMs(normalMs: number): number {
    return this.stress ? Math.min(normalMs, STRESS_IDLE_TIMEOUT_MS) : normalMs;
  }

  /** `listener` runs whenever stress mode begins or ends. */
  onStressChange(listener: () => void): void {
    this.stressListeners.push(listener);
  }

  /** SIGHUP: new limits for new connections (those open stay); stress follows the new max_clients. */
  reconfigure(settings: ConnectionLimitSettings): void {
    this.settings = settings;
    this.followStress();
  }

  private release(key: string | null): void {
    this.inUse -= 1;
    if (key !== null) {
      const left = (this.perAddress.get(key) ?? 1) - 1;
      if (left === 0) this.perAddress.delete(key);
      else this.perAddress.set(key, left);
    }
    this.followStress();
  }

  private followStress(): void {
    const { maxClients } = this.settings;
    const stress = this.inUse > maxClients * STRESS_SHARE;
    if (stress === this.stress) return;
    this.stress = stress;
    const fields = { connections: this.inUse, maxClients, idleTimeoutMs: STRESS_IDLE_TIMEOUT_MS };
    if (stress) this.logger.warn(fields, `${this.protocol}: entering stress mode`);
    else this.logger.info({ connections: this.inUse, maxClients }, `${this.protocol}: leaving stress mode`);
    for (const listener of this.stressListeners) listener();
  }
}
