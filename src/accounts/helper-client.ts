// The daemon's side of the root helper (README, "Using the box's Unix accounts", "Privileges"):
// starts the keeper while the daemon is still root (the keeper then keeps a worker running), sends
// requests over the keeper's stdin and matches the answers by id. Every request has a deadline;
// when the keeper itself is gone every request fails at once (logins answer "try again later",
// mailbox creation is retried by the queue, a reload keeps what it had) and the daemon says so in
// its log.
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve as absolutePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import { readSecretDirectly } from '../secret-reader.js';
import {
  encodeFrame,
  readFrames,
  type HelperEvent,
  type HelperRequest,
  type HelperResponse,
  MAX_ANSWER_FRAME,
  requestId,
} from './helper-protocol.js';
import type { HelperSettings } from './helper-worker.js';

const ENTRY = fileURLToPath(new URL('./helper-main.js', import.meta.url));
const REQUEST_TIMEOUT_MS = 30_000;
const START_TIMEOUT_MS = 30_000;

/** What a password check came to. */
export type HelperVerdict = { ok: true } | { ok: false; checked: boolean };

type Body<R> = R extends HelperRequest ? Omit<R, 'id'> : never;

export class AccountHelper {
  private nextId = 0;
  private readonly pending = new Map<number, (response: HelperResponse) => void>();
  private gone: string | null = null;
  private stopping = false;

  private constructor(
    private readonly keeper: ChildProcess,
    private readonly logger: Logger,
  ) {}

  /** Starts the keeper and waits for its first worker; rejects when the helper cannot work. */
  static start(settings: HelperSettings, logger: Logger): Promise<AccountHelper> {
    const keeper = spawn(process.execPath, [ENTRY, 'keeper', JSON.stringify(settings)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const helper = new AccountHelper(keeper, logger);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the root helper did not start')), START_TIMEOUT_MS);
      helper.listen((event) => {
        if (event.event === 'started') {
          clearTimeout(timer);
          resolve(helper);
        } else if (event.event === 'fatal') {
          clearTimeout(timer);
          reject(new Error(`the root helper cannot work: ${event.detail}`));
        }
      });
      keeper.once('exit', () => {
        clearTimeout(timer);
        reject(new Error('the root helper exited at start'));
      });
    });
  }

  /** Checks `user`'s password through PAM; rejects when the check itself failed. */
  async authenticate(user: string, password: string, rhost: string): Promise<HelperVerdict> {
    const response = await this.request({ op: 'auth', user, password, rhost });
    if (response.ok) return { ok: true };
    if (response.error === 'denied') return { ok: false, checked: response.checked };
    throw new Error(`password check failed: ${response.detail}`);
  }

  /** Has the helper create spool_dir/<login> for the account (nothing happens if it exists). */
  async createMailbox(user: string, path: string): Promise<void> {
    const response = await this.request({ op: 'mailbox', user, path });
    if (!response.ok) {
      throw new Error(`cannot create mailbox ${path}: ${response.error === 'denied' ? 'denied' : response.detail}`);
    }
  }

  /**
   * Reads a secret file (a SecretReader) through the helper. One it refuses (a file the config
   * named only later, a symlink) or cannot reach is read as this process may, as without the
   * helper; rejects when neither can read it.
   */
  readSecret = async (path: string): Promise<Buffer | null> => {
    let refusal: string;
    try {
      const response = await this.request({ op: 'secret', path: absolutePath(path) });
      if (response.ok) {
        return 'content' in response && response.content !== null ? Buffer.from(response.content, 'base64') : null;
      }
      refusal = response.error === 'denied' ? 'denied' : response.detail;
    } catch (err) {
      refusal = (err as Error).message;
    }
    try {
      return await readSecretDirectly(path);
    } catch (err) {
      throw new Error(`the root helper did not read it (${refusal}) and the daemon cannot: ${(err as Error).message}`);
    }
  };

  /** Ends the helper (daemon stop): the keeper stops its worker when its stdin ends. */
  stop(): void {
    this.stopping = true;
    this.keeper.stdin!.end();
  }

  private request(body: Body<HelperRequest>): Promise<HelperResponse> {
    if (this.gone !== null) return Promise.reject(new Error(this.gone));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('the root helper did not answer in time'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, (response) => {
        clearTimeout(timer);
        resolve(response);
      });
      this.keeper.stdin!.write(encodeFrame({ id, ...body }));
    });
  }

  private listen(onEvent: (event: HelperEvent) => void): void {
    this.keeper.stdin!.on('error', () => undefined); // a dead keeper: 'exit' handles it
    readFrames(
      this.keeper.stdout!,
      MAX_ANSWER_FRAME,
      (value) => {
        const id = requestId(value);
        if (id !== null) {
          const settle = this.pending.get(id);
          this.pending.delete(id);
          settle?.(value as HelperResponse);
        } else {
          this.logEvent(value as HelperEvent);
          onEvent(value as HelperEvent);
        }
      },
      (err) => {
        this.logger.error({ err: err.message }, 'root helper sent garbage; stopping it');
        this.keeper.kill('SIGKILL');
      },
    );

    this.keeper.once('exit', (code, signal) => {
      this.gone = 'the root helper is gone (restart mailsrv)';
      if (this.stopping) this.logger.info('root helper stopped');
      else
        this.logger.error(
          { code, signal },
          'root helper keeper exited: logins, new mailboxes and reloads of secret files fail until restart',
        );
      for (const [id, settle] of this.pending) settle({ id, ok: false, error: 'failed', detail: this.gone });
      this.pending.clear();
    });
  }

  private logEvent(event: HelperEvent): void {
    if (event.event === 'started') this.logger.info({ pid: event.pid }, 'root helper started');
    else if (event.event === 'exited')
      this.logger.warn({ pid: event.pid, code: event.code, signal: event.signal }, 'root helper exited');
    else this.logger.error({ err: event.detail }, 'root helper cannot work');
  }
}
