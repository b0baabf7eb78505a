// Certificates by ACME (README "Certificates by ACME"), the daemon's side: at start the stored
// certificate if there is one (no new order), else a temporary self-signed one to fall back on;
// the HTTP-01 listeners; the orders and renewals on the renewal schedule, each issued
// certificate stored and handed to `use` (which swaps it into every TLS listener).
import { readFile } from 'node:fs/promises';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { parseListen } from '../config/units.js';
import type { Logger } from '../log.js';
import { credentialsFromPem, type TlsCredentials } from '../tls/credentials.js';
import { generateSelfSigned } from '../tls/selfsigned.js';
import { ChallengeServer } from './challenge-server.js';
import { createAccountKey, orderCertificate, type OrderSettings } from './order.js';
import { RenewalSchedule } from './renewal.js';
import { AcmeStore } from './store.js';

/** Swaps a newly issued certificate into the listeners. */
export type UseCertificate = (credentials: TlsCredentials) => void | Promise<void>;

export class AcmeCertificates {
  private readonly challenges: ChallengeServer;
  private schedule: RenewalSchedule | null = null;

  private constructor(
    private readonly settings: OrderSettings,
    private readonly httpListen: string[],
    private readonly store: AcmeStore,
    private readonly logger: Logger,
    /** the stored or last issued certificate, if it is for every configured name */
    private issued: TlsCredentials | null,
    /**
     * served while none is issued and no [tls] one is configured: a stored certificate for other
     * names, else a temporary self-signed one
     */
    private readonly interim: TlsCredentials,
  ) {
    this.challenges = new ChallengeServer(logger);
  }

  /** Reads the stored certificate and the extra CA; null when ACME is off (`acme.directory = ""`). */
  static async open(config: Config, acmeDir: string, logger: Logger): Promise<AcmeCertificates | null> {
    const { acme } = config;
    if (acme.directory === '') return null;
    const names = acme.names.length > 0 ? acme.names : [config.hostname];
    const extraCa = acme.ca_file === '' ? null : await readFile(acme.ca_file, 'utf8');
    const store = new AcmeStore(acmeDir);
    const stored = await store.readCertificate().catch((err: Error) => {
      logger.warn({ err: err.message, dir: acmeDir }, 'stored ACME certificate unusable; a new one is ordered');
      return null;
    });
    const current = stored !== null && names.every((name) => stored.names.includes(name)) ? stored.credentials : null;
    if (stored !== null) {
      logger.info(
        { names: stored.names, validTo: stored.credentials.validTo.toISOString(), matches: current !== null },
        current !== null ? 'stored ACME certificate in use' : 'stored ACME certificate lacks configured names',
      );
    }
    const interim = stored?.credentials ?? (await temporaryCertificate(config.hostname));
    const settings = { directory: acme.directory, email: acme.email, names, extraCa };
    return new AcmeCertificates(settings, acme.http_listen, store, logger, current, interim);
  }

  /** What the listeners serve, given the [tls] certificate (null: none configured). */
  serving(configured: TlsCredentials | null): TlsCredentials {
    return this.issued ?? configured ?? this.interim;
  }

  /** Binds the HTTP-01 listeners (at start, before the privilege drop). */
  async listen(): Promise<void> {
    for (const address of this.httpListen) await this.challenges.listen(parseListen(address)!);
  }

  /** Orders now if there is no certificate for the names yet, and renews on schedule; issued ones go to `use`. */
  start(clock: Clock, use: UseCertificate): void {
    this.schedule = new RenewalSchedule(clock, {
      order: () => this.order(use),
      failed: (err, retryAt) =>
        this.logger.error(
          { err: err.message, names: this.settings.names, retryAt: retryAt.toISOString() },
          'ACME order failed; the current certificate stays, retrying',
        ),
      scheduled: (renewAt) =>
        this.logger.info({ names: this.settings.names, renewAt: renewAt.toISOString() }, 'ACME renewal scheduled'),
    });
    this.schedule.start(this.issued?.validTo ?? null);
  }

  async stop(): Promise<void> {
    this.schedule?.stop();
    await this.challenges.close();
  }

  private async order(use: UseCertificate): Promise<Date> {
    const { names, directory } = this.settings;
    this.logger.info({ names, directory }, 'ACME order started');
    let accountKey = await this.store.readAccountKey();
    if (accountKey === null) {
      accountKey = await createAccountKey();
      await this.store.writeAccountKey(accountKey);
    }
    const { cert, key } = await orderCertificate(this.settings, accountKey, this.challenges.responses, this.logger);
    const credentials = credentialsFromPem(cert, key);
    await this.store.writeCertificate(cert, key);
    this.issued = credentials;
    await use(credentials);
    this.logger.info({ names, validTo: credentials.validTo.toISOString() }, 'ACME certificate issued and in use');
    return credentials.validTo;
  }
}

async function temporaryCertificate(hostname: string): Promise<TlsCredentials> {
  const { cert, key } = await generateSelfSigned(hostname, 90);
  return credentialsFromPem(Buffer.from(cert), Buffer.from(key));
}
