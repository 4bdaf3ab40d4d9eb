/**
 * Schema changes on one Postgres target, as every session of it must see them (one per
 * target in the broker, shared by its sessions).
 *
 * The gate and masking resolve names in the committed catalog and cache what they learn
 * (the target's function catalog, each session's relations and view definitions). A change
 * made by one session must reach every other:
 *
 * - Once the server confirms the changing session's transaction ended (committed or rolled
 *   back), every session drops what it cached (`subscribe`), and the epoch moves on, so a
 *   statement prepared before it is judged again at its next Bind.
 * - While a change is in flight (relayed, not yet confirmed ended), another session's
 *   statement judged against the committed catalog could run against the new one: PostgreSQL
 *   blocks it on the changed object's lock and runs it after the commit, with the new view
 *   body or function. So other sessions' statements wait for the change to end (`elsewhere`),
 *   and are judged again then. Transaction control never waits (a session may hold the lock
 *   the change waits for), and a wait is bounded by the caller.
 *
 * Several brokers on one PostgreSQL store tell each other when a change ended
 * (pgstore/schema-changes.ts: `published`, `endedElsewhere`), so their caches go within
 * milliseconds; they do not see each other's changes in flight, and without the store their
 * caches expire (30 s).
 */
export class SchemaChanges {
  /** Told when a change of this broker's ended (the store publishes it to the others). */
  readonly #published: (() => void) | undefined;
  /** Sessions whose schema change is relayed and not confirmed ended. */
  readonly #inFlight = new Set<object>();
  readonly #listeners = new Set<() => void>();
  #waiters: (() => void)[] = [];
  #epoch = 0;

  constructor(opts: { published?: () => void } = {}) {
    this.#published = opts.published;
  }

  /** Moves on at every schema change that ended: what was judged before may be stale. */
  get epoch(): number {
    return this.#epoch;
  }

  /** `session` relayed a statement that changes the schema. */
  begin(session: object): void {
    this.#inFlight.add(session);
  }

  /** `session`'s change ended (the server confirmed its transaction ended): every session drops its cache. */
  end(session: object): void {
    this.#inFlight.delete(session);
    this.#changed();
    this.#published?.();
  }

  /** Another broker's session changed the schema (or notifications were lost): every session drops its cache. */
  endedElsewhere(): void {
    this.#changed();
  }

  #changed(): void {
    this.#epoch++;
    for (const fn of this.#listeners) fn();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** `session` is gone: a change it left in flight ended, one way or the other (call once its server connection closed). */
  gone(session: object): void {
    if (this.#inFlight.has(session)) this.end(session);
  }

  /**
   * Undefined when no session but `session` has a change in flight; else a promise that
   * resolves when one ends, or after `maxMs` (never rejects): the caller judges again.
   */
  elsewhere(session: object, maxMs: number): Promise<void> | undefined {
    let other = false;
    for (const s of this.#inFlight) if (s !== session) other = true;
    if (!other) return undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, maxMs);
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#waiters.push(done);
    });
  }

  /** Called whenever a change ended (after the epoch moved on); returns the unsubscribe. */
  subscribe(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
}
