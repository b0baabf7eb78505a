// `mailsrv dkim keygen DOMAIN [--type rsa|ed25519]` makes a DKIM key for a local domain or the
// hostname (never overwriting one) and prints its DNS record; `mailsrv dkim dns [DOMAIN]` prints
// every record a domain publishes for its mail (README, "Putting it on the internet").
import { generateKeyPairSync } from 'node:crypto';
import { type Command, Option } from 'commander';
import type { Config } from '../config/schema.js';
import { DKIM_KEY_TYPES, type DkimKeyType, keyFile, loadDkimKeys, selectorOf, signingDomains } from '../dkim/keys.js';
import { dkimRecord, domainRecords } from '../dkim/records.js';
import { fail } from './fail.js';
import { loadConfigOrExit } from './load-config.js';
import { createFile, makeDirectory, SECRET_MODE } from './secret-files.js';

const RSA_BITS = 2048;

export function registerDkimCommands(program: Command): void {
  const dkim = program.command('dkim').description('DKIM keys and the DNS records to publish');
  dkim
    .command('keygen')
    .description('make a DKIM key for a local domain or the hostname in keys_dir and print its DNS record')
    .argument('<domain>', 'a local domain or the hostname')
    .addOption(new Option('--type <type>', 'key type').choices(DKIM_KEY_TYPES).default('rsa'))
    .option('-c, --config <file>', 'config file')
    .action(async (domain: string, opts: { type: DkimKeyType; config?: string }) => {
      const config = loadConfigOrExit(opts.config);
      await keygen(config, signingDomain(config, domain), opts.type);
    });
  dkim
    .command('dns')
    .description('print the DNS records (DKIM, SPF, DMARC, MX, SRV, autoconfig) of every local domain or DOMAIN')
    .argument('[domain]', 'only this local domain (or the hostname)')
    .option('-c, --config <file>', 'config file')
    .action(async (domain: string | undefined, opts: { config?: string }) => {
      const config = loadConfigOrExit(opts.config);
      const domains = domain === undefined ? signingDomains(config) : [signingDomain(config, domain)];
      const { keys, problems } = await loadDkimKeys(config);
      for (const problem of problems) process.stderr.write(`warning: ${problem}\n`);
      const blocks = domains.map((name) => {
        const own = keys.forDomain(name);
        return domainRecords(config, name, own === undefined ? [] : [own.rsa, ...(own.ed25519 ? [own.ed25519] : [])]);
      });
      process.stdout.write(`${blocks.map((lines) => lines.join('\n')).join('\n\n')}\n`);
    });
}

/** `domain` in lowercase if it may sign here, else exit 1. */
function signingDomain(config: Config, domain: string): string {
  const name = domain.toLowerCase();
  if (signingDomains(config).includes(name)) return name;
  return fail(`${domain} is not a local domain (domains) or the hostname: mailsrv signs mail from those only`);
}

async function keygen(config: Config, domain: string, type: DkimKeyType): Promise<void> {
  const file = keyFile(config.dkim.keys_dir, domain, type);
  const { privateKey } =
    type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: RSA_BITS }) : generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    await makeDirectory(config.dkim.keys_dir);
    const written = await createFile(file, pem, SECRET_MODE);
    if (!written) fail(`${file} exists: it is kept (remove it first to make a new key)`);
  } catch (err) {
    fail(`cannot write ${file}: ${(err as Error).message}`);
  }
  process.stderr.write(
    `wrote ${file} (${type === 'rsa' ? `RSA ${RSA_BITS} bits` : 'Ed25519'}, mode 0${SECRET_MODE.toString(8)})\n`,
  );
  process.stderr.write('publish this record, then reload mailsrv (SIGHUP) to sign with the key:\n');
  process.stdout.write(`${dkimRecord(selectorOf(config, type), domain, privateKey, type)}\n`);
}
