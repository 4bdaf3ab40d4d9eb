/**
 * Write taint (masking/written-relations.ts) shared by the brokers on one PostgreSQL store.
 *
 * A copy of a masked column written through one broker (`CREATE TABLE t AS SELECT email …`)
 * must read masked through every other: behind a load balancer the agent's next session may
 * land anywhere. So, per target, the tainted relation names live in `written_relations`:
 *
 * - A broker saves new names before the write that caused them is forwarded (the flow waits
 *   for the save), in one statement that inserts them and NOTIFYs them on
 *   `agentgate_written_relations` (delivered at its commit, so before the write can run).
 * - Every broker LISTENs and learns the names from the notification itself, synchronously:
 *   no reload gap between "told" and "knows".
 * - While its LISTEN connection is not up (start, a dropped connection, reconnecting), a
 *   broker cannot know it is current: every statement then waits for a reload of its
 *   target's names that started after the statement arrived (fresh()). When the listener is
 *   back, it reloads everything it may have missed before it trusts notifications again.
 * - A reload that fails (the store unreachable) lets the statement go on: the same store
 *   holds the audit log, and a statement whose intent cannot be recorded is refused.
 *
 * Names a broker's state dir already held (it ran alone before the store) are added to the
 * store when the target is first used.
 */
import type pg from 'pg';
import type { Logger } from '../log.js';
import { WrittenRelations } from '../masking/written-relations.js';
import { parseNote, StoreListener } from './store-listener.js';

const CHANNEL = 'agentgate_written_relations';
/** NOTIFY payloads must stay under 8000 bytes: names are sent in chunks of about this size. */
const PAYLOAD_BYTES = 6000;

interface Note {
  target: string;
  broker: string;
  names: string[];
}

export interface SharedWrittenRelationsOptions {
  pool: pg.Pool;
  clientConfig: pg.ClientConfig;
  brokerId: string;
  logger: Logger;
  /** Delay before the LISTEN connection is made again after it dropped. Default 1 s. */
  retryMs?: number;
}

export interface SharedWrittenRelations {
  /** The target's taint, shared with the other brokers; `local`: names this broker saved alone before (its state dir). */
  open(target: string, local?: readonly string[]): WrittenRelations;
  /** Whether notifications are being received (tests, /readyz-style checks). */
  listening(): boolean;
  close(): Promise<void>;
}

export async function createSharedWrittenRelations(opts: SharedWrittenRelationsOptions): Promise<SharedWrittenRelations> {
  const { pool, brokerId } = opts;
  const logger = opts.logger.child({ component: 'masking', broker_id: brokerId });
  const retryMs = opts.retryMs ?? 1000;
  /** Per target, what the store is known to hold (from loads, notifications and own saves). */
  const stored = new Map<string, Set<string>>();
  const opened = new Map<string, WrittenRelations>();

  const storedOf = (target: string): Set<string> => {
    let s = stored.get(target);
    if (!s) stored.set(target, (s = new Set()));
    return s;
  };
  const learn = (target: string, names: readonly string[]): void => {
    const s = storedOf(target);
    for (const n of names) s.add(n);
    opened.get(target)?.learn(names);
  };

  const loadAll = async (): Promise<void> => {
    const r = await pool.query<{ target: string; name: string }>('SELECT target, name FROM written_relations');
    const byTarget = new Map<string, string[]>();
    for (const row of r.rows) {
      let list = byTarget.get(row.target);
      if (!list) byTarget.set(row.target, (list = []));
      list.push(row.name);
    }
    for (const [target, names] of byTarget) learn(target, names);
  };
  const loadTarget = async (target: string): Promise<void> => {
    const r = await pool.query<{ name: string }>('SELECT name FROM written_relations WHERE target = $1', [target]);
    learn(
      target,
      r.rows.map((row) => row.name),
    );
  };

  const onNote = (payload: string | undefined): void => {
    const n = parseNote<Note>(payload);
    if (!n) return;
    if (typeof n.target !== 'string' || !Array.isArray(n.names) || !n.names.every((x) => typeof x === 'string')) return;
    learn(n.target, n.names);
  };

  const listener = new StoreListener({
    clientConfig: opts.clientConfig,
    channel: CHANNEL,
    retryMs,
    logger,
    what: 'written-relations',
    onNote,
    // What was saved while no notification could arrive: loaded before notifications are trusted.
    catchUp: loadAll,
    onLost: () => logger.warn('lost the written-relations notifications; statements wait for a reload until they are back'),
  });

  /** Inserts the names the store lacks and notifies them, in one statement (one transaction). */
  const save = async (target: string, names: readonly string[]): Promise<void> => {
    const known = storedOf(target);
    const fresh = names.filter((n) => !known.has(n));
    if (fresh.length === 0) return;
    const payloads = chunks(fresh).map((part) => JSON.stringify({ target, broker: brokerId, names: part } satisfies Note));
    await pool.query(
      `WITH ins AS (
         INSERT INTO written_relations (target, name, broker) SELECT $1, n, $3 FROM unnest($2::text[]) AS n ON CONFLICT DO NOTHING
       ) SELECT pg_notify($4, p) FROM unnest($5::text[]) AS p`,
      [target, fresh, brokerId, CHANNEL, payloads],
    );
    for (const n of fresh) known.add(n);
  };

  await loadAll();
  // Not awaited past a failure (it retries): until the listener is up, statements wait for reloads.
  await listener.start().catch((err: unknown) => {
    logger.warn('could not listen for written-relations notifications; retrying', { error: (err as Error).message });
  });

  return {
    open(target, local = []) {
      const had = opened.get(target);
      if (had) return had;
      const reloader = new Reloader(() =>
        loadTarget(target).catch((err: unknown) => logger.warn('could not reload written relations', { target, error: (err as Error).message })),
      );
      const w = new WrittenRelations([...storedOf(target), ...local], {
        persist: (names) => save(target, names),
        fresh: () => (listener.up ? undefined : reloader.request()),
      });
      opened.set(target, w);
      const missing = local.filter((n) => !storedOf(target).has(n));
      if (missing.length > 0) {
        save(target, missing).catch((err: unknown) => logger.warn('could not add the state dir’s written relations to the store', { target, error: (err as Error).message }));
      }
      return w;
    },
    listening: () => listener.up,
    close: () => listener.close(),
  };
}

/** `names` split so that each JSON payload stays under PAYLOAD_BYTES. */
function chunks(names: readonly string[]): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  let bytes = 0;
  for (const n of names) {
    const b = Buffer.byteLength(n) + 8;
    if (cur.length > 0 && bytes + b > PAYLOAD_BYTES) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(n);
    bytes += b;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Runs `load` on request, coalescing: a caller is answered by a run that STARTED after its
 * request (one already running may have read the store before the caller's moment), and all
 * callers that arrive during one run share the next.
 */
class Reloader {
  readonly #load: () => Promise<void>;
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  constructor(load: () => Promise<void>) {
    this.#load = load;
  }

  request(): Promise<void> {
    if (!this.#running) return this.#start();
    this.#next ??= this.#running.then(() => {
      this.#next = undefined;
      return this.#start();
    });
    return this.#next;
  }

  #start(): Promise<void> {
    const run = this.#load().finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
    this.#running = run;
    return run;
  }
}
