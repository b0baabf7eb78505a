// One POP3 connection: the socket side of a session. It reads command lines and hands them, one
// at a time and in order (pipelining, RFC 2449 §6.6), to the session's Pop3Protocol, writing
// each answer before the next line is looked at; it runs the TLS handshakes (STLS, and an
// implicit-TLS listener, RFC 8314, where the session starts over TLS), the autologout (shorter
// for a client not logged in while POP3 is under stress), the login deadline, the deadline of a
// command line (InputDeadline), the linger after the last reply and the graceful stop.
//
// Memory per session is bounded: the reader holds at most one line, the socket is paused while
// too many pipelined bytes wait, every reply waits for the socket to drain before the next
// command runs, and a message is streamed from the file, dot-stuffed, at the pace the client
// reads (one chunk at a time; a small message in one piece, retr-reply.ts).
// Replies are corked while pipelined commands are waiting, and whole RETR replies that lie next
// to each other in their buffer are joined (holdReply), so a run of small RETRs goes out in a
// few large writes; the socket is flushed whenever it holds a buffer's worth, the client has
// nothing more queued, or the session waits for the file.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { OUTPUT_BYTES } from '../mbox/retrieve.js';
import type { ConnectionLimits } from '../net/connection-limits.js';
import { InputDeadline } from '../net/input-deadline.js';
import { TLS_HANDSHAKE_TIMEOUT_MS } from '../net/tls-handshake.js';
import type { TlsCredentials } from '../tls/credentials.js';
import type { SessionContext } from './context.js';
import { LineReader } from './lines.js';
import { GREETING, type MessageResponse, Pop3Protocol, type Pop3Response } from './protocol.js';
import { TERMINATOR, WHOLE_REPLY_MAX } from './retr-reply.js';
import { acceptTls, describeTls } from './tls.js';

/** pipelined bytes a busy session holds before it stops reading the socket */
const MAX_BUFFERED = 16 * 1024;
/** multi-line listings (LIST, UIDL) are written in pieces of about this size */
const LISTING_CHUNK = 16 * 1024;
/** after our last reply, how long a client may take to close before the socket is destroyed */
const LINGER_MS = 10_000;
const SHUTDOWN_LINGER_MS = 2_000;
/**
 * how long after connecting a client may take to log in, however busy it keeps the connection;
 * then it gets an -ERR and is closed, as Dovecot's pop3-login closes an unauthenticated client
 * with "-ERR Disconnected for inactivity."
 */
const LOGIN_DEADLINE_MS = 60_000;
const LOGIN_DEADLINE_PASSED = '-ERR [SYS/TEMP] Disconnected: no login in time';
/** a command line not complete within the autologout time of its first byte (see InputDeadline) */
const COMMAND_DEADLINE_PASSED = '-ERR Autologout; command line not completed in time';

export interface Pop3ConnectionOptions {
  /** accepted by an implicit-TLS (pop3s) listener: the handshake comes before the greeting */
  implicitTls: boolean;
  /** POP3's connection limits: under stress a client not logged in has a shorter autologout */
  limits: ConnectionLimits;
  /** the client's address: the connection's peer, or the client its PROXY header named */
  client: string;
}

/** The client went away (or the server is stopping) while a reply was being written. */
class ConnectionGone extends Error {}

export class Pop3Connection {
  readonly id = randomBytes(6).toString('hex').toUpperCase();
  /** resolves once the socket is closed and the session has let go of its mailbox */
  readonly closed: Promise<void>;

  private readonly log: Logger;
  private readonly reader = new LineReader();
  private readonly client: string;
  private readonly protocol: Pop3Protocol;
  /** the stream commands come from and replies go to: the connection, or TLS over it */
  private socket: Socket;
  /**
   * waiting: before the greeting, or in a TLS handshake (nothing is read or written);
   * talking: replies may be written on `socket`; ended: the socket is closed or closing
   */
  private state: 'waiting' | 'talking' | 'ended' = 'waiting';
  /** the client shut down its side: answer what it sent, then end the connection */
  private inputEnded = false;
  private pumping = false;
  /** a multi-line reply is being written: an out-of-band -ERR would corrupt it */
  private streaming = false;
  /** the session waits for the client to read what it was sent (see drained) */
  private readingReplies = false;
  /** whole replies not handed to the socket yet (holdReply) */
  private heldReplies: Buffer | null = null;
  private resolveClosed!: () => void;
  private readonly implicitTls: boolean;
  private readonly limits: ConnectionLimits;
  private readonly acceptedAt = Date.now();
  private readonly loginDeadline: NodeJS.Timeout;
  private readonly commandDeadline = new InputDeadline({
    limitMs: () => this.idleTimeoutMs(),
    // answering earlier commands (unless the client is slow to read the answer), or in a TLS handshake
    serverBusy: () => (this.pumping && !this.readingReplies) || this.state === 'waiting',
    expired: ({ elapsedMs }) => this.onCommandDeadline(elapsedMs),
  });

  /** the socket is closed or closing: no more commands, no more replies */
  private get ended(): boolean {
    return this.state === 'ended';
  }

  constructor(
    /** the TCP connection: its close ends the session, whatever runs over it */
    private readonly connection: Socket,
    private readonly ctx: SessionContext,
    { implicitTls, limits, client }: Pop3ConnectionOptions,
  ) {
    this.implicitTls = implicitTls;
    this.limits = limits;
    this.socket = connection;
    this.client = client;
    this.log = ctx.logger.child({ sessionId: this.id });
    this.protocol = new Pop3Protocol(ctx, this.client, this.log);
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.loginDeadline = setTimeout(() => this.onLoginDeadline(), LOGIN_DEADLINE_MS);
  }

  /**
   * Greets the client and reads its commands once the daemon is ready to touch mailboxes
   * (`ready`) and, on an implicit-TLS listener, the TLS handshake is done. Until then nothing is
   * read as a command and nothing is answered.
   */
  async start(ready: Promise<void>): Promise<void> {
    const { connection } = this;
    this.log.info(
      {
        client: this.client,
        port: connection.localPort,
        listener: this.implicitTls ? 'pop3s' : 'pop3',
        tls: this.implicitTls,
      },
      'connect',
    );
    connection.setNoDelay(true);
    connection.on('error', this.onSocketError);
    connection.on('close', () => this.onClose());
    await ready;
    if (this.ended) return;
    if (!this.implicitTls) {
      this.attach(connection);
    } else {
      const credentials = this.ctx.tls();
      if (credentials === null) {
        this.log.warn({ client: this.client }, 'pop3s connection closed: TLS is not configured');
        connection.destroy();
        return;
      }
      if (!(await this.startTls(credentials, 'tls'))) return;
    }
    this.state = 'talking';
    this.send(GREETING);
  }

  /**
   * Graceful stop: a session inside its QUIT update finishes it (and answers it) first; every
   * other one gets `-ERR [SYS/TEMP] server shutting down` (unless a multi-line reply is under
   * way, which cannot be interrupted cleanly) and is closed. Nothing is deleted.
   */
  async shutdown(): Promise<void> {
    const { updating } = this.protocol;
    if (updating !== null) {
      await updating;
    } else if (!this.ended) {
      if (this.streaming || this.state !== 'talking') this.socket.destroy();
      else this.finish('-ERR [SYS/TEMP] server shutting down', SHUTDOWN_LINGER_MS);
    }
    await this.closed;
  }

  // ---------------------------------------------------------------- input

  /**
   * The autologout that holds now: pop3.timeout, at most 10 s for a client not logged in while
   * POP3 is under stress. Applied to the running timer by the pump after each answer, and on a
   * change of stress mode.
   */
  followIdleTimeout(): void {
    if (this.state !== 'talking') return;
    const timeoutMs = this.idleTimeoutMs();
    if (this.socket.timeout !== timeoutMs) this.socket.setTimeout(timeoutMs);
    this.commandDeadline.follow();
  }

  private idleTimeoutMs(): number {
    const { timeoutMs } = this.ctx.settings();
    return this.loggedIn ? timeoutMs : this.limits.idleTimeoutMs(timeoutMs);
  }

  private get loggedIn(): boolean {
    const { phase } = this.protocol;
    return phase === 'transaction' || phase === 'update';
  }

  /** Makes `stream` the one the session reads commands from and answers on. */
  private attach(stream: Socket): void {
    this.socket = stream;
    stream.setTimeout(this.idleTimeoutMs());
    stream.on('timeout', this.onTimeout);
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
  }

  private detach(stream: Socket): void {
    stream.setTimeout(0);
    stream.off('timeout', this.onTimeout);
    stream.off('data', this.onData);
    stream.off('end', this.onEnd);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.ended) return;
    this.commandDeadline.received(chunk);
    this.reader.push(chunk);
    if (this.reader.buffered > MAX_BUFFERED) this.socket.pause();
    void this.pump();
  };

  private readonly onEnd = (): void => {
    this.inputEnded = true;
    void this.pump();
  };

  private readonly onSocketError = (err: NodeJS.ErrnoException): void => {
    this.log.debug({ err: err.message, code: err.code }, 'socket error');
  };

  /** Hands the queued lines to the protocol one at a time, each fully answered before the next. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.ended) {
        this.reader.maxLength = this.protocol.maxLineLength;
        const event = this.reader.next();
        if (event === null) break;
        // replies wait in the socket while more pipelined commands follow (flushed below or by drained())
        if (this.socket.writableCorked === 0) this.socket.cork();
        // most commands (RETR of a message the file window holds among them) are answered
        // without waiting for anything: no promise, no turn of the event loop per command
        const handled =
          event.kind === 'too-long' ? this.protocol.lineTooLong() : this.protocol.handle(event.line.toString('utf8'));
        const response = handled instanceof Promise ? await this.flushedWhile(handled) : handled;
        if (response !== null) {
          const answered = this.answer(response);
          if (answered !== undefined) await this.flushedWhile(answered);
        }
        // autologout counts from the last command (the socket restarts its idle timer on every
        // read and write); a SIGHUP'd pop3.timeout, or a login, applies from here
        this.followIdleTimeout();
        if (this.socket.writableNeedDrain) await this.drained();
        if (this.socket.isPaused() && this.reader.buffered <= MAX_BUFFERED && !this.ended) {
          this.socket.resume();
        }
      }
      this.flush();
    } catch (err) {
      if (!(err instanceof ConnectionGone)) {
        this.log.error({ err: (err as Error).message }, 'session failed');
        this.socket.destroy();
      }
    } finally {
      this.pumping = false;
    }
    // like a dropped connection: nothing is deleted unless a QUIT came
    if (this.inputEnded && !this.ended) this.socket.end();
    if (!this.ended && this.socket.isPaused()) this.socket.resume();
  }

  private answer(response: Pop3Response): Promise<void> | void {
    switch (response.kind) {
      case 'line':
        if (response.close) return this.finish(response.line);
        return this.send(response.line);
      case 'lines':
        return this.sendMultiline(response.first, response.lines);
      case 'message':
        return this.sendMessage(response);
      case 'start-tls':
        return this.upgrade(response.line, response.credentials);
    }
  }

  // ---------------------------------------------------------------- TLS

  /** STLS (RFC 2595 §4): the +OK, then the TLS handshake over the same connection. */
  private async upgrade(line: string, credentials: TlsCredentials): Promise<void> {
    // the +OK must be out on the wire before the TLS layer takes the connection over
    await this.sendAndFlush(line);
    // whatever the client sent after STLS it sent before it saw this +OK, in plaintext: it is
    // thrown away, never run as commands over TLS (the command injection of CVE-2011-0411)
    this.reader.clear();
    this.commandDeadline.settle();
    this.detach(this.connection);
    this.connection.pause();
    while (this.connection.read() !== null);
    await this.startTls(credentials, 'starttls');
  }

  /**
   * The TLS handshake on the connection; once it is done the session goes on over TLS. False when
   * it failed (logged; the connection is destroyed and the session ends).
   */
  private async startTls(credentials: TlsCredentials, event: 'starttls' | 'tls'): Promise<boolean> {
    if (!this.ended) this.state = 'waiting';
    // never longer than pop3.timeout; implicit TLS counts from accept, STLS from the command
    const timeoutMs = Math.min(TLS_HANDSHAKE_TIMEOUT_MS, this.ctx.settings().timeoutMs);
    const startedAt = event === 'tls' ? this.acceptedAt : Date.now();
    const { socket, handshake } = acceptTls(this.connection, credentials.context, timeoutMs, startedAt);
    socket.on('error', this.onSocketError);
    try {
      await handshake;
    } catch (err) {
      this.state = 'ended';
      this.protocol.stop();
      this.log.info({ client: this.client, err: (err as Error).message }, 'TLS handshake failed');
      return false;
    }
    this.protocol.tlsStarted();
    this.log.info({ client: this.client, ...describeTls(socket) }, event);
    this.attach(socket);
    this.state = 'talking';
    return true;
  }

  // ---------------------------------------------------------------- output and end

  /**
   * RETR or TOP. A small message the file window already holds is answered at once, in one
   * buffer (retr-reply.ts); anything else goes through streamMessage.
   */
  private sendMessage(response: MessageResponse): Promise<void> | void {
    const { mailbox, info, status, bodyLines } = response;
    if (bodyLines === undefined && info.contentLength <= WHOLE_REPLY_MAX) {
      let reply: Buffer | null;
      try {
        reply = mailbox.wholeReplyNow(info, status);
      } catch (err) {
        this.cannotRead(response, err as Error);
        return;
      }
      if (reply !== null) {
        if (this.ended || this.socket.destroyed) throw new ConnectionGone();
        this.holdReply(reply);
        return;
      }
    }
    return this.streamMessage(response);
  }

  /** A message that cannot be read (nothing of the reply is out yet): -ERR, and the session goes on. */
  private cannotRead({ mailbox, info }: MessageResponse, err: Error): void {
    this.log.error({ user: mailbox.user, offset: info.offset, err: err.message }, 'cannot read message');
    this.send('-ERR [SYS/TEMP] Cannot read the message, try again later');
  }

  /**
   * Sends the status line, then streams a message (RETR) or its headers and first bodyLines
   * lines (TOP) from the file, dot-stuffed, then the terminating ".". For RETR the octets must be
   * exactly the size LIST gave: if the file no longer holds them (another program changed it),
   * the connection is cut before the terminator, so the client sees a failure instead of a
   * wrong message. A failure before any of the reply went out (the file cannot be opened or
   * read: an I/O error) gets `-ERR [SYS/TEMP]`, and the session goes on.
   */
  private async streamMessage(response: MessageResponse): Promise<void> {
    const { status, mailbox, info, bodyLines } = response;
    const { socket } = this;
    this.streaming = true;
    let replyStarted = false;
    try {
      const window = await mailbox.openWindow();
      if (bodyLines === undefined && info.contentLength <= WHOLE_REPLY_MAX) {
        // a small message: status, body and terminator in one buffer, one write
        const reply = await mailbox.wholeReply(window, info, status);
        if (this.ended || socket.destroyed) throw new ConnectionGone();
        this.holdReply(reply);
        return;
      }
      replyStarted = true;
      this.send(status);
      const reader = mailbox.retrieve(window, info, bodyLines);
      // two output buffers in turn, each used again once the socket has taken what was written
      // from it: a big message leaves no trail of dead buffers for the garbage collector
      const outputs: { buffer: Buffer | null; taken: Promise<void> | null }[] = [
        { buffer: null, taken: null },
        { buffer: null, taken: null },
      ];
      for (let i = 0; ; i = 1 - i) {
        const output = outputs[i]!;
        if (output.taken !== null) {
          this.flush(); // a corked write would never be taken
          await output.taken;
        }
        output.buffer ??= Buffer.allocUnsafe(OUTPUT_BYTES);
        const chunk = await reader.next(output.buffer);
        if (chunk === null) break;
        // a client that went away stops the file read
        if (this.ended || socket.destroyed) throw new ConnectionGone();
        output.taken = new Promise((resolve) => this.write(chunk, () => resolve()));
        if (socket.writableNeedDrain) await this.drained();
      }
      if (this.ended || socket.destroyed) throw new ConnectionGone();
      const octets = reader.encoder.wireBytes;
      if (bodyLines === undefined && octets !== info.size)
        throw new Error(`message has ${octets} octets, ${info.size} expected`);
      this.write(TERMINATOR);
    } catch (err) {
      if (this.ended || err instanceof ConnectionGone) throw new ConnectionGone();
      if (!replyStarted) {
        this.cannotRead(response, err as Error);
        return;
      }
      this.log.error(
        { user: mailbox.user, offset: info.offset, err: (err as Error).message },
        'cannot send message; closing the connection',
      );
      socket.destroy();
      throw new ConnectionGone();
    } finally {
      this.streaming = false;
    }
  }

  private send(line: string): void {
    if (this.ended) return;
    this.write(`${line}\r\n`);
  }

  /** First line, then the lines (dot-stuffed), then "."; written in pieces, waiting for the socket to drain. */
  private async sendMultiline(first: string, lines: Iterable<string>): Promise<void> {
    this.streaming = true;
    try {
      let piece = `${first}\r\n`;
      for (const line of lines) {
        piece += `${line.startsWith('.') ? '.' : ''}${line}\r\n`;
        if (piece.length >= LISTING_CHUNK) {
          this.send(piece.slice(0, -2));
          piece = '';
          if (this.socket.writableNeedDrain) await this.drained();
        }
      }
      this.send(`${piece}.`);
    } finally {
      this.streaming = false;
    }
  }

  /** Sends a line and resolves once it, and every reply before it, has been handed to the kernel. */
  private sendAndFlush(line: string): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      this.write(`${line}\r\n`, () => resolve());
      this.flush();
    });
  }

  /**
   * Writes out what corked replies hold, then waits for `work` (I/O: the next piece of the file,
   * a login): the client reads the replies so far meanwhile instead of waiting for the read.
   */
  private flushedWhile<T>(work: Promise<T>): Promise<T> {
    this.flush();
    return work;
  }

  /** Every write to the client: after the replies held back (holdReply), in order. */
  private write(chunk: Buffer | string, written?: () => void): void {
    this.releaseReplies();
    this.socket.write(chunk, written);
  }

  /**
   * A whole reply (retr-reply.ts) for the socket. Replies built one after another lie next to
   * each other in their block: they are held and joined, so a run of pipelined RETRs is one
   * write of up to a block (128 KiB), not one per message. Released by the next other write, a
   * reply in another block, or flush().
   */
  private holdReply(reply: Buffer): void {
    const held = this.heldReplies;
    if (held !== null && held.buffer === reply.buffer && held.byteOffset + held.length === reply.byteOffset) {
      this.heldReplies = Buffer.from(held.buffer, held.byteOffset, held.length + reply.length);
      return;
    }
    this.releaseReplies();
    this.heldReplies = reply;
  }

  private releaseReplies(): void {
    const held = this.heldReplies;
    if (held === null) return;
    this.heldReplies = null;
    this.socket.write(held);
  }

  /** Writes out the replies held back and what the cork holds (see pump). */
  private flush(): void {
    this.releaseReplies();
    while (this.socket.writableCorked > 0) this.socket.uncork();
  }

  /** Flushes, then resolves when the socket wants more data; rejects with ConnectionGone if it closes first. */
  private drained(): Promise<void> {
    this.flush();
    if (this.ended || this.socket.destroyed) return Promise.reject(new ConnectionGone());
    this.readingReplies = true;
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(new ConnectionGone());
      };
      const cleanup = () => {
        this.readingReplies = false;
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
      };
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
  }

  /** Sends a last line and closes; a client that does not close in time is cut off. */
  private finish(line: string, lingerMs = LINGER_MS): void {
    if (this.ended) return;
    this.send(line);
    this.state = 'ended';
    this.protocol.stop();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), lingerMs).unref();
  }

  private readonly onTimeout = (): void => {
    if (this.protocol.updating !== null) return;
    this.log.info({ client: this.client, user: this.protocol.user }, 'autologout');
    if (this.streaming) this.socket.destroy();
    else this.finish('-ERR Autologout; idle for too long');
  };

  /** No login within the deadline: -ERR and close (during a TLS handshake: just close). */
  private onLoginDeadline(): void {
    if (this.ended || this.loggedIn) return;
    this.log.info({ client: this.client }, 'no login in time');
    if (this.state === 'talking' && !this.streaming) this.finish(LOGIN_DEADLINE_PASSED);
    else this.socket.destroy();
  }

  /** A command line still incomplete at its deadline: -ERR and close. */
  private onCommandDeadline(elapsedMs: number): void {
    if (this.ended) return;
    const fields = { client: this.client, user: this.protocol.user, deadline: 'command', elapsedMs };
    this.log.info(fields, 'timeout exceeded');
    if (this.streaming) this.socket.destroy();
    else this.finish(COMMAND_DEADLINE_PASSED);
  }

  private onClose(): void {
    clearTimeout(this.loginDeadline);
    this.commandDeadline.settle();
    this.state = 'ended';
    const released = this.protocol.disconnected();
    const { loggedInAs, activity } = this.protocol;
    this.log.info({ client: this.client, user: loggedInAs ?? undefined, ...activity.summary() }, 'disconnect');
    void released.finally(() => this.resolveClosed());
  }
}
