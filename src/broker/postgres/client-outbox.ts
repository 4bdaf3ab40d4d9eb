/**
 * What a proxied session sends its client, in order: frames, and durability barriers
 * between them. A barrier is an audit append; nothing queued behind it is written until
 * it settles, which is how "the ReadyForQuery that completes a statement is released only
 * once that statement's event is durable" holds.
 *
 * While output is held back (a barrier, or a slow client), the server side is paused, so
 * nothing piles up in the broker.
 */
import type { Duplex } from 'node:stream';

/** Result bytes held back to share one write with the ReadyForQuery that follows them. */
const COALESCE_BELOW = 64 * 1024;

interface Barrier {
  promise: Promise<unknown>;
  done: boolean;
}

export interface OutboxHooks {
  /** Stop / resume reading the server. */
  pauseServer(): void;
  resumeServer(): void;
  /** True while something else (e.g. a masking lookup) keeps the server paused. */
  serverHeld(): boolean;
  /** True once the session has closed: nothing more is written. */
  closed(): boolean;
  /** A barrier's append failed: the session must end (fail closed). */
  barrierFailed(err: unknown): void;
}

export class ClientOutbox {
  readonly #client: Duplex;
  readonly #hooks: OutboxHooks;
  #out: (Buffer | Barrier)[] = [];
  #waitingDrain = false;

  constructor(client: Duplex, hooks: OutboxHooks) {
    this.#client = client;
    this.#hooks = hooks;
  }

  push(...frames: Buffer[]): void {
    for (const f of frames) this.#out.push(f);
  }

  /** Frames pushed after this wait for `promise`; a rejection ends the session. */
  barrier(promise: Promise<unknown>): void {
    const barrier: Barrier = { promise, done: false };
    promise.then(
      () => {
        barrier.done = true;
        this.flush();
      },
      (err: unknown) => this.#hooks.barrierFailed(err),
    );
    this.#out.push(barrier);
  }

  /** Write every frame up to the first unsettled barrier, as one buffer. */
  flush(): void {
    if (this.#hooks.closed()) return;
    const out = this.#out;
    let i = 0;
    let bytes = 0;
    const frames: Buffer[] = [];
    for (; i < out.length; i++) {
      const item = out[i] as Buffer | Barrier;
      if (Buffer.isBuffer(item)) {
        frames.push(item);
        bytes += item.length;
      } else if (!item.done) break;
    }
    // A small result waiting only for its audit event goes out with its ReadyForQuery in
    // one write (every write crosses the SSH and TLS framing twice); big ones stream.
    if (i < out.length && bytes < COALESCE_BELOW) {
      this.#hooks.pauseServer();
      return;
    }
    this.#out = i === out.length ? [] : out.slice(i);
    if (frames.length > 0) {
      const ok = this.#client.write(joinFrames(frames));
      if (!ok) this.#pauseUntilDrain();
    }
    // While a barrier holds output back, stop reading the server so nothing piles up here.
    if (this.#out.length > 0 || this.#hooks.serverHeld()) this.#hooks.pauseServer();
    else if (!this.#waitingDrain) this.#hooks.resumeServer();
  }

  #pauseUntilDrain(): void {
    if (this.#waitingDrain) return;
    this.#waitingDrain = true;
    this.#hooks.pauseServer();
    this.#client.once('drain', () => {
      this.#waitingDrain = false;
      if (this.#out.length === 0 && !this.#hooks.serverHeld()) this.#hooks.resumeServer();
    });
  }
}

/** Frames of one chunk are usually adjacent views of it: hand them out as one view, else concatenate. */
export function joinFrames(frames: Buffer[]): Buffer {
  if (frames.length === 1) return frames[0] as Buffer;
  const first = frames[0] as Buffer;
  let end = first.byteOffset + first.length;
  let contiguous = true;
  for (let i = 1; i < frames.length; i++) {
    const f = frames[i] as Buffer;
    if (f.buffer !== first.buffer || f.byteOffset !== end) {
      contiguous = false;
      break;
    }
    end += f.length;
  }
  return contiguous ? Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset) : Buffer.concat(frames);
}
