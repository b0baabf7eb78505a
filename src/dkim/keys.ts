// The DKIM signing keys (README, "DKIM signing"): keys_dir/DOMAIN.key (RSA, at least 2048 bits)
// and the optional keys_dir/DOMAIN.ed25519.key for each local domain and the hostname, read at
// start and on SIGHUP. A key that is missing or cannot be used is a problem to report; mail from
// that domain then goes out unsigned.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { readSecretDirectly, type SecretReader } from '../secret-reader.js';

export type DkimKeyType = 'rsa' | 'ed25519';
export const DKIM_KEY_TYPES: readonly DkimKeyType[] = ['rsa', 'ed25519'];
/** The smallest RSA key signed with (RFC 8301: 1024 at least; large receivers want 2048). */
const MIN_RSA_BITS = 2048;

export type DkimConfig = Pick<Config, 'hostname' | 'domains' | 'dkim'>;

/** One key as the signer uses it. */
export interface SigningKey {
  type: DkimKeyType;
  selector: string;
  /** PEM, as read from the file */
  pem: string;
  key: KeyObject;
}

/** A domain's keys: RSA always, Ed25519 as a second signature. */
export interface DomainKeys {
  domain: string;
  rsa: SigningKey;
  ed25519?: SigningKey;
}

export class DkimKeys {
  constructor(private readonly byDomain: ReadonlyMap<string, DomainKeys> = new Map()) {}

  /** true when no domain has a key: nothing is ever signed */
  get empty(): boolean {
    return this.byDomain.size === 0;
  }

  /** The keys of `domain` (any case), if it signs. */
  forDomain(domain: string): DomainKeys | undefined {
    return this.byDomain.get(domain.toLowerCase());
  }

  domains(): string[] {
    return [...this.byDomain.keys()];
  }
}

/** What reading keys_dir found. */
export interface LoadedKeys {
  keys: DkimKeys;
  /** domains that sign nothing for want of an RSA key file */
  unsigned: string[];
  /** keys that exist but cannot be used: "file: why" */
  problems: string[];
}

/** The domains that may sign: every local domain and the hostname (not "localhost"), lowercase, once each. */
export function signingDomains(config: Pick<Config, 'hostname' | 'domains'>): string[] {
  return [...new Set([...config.domains, config.hostname].map((domain) => domain.toLowerCase()))];
}

export function keyFile(keysDir: string, domain: string, type: DkimKeyType): string {
  return join(keysDir, type === 'rsa' ? `${domain}.key` : `${domain}.ed25519.key`);
}

export function selectorOf(config: Pick<Config, 'dkim'>, type: DkimKeyType): string {
  return type === 'rsa' ? config.dkim.selector : config.dkim.selector_ed25519;
}

/**
 * Reads every signing domain's key files (through `read`: the root helper on SIGHUP). Never
 * rejects: whatever cannot be used is in `problems`.
 */
export async function loadDkimKeys(config: DkimConfig, read: SecretReader = readSecretDirectly): Promise<LoadedKeys> {
  const byDomain = new Map<string, DomainKeys>();
  const unsigned: string[] = [];
  const problems: string[] = [];
  for (const domain of signingDomains(config)) {
    const [rsa, ed25519] = await Promise.all(
      DKIM_KEY_TYPES.map((type) => readKey(config, domain, type, read, problems)),
    );
    if (rsa === null) {
      unsigned.push(domain);
      if (ed25519 !== null)
        problems.push(
          `${keyFile(config.dkim.keys_dir, domain, 'ed25519')}: not used without ` +
            `${keyFile(config.dkim.keys_dir, domain, 'rsa')} (an Ed25519 signature is never the only one)`,
        );
      continue;
    }
    byDomain.set(domain, { domain, rsa, ...(ed25519 === null ? {} : { ed25519 }) });
  }
  return { keys: new DkimKeys(byDomain), unsigned, problems };
}

/** One key file, checked; null when it does not exist or cannot be used (then a problem says why). */
async function readKey(
  config: DkimConfig,
  domain: string,
  type: DkimKeyType,
  read: SecretReader,
  problems: string[],
): Promise<SigningKey | null> {
  const file = keyFile(config.dkim.keys_dir, domain, type);
  let pem: string;
  try {
    const bytes = await read(file);
    if (bytes === null) return null;
    pem = bytes.toString('utf8');
  } catch (err) {
    problems.push(`${file}: cannot read it: ${(err as Error).message}`);
    return null;
  }
  try {
    const key = parseSigningKey(pem, type);
    return { type, selector: selectorOf(config, type), pem, key };
  } catch (err) {
    problems.push(`${file}: ${(err as Error).message}`);
    return null;
  }
}

/** A PEM private key of `type`, RSA of at least MIN_RSA_BITS; throws saying what is wrong. */
export function parseSigningKey(pem: string, type: DkimKeyType): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new Error('not a PEM private key');
  }
  if (key.asymmetricKeyType !== type) throw new Error(`a ${key.asymmetricKeyType} key, expected ${type}`);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (type === 'rsa' && bits < MIN_RSA_BITS)
    throw new Error(`an RSA key of ${bits} bits: receivers want at least ${MIN_RSA_BITS}`);
  return key;
}
