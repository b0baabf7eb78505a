// `mailsrv check`: can the daemon bind its listen addresses? Each is bound for a moment and
// let go. A port held by another program (Postfix or exim on 25, Dovecot on 110) or an address
// this host does not have is an error; a port held by the running mailsrv of this config is fine.
import { createServer } from 'node:net';
import type { Config } from '../config/schema.js';
import { listenOptions, parseHttpListen } from '../config/units.js';
import { statePaths } from '../paths.js';
import { runningPid } from '../pid-file.js';

/** Every listen key the daemon binds, with its addresses. */
function listenKeys(config: Config): [key: string, addresses: string[]][] {
  return [
    ['smtp.listen', config.smtp.listen],
    ['smtp.submission', config.smtp.submission],
    ['smtp.smtps', config.smtp.smtps],
    ['pop3.listen', config.pop3.listen],
    ['pop3.pop3s', config.pop3.pop3s],
    ['metrics.listen', config.metrics.listen],
    ['acme.http_listen', config.acme.directory === '' ? [] : config.acme.http_listen],
    ['autoconfig.listen', config.autoconfig.listen],
  ];
}

/** The problems, one a line naming the key; [] when every address can be bound (or is ours). */
export async function checkListenPorts(config: Config): Promise<string[]> {
  const ownDaemon = await runningPid(statePaths(config.state_dir).pidFile);
  const problems: string[] = [];
  for (const [key, addresses] of listenKeys(config)) {
    for (const address of addresses) {
      const listen = parseHttpListen(address);
      if (listen === null) continue; // the schema reports it
      const code = await bindError(listenOptions(listen));
      if (code === 'EADDRINUSE' && ownDaemon === null) {
        problems.push(
          `key '${key}': ${address} is in use by another program (Postfix, exim, Dovecot?): ` +
            `see \`ss -ltnp 'sport = :${listen.port}'\`, stop it or choose another address`,
        );
      } else if (code === 'EADDRNOTAVAIL') {
        problems.push(`key '${key}': ${address}: this host has no such address`);
      }
    }
  }
  return problems;
}

/** The error code binding the address gives (null when it can be bound); EACCES is left to `start` as root. */
function bindError(options: { host: string; port: number; ipv6Only: boolean }): Promise<string | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    server.listen({ ...options, exclusive: true }, () => server.close(() => resolve(null)));
  });
}
