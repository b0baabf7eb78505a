// The one place that names every config key: its type, default and one-line doc.
// config/mailsrv.toml documents the same keys for people (a unit test keeps them in step).
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { z } from 'zod';
import { isDuration, listenersOverlap, parseHttpListen, parseListen, parseNetwork } from './units.js';

const duration = () =>
  z.string().refine(isDuration, { message: 'expected a duration such as "30s", "5m", "4h" or "5d"' });
const listenList = () =>
  z.array(z.string().refine((s) => parseListen(s) !== null, { message: 'expected "host:port" or "[ipv6]:port"' }));
const networkList = () =>
  z.array(
    z.string().refine((s) => parseNetwork(s) !== null, { message: 'expected an address or CIDR such as "10.0.0.0/8"' }),
  );
const dnsServerList = () =>
  z
    .array(
      z.string().refine((s) => isIP(s) !== 0 || isIP(parseListen(s)?.host ?? '') !== 0, {
        message: 'expected an IP address, "ip:port" or "[ipv6]:port"',
      }),
    )
    .default([]);
const bytes = () => z.number().int().nonnegative();
const count = () => z.number().int().positive();
const domainName = z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i, {
  message: 'expected a domain name such as "example.org"',
});
const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i, { message: 'expected a DNS label such as "mail"' });
const systemName = z.string().regex(/^[a-z_][a-z0-9_-]*$/i, { message: 'expected a user or group name' });

const smtpSchema = z.strictObject({
  listen: listenList()
    .default(['0.0.0.0:25', '[::]:25'])
    .describe('MX port: local delivery; relay only for mynetworks or AUTH'),
  submission: listenList()
    .default(['0.0.0.0:587'])
    .describe('submission port (RFC 6409): AUTH required to send anything'),
  smtps: listenList().default([]).describe('implicit-TLS submission (RFC 8314), e.g. ["0.0.0.0:465"]'),
  max_clients: count()
    .default(500)
    .describe('simultaneous SMTP connections, all listeners together, TLS handshakes in progress included'),
  max_connections_per_ip: count()
    .default(20)
    .describe('simultaneous SMTP connections from one client address, all listeners together; mynetworks exempt'),
  max_recipients: count().default(100).describe('RCPT TO per message; more get 452 4.5.3'),
  vrfy: z.boolean().default(false).describe('VRFY answers 252 without disclosure unless true'),
  sender_login_match: z
    .boolean()
    .default(true)
    .describe('an authenticated user may only send as user@<local domain> or an alias that delivers to them alone'),
  timeout: duration()
    .default('5m')
    .describe(
      'idle time allowed between client commands (RFC 5321 4.5.3.2); also the deadline of a command line ' +
        'from its first byte, and of a message from its 354 (plus 1 s per 500 bytes)',
    ),
  greet_pause: duration()
    .default('0s')
    .describe('wait before the 220 greeting on the MX port for clients outside mynetworks; early talkers are refused'),
});

const pop3Schema = z.strictObject({
  listen: listenList().default(['0.0.0.0:110']).describe('POP3 listeners'),
  pop3s: listenList().default([]).describe('implicit-TLS POP3 listeners, e.g. ["0.0.0.0:995"]'),
  max_clients: count()
    .default(1000)
    .describe('simultaneous POP3 connections, all listeners together, TLS handshakes in progress included'),
  max_connections_per_ip: count()
    .default(20)
    .describe('simultaneous POP3 connections from one client address, all listeners together; mynetworks exempt'),
  timeout: duration()
    .default('10m')
    .describe(
      'autologout: idle time allowed between commands (RFC 1939: at least 10 minutes); ' +
        'also the deadline of a command line from its first byte',
    ),
});

const authSchema = z.strictObject({
  failure_delay: duration()
    .default('2s')
    .describe(
      'wait before answering a failed login (SMTP AUTH or POP3), doubled with each further failure of that user ' +
        'from that address (up to 30 s); also the first penalty past max_failures ("0s": no delays, no penalties)',
    ),
  max_failures: count()
    .default(10)
    .describe(
      'failures of one user from one address, or 5 times as many from one address for all users (mynetworks ' +
        'exempt), after which every check waits a growing penalty (up to 30 s), then runs: never a refusal',
    ),
  lockout: duration()
    .default('15m')
    .describe('how long failures (and the penalties they bring) are remembered after the last one'),
  cache_ttl: duration()
    .default('15m')
    .describe('a login whose password verified is let in again without the password hash for this long (0s: off)'),
});

const tlsSchema = z.strictObject({
  cert: z.string().default('/etc/mailsrv/tls/cert.pem').describe('PEM certificate chain; empty: no STARTTLS/STLS'),
  key: z.string().default('/etc/mailsrv/tls/key.pem').describe('PEM private key (ignored when cert is "")'),
});

const acmeSchema = z.strictObject({
  directory: z
    .string()
    .refine((s) => s === '' || /^https:\/\/\S+$/.test(s), { message: 'expected "" or an https:// URL' })
    .default('')
    .describe('ACME directory URL, e.g. Let\'s Encrypt\'s "https://acme-v02.api.letsencrypt.org/directory"; "" = off'),
  email: z
    .string()
    .refine((s) => s === '' || /^[^\s@<>]+@[^\s@<>]+$/.test(s), { message: 'expected "" or an address user@domain' })
    .default('')
    .describe('contact address of the ACME account ("" = none)'),
  names: z
    .array(domainName)
    .default([])
    .describe('the names the certificate is for; [] = [hostname] (HTTP-01 cannot issue wildcards)'),
  http_listen: listenList()
    .default(['0.0.0.0:80'])
    .describe('HTTP-01 challenge listeners (port 80 for a public ACME server); answer only challenge paths'),
  ca_file: z.string().default('').describe("extra CA (PEM) for the ACME server's own HTTPS, e.g. a test or private CA"),
});

const dkimSchema = z.strictObject({
  selector: dnsLabel.default('mailsrv').describe("the RSA key's selector: its record is SELECTOR._domainkey.DOMAIN"),
  selector_ed25519: dnsLabel
    .default('mailsrv-ed')
    .describe("the optional Ed25519 key's selector (a second signature, never the only one)"),
  keys_dir: z
    .string()
    .min(1)
    .default('/etc/mailsrv/dkim')
    .describe('DOMAIN.key (PEM, RSA >= 2048 bits) signs mail whose From: is in DOMAIN; DOMAIN.ed25519.key adds one'),
});

const autoconfigSchema = z.strictObject({
  listen: z
    .array(
      z.string().refine((s) => parseHttpListen(s) !== null, {
        message: 'expected "host:port", or "https://host:port" for HTTPS',
      }),
    )
    .default([])
    .describe(
      'mail client setup (Thunderbird autoconfig, Outlook autodiscover) over HTTP, e.g. ["0.0.0.0:80"], ' +
        'or HTTPS with the mail certificate: ["https://0.0.0.0:443"]; [] = off',
    ),
});

const relaySchema = z.strictObject({
  relayhost: z
    .string()
    .refine((s) => s === '' || parseListen(s) !== null || /^[a-z0-9.-]+$/i.test(s), {
      message: 'expected "", "host" or "host:port"',
    })
    .default('')
    .describe('"" = deliver by MX lookup; "host:port" = smarthost for all remote mail'),
  relayhost_user: z.string().default('').describe('AUTH user name at the smarthost; "" = no AUTH'),
  relayhost_password_file: z
    .string()
    .default('')
    .describe('file holding the smarthost password (kept out of this file, which `mailsrv config` prints)'),
  tls_security: z
    .enum(['may', 'encrypt', 'verify'])
    .default('may')
    .describe(
      'outbound TLS: may = STARTTLS when offered, any certificate; encrypt = TLS required; ' +
        'verify = TLS with a valid certificate for the host',
    ),
  mta_sts: z
    .boolean()
    .default(true)
    .describe(
      'honour MTA-STS (RFC 8461): a domain whose policy says enforce gets its mail only over verified TLS ' +
        'to an MX host the policy lists',
    ),
  ca_file: z
    .string()
    .default('')
    .describe('extra CA (PEM) trusted for outbound TLS and MTA-STS policy fetches, e.g. a private or test CA'),
  dns_servers: dnsServerList().describe('former name of the top-level dns_servers (still accepted)'),
  retry: z
    .array(duration())
    .nonempty()
    .default(['1m', '5m', '15m', '1h'])
    .describe('waits between outbound attempts; the last repeats'),
  delay_warning: duration().default('4h').describe('warn the sender once a message has waited this long'),
  max_queue_lifetime: duration().default('5d').describe('then the message is bounced to its sender'),
  concurrency: count().default(50).describe('outbound SMTP deliveries in progress at once'),
  destination_concurrency: count()
    .default(20)
    .describe('outbound deliveries in progress at once to one domain (or the relayhost)'),
  connect_timeout: duration()
    .default('30s')
    .describe('how long to wait for a remote server to accept the connection and greet'),
  timeout: duration()
    .default('10m')
    .describe(
      'how long to wait for each reply of a remote server (RFC 5321 4.5.3.2: up to 10 minutes after the message)',
    ),
});

const deliverySchema = z.strictObject({
  lock_timeout: duration()
    .default('20s')
    .describe('how long one local delivery waits for a mailbox lock before it is deferred'),
  retry: z
    .array(duration())
    .nonempty()
    .default(['10s', '1m', '5m', '15m'])
    .describe('waits between local delivery attempts (locked or failing mailbox); the last repeats'),
  concurrency: count().default(20).describe('local deliveries in progress at once'),
});

const metricsSchema = z.strictObject({
  listen: listenList()
    .default([])
    .describe('HTTP listeners for GET /metrics (Prometheus text format) and GET /healthz, e.g. ["127.0.0.1:9587"]'),
});

const checkMode = () => z.enum(['off', 'tag', 'enforce']);
const checksSchema = z.strictObject({
  spf: checkMode()
    .default('tag')
    .describe('SPF of MAIL FROM (or HELO for <>): off, tag (Authentication-Results) or enforce (fail: 550 5.7.23)'),
  dkim: z.enum(['off', 'tag']).default('tag').describe('verify every DKIM-Signature: off or tag'),
  dmarc: checkMode()
    .default('enforce')
    .describe('DMARC: off, tag, or enforce (p=reject: 550 5.7.1; p=quarantine: X-Spam-Flag: YES, delivered)'),
  dnsbl: z
    .array(domainName)
    .default([])
    .describe('DNS blocklist zones, e.g. ["zen.spamhaus.org"]: a listed client gets 554 5.7.1 at RCPT'),
  dns_timeout: duration()
    .default('5s')
    .describe('each DNS lookup of the checks; a timeout is a temperror (never a rejection, except 451 for DMARC)'),
});

const logSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info').describe('pino log level'),
});

const fullSchema = z.strictObject({
  hostname: domainName
    .default(() => osHostname())
    .describe('banner, Received lines and bounces; default: the system host name'),
  domains: z.array(domainName).default([]).describe('local domains; hostname and "localhost" are always local'),
  dns_servers: dnsServerList().describe(
    'resolvers for every DNS lookup (MX, SPF, DKIM, DMARC, DNSBL, MTA-STS): "ip", "ip:port" or "[ipv6]:port"; ' +
      '[] = the system resolvers',
  ),
  spool_dir: z.string().min(1).default('/var/mail').describe('one mbox file per user: spool_dir/<user>'),
  state_dir: z.string().min(1).default('/var/lib/mailsrv').describe('queue, indexes and pid file'),
  users_file: z.string().min(1).default('/etc/mailsrv/users').describe('passwd-file: name:{SCHEME}hash'),
  aliases_file: z.string().min(1).default('/etc/mailsrv/aliases').describe('/etc/aliases syntax'),
  accounts: z
    .enum(['file', 'system'])
    .default('file')
    .describe('who gets mail and logs in: "file" = users_file; "system" = the Unix accounts (NSS, PAM)'),
  system_min_uid: z
    .number()
    .int()
    .min(1)
    .default(1000)
    .describe('accounts = "system": accounts with a uid below this get no mail and cannot log in'),
  pam_service: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]*$/, { message: 'expected a PAM service name such as "mailsrv"' })
    .default('mailsrv')
    .describe('accounts = "system": the PAM service passwords are checked with (/etc/pam.d/<name>)'),
  mynetworks: networkList().default(['127.0.0.0/8', '::1/128']).describe('clients that may relay without AUTH'),
  plaintext_auth_networks: networkList()
    .default(['127.0.0.0/8', '::1/128'])
    .describe('clients that may log in without TLS'),
  proxy_protocol_networks: networkList()
    .default([])
    .describe('load balancers (HAProxy) whose connections must start with a PROXY v1 or v2 header naming the client'),
  message_size_limit: count().default(10_240_000).describe('largest message accepted, in bytes'),
  mailbox_size_limit: bytes()
    .default(51_200_000)
    .describe('largest mailbox, in bytes; 0 = unlimited; over it: 552 5.2.2 and nothing written'),
  user: systemName.default('mail').describe('privileges dropped to this user after binding, when started as root'),
  group: systemName.default('mail').describe('and to this group'),
  smtp: smtpSchema.default(() => smtpSchema.parse({})),
  pop3: pop3Schema.default(() => pop3Schema.parse({})),
  auth: authSchema.default(() => authSchema.parse({})),
  tls: tlsSchema.default(() => tlsSchema.parse({})),
  acme: acmeSchema.default(() => acmeSchema.parse({})),
  dkim: dkimSchema.default(() => dkimSchema.parse({})),
  autoconfig: autoconfigSchema.default(() => autoconfigSchema.parse({})),
  relay: relaySchema.default(() => relaySchema.parse({})),
  delivery: deliverySchema.default(() => deliverySchema.parse({})),
  metrics: metricsSchema.default(() => metricsSchema.parse({})),
  checks: checksSchema.default(() => checksSchema.parse({})),
  log: logSchema.default(() => logSchema.parse({})),
});

/** The schema with the rules that tie keys together (a problem names the key to fix). */
const checkedSchema = fullSchema.superRefine((config, ctx) => {
  const tlsListeners = { 'smtp.smtps': config.smtp.smtps, 'pop3.pop3s': config.pop3.pop3s };
  for (const [key, addresses] of Object.entries(tlsListeners)) {
    if (addresses.length > 0 && config.tls.cert === '' && config.acme.directory === '') {
      ctx.addIssue({
        code: 'custom',
        path: key.split('.'),
        message: 'implicit-TLS listeners need tls.cert and tls.key, or acme.directory',
      });
    }
  }
  if (config.dns_servers.length > 0 && config.relay.dns_servers.length > 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['relay', 'dns_servers'],
      message: 'relay.dns_servers is the former name of dns_servers: set only dns_servers',
    });
  }
  if (config.acme.directory !== '' && config.acme.http_listen.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['acme', 'http_listen'], message: 'ACME (HTTP-01) needs a listener' });
  }
  checkAutoconfig(config, ctx);
  if (config.tls.cert !== '' && config.tls.key === '') {
    ctx.addIssue({ code: 'custom', path: ['tls', 'key'], message: 'a certificate (tls.cert) needs its private key' });
  }
});

/** [autoconfig]: HTTPS needs a certificate, the answer needs services to name, port 80 may be ACME's. */
function checkAutoconfig(config: z.output<typeof fullSchema>, ctx: z.RefinementCtx): void {
  const listeners = config.autoconfig.listen.map(parseHttpListen).filter((address) => address !== null);
  if (listeners.length === 0) return;
  const problem = (message: string) => ctx.addIssue({ code: 'custom', path: ['autoconfig', 'listen'], message });
  if (listeners.some((address) => address.https) && config.tls.cert === '' && config.acme.directory === '')
    problem('"https://" listeners need tls.cert and tls.key, or acme.directory');
  if (config.pop3.listen.length + config.pop3.pop3s.length === 0)
    problem('autoconfig names the POP3 ports: set pop3.listen or pop3.pop3s');
  if (config.smtp.submission.length + config.smtp.smtps.length === 0)
    problem('autoconfig names the submission ports: set smtp.submission or smtp.smtps');
  if (config.acme.directory === '') return;
  const challenges = config.acme.http_listen.map(parseListen).filter((address) => address !== null);
  if (listeners.some((address) => challenges.some((challenge) => listenersOverlap(address, challenge))))
    problem('an address here is also in acme.http_listen: serve autoconfig on another, e.g. "https://0.0.0.0:443"');
}

/** The parsed config, with the former name `relay.dns_servers` folded into `dns_servers`. */
export const configSchema = checkedSchema.transform((config) =>
  config.relay.dns_servers.length > 0 ? { ...config, dns_servers: config.relay.dns_servers } : config,
);

export type Config = z.output<typeof configSchema>;

/** Every key as a dotted path with its doc, in schema order: for `mailsrv config` and the docs test. */
export function describeKeys(): { key: string; doc: string }[] {
  const keys: { key: string; doc: string }[] = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string) => {
    for (const [name, field] of Object.entries(shape)) {
      const inner = unwrapDefault(field);
      if (inner instanceof z.ZodObject) walk(inner.shape as Record<string, z.ZodType>, `${prefix}${name}.`);
      else keys.push({ key: prefix + name, doc: field.description ?? '' });
    }
  };
  walk(fullSchema.shape as Record<string, z.ZodType>, '');
  return keys;
}

function unwrapDefault(field: z.ZodType): z.ZodType {
  return field instanceof z.ZodDefault ? (field.unwrap() as z.ZodType) : field;
}
