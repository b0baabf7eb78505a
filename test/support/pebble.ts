// Debian's pebble (the ACME test server) on loopback for tests: its own HTTPS certificate is
// made here (clients trust it through `caFile`), its DNS questions go to the test's DNS server,
// and it validates HTTP-01 challenges for real by connecting to `httpPort` of the address the
// name resolves to. It issues from a CA it makes at each start; `intermediates()` fetches that
// CA's certificates from its management port. Killed when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import selfsigned from 'selfsigned';
import { freePort } from '../e2e/harness/net.js';
import { withTimeout } from './wait.js';

const PEBBLE_BIN = '/usr/bin/pebble';

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface PebbleOptions {
  /** where the config and certificate files go */
  dir: string;
  /** "127.0.0.1:PORT" of the DNS server that resolves the names to validate */
  dnsServer: string;
  /** the port pebble connects to for HTTP-01 (our acme.http_listen) */
  httpPort: number;
}

/** The CA and key of pebble's own HTTPS (for localhost and 127.0.0.1), made once per test process. */
let httpsCertificate: Promise<{ cert: string; private: string }> | undefined;

export class Pebble {
  /** pebble's stdout and stderr */
  output = '';
  private exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    /** pebble's ACME port (its directory is https://127.0.0.1:PORT/dir) */
    readonly port: number,
    readonly caFile: string,
    private readonly ca: string,
    private readonly managementPort: number,
  ) {
    running.add(child);
    const collect = (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    this.exited = new Promise((resolve) =>
      child.once('close', () => {
        running.delete(child);
        resolve();
      }),
    );
  }

  /** Starts pebble and resolves once its directory answers. */
  static async start(options: PebbleOptions): Promise<Pebble> {
    httpsCertificate ??= selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'extKeyUsage', serverAuth: true },
        {
          name: 'subjectAltName',
          altNames: [
            { type: 2, value: 'localhost' },
            { type: 7, ip: '127.0.0.1' },
          ],
        },
      ],
    });
    const { cert, private: key } = await httpsCertificate;
    const caFile = join(options.dir, 'pebble-https.pem');
    const keyFile = join(options.dir, 'pebble-https.key');
    const configFile = join(options.dir, 'pebble.json');
    await writeFile(caFile, cert);
    await writeFile(keyFile, key);
    const port = await freePort();
    const managementPort = await freePort();
    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: caFile,
        privateKey: keyFile,
        httpPort: options.httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    };
    await writeFile(configFile, JSON.stringify(config));
    const child = spawn(PEBBLE_BIN, ['-config', configFile, '-dnsserver', options.dnsServer], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // no random pause before validating; never reject a good nonce
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' },
    });
    const pebble = new Pebble(child, port, caFile, cert, managementPort);
    await withTimeout(
      pebble.waitFor(/Listening on: 127\.0\.0\.1:\d+/),
      15_000,
      `pebble did not start:\n${pebble.output}`,
    );
    return pebble;
  }

  /** How many orders pebble has taken (it logs each one). */
  get orders(): number {
    return this.output.match(/Added order "/g)?.length ?? 0;
  }

  get directory(): string {
    return `https://127.0.0.1:${this.port}/dir`;
  }

  /** The certificate of the CA pebble issues from (it makes a new one at each start). */
  async intermediate(): Promise<X509Certificate> {
    return new X509Certificate(await this.management('/intermediates/0'));
  }

  /** The root above it (PEM), for clients that verify what pebble issued. */
  root(): Promise<string> {
    return this.management('/roots/0');
  }

  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    await this.exited;
  }

  private waitFor(pattern: RegExp): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pattern.test(this.output)) {
          this.child.stdout!.off('data', check);
          resolve();
        }
      };
      this.child.stdout!.on('data', check);
      this.child.once('close', () => reject(new Error(`pebble exited:\n${this.output}`)));
      check();
    });
  }

  private management(path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: this.managementPort, path, ca: this.ca }, (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          body += chunk;
        });
        response.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
  }
}
