/**
 * Sessions an audit store outage left open while the broker went on running.
 *
 * A statement's intent is durable before it is forwarded; if the store then fails before its
 * outcome is, the session is ended (fail closed) and its session.end cannot be written
 * either. A store that comes back without a restart (PostgreSQL) would leave those intents
 * without an outcome for good, and the session without an end or a receipt; a restart
 * after a clean stop would not look back for them. So a session that ended across an
 * outage is owed a settlement: once the store answers, the log closes what it left open
 * (audit/interrupted.ts settleSession), exactly as the next start does after a crash.
 *
 * One registry per store, looked up by the store (the sessions hold the store, not the
 * broker). While a settlement is owed the broker does not mark a clean stop, so a stop
 * before the store came back is settled by the next start.
 */
import type { Logger } from '../log.js';
import type { SessionSummary } from '../session-summary.js';
import { settleSession } from './interrupted.js';
import type { AuditStore } from './store.js';

export interface UnsettledDeps {
  audit: AuditStore;
  logger: Logger;
  /** Issues the receipt of a session ended here. */
  issue?: (summary: SessionSummary) => Promise<unknown>;
}

export class UnsettledSessions {
  readonly #deps: UnsettledDeps;
  /** Session id → a seq before its session.start. */
  readonly #owed = new Map<string, number>();
  #running: Promise<void> = Promise.resolve();

  constructor(deps: UnsettledDeps) {
    this.#deps = deps;
  }

  /** Sessions whose settlement has not been written yet. */
  get owed(): number {
    return this.#owed.size;
  }

  /** `session` ended across an outage; settled now if the store answers, else when it does. */
  owe(session: string, afterSeq: number): void {
    this.#owed.set(session, afterSeq);
    if (!this.#deps.audit.failed) this.settle().catch(() => {}); // #settleAll logs its own failures
  }

  /** Settles what is owed (one pass at a time); a store still failing leaves it owed. */
  settle(): Promise<void> {
    this.#running = this.#running.then(() => this.#settleAll());
    return this.#running;
  }

  async #settleAll(): Promise<void> {
    for (const [session, afterSeq] of [...this.#owed]) {
      if (this.#deps.audit.failed) return;
      try {
        const unknown = await settleSession(this.#deps, session, afterSeq);
        this.#owed.delete(session);
        this.#deps.logger.warn('a session the audit store outage interrupted is now closed on record', { session, statements_with_unknown_outcome: unknown });
      } catch (err) {
        this.#deps.logger.error('could not close on record a session the audit store outage interrupted; retried when the store answers', { session, error: (err as Error).message });
      }
    }
  }
}

const registry = new WeakMap<AuditStore, UnsettledSessions>();
const listening = new WeakSet<AuditStore>();

/** The broker's registry for `store` (a broker restarted on the same store gets a new one); the store's recovery settles it. */
export function trackUnsettled(deps: UnsettledDeps): UnsettledSessions {
  const u = new UnsettledSessions(deps);
  registry.set(deps.audit, u);
  if (!listening.has(deps.audit)) {
    listening.add(deps.audit);
    const store = deps.audit;
    store.onRecovered?.(() => {
      registry.get(store)?.settle().catch(() => {}); // #settleAll logs its own failures
    });
  }
  return u;
}

/** The registry of `store`, if a broker set one up (stores used alone in tests have none). */
export function unsettledFor(store: AuditStore): UnsettledSessions | undefined {
  return registry.get(store);
}
