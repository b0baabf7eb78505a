// TLS for the test clients: a handshake that verifies the test certificate, STARTTLS and STLS
// on a plaintext connection, and connections to the implicit-TLS ports (smtps, pop3s).
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { withTimeout } from '../../support/wait.js';
import { HOSTNAME } from './constants.js';
import { type ConnectOptions, connectSocket } from './net.js';
import { Pop3Client } from './pop3-client.js';
import { type Reply, SmtpClient } from './smtp-client.js';

/** A TLS handshake on `socket` that verifies the server's certificate for HOSTNAME against `ca`. */
export async function tlsHandshake(socket: Socket, ca: string, timeoutMs = 10_000): Promise<TLSSocket> {
  const secure = tlsConnect({ socket, ca, servername: HOSTNAME });
  await withTimeout(
    new Promise<void>((resolveHandshake, reject) => {
      secure.once('error', reject);
      secure.once('secureConnect', () => {
        secure.off('error', reject);
        resolveHandshake();
      });
    }),
    timeoutMs,
    'TLS handshake did not complete',
  );
  return secure;
}

/**
 * Continues `client` over TLS once the server has said 220 to STARTTLS: the returned client
 * speaks over the TLS session, `client` is spent.
 */
export async function continueOverTls(client: SmtpClient, ca: string): Promise<SmtpClient> {
  return SmtpClient.over(await tlsHandshake(client.socket, ca, client.timeoutMs), client.timeoutMs);
}

/** STARTTLS (after EHLO) and the TLS handshake; throws unless the server says 220. */
export async function startTls(client: SmtpClient, ca: string): Promise<SmtpClient> {
  const reply = await client.cmd('STARTTLS');
  if (reply.code !== 220) throw new Error(`STARTTLS refused: ${reply.raw}`);
  return continueOverTls(client, ca);
}

/** Connects to an implicit-TLS port (smtps) and reads the greeting. */
export async function connectSmtpTls(
  port: number,
  ca: string,
  options: ConnectOptions = {},
): Promise<{ client: SmtpClient; greeting: Reply }> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const client = SmtpClient.over(
    await tlsHandshake(await connectSocket(port, options, timeoutMs), ca, timeoutMs),
    timeoutMs,
  );
  return { client, greeting: await client.read() };
}

/**
 * Continues `client` over TLS once the server has said +OK to STLS (verifying the certificate for
 * HOSTNAME against `ca`): the returned client speaks over the TLS session, `client` is spent.
 */
export async function pop3ContinueOverTls(client: Pop3Client, ca: string): Promise<Pop3Client> {
  return Pop3Client.over(await tlsHandshake(client.socket, ca, client.timeoutMs), client.timeoutMs);
}

/** STLS and the TLS handshake; throws unless the server says +OK. */
export async function pop3Stls(client: Pop3Client, ca: string): Promise<Pop3Client> {
  const reply = await client.cmd('STLS');
  if (!reply.startsWith('+OK')) throw new Error(`STLS refused: ${reply}`);
  return pop3ContinueOverTls(client, ca);
}

/** Connects to an implicit-TLS port (pop3s) and reads the greeting; `socket` shows the certificate. */
export async function connectPop3s(
  port: number,
  ca: string,
  options: ConnectOptions = {},
): Promise<{ client: Pop3Client; greeting: string; socket: TLSSocket }> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const socket = await tlsHandshake(await connectSocket(port, options, timeoutMs), ca, timeoutMs);
  const client = Pop3Client.over(socket, timeoutMs);
  return { client, greeting: await client.readLine(), socket };
}
