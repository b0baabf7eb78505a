// The files ACME keeps in state_dir/acme/: the account key (account-key.pem), the certificate
// chain (cert.pem, readable by all: `mailsrv status` shows it) and its key (key.pem). Keys are
// 0600. Each file is replaced whole (written aside, fsynced, renamed); the key goes before the
// certificate, so a crash between the two leaves a pair that does not match, which loads as
// "no certificate" and is ordered again.
import { X509Certificate } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, isErrno } from '../fsutil.js';
import { credentialsFromPem, type TlsCredentials } from '../tls/credentials.js';

export interface StoredCertificate {
  credentials: TlsCredentials;
  /** the DNS names in its subjectAltName */
  names: string[];
}

export class AcmeStore {
  constructor(readonly dir: string) {}

  get certFile(): string {
    return join(this.dir, 'cert.pem');
  }

  /** The account key, null before the first order. */
  readAccountKey(): Promise<Buffer | null> {
    return readIfExists(join(this.dir, 'account-key.pem'));
  }

  writeAccountKey(key: Buffer): Promise<void> {
    return this.replace('account-key.pem', key, 0o600);
  }

  /** The stored certificate and key; null if there is none or they do not make a pair (an error says why). */
  async readCertificate(): Promise<StoredCertificate | null> {
    const cert = await readIfExists(this.certFile);
    const key = await readIfExists(join(this.dir, 'key.pem'));
    if (cert === null || key === null) return null;
    const credentials = credentialsFromPem(cert, key);
    return { credentials, names: certificateNames(cert) };
  }

  async writeCertificate(cert: Buffer, key: Buffer): Promise<void> {
    await this.replace('key.pem', key, 0o600);
    await this.replace('cert.pem', cert, 0o644);
  }

  private async replace(name: string, data: Buffer, mode: number): Promise<void> {
    const file = join(this.dir, name);
    const aside = `${file}.new`;
    const handle = await open(aside, 'w', mode);
    try {
      await handle.chmod(mode); // a file left aside by a crash keeps its old mode otherwise
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(aside, file);
    await fsyncDir(this.dir);
  }
}

/** The DNS names a certificate (the first of a PEM chain) is for. */
export function certificateNames(cert: Buffer | string): string[] {
  const san = new X509Certificate(cert).subjectAltName ?? '';
  return san
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4));
}

async function readIfExists(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
}
