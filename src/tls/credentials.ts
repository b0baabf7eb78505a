// The server's TLS certificate and key (config `tls.cert`, `tls.key`), read from their PEM
// files and checked (they parse, and the key belongs to the certificate) before anything uses
// them, so a SIGHUP with a broken file keeps the running certificate instead of breaking TLS.
// Every TLS listener (STARTTLS, STLS, implicit TLS) takes the same settings: TLS 1.2 at
// least, Node's default (modern) cipher list.
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { readSecretDirectly, type SecretReader } from '../secret-reader.js';

/** Applied to every TLS session mailsrv serves. */
export const TLS_SERVER_OPTIONS = {
  minVersion: 'TLSv1.2',
  honorCipherOrder: true,
} as const satisfies SecureContextOptions;

export interface TlsCredentials {
  cert: Buffer;
  key: Buffer;
  /** a context built from them with TLS_SERVER_OPTIONS */
  context: SecureContext;
  /** the certificate's notAfter, for logs and `mailsrv check` */
  validTo: Date;
}

export class TlsFileError extends Error {
  constructor(
    readonly key: 'tls.cert' | 'tls.key',
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${key} (${file}): ${reason}`);
    this.name = 'TlsFileError';
  }
}

/**
 * Reads (through `read`: the root helper on SIGHUP) and checks the configured files; null when
 * TLS is off (`tls.cert = ""`).
 */
export async function loadTlsCredentials(
  settings: { cert: string; key: string },
  read: SecretReader = readSecretDirectly,
): Promise<TlsCredentials | null> {
  if (settings.cert === '') return null;
  const cert = await readPem('tls.cert', settings.cert, read);
  const key = await readPem('tls.key', settings.key, read);
  try {
    return credentialsFromPem(cert, key);
  } catch (err) {
    if (!(err instanceof PemError)) throw err;
    throw err.part === 'cert'
      ? new TlsFileError('tls.cert', settings.cert, err.message)
      : new TlsFileError('tls.key', settings.key, err.message);
  }
}

/** A certificate or key that credentialsFromPem refused, and why. */
export class PemError extends Error {
  constructor(
    readonly part: 'cert' | 'key',
    reason: string,
  ) {
    super(reason);
    this.name = 'PemError';
  }
}

/** Checks a certificate (chain) and its key, in PEM, and builds the context to serve them. */
export function credentialsFromPem(cert: Buffer, key: Buffer): TlsCredentials {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new PemError('cert', `not a PEM certificate: ${(err as Error).message}`);
  }
  let context: SecureContext;
  try {
    context = createSecureContext({ ...TLS_SERVER_OPTIONS, cert, key });
  } catch (err) {
    const message = (err as Error).message;
    throw new PemError(
      'key',
      /key values mismatch/i.test(message)
        ? 'does not belong to the certificate in tls.cert'
        : `not a usable private key: ${message}`,
    );
  }
  return { cert, key, context, validTo: new Date(x509.validTo) };
}

async function readPem(key: 'tls.cert' | 'tls.key', file: string, read: SecretReader): Promise<Buffer> {
  let pem: Buffer | null;
  try {
    pem = await read(file);
  } catch (err) {
    throw new TlsFileError(key, file, `cannot read: ${(err as Error).message}`);
  }
  if (pem === null) throw new TlsFileError(key, file, 'cannot read: no such file');
  return pem;
}
