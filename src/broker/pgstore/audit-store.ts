/**
 * The PostgreSQL store: several brokers share one database (`store: { postgres: URL }`).
 * It implements the audit store port (events, hash chain, retention checkpoints) and the
 * receipt store port (receipts.ts) over one connection pool.
 *
 * The chain. One global hash chain for all brokers, as with SQLite: `audit verify` checks
 * one chain, and an export through any broker holds every broker's events in seq order.
 * An append transaction locks the one-row head table (`SELECT … FROM audit_chain FOR
 * UPDATE`), links its events after that head, inserts them, moves the head and commits; the
 * row lock is released at commit, so the chain is extended by one transaction at a time,
 * whichever broker it comes from (in READ COMMITTED a FOR UPDATE that waited re-reads the
 * row as the commit it waited for left it, and the head is one row, not a max() over the
 * events). The cost is that
 * brokers' group commits are serialized on that row: see README "Running several brokers"
 * for the measured figures.
 *
 * Durability, as for SQLite: `append` resolves only once its transaction committed
 * (PostgreSQL's own durability: with `synchronous_commit = on`, the default, that is
 * flushed WAL). Group commit: everything appended in one turn of the event loop — and,
 * while a transaction is in flight, everything appended meanwhile — goes into the next
 * transaction. A transaction is two round trips: `BEGIN; lock and read the head` and then
 * `INSERT …; UPDATE head; COMMIT` (one simple query, its values escaped as literals).
 *
 * Failure and recovery. When the database cannot be reached or a transaction fails, the
 * store fails closed: that batch and every append until the database is back reject with
 * AG_AUDIT_WRITE_FAILED, `failed` says why, and the proxies refuse statements. Unlike the
 * SQLite store this is not for good: the store reconnects in the background (backing off
 * up to `reconnectMaxMs`) and, once a connection answers, `failed` clears and appends are
 * accepted again, without a restart. A transaction whose COMMIT was sent but whose answer
 * was lost may have committed: its appends were rejected (the statements refused), so the
 * log may hold an intent for a statement that never ran, never the reverse.
 */
import pg from 'pg';
import { GENESIS_PREV, canonicalize, sha256Hex, type AuditRecord } from '../../shared/audit-hash.js';
import type { DsseEnvelope } from '../../shared/receipt.js';
import { silentLogger, type Logger } from '../log.js';
import {
  AuditStoreError,
  normalizeAuditQuery,
  normalizeEventTime,
  recordsFromRows,
  type AuditHead,
  type AuditQuery,
  type AuditStore,
  type NewAuditEvent,
  type NormalizedAuditQuery,
  type PruneOptions,
  type PruneResult,
  type RawAuditRow,
  type StoredCheckpoint,
} from '../audit/store.js';
import { migrate, type MigrateResult } from './schema.js';
import { createPgReceiptStore } from './receipts.js';
import type { ReceiptStore } from '../receipts/types.js';
import type { ApprovalService } from '../approvals/types.js';
import { createSharedApprovals, type SharedApprovals } from './approvals.js';
import { createSharedWrittenRelations, type SharedWrittenRelations } from './written-relations.js';
import { createSharedSchemaChanges, type SharedSchemaChanges } from './schema-changes.js';

export interface PostgresStoreOptions {
  /** Names this broker in the events it writes (crash recovery reads its own). */
  brokerId: string;
  logger?: Logger;
  /** Most events in one transaction. Default 2000. */
  maxBatch?: number;
  /** Rows per read query while streaming. Default 500. */
  pageSize?: number;
  /** Connections for reads (exports, receipts). Default 4. */
  readConnections?: number;
  /** A connection attempt or query that takes longer fails (the store then fails closed). Default 10 s. */
  timeoutMs?: number;
  /** Reconnect back-off bounds. Defaults 100 ms and 2 s. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

export interface PostgresStoreStats {
  transactions: number;
  events: number;
  largestBatch: number;
  /** Times the store failed closed (and later recovered or not). */
  outages: number;
}

interface Pending {
  /** The event without seq and prev, as copied at append time. */
  body: Record<string, unknown>;
  resolve: (r: AuditRecord) => void;
  reject: (e: Error) => void;
}

const UNREACHABLE_HINT =
  'The PostgreSQL audit store cannot be written, so the broker refuses statements. It reconnects by itself: ' +
  'check that the database is up and reachable from the broker; service resumes when it answers.';

/** Opens the store: connects, migrates (under an advisory lock), loads the head. */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions): Promise<PostgresStore> {
  const logger = opts.logger ?? silentLogger;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const config: pg.ClientConfig = { connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, keepAlive: true, application_name: `agentgate ${opts.brokerId}` };
  const pool = new pg.Pool({ ...config, max: opts.readConnections ?? 4, idleTimeoutMillis: 30_000 });
  // An idle pooled connection the server closed: the pool drops it and the next query makes a new one.
  pool.on('error', (e) => logger.warn('audit store: an idle read connection failed', { error: e.message }));
  try {
    const c = await pool.connect();
    let migrated: MigrateResult;
    try {
      migrated = await migrate(c);
    } finally {
      c.release();
    }
    if (migrated.from !== migrated.to) logger.info('audit store: PostgreSQL schema migrated', { from: migrated.from, to: migrated.to });
    const store = new PostgresStore(pool, config, opts, logger);
    await store.refreshHead();
    await store.startWriter();
    return store;
  } catch (e) {
    await pool.end().catch(() => {});
    if (e instanceof AuditStoreError) throw e;
    throw new AuditStoreError('AG_AUDIT_OPEN_FAILED', `cannot open the PostgreSQL audit store: ${(e as Error).message}`, {
      hint: 'Check the store URL (its secret reference), that the database is up, and that the role may create tables in it.',
      cause: e,
    });
  }
}

export class PostgresStore implements AuditStore {
  readonly brokerId: string;
  readonly #pool: pg.Pool;
  readonly #config: pg.ClientConfig;
  readonly #logger: Logger;
  readonly #maxBatch: number;
  readonly #pageSize: number;
  readonly #reconnectMinMs: number;
  readonly #reconnectMaxMs: number;
  #writer: pg.Client | undefined;
  #head: AuditHead = { seq: 0, hash: GENESIS_PREV };
  #checkpoints = new Map<number, StoredCheckpoint>();
  #queue: Pending[] = [];
  #inFlight = false;
  #flushScheduled = false;
  #failed: AuditStoreError | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #reconnectDelay: number;
  #closing: Promise<void> | undefined;
  #closed = false;
  #drained: (() => void) | undefined;
  #stats: PostgresStoreStats = { transactions: 0, events: 0, largestBatch: 0, outages: 0 };
  #recovered: (() => void)[] = [];
  readonly receipts: ReceiptStore;

  /** Use openPostgresStore(). */
  constructor(pool: pg.Pool, config: pg.ClientConfig, opts: PostgresStoreOptions, logger: Logger) {
    this.#pool = pool;
    this.#config = config;
    this.#logger = logger;
    this.brokerId = opts.brokerId;
    this.#maxBatch = opts.maxBatch ?? 2000;
    this.#pageSize = opts.pageSize ?? 500;
    this.#reconnectMinMs = opts.reconnectMinMs ?? 100;
    this.#reconnectMaxMs = opts.reconnectMaxMs ?? 2000;
    this.#reconnectDelay = this.#reconnectMinMs;
    this.receipts = createPgReceiptStore(pool);
  }

  get failed(): Error | undefined {
    return this.#failed;
  }

  get failures(): number {
    return this.#stats.outages;
  }

  onRecovered(listener: () => void): void {
    this.#recovered.push(listener);
  }

  head(): AuditHead {
    return { ...this.#head };
  }

  /** The local approval service, shared with the other brokers on this store (approvals.ts). */
  shareApprovals(local: ApprovalService, opts: { pollMs?: number } = {}): Promise<SharedApprovals> {
    return createSharedApprovals({ local, pool: this.#pool, clientConfig: this.#config, brokerId: this.brokerId, logger: this.#logger, ...opts });
  }

  /** Write taint shared with the other brokers on this store (written-relations.ts). */
  shareWrittenRelations(opts: { retryMs?: number } = {}): Promise<SharedWrittenRelations> {
    return createSharedWrittenRelations({ pool: this.#pool, clientConfig: this.#config, brokerId: this.brokerId, logger: this.#logger, ...opts });
  }

  /** Schema changes told to the other brokers on this store (schema-changes.ts). */
  shareSchemaChanges(opts: { retryMs?: number } = {}): Promise<SharedSchemaChanges> {
    return createSharedSchemaChanges({ pool: this.#pool, clientConfig: this.#config, brokerId: this.brokerId, logger: this.#logger, ...opts });
  }

  stats(): PostgresStoreStats {
    return { ...this.#stats };
  }

  /**
   * Reads the newest event (which may be another broker's) and the retention checkpoints:
   * exports and verification call it first, so they cover every broker's events.
   */
  async refreshHead(): Promise<AuditHead> {
    const [head, cps] = await Promise.all([
      this.#pool.query<{ seq: string; hash: string }>('SELECT seq::text AS seq, hash FROM audit_events ORDER BY audit_events.seq DESC LIMIT 1'),
      this.#pool.query<{ seq: string; hash: string; time: string; envelope: string }>('SELECT seq::text AS seq, hash, time, envelope FROM audit_checkpoints'),
    ]);
    for (const r of cps.rows) {
      const seq = Number(r.seq);
      if (!this.#checkpoints.has(seq)) this.#checkpoints.set(seq, { seq, hash: r.hash, time: r.time, envelope: JSON.parse(r.envelope) as DsseEnvelope });
    }
    const row = head.rows[0];
    if (row && Number(row.seq) > this.#head.seq) this.#head = { seq: Number(row.seq), hash: row.hash };
    return this.head();
  }

  /** Connects the write connection (open, and each reconnect). */
  async startWriter(): Promise<void> {
    const client = new pg.Client(this.#config);
    // Errors on an idle connection (the server went away) arrive here; a query in flight
    // also rejects, and #flush handles that.
    client.on('error', (e) => this.#lost(client, e));
    client.on('end', () => this.#lost(client, new Error('the connection to the audit database closed')));
    try {
      await client.connect();
      await client.query('SET synchronous_commit = on');
    } catch (e) {
      await client.end().catch(() => {});
      throw e;
    }
    this.#writer = client;
  }

  append(event: NewAuditEvent): Promise<AuditRecord> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#closing) return Promise.reject(closedError());
    let body: Record<string, unknown>;
    try {
      body = prepare(event);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const promise = new Promise<AuditRecord>((resolve, reject) => this.#queue.push({ body, resolve, reject }));
    this.#schedule();
    return promise;
  }

  #schedule(): void {
    if (this.#flushScheduled || this.#inFlight) return;
    this.#flushScheduled = true;
    // setImmediate: every append of this turn of the event loop joins one transaction.
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush().catch((e: unknown) => this.#fail(e as Error));
    });
  }

  async #flush(): Promise<void> {
    if (this.#inFlight || this.#queue.length === 0) return this.#maybeIdle();
    const client = this.#writer;
    if (this.#failed || !client) {
      this.#rejectQueue(this.#failed ?? unreachable(new Error('not connected')));
      return this.#maybeIdle();
    }
    const batch = this.#queue.length <= this.#maxBatch ? this.#queue : this.#queue.slice(0, this.#maxBatch);
    this.#queue = batch === this.#queue ? [] : this.#queue.slice(this.#maxBatch);
    this.#inFlight = true;
    try {
      const results = (await client.query('BEGIN; SELECT seq::text AS seq, hash FROM audit_chain FOR UPDATE')) as unknown as pg.QueryResult<{ seq: string; hash: string }>[];
      const top = results[1]?.rows[0];
      if (!top) throw new Error('the audit_chain head row is missing');
      let tip: AuditHead = { seq: Number(top.seq), hash: top.hash };
      const records: AuditRecord[] = [];
      const values: string[] = [];
      const lit = (s: string | null): string => (s === null ? 'NULL' : client.escapeLiteral(s));
      const broker = lit(this.brokerId);
      for (const p of batch) {
        const seq = tip.seq + 1;
        const prev = tip.hash;
        const { text, copy } = canonicalize({ ...p.body, seq, prev });
        const hash = sha256Hex(text);
        const record = copy as AuditRecord;
        record.hash = hash;
        records.push(record);
        values.push(`(${seq},${lit(record.time)},${lit(record.session)},${lit(record.target)},${lit(record.type)},${lit(text)},'${prev}','${hash}',${broker})`);
        tip = { seq, hash };
      }
      await client.query(`INSERT INTO audit_events (seq, time, session, target, type, event, prev, hash, broker) VALUES ${values.join(',')}; UPDATE audit_chain SET seq = ${tip.seq}, hash = '${tip.hash}'; COMMIT`);
      this.#head = tip;
      this.#stats.transactions++;
      this.#stats.events += batch.length;
      this.#stats.largestBatch = Math.max(this.#stats.largestBatch, batch.length);
      batch.forEach((p, i) => p.resolve(records[i]!));
    } catch (e) {
      this.#fail(e as Error, batch);
    } finally {
      this.#inFlight = false;
    }
    if (this.#queue.length > 0) this.#schedule();
    else this.#maybeIdle();
  }

  #rejectQueue(err: Error): void {
    const late = this.#queue;
    this.#queue = [];
    for (const p of late) p.reject(err);
  }

  /** The write connection failed (idle, or under a query): fail closed and reconnect. */
  #lost(client: pg.Client, e: Error): void {
    if (this.#writer !== client) return;
    this.#fail(e);
  }

  #fail(e: Error, batch: Pending[] = []): void {
    if (!this.#failed) {
      this.#failed = unreachable(e);
      this.#stats.outages++;
      this.#logger.error('audit store: PostgreSQL write failed; refusing statements until it answers again', { error: e.message, head: this.#head.seq });
    }
    const err = this.#failed;
    for (const p of batch) p.reject(err);
    this.#rejectQueue(err);
    const old = this.#writer;
    this.#writer = undefined;
    // The connection is broken or mid-transaction: dropping it rolls back whatever was open.
    if (old) old.end().catch(() => {});
    this.#scheduleReconnect();
    this.#maybeIdle();
  }

  #scheduleReconnect(): void {
    if (this.#reconnectTimer || this.#closing) return;
    const delay = this.#reconnectDelay;
    this.#reconnectDelay = Math.min(this.#reconnectMaxMs, this.#reconnectDelay * 2);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#reconnect().catch((e: unknown) => {
        this.#logger.debug('audit store: PostgreSQL still unreachable', { error: (e as Error).message });
        this.#scheduleReconnect();
      });
    }, delay);
    // The broker's listeners keep the process alive; a store waiting to reconnect need not.
    this.#reconnectTimer.unref();
  }

  async #reconnect(): Promise<void> {
    if (this.#closing) return;
    // The head first (over the pool): other brokers may have gone on writing meanwhile.
    await this.refreshHead();
    await this.startWriter();
    if (this.#closing) {
      const w = this.#writer;
      this.#writer = undefined;
      await w?.end();
      return;
    }
    this.#failed = undefined;
    this.#reconnectDelay = this.#reconnectMinMs;
    this.#logger.info('audit store: PostgreSQL reachable again; accepting statements', { head: this.#head.seq });
    for (const l of this.#recovered) l();
  }

  #maybeIdle(): void {
    if (this.#inFlight || this.#queue.length > 0 || this.#flushScheduled) return;
    const d = this.#drained;
    this.#drained = undefined;
    d?.();
  }

  read(q: AuditQuery): AsyncIterable<AuditRecord> {
    return recordsFromRows(this.readRaw(q));
  }

  async *readRaw(q: AuditQuery): AsyncIterable<RawAuditRow> {
    const nq = normalizeAuditQuery(q);
    const { where, params } = filterClause(nq);
    const sql = `SELECT seq::text AS seq, time, session, target, type, event, prev, hash FROM audit_events WHERE seq > $1 ${where} ORDER BY audit_events.seq LIMIT $2`;
    let after = nq.afterSeq;
    let remaining = nq.limit;
    while (remaining > 0) {
      if (this.#closed) throw closedError();
      const want = Math.min(this.#pageSize, remaining);
      let rows: (Omit<RawAuditRow, 'seq'> & { seq: string })[];
      try {
        rows = (await this.#pool.query(sql, [after, want, ...params])).rows as typeof rows;
      } catch (e) {
        throw new AuditStoreError('AG_AUDIT_WRITE_FAILED', `the PostgreSQL audit store cannot be read: ${(e as Error).message}`, { hint: UNREACHABLE_HINT, cause: e });
      }
      for (const r of rows) {
        const row: RawAuditRow = { ...r, seq: Number(r.seq) };
        after = row.seq;
        remaining--;
        yield row;
      }
      if (rows.length < want) return;
    }
  }

  checkpointAt(seq: number): StoredCheckpoint | undefined {
    return this.#checkpoints.get(seq);
  }

  /** As the SQLite store's prune: a signed checkpoint first, then deletes up to it in chunks. */
  async prune(opts: PruneOptions): Promise<PruneResult> {
    if (this.#failed) throw this.#failed;
    if (this.#closing) throw closedError();
    const cutoff = opts.before.toISOString();
    const q = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> => (await this.#pool.query<T>(sql, params)).rows;
    const [firstKept] = await q<{ seq: string | null }>('SELECT min(seq)::text AS seq FROM audit_events WHERE time >= $1', [cutoff]);
    const [bounds] = await q<{ lo: string | null; hi: string | null }>('SELECT min(seq)::text AS lo, max(seq)::text AS hi FROM audit_events');
    if (!bounds || bounds.lo === null || bounds.hi === null) return { deleted: 0, checkpoint: undefined, interrupted: false };
    const head = Number(bounds.hi);
    const cut = Math.min(firstKept?.seq == null ? head : Number(firstKept.seq) - 1, head - 1);
    if (cut < Number(bounds.lo)) return { deleted: 0, checkpoint: undefined, interrupted: false };
    const [last] = await q<{ seq: string; time: string; hash: string }>('SELECT seq::text AS seq, time, hash FROM audit_events WHERE seq = $1', [cut]);
    if (!last) throw new AuditStoreError('AG_AUDIT_CORRUPT', `audit retention: seq ${cut} is missing from the log`, { hint: 'Export the log and run `agentgate audit verify` on it.' });
    const envelope = await opts.sign({ type: 'agentgate.audit.checkpoint', version: 1, reason: 'retention', seq: cut, hash: last.hash, time: last.time, created_at: new Date().toISOString() });
    // Another broker may prune at the same time: the checkpoint insert is idempotent and
    // the delete trigger still refuses anything no checkpoint covers.
    await q('INSERT INTO audit_checkpoints (seq, hash, time, envelope) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING', [cut, last.hash, last.time, JSON.stringify(envelope)]);
    const checkpoint: StoredCheckpoint = { seq: cut, hash: last.hash, time: last.time, envelope };
    this.#checkpoints.set(cut, checkpoint);
    const chunk = opts.chunk ?? 1000;
    let deleted = 0;
    for (let lo = Number(bounds.lo); lo <= cut; lo += chunk) {
      if (this.#closing) return { deleted, checkpoint, interrupted: true };
      const r = await this.#pool.query('DELETE FROM audit_events WHERE seq <= $1', [Math.min(cut, lo + chunk - 1)]);
      deleted += r.rowCount ?? 0;
    }
    return { deleted, checkpoint, interrupted: false };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inFlight || this.#queue.length > 0 || this.#flushScheduled) await new Promise<void>((r) => (this.#drained = r));
      this.#closed = true;
      if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
      const w = this.#writer;
      this.#writer = undefined;
      await w?.end().catch(() => {});
      await this.#pool.end();
    })();
    return this.#closing;
  }
}

/** Checks an event and copies it (what is hashed is what the caller handed in now). */
function prepare(event: NewAuditEvent): Record<string, unknown> {
  if (typeof event?.type !== 'string' || event.type === '') throw new TypeError('audit event needs a type');
  if (event.detail === null || typeof event.detail !== 'object' || Array.isArray(event.detail)) throw new TypeError('audit event detail must be an object');
  const body = {
    time: normalizeEventTime(event.time),
    session: event.session ?? null,
    actor: event.actor ?? null,
    target: event.target ?? null,
    type: event.type,
    detail: event.detail,
    decision: event.decision ?? null,
    outcome: event.outcome ?? null,
  };
  if (body.session !== null && typeof body.session !== 'string') throw new TypeError('audit event session must be a string or null');
  if (body.target !== null && typeof body.target !== 'string') throw new TypeError('audit event target must be a string or null');
  return canonicalize(body).copy as Record<string, unknown>;
}

function filterClause(nq: NormalizedAuditQuery): { where: string; params: string[] } {
  const where: string[] = [];
  const params: string[] = [];
  const add = (col: string, op: string, v: string | undefined): void => {
    if (v === undefined) return;
    params.push(v);
    where.push(`AND ${col} ${op} $${params.length + 2}`);
  };
  add('time', '>=', nq.since);
  add('time', '<', nq.until);
  add('session', '=', nq.session);
  add('target', '=', nq.target);
  add('broker', '=', nq.broker);
  return { where: where.join(' '), params };
}

function unreachable(e: Error): AuditStoreError {
  return new AuditStoreError('AG_AUDIT_WRITE_FAILED', `the PostgreSQL audit store cannot be written: ${e.message}`, { hint: UNREACHABLE_HINT, cause: e });
}

function closedError(): AuditStoreError {
  return new AuditStoreError('AG_AUDIT_CLOSED', 'the audit store is closed', { hint: 'This is a bug: an event was recorded after the broker began shutting down.' });
}
