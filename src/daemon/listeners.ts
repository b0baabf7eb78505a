// The daemon's listening sockets: bound at start (as root, before the privilege drop, so ports
// below 1024 work) and closed gracefully at stop.
import type { AutoconfigServer } from '../autoconfig/server.js';
import type { Config } from '../config/schema.js';
import { listenOptions, parseHttpListen, parseListen } from '../config/units.js';
import type { Pop3Service } from '../pop3/server.js';
import type { MailsrvSMTPServer } from '../smtp/connection.js';
import type { SmtpService } from '../smtp/server.js';
import type { SmtpListener } from './components.js';

/**
 * Binds every SMTP listener, then the POP3 ones (pop3.listen, then pop3.pop3s), then the
 * autoconfig ones, in config order.
 */
export async function bindListeners(
  smtp: SmtpListener[],
  pop3: Pop3Service,
  autoconfig: AutoconfigServer,
  config: Config,
): Promise<void> {
  for (const { service, address } of smtp) await listen(service.server, address);
  for (const address of config.pop3.listen) await pop3.listen(parseListen(address)!, { implicitTls: false });
  for (const address of config.pop3.pop3s) await pop3.listen(parseListen(address)!, { implicitTls: true });
  for (const address of config.autoconfig.listen) await autoconfig.listen(parseHttpListen(address)!);
}

/**
 * Stops accepting on every listener and waits for the mail sessions to finish (see
 * closeGracefully); autoconfig requests in progress are cut.
 */
export async function closeListeners(
  smtp: SmtpListener[],
  pop3: Pop3Service,
  autoconfig: AutoconfigServer,
): Promise<void> {
  await Promise.all([...smtp.map(({ service }) => closeGracefully(service)), pop3.shutdown(), autoconfig.close()]);
}

/** How long a client receiving a message at the stop may send nothing before it gets 421. */
const STOP_DATA_QUIET_MS = 3000;
/**
 * How long the stop waits for messages being received; then every client still sending gets
 * 421. With smtp-server's 5 s limit on a half-closed connection, a stop ends within 10 s.
 */
const STOP_GRACE_MS = 4000;
/** How often the stop looks at the sessions still receiving. */
const STOP_POLL_MS = 100;

function listen(server: MailsrvSMTPServer, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.server.once('error', reject);
    server.server.listen(listenOptions(parseListen(address)!), () => {
      server.server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Stops accepting and sends 421 to every idle session. Clients in DATA may finish their
 * message while they keep sending, for STOP_GRACE_MS at most; one that pauses for
 * STOP_DATA_QUIET_MS, or still sends at the end, gets 421 (its message was never accepted, so
 * nothing is lost). A message whose DATA is complete keeps its connection until its reply.
 */
async function closeGracefully(service: SmtpService): Promise<void> {
  const { server } = service;
  const closed = new Promise<void>((resolve) => server.server.close(() => resolve()));
  const deadline = Date.now() + STOP_GRACE_MS;
  while (service.shutdownSessions(Date.now() < deadline ? STOP_DATA_QUIET_MS : 0) > 0) {
    await new Promise((resolve) => setTimeout(resolve, STOP_POLL_MS));
  }
  await closed;
}
