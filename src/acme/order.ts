// One certificate order with acme-client (RFC 8555): the account (created on first use, found
// by its key afterwards), an order for the names, HTTP-01 challenges answered by the
// ChallengeServer, and the issued chain with a fresh EC P-256 key. acme-client's own retries of
// failed requests are off: a failed order is retried by the renewal schedule (renewal.ts).
// The ACME server itself checks the challenges; the local pre-check acme-client would make
// (fetching our own port 80 by the public name) is skipped, as it fails behind NAT.
import { Agent } from 'node:https';
import { rootCertificates } from 'node:tls';
import * as acme from 'acme-client';
import type { Logger } from '../log.js';
import type { ChallengeResponses } from './challenge-server.js';

/** Each HTTPS request to the ACME server must be answered within this. */
const REQUEST_TIMEOUT_MS = 30_000;

export interface OrderSettings {
  directory: string;
  email: string;
  names: string[];
  /** PEM of an extra CA for the ACME server's HTTPS; null: the system's roots only */
  extraCa: string | null;
}

export interface IssuedCertificate {
  /** the chain, leaf first */
  cert: Buffer;
  key: Buffer;
}

/** A new account key (EC P-256), for the first order. */
export function createAccountKey(): Promise<Buffer> {
  return acme.crypto.createPrivateEcdsaKey('P-256');
}

export async function orderCertificate(
  settings: OrderSettings,
  accountKey: Buffer,
  challenges: ChallengeResponses,
  logger: Logger,
): Promise<IssuedCertificate> {
  configureHttp(settings.extraCa, logger);
  const client = new acme.Client({
    directoryUrl: settings.directory,
    accountKey,
    backoffAttempts: 10,
    backoffMin: 1000,
    backoffMax: 10_000,
  });
  const [key, csr] = await acme.crypto.createCsr(
    { commonName: settings.names[0]!, altNames: settings.names },
    await acme.crypto.createPrivateEcdsaKey('P-256'),
  );
  const chain = await client.auto({
    csr,
    email: settings.email === '' ? undefined : settings.email,
    termsOfServiceAgreed: true,
    challengePriority: ['http-01'],
    skipChallengeVerification: true,
    challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
      challenges.set(challenge.token, keyAuthorization);
    },
    challengeRemoveFn: async (_authz, challenge) => {
      challenges.delete(challenge.token);
    },
  });
  return { cert: Buffer.from(chain), key };
}

/** acme-client's HTTP settings are global to it, and mailsrv is its only user: set them per order. */
function configureHttp(extraCa: string | null, logger: Logger): void {
  acme.axios.defaults.timeout = REQUEST_TIMEOUT_MS;
  acme.axios.defaults.httpsAgent = new Agent({ ca: extraCa === null ? undefined : [...rootCertificates, extraCa] });
  (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number } }).acmeSettings!.retryMaxAttempts = 0;
  acme.setLogger((message) => logger.debug({ acme: message }, 'acme-client'));
}
