// A self-signed certificate for a fresh installation (`mailsrv init`) and for tests: an EC P-256
// key, signed with SHA-256 (selfsigned signs with SHA-1 unless told otherwise), the host name as
// common name and in subjectAltName (what clients check), valid for a server, for `days` days
// from `notBeforeDate` (now unless told: tests make expired and not-yet-valid certificates).
import selfsigned from 'selfsigned';

export interface SelfSignedPem {
  cert: string;
  key: string;
}

export async function generateSelfSigned(
  hostname: string,
  days = 3650,
  notBeforeDate = new Date(),
): Promise<SelfSignedPem> {
  const notAfterDate = new Date(notBeforeDate.getTime() + days * 86_400_000);
  const pems = await selfsigned.generate([{ name: 'commonName', value: hostname }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: hostname }] },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}
