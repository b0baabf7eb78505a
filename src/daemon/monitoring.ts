// How the daemon shows its state to the outside (README "Monitoring", "Running under systemd"):
// the metrics listeners, the status file for `mailsrv status`, and systemd's readiness
// notifications, all told the same few moments of its life: ready, reloading, reloaded,
// stopping, stopped.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { MetricsListeners } from '../metrics/server.js';
import type { StatePaths } from '../paths.js';
import { packageVersion } from '../version.js';
import type { Components } from './components.js';
import type { Loaded } from './loaded.js';
import { DaemonState, listenersOf } from './status.js';
import { StatusFile } from './status-file.js';
import { type SystemdNotifier, systemdNotifier } from './systemd.js';

/** The listener kind (as logged with `connect`) of each listen key. */
const LISTENER_KINDS: Record<string, string> = {
  smtp: 'mx',
  submission: 'submission',
  smtps: 'smtps',
  pop3: 'pop3',
  pop3s: 'pop3s',
};

export class Monitoring {
  readonly state: DaemonState;
  private readonly statusFile: StatusFile;
  private readonly systemd: SystemdNotifier;
  private metrics: MetricsListeners | null = null;

  constructor(
    private readonly config: Config,
    paths: StatePaths,
    parts: Components,
    loaded: Loaded,
    private readonly logger: Logger,
  ) {
    this.state = new DaemonState(packageVersion(), listenersOf(config), {
      queue: () => ({ messages: parts.manager.size, oldestReceivedAt: parts.manager.oldestReceivedAt() }),
      sessions: () => parts.sessions(),
      tls: () => loaded.tls,
    });
    this.statusFile = new StatusFile(paths.statusFile, this.state, logger);
    this.systemd = systemdNotifier(logger);
  }

  /** Binds the `[metrics] listen` addresses (prom-client is loaded only then). */
  async listen(): Promise<void> {
    const addresses = this.config.metrics.listen;
    if (addresses.length === 0) return;
    const [{ createInstruments }, { countInto }, { listenForMetrics }] = await Promise.all([
      import('../metrics/instruments.js'),
      import('../metrics/metrics.js'),
      import('../metrics/server.js'),
    ]);
    const { state } = this;
    const instruments = createInstruments({
      version: state.version,
      // connections are counted under the listener's kind: the smtp.listen ones are `mx`
      listeners: Object.entries(LISTENER_KINDS)
        .filter(([key]) => state.listeners[key]!.length > 0)
        .map(([, kind]) => kind),
      queue: () => state.sources.queue(),
      sessions: () => state.sources.sessions(),
      certificate: () => state.certificate(),
      lastReload: () => state.lastReload,
      now: () => Date.now(),
    });
    const { registry } = instruments;
    this.metrics = await listenForMetrics(
      addresses,
      {
        metrics: async () => ({ text: await registry.metrics(), contentType: registry.contentType }),
        serving: () => state.serving,
      },
      this.logger,
    );
    countInto(instruments);
  }

  /** The daemon serves: the status file, then systemd. */
  async ready(): Promise<void> {
    await this.statusFile.start();
    void this.systemd.send('READY=1', `STATUS=${this.statusLine()}`);
  }

  /** Another certificate is served (ACME): the status file says so at once. */
  async certificateChanged(): Promise<void> {
    await this.statusFile.write();
  }

  /** SIGHUP arrived. */
  reloading(): void {
    void this.systemd.send('RELOADING=1');
  }

  /** The reload was applied (null) or failed. */
  reloaded(error: Error | null): void {
    this.state.reloaded(error);
    void this.statusFile.write();
    const status = error === null ? this.statusLine() : `reload failed: ${error.message}`;
    void this.systemd.send('READY=1', `STATUS=${status}`);
  }

  /** The stop began: /healthz answers 503, systemd is told. */
  stopping(): void {
    this.state.markStopping();
    void this.statusFile.write();
    void this.systemd.send('STOPPING=1');
  }

  /** Last step of the stop: the status file goes, the metrics listeners close, systemd has been told. */
  async stopped(): Promise<void> {
    await this.statusFile.remove();
    await this.metrics?.close();
    await this.systemd.settled();
  }

  private statusLine(): string {
    const { messages } = this.state.sources.queue();
    return `serving; ${messages} message(s) in the queue`;
  }
}
