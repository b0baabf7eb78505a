// A raw SMTP client for tests (exact bytes out, replies parsed), and whole transactions and
// dialogues built on it; AUTH PLAIN's initial response.
import type { Socket } from 'node:net';
import { DOMAIN, PASSWORD } from './constants.js';
import type { Daemon } from './daemon.js';
import type { TestEnv } from './env.js';
import { LineClient } from './line-client.js';
import { type ConnectOptions, connectSocket } from './net.js';

export interface Reply {
  code: number;
  /** the text of each line after "ddd-" / "ddd " */
  lines: string[];
  /** every line joined with "\n", codes included */
  raw: string;
}

/**
 * A deliberately dumb SMTP client over a raw socket: writes exactly the bytes it is given
 * and parses replies (multi-line aware), so tests control dot-stuffing, pipelining and line ends.
 */
export class SmtpClient extends LineClient {
  private readonly replies: Reply[] = [];
  private pending: Reply | null = null;

  private constructor(socket: Socket, timeoutMs: number) {
    super(socket, timeoutMs);
  }

  /** Connects and reads the greeting. */
  static async connect(port: number, options: ConnectOptions = {}): Promise<{ client: SmtpClient; greeting: Reply }> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const client = SmtpClient.over(await connectSocket(port, options, timeoutMs), timeoutMs);
    const greeting = await client.read();
    return { client, greeting };
  }

  /** A client over a socket already connected (a TLS session after STARTTLS, an smtps connection). */
  static over(socket: Socket, timeoutMs = 10_000): SmtpClient {
    return new SmtpClient(socket, timeoutMs);
  }

  protected onLine(line: string): void {
    const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
    if (!m) {
      this.replies.push({ code: 0, lines: [line], raw: line });
      return;
    }
    const reply = this.pending ?? { code: Number(m[1]), lines: [], raw: '' };
    reply.lines.push(m[3]!);
    reply.raw += (reply.raw ? '\n' : '') + line;
    if (m[2] === '-') {
      this.pending = reply;
    } else {
      this.pending = null;
      this.replies.push(reply);
    }
  }

  /** Replies received and not read yet. */
  get unread(): number {
    return this.replies.length;
  }

  /** The next reply; rejects on timeout or if the server closes first. */
  read(timeoutMs = this.timeoutMs): Promise<Reply> {
    return this.waitFor(() => this.replies.shift(), timeoutMs, 'SMTP reply');
  }

  /** Reads `n` replies in order. */
  async readN(n: number, timeoutMs = this.timeoutMs): Promise<Reply[]> {
    const out: Reply[] = [];
    for (let i = 0; i < n; i++) out.push(await this.read(timeoutMs));
    return out;
  }

  /** Sends one command line (CRLF added) and reads its reply. */
  async cmd(line: string, timeoutMs = this.timeoutMs): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  /** Sends the message (dot-stuffed here unless `stuffed`) and the final CRLF.CRLF; returns the reply. */
  async data(message: Buffer | string, options: { stuffed?: boolean } = {}): Promise<Reply> {
    const body = typeof message === 'string' ? Buffer.from(message, 'latin1') : message;
    const wire = options.stuffed ? body : dotStuff(body);
    this.write(wire);
    const endsWithCrlf = wire.length >= 2 && wire[wire.length - 2] === 0x0d && wire[wire.length - 1] === 0x0a;
    this.write(endsWithCrlf ? '.\r\n' : '\r\n.\r\n');
    return this.read();
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      try {
        await this.cmd('QUIT', 3000);
      } catch {
        /* closing anyway */
      }
    }
    this.socket.destroy();
  }
}

/** RFC 5321 4.5.2: a line starting with "." gets one more "." (only after CRLF or at the start). */
export function dotStuff(message: Buffer): Buffer {
  const text = message.toString('latin1');
  return Buffer.from(text.replace(/(^|\r\n)\./g, '$1..'), 'latin1');
}

export interface Transaction {
  helo?: string;
  from: string;
  mailParams?: string;
  to: string[];
  message: Buffer | string;
  stuffed?: boolean;
  localAddress?: string;
}

export interface TransactionResult {
  greeting: Reply;
  ehlo: Reply;
  mail: Reply;
  rcpt: Reply[];
  data: Reply | null;
  end: Reply | null;
  queueId: string | null;
}

/** One complete transaction, step by step, over a raw socket; stops at the first refused step. */
export async function sendRaw(port: number, t: Transaction): Promise<TransactionResult> {
  const { client, greeting } = await SmtpClient.connect(port, t.localAddress ? { localAddress: t.localAddress } : {});
  try {
    const ehlo = await client.cmd(`EHLO ${t.helo ?? 'client.test'}`);
    const mail = await client.cmd(`MAIL FROM:<${t.from}>${t.mailParams ? ` ${t.mailParams}` : ''}`);
    const rcpt: Reply[] = [];
    let data: Reply | null = null;
    let end: Reply | null = null;
    if (mail.code === 250) {
      for (const to of t.to) rcpt.push(await client.cmd(`RCPT TO:<${to}>`));
      if (rcpt.some((r) => r.code === 250)) {
        data = await client.cmd('DATA');
        if (data.code === 354) end = await client.data(t.message, t.stuffed ? { stuffed: true } : {});
      }
    }
    return { greeting, ehlo, mail, rcpt, data, end, queueId: end ? queueIdOf(end) : null };
  } finally {
    await client.quit();
  }
}

/** Runs a list of command lines on a fresh connection: greeting + one reply per line. */
export async function smtpDialog(port: number, lines: string[], options: ConnectOptions = {}): Promise<Reply[]> {
  const { client, greeting } = await SmtpClient.connect(port, options);
  try {
    const replies = [greeting];
    for (const line of lines) replies.push(await client.cmd(line));
    return replies;
  } finally {
    await client.quit();
  }
}

/** The queue id named by `250 2.0.0 Ok: queued as ID`, or null. */
export function queueIdOf(reply: Reply | string | null | undefined): string | null {
  if (!reply) return null;
  const text = typeof reply === 'string' ? reply : reply.raw;
  return /queued as (\S+)/.exec(text)?.[1] ?? null;
}

/** Delivers one message to a local user over SMTP and waits until it is in the mailbox; returns the queue id. */
export async function deliverOverSmtp(
  daemon: Daemon,
  env: TestEnv,
  user: string,
  message: string | Buffer,
): Promise<string> {
  const result = await sendRaw(env.port, { from: 'sender@client.test', to: [`${user}@${DOMAIN}`], message });
  if (result.queueId === null)
    throw new Error(`SMTP refused the message: ${JSON.stringify(result.end ?? result.rcpt)}`);
  const queueId = result.queueId;
  await daemon.waitForLog(
    (e) => e.msg === 'delivered' && e.queueId === queueId && e.user === user,
    10_000,
    `delivered ${queueId} to ${user}`,
  );
  return queueId;
}

/** The base64 initial response of AUTH PLAIN (RFC 4616: authzid NUL authcid NUL password). */
export function authPlain(user: string, password = PASSWORD, authzid = ''): string {
  return Buffer.from(`${authzid}\0${user}\0${password}`, 'utf8').toString('base64');
}
