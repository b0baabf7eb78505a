// The base of the raw SMTP and POP3 test clients: lines read as latin1 as they arrive, and
// waits for what they make, with a timeout and a clear error when the server closes first.
import type { Socket } from 'node:net';
import { eventually } from '../../support/wait.js';

/**
 * What the raw SMTP and POP3 test clients share: a socket read as latin1 (one char = one byte),
 * cut into lines as they arrive (handed to `onLine`), and waiting for what those lines make,
 * with a timeout and a clear error when the server closes or the socket fails first.
 */
export abstract class LineClient {
  private buffer = '';
  private waiter: (() => void) | null = null;
  private ended = false;
  private error: Error | null = null;

  protected constructor(
    readonly socket: Socket,
    readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl !== -1; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl).replace(/\r$/, '');
        this.buffer = this.buffer.slice(nl + 1);
        this.onLine(line);
      }
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', (err) => {
      this.error = err;
      this.wake();
    });
  }

  /** One complete line from the server, without its line end. */
  protected abstract onLine(line: string): void;

  get closed(): boolean {
    return this.ended;
  }

  /** Resolves with what `take` finds once something is there; `what` names it in errors ("SMTP reply"). */
  protected async waitFor<T>(take: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = take();
      if (found !== undefined) return found;
      const partial = JSON.stringify(this.buffer.slice(0, 200));
      if (this.error) throw new Error(`socket error while waiting for a ${what}: ${this.error.message}`);
      if (this.ended) throw new Error(`server closed the connection while a ${what} was awaited (partial: ${partial})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms (partial: ${partial})`);
      await new Promise<void>((resolveWait) => {
        const timer = setTimeout(() => {
          this.waiter = null;
          resolveWait();
        }, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolveWait();
        };
      });
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Resolves once the server has closed the connection (rejects after timeoutMs). */
  async waitClosed(timeoutMs = this.timeoutMs): Promise<void> {
    await eventually(() => this.ended, timeoutMs, 'server to close the connection', 10);
  }

  /** Writes raw bytes (a string is sent as latin1, one char = one byte). */
  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
