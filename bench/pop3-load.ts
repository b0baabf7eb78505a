// The POP3 load: a client that pipelines (RFC 2449) over a raw socket, the mailbox generator,
// and the operations the scenarios time: connect+login+STAT, RETR of every message with K
// commands in flight, and DELE 1 + QUIT. Nothing here knows which server it talks to.
import { existsSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { dirname } from 'node:path';

// ------------------------------------------------------------------ the client

const CRLF = Buffer.from('\r\n', 'latin1');
/** end of a multi-line reply: the CRLF of its last line (or of the status line), ".", CRLF */
const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
const MAX_STATUS = 64 * 1024;
/** one read(2) from the server at most */
const READ_BYTES = 256 * 1024;

export interface Reply {
  ok: boolean;
  /** the status line without CRLF */
  status: string;
  /** octets of the whole reply: status line, body, terminator */
  bytes: number;
}

/** Called with a command's whole reply, or with the error that ended the session. */
type OnReply = (err: Error | null, reply: Reply | null) => void;

interface Pending {
  multi: boolean;
  head: Buffer | null;
  status: string | null;
  bytes: number;
  /** the last up to 4 bytes scanned, to find a terminator split across chunks */
  tail: Buffer;
  done: OnReply;
}

/**
 * A minimal POP3 client. Commands may be pipelined: replies are matched to them in order. A
 * multi-line reply is never split into lines or kept: each chunk is searched for CRLF.CRLF
 * (with the last 4 bytes of the previous chunk) and counted. The client's own cost per command
 * is kept small, as it is part of every figure: commands sent in one tick go out as one string
 * in one write, and a caller that pipelines many (retrieveAll) takes its replies by callback,
 * without a promise per command.
 */
export class Pop3Client {
  private readonly pending: Pending[] = [];
  private failure: Error | null = null;
  /** one watchdog per client (not a timer per command: the client's own cost is part of every figure) */
  private readonly watchdog: NodeJS.Timeout;
  /** when the oldest waiting command was sent, or its predecessor's reply completed */
  private waitingSince = 0;
  /** commands written in this tick, sent together at its end */
  private outgoing = '';

  private constructor(
    private readonly socket: Socket,
    readonly label: string,
    private readonly timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    this.watchdog = setInterval(
      () => {
        if (this.pending.length > 0 && performance.now() - this.waitingSince > this.timeoutMs)
          this.fail(new Error(`${label}: no reply within ${this.timeoutMs} ms`));
      },
      Math.min(1000, this.timeoutMs),
    );
    this.watchdog.unref();
    socket.on('error', (err) => this.fail(new Error(`${label}: ${err.message}`)));
    socket.on('close', () => this.fail(new Error(`${label}: connection closed by the server`)));
  }

  /** Connects and reads the greeting. */
  static async open(host: string, port: number, label: string, timeoutMs = 300_000): Promise<Pop3Client> {
    // replies are read into one reused buffer (no allocation per read), scanned, and let go
    const buffer = Buffer.allocUnsafe(READ_BYTES);
    const socket = createConnection({
      host,
      port,
      onread: {
        buffer,
        callback: (bytes) => {
          client.feed(buffer.subarray(0, bytes));
          return true;
        },
      },
    });
    const client = new Pop3Client(socket, label, timeoutMs);
    const greeting = await client.send(null);
    if (!greeting.ok) {
      client.close();
      throw new Error(`${label}: greeting ${greeting.status}`);
    }
    return client;
  }

  /** Sends a command (null: none, just read a reply) and resolves its whole reply. Calls may overlap. */
  send(line: string | null, multi = false): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) =>
      this.command(line, multi, (err, reply) => (err ? reject(err) : resolve(reply!))),
    );
  }

  /** send() with a callback: `done` gets the whole reply (or the session's failure). */
  command(line: string | null, multi: boolean, done: OnReply): void {
    if (this.failure) {
      done(this.failure, null);
      return;
    }
    this.pending.push({ multi, head: null, status: null, bytes: 0, tail: EMPTY, done });
    if (this.pending.length === 1) this.waitingSince = performance.now();
    if (line === null) return;
    if (this.outgoing === '') process.nextTick(this.flush);
    this.outgoing += `${line}\r\n`;
  }

  private readonly flush = (): void => {
    const text = this.outgoing;
    this.outgoing = '';
    if (this.failure === null) this.socket.write(text);
  };

  /** A command whose reply must be +OK. */
  async ok(line: string, multi = false): Promise<Reply> {
    const reply = await this.send(line, multi);
    if (!reply.ok) throw new Error(`${this.label}: ${line.startsWith('PASS ') ? 'PASS' : line} → ${reply.status}`);
    return reply;
  }

  async quit(): Promise<Reply> {
    const reply = await this.ok('QUIT');
    this.close();
    return reply;
  }

  close(): void {
    this.failure ??= new Error(`${this.label}: closed`);
    clearInterval(this.watchdog);
    this.socket.destroy();
  }

  private feed(input: Buffer): void {
    let chunk = input;
    while (chunk.length > 0) {
      const p = this.pending[0];
      if (!p) {
        this.fail(new Error(`${this.label}: ${chunk.length} unexpected bytes from the server`));
        return;
      }
      if (p.status === null) {
        const buf = p.head ? Buffer.concat([p.head, chunk]) : chunk;
        const eol = buf.indexOf(CRLF);
        if (eol < 0) {
          if (buf.length > MAX_STATUS) {
            this.fail(new Error(`${this.label}: status line longer than ${MAX_STATUS} bytes`));
            return;
          }
          // a copy: the read buffer is reused
          p.head = Buffer.from(buf);
          return;
        }
        p.head = null;
        p.status = buf.toString('latin1', 0, eol);
        if (!p.multi || !p.status.startsWith('+OK')) {
          p.bytes = eol + 2;
          chunk = buf.subarray(eol + 2);
          this.complete();
          continue;
        }
        // the terminator's first CRLF may be the status line's own (an empty listing)
        p.bytes = eol;
        chunk = buf.subarray(eol);
      }
      let end = -1;
      if (p.tail.length > 0) {
        const joint = Buffer.concat([p.tail, chunk.subarray(0, TERMINATOR.length - 1)]);
        const at = joint.indexOf(TERMINATOR);
        if (at >= 0) end = at + TERMINATOR.length - p.tail.length;
      }
      if (end < 0) {
        const at = chunk.indexOf(TERMINATOR);
        if (at >= 0) end = at + TERMINATOR.length;
      }
      if (end < 0) {
        p.bytes += chunk.length;
        const keep = TERMINATOR.length - 1;
        p.tail = Buffer.from(
          chunk.length >= keep ? chunk.subarray(chunk.length - keep) : Buffer.concat([p.tail, chunk]).subarray(-keep),
        );
        return;
      }
      p.bytes += end;
      chunk = chunk.subarray(end);
      this.complete();
    }
  }

  private complete(): void {
    const p = this.pending.shift()!;
    this.waitingSince = performance.now();
    p.done(null, { ok: p.status!.startsWith('+OK'), status: p.status!, bytes: p.bytes });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    clearInterval(this.watchdog);
    this.socket.destroy();
    for (const p of this.pending.splice(0)) p.done(err, null);
  }
}

// ------------------------------------------------------------------ the operations

const ms = (from: number) => performance.now() - from;

/** Connect, USER, PASS, STAT. Returns the open session, the ms until STAT's reply, and STAT's figures. */
export async function loginStat(host: string, port: number, user: string, pass: string) {
  const started = performance.now();
  const client = await Pop3Client.open(host, port, `${user}@${host}:${port}`);
  await client.ok(`USER ${user}`);
  await client.ok(`PASS ${pass}`);
  const stat = await client.ok('STAT');
  const elapsed = ms(started);
  const m = /^\+OK (\d+) (\d+)/.exec(stat.status);
  if (!m) throw new Error(`${client.label}: STAT → ${stat.status}`);
  return { client, ms: elapsed, count: Number(m[1]), octets: Number(m[2]) };
}

/**
 * RETR 1..count with `inflight` commands outstanding at any time (1: one at a time).
 * Returns the octets received, the seconds, and each RETR's ms from send to its last byte.
 */
export function retrieveAll(client: Pop3Client, count: number, inflight: number) {
  const latencies = new Float64Array(count);
  const sentAt = new Float64Array(count);
  let bytes = 0;
  let next = 1;
  let received = 0;
  const started = performance.now();
  return new Promise<{ bytes: number; seconds: number; latencies: Float64Array }>((resolve, reject) => {
    const send = () => {
      const n = next++;
      sentAt[n - 1] = performance.now();
      client.command(`RETR ${n}`, true, (err, reply) => {
        if (err) return reject(err);
        if (!reply!.ok) return reject(new Error(`${client.label}: RETR ${n} → ${reply!.status}`));
        latencies[n - 1] = performance.now() - sentAt[n - 1]!;
        bytes += reply!.bytes;
        if (++received === count) resolve({ bytes, seconds: ms(started) / 1000, latencies });
        else if (next <= count) send();
      });
    };
    if (count === 0) resolve({ bytes, seconds: 0, latencies });
    for (let i = 0; i < Math.min(inflight, count); i++) send();
  });
}

/**
 * DELE 1 and QUIT on an open session: the ms until QUIT's reply, and until a next session's STAT
 * answers (it waits for the update's lock: a server may answer QUIT before its rewrite ends).
 */
export async function deleteFirstAndQuit(
  client: Pop3Client,
  next: { host: string; port: number; user: string; pass: string },
): Promise<{ quitMs: number; nextStatMs: number }> {
  const started = performance.now();
  await client.ok('DELE 1');
  await client.quit();
  const quitMs = ms(started);
  const after = await loginStat(next.host, next.port, next.user, next.pass);
  const nextStatMs = ms(started);
  await after.client.quit();
  return { quitMs, nextStatMs };
}

// ------------------------------------------------------------------ the mailboxes

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ';
/** body lines on disk: 70 characters + LF (72 octets on the wire, with CRLF) */
const LINE_CHARS = 70;
const WRITE_BATCH = 4 * 1024 * 1024;
const FROM_LINE = Buffer.from('From bench@load.test Thu Jan  1 00:00:00 2026\n', 'latin1');
const BASE_DATE = Date.UTC(2026, 0, 1);

/** `lines` body lines of 70 characters and LF, none starting with "From ", "." or ">". */
function bodyLines(lines: number): Buffer {
  const thrice = ALPHABET.repeat(3);
  let text = '';
  for (let i = 0; i < lines; i++) {
    const k = i % ALPHABET.length;
    text += `${thrice.slice(k, k + LINE_CHARS)}\n`;
  }
  return Buffer.from(text, 'latin1');
}

/**
 * Writes an mboxrd mailbox of `count` messages whose RETR size (CRLF line ends) is exactly
 * `octets` each, in batches (memory stays at one batch whatever the size), to a temp name
 * renamed into place. Returns the bytes written.
 */
export async function writeMbox(path: string, count: number, octets: number): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  const maxLines = Math.ceil(octets / (LINE_CHARS + 2)) + 1;
  const lines = bodyLines(maxLines);
  const last = Buffer.from(ALPHABET.repeat(2).slice(0, LINE_CHARS + 2), 'latin1');
  const LF = Buffer.from('\n', 'latin1');
  const temp = `${path}.${process.pid}.tmp`;
  const file = await open(temp, 'w', 0o600);
  let written = 0;
  try {
    let batch: Buffer[] = [];
    let batched = 0;
    for (let n = 1; n <= count; n++) {
      const date = new Date(BASE_DATE + n * 1000).toUTCString().replace('GMT', '+0000');
      const header =
        `Return-Path: <bench@load.test>\n` +
        'Received: from load.test (localhost [127.0.0.1]) by bench.test ' +
        `with SMTP id B${count}N${n} for <user@bench.test>; ${date}\n` +
        `From: POP3 Bench <bench@load.test>\nTo: <user@bench.test>\nSubject: pop3 bench message ${n}\nDate: ${date}\n` +
        `Message-ID: <${n}.${count}x${octets}@bench.test>\n` +
        'MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n';
      const headerLines = header.split('\n').length - 1;
      // wire octets: every LF becomes CRLF
      const remaining = octets - (header.length + headerLines);
      if (remaining < 3)
        throw new Error(`message size ${octets} is too small for the headers (${header.length + headerLines} octets)`);
      const full = Math.floor((remaining - 3) / (LINE_CHARS + 2));
      const lastChars = remaining - 2 - full * (LINE_CHARS + 2); // 1..72
      for (const part of [
        FROM_LINE,
        Buffer.from(header, 'latin1'),
        lines.subarray(0, full * (LINE_CHARS + 1)),
        last.subarray(0, lastChars),
        LF,
        LF,
      ]) {
        batch.push(part);
        batched += part.length;
      }
      if (batched >= WRITE_BATCH || n === count) {
        const data = Buffer.concat(batch, batched);
        await file.write(data, 0, data.length);
        written += data.length;
        batch = [];
        batched = 0;
      }
    }
  } finally {
    await file.close();
  }
  await rename(temp, path);
  return written;
}

/** The generated mailbox of `count` × `octets`, made once and kept in `cacheDir` for later runs. */
export async function cachedMbox(cacheDir: string, count: number, octets: number): Promise<string> {
  const path = `${cacheDir}/pop3-v1-${count}x${octets}.mbox`;
  if (!existsSync(path)) await writeMbox(path, count, octets);
  return path;
}
