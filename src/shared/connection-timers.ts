/**
 * The two clocks that bound a connection's life where PostgreSQL and pgbouncer bound it:
 * a deadline for finishing the login, and an idle timer. Both are unref'd (they never keep
 * a process alive) and do nothing once stopped.
 */

/** The `session.end` reason recorded when a target's `idle_timeout` ends a session. */
export const IDLE_TIMEOUT_REASON = 'idle_timeout';

/** Calls `onExpire` once after `ms` unless the returned stop function runs first. */
export function startDeadline(ms: number, onExpire: () => void): () => void {
  const timer = setTimeout(onExpire, ms);
  timer.unref();
  return () => clearTimeout(timer);
}

/**
 * Calls `onIdle` once no `touch()` has happened for `ms` while `busy()` was false. Touching
 * only records the time (it runs per chunk on the hot path); the timer re-arms itself for
 * the rest of the interval when it finds recent activity or a busy session.
 */
export class IdleTimer {
  readonly #ms: number;
  readonly #onIdle: () => void;
  readonly #busy: () => boolean;
  #last = performance.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(ms: number, onIdle: () => void, busy: () => boolean = () => false) {
    this.#ms = ms;
    this.#onIdle = onIdle;
    this.#busy = busy;
    this.#arm(ms);
  }

  touch(): void {
    this.#last = performance.now();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#check, ms);
    this.#timer.unref();
  }

  readonly #check = (): void => {
    if (this.#timer === undefined) return;
    if (this.#busy()) {
      // A statement running or waiting for approval is not idleness: look again later.
      this.#last = performance.now();
      return this.#arm(this.#ms);
    }
    const idleFor = performance.now() - this.#last;
    if (idleFor < this.#ms) return this.#arm(Math.max(1, Math.ceil(this.#ms - idleFor)));
    this.#timer = undefined;
    this.#onIdle();
  };
}
