// A raw POP3 client for tests (every line as latin1, byte for byte), and what RETR must send
// for a message of an mbox file.
import type { Socket } from 'node:net';
import { PASSWORD } from './constants.js';
import { LineClient } from './line-client.js';
import { readMailbox } from './mbox-reader.js';
import { type ConnectOptions, connectSocket } from './net.js';

export interface Pop3MultiReply {
  /** the status line (`+OK ...` / `-ERR ...`) */
  status: string;
  /** the lines of a multi-line reply, dot-unstuffed, without the terminator (empty for -ERR) */
  lines: string[];
}

/**
 * A deliberately dumb POP3 client over a raw socket: every line is read as latin1 (one char =
 * one byte), so message bodies can be compared byte for byte; nothing is hidden (pipelining,
 * raw writes, dropping the connection are up to the test).
 */
export class Pop3Client extends LineClient {
  private readonly lines: string[] = [];

  private constructor(socket: Socket, timeoutMs: number) {
    super(socket, timeoutMs);
  }

  /** Connects and reads the greeting line. */
  static async connect(port: number, options: ConnectOptions = {}): Promise<{ client: Pop3Client; greeting: string }> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const client = Pop3Client.over(await connectSocket(port, options, timeoutMs), timeoutMs);
    return { client, greeting: await client.readLine() };
  }

  /** A client over a socket already connected (a TLS session after STLS, a pop3s connection). */
  static over(socket: Socket, timeoutMs = 10_000): Pop3Client {
    return new Pop3Client(socket, timeoutMs);
  }

  protected onLine(line: string): void {
    this.lines.push(line);
  }

  /** Connects and logs in with USER/PASS; throws unless both get +OK. */
  static async login(
    port: number,
    user: string,
    password = PASSWORD,
    options: ConnectOptions = {},
  ): Promise<Pop3Client> {
    const { client } = await Pop3Client.connect(port, options);
    const userReply = await client.cmd(`USER ${user}`);
    const passReply = await client.cmd(`PASS ${password}`);
    if (!userReply.startsWith('+OK') || !passReply.startsWith('+OK')) {
      client.destroy();
      throw new Error(`POP3 login as ${user} failed: ${userReply} / ${passReply}`);
    }
    return client;
  }

  /** Lines received and not read yet. */
  get unread(): number {
    return this.lines.length;
  }

  /** The next line (without CRLF); rejects on timeout or when the server closes first. */
  readLine(timeoutMs = this.timeoutMs): Promise<string> {
    return this.waitFor(() => this.lines.shift(), timeoutMs, 'POP3 line');
  }

  /** Sends one command (CRLF added) and reads its one-line reply. */
  async cmd(line: string, timeoutMs = this.timeoutMs): Promise<string> {
    this.write(`${line}\r\n`);
    return this.readLine(timeoutMs);
  }

  /** Reads a reply that is multi-line when it starts with +OK. */
  async readMulti(timeoutMs = this.timeoutMs): Promise<Pop3MultiReply> {
    const status = await this.readLine(timeoutMs);
    const lines: string[] = [];
    if (!status.startsWith('+OK')) return { status, lines };
    for (;;) {
      const line = await this.readLine(timeoutMs);
      if (line === '.') return { status, lines };
      lines.push(line.startsWith('.') ? line.slice(1) : line);
    }
  }

  /** Sends a command whose +OK reply is multi-line (CAPA, LIST, UIDL, RETR, TOP). */
  async multi(line: string, timeoutMs = this.timeoutMs): Promise<Pop3MultiReply> {
    this.write(`${line}\r\n`);
    return this.readMulti(timeoutMs);
  }

  /** RETR or TOP: the message bytes as the client gets them (unstuffed lines, each + CRLF). */
  async message(command: string, timeoutMs = this.timeoutMs): Promise<{ status: string; body: Buffer }> {
    const { status, lines } = await this.multi(command, timeoutMs);
    return { status, body: Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1') };
  }

  /** `UIDL` as a map from message number to uid. */
  async uidls(): Promise<Map<number, string>> {
    const { status, lines } = await this.multi('UIDL');
    if (!status.startsWith('+OK')) throw new Error(`UIDL failed: ${status}`);
    return new Map(lines.map((l) => [Number(l.split(' ')[0]), l.split(' ')[1]!]));
  }

  /** `LIST` as a map from message number to size. */
  async sizes(): Promise<Map<number, number>> {
    const { status, lines } = await this.multi('LIST');
    if (!status.startsWith('+OK')) throw new Error(`LIST failed: ${status}`);
    return new Map(lines.map((l) => [Number(l.split(' ')[0]), Number(l.split(' ')[1])]));
  }

  /** QUIT and its reply; the connection is closed afterwards. */
  async quit(): Promise<string> {
    try {
      return await this.cmd('QUIT');
    } finally {
      this.socket.end();
    }
  }
}

/**
 * What POP3 RETR must send for message `n` (1-based) of an mbox file, computed from the file with
 * parseMbox (independent of src/): CRLF line ends, one `>` removed from `^>+From ` lines.
 */
export function pop3Wire(path: string, n: number): Buffer {
  const message = readMailbox(path).messages[n - 1];
  if (message === undefined) throw new Error(`${path} has no message ${n}`);
  const body = message.body.toString('latin1');
  return Buffer.from(body.replace(/^>(>*From )/gm, '$1').replace(/\n/g, '\r\n'), 'latin1');
}
