/**
 * One LISTEN connection to the shared store, kept up: brokers tell each other about shared
 * state (approvals, written relations) by NOTIFY, and a dropped connection is made again
 * after `retryMs`. Whoever uses it says what a (re)connection must catch up on before
 * notifications are trusted again (`catchUp`): notifications sent while it was down are lost.
 */
import pg from 'pg';
import type { Logger } from '../log.js';

export interface StoreListenerOptions {
  clientConfig: pg.ClientConfig;
  channel: string;
  /** Delay before connecting again after a drop or a failed attempt. */
  retryMs: number;
  logger: Logger;
  /** What is listened for, in log lines ("approvals", "written-relations"). */
  what: string;
  onNote(payload: string | undefined): void;
  /** Runs after LISTEN and before the listener counts as up: what was missed meanwhile. */
  catchUp?(): Promise<void>;
  /** Said once when an up listener is lost (users that must know it is stale). */
  onLost?(): void;
}

/** A note's JSON payload; undefined when it is not JSON (a stray NOTIFY on the channel). Its fields are the caller's to check. */
export function parseNote<T>(payload: string | undefined): T | undefined {
  try {
    return JSON.parse(payload ?? '') as T;
  } catch {
    return undefined;
  }
}

export class StoreListener {
  readonly #o: StoreListenerOptions;
  #client: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: StoreListenerOptions) {
    this.#o = o;
  }

  /** Whether notifications are being received. */
  get up(): boolean {
    return this.#client !== undefined;
  }

  /** The first connection: rejects when it fails (a retry is scheduled all the same). */
  async start(): Promise<void> {
    try {
      await this.#listen();
    } catch (err) {
      this.#schedule();
      throw err;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    const c = this.#client;
    this.#client = undefined;
    await c?.end().catch(() => {});
  }

  #schedule(): void {
    if (this.#closed || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#listen().catch((err: unknown) => {
        this.#o.logger.warn(`could not listen for ${this.#o.what} notifications; retrying`, { error: (err as Error).message });
        this.#schedule();
      });
    }, this.#o.retryMs);
    this.#retry.unref();
  }

  async #listen(): Promise<void> {
    const c = new pg.Client(this.#o.clientConfig);
    const drop = (): void => {
      if (this.#client === c) {
        this.#client = undefined;
        this.#o.onLost?.();
      }
      c.end().catch(() => {});
      this.#schedule();
    };
    c.on('error', drop);
    c.on('end', drop);
    c.on('notification', (m) => this.#o.onNote(m.payload));
    try {
      await c.connect();
      await c.query(`LISTEN ${this.#o.channel}`);
      await this.#o.catchUp?.();
    } catch (err) {
      // The caller schedules the retry; this client must not schedule a second one.
      c.removeListener('end', drop);
      c.removeListener('error', drop);
      c.on('error', () => {});
      c.end().catch(() => {});
      throw err;
    }
    if (this.#closed) {
      await c.end().catch(() => {});
      return;
    }
    this.#client = c;
  }
}
