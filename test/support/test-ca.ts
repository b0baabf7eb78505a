// A private certificate authority for tests, made with the openssl command: a CA certificate and
// server certificates it signs, each for the names asked (subjectAltName), all ECDSA P-256 and
// SHA-256. Used where mailsrv must verify a peer: MTA-STS policy hosts and MX hosts.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCa {
  /** the CA certificate's file (PEM), for relay.ca_file */
  caFile: string;
  caPem: string;
  /** a certificate for `names` signed by this CA */
  issue(names: string[]): { cert: string; key: string };
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256'];

/** Makes the CA in `dir` (which must exist). */
export function makeTestCa(dir: string): TestCa {
  const caFile = join(dir, 'test-ca.pem');
  const caKey = join(dir, 'test-ca.key');
  openssl(['req', '-x509', ...EC_KEY, '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=mailsrv test CA']);
  let serial = 0;
  return {
    caFile,
    caPem: readFileSync(caFile, 'utf8'),
    issue(names) {
      serial += 1;
      const base = join(dir, `leaf-${serial}`);
      writeFileSync(`${base}.ext`, `subjectAltName=${names.map((name) => `DNS:${name}`).join(',')}\n`);
      openssl(['req', '-new', ...EC_KEY, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0]}`]);
      openssl([
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        caFile,
        '-CAkey',
        caKey,
        '-set_serial',
        String(serial),
        '-days',
        '2',
        '-sha256',
        '-extfile',
        `${base}.ext`,
        '-out',
        `${base}.crt`,
      ]);
      return { cert: readFileSync(`${base}.crt`, 'utf8'), key: readFileSync(`${base}.key`, 'utf8') };
    },
  };
}
