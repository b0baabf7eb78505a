// The daemon's listening sockets: bound at start (as root, before the privilege drop, so ports
// below 1024 work) and closed gracefully at stop.
import type { Config } from '../config/schema.js';
import { listenOptions, parseListen } from '../config/units.js';
import type { Pop3Service } from '../pop3/server.js';
import type { MailsrvSMTPServer } from '../smtp/connection.js';
import type { SmtpListener } from './components.js';

/** Binds every SMTP listener, then the POP3 ones (pop3.listen, then pop3.pop3s), in config order. */
export async function bindListeners(smtp: SmtpListener[], pop3: Pop3Service, config: Config): Promise<void> {
  for (const { service, address } of smtp) await listen(service.server, address);
  for (const address of config.pop3.listen) await pop3.listen(parseListen(address)!, { implicitTls: false });
  for (const address of config.pop3.pop3s) await pop3.listen(parseListen(address)!, { implicitTls: true });
}

/** Stops accepting on every listener and waits for the sessions to finish (see closeGracefully). */
export async function closeListeners(smtp: SmtpListener[], pop3: Pop3Service): Promise<void> {
  await Promise.all([...smtp.map(({ service }) => closeGracefully(service.server)), pop3.shutdown()]);
}

function listen(server: MailsrvSMTPServer, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.server.once('error', reject);
    server.server.listen(listenOptions(parseListen(address)!), () => {
      server.server.off('error', reject);
      resolve();
    });
  });
}

/** Stops accepting, lets messages in DATA finish, then sends 421 to everyone still connected. */
async function closeGracefully(server: MailsrvSMTPServer): Promise<void> {
  const closed = new Promise<void>((resolve) => server.server.close(() => resolve()));
  const deadline = Date.now() + 60_000;
  while (server.shutdownIdleSessions() > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  for (const connection of server.connections) connection.close();
  await closed;
}
