/**
 * The audit store port. The broker appends events through it and streams them back out
 * for export; SQLite is the one implementation today, a PostgreSQL-backed one (several
 * brokers sharing one log) can slot in behind the same interface.
 *
 * The contract callers build on:
 * - `append` resolves only once the event is durable (see each implementation for what
 *   "durable" survives) and resolves in seq order;
 * - once a write fails the store is `failed` for good: that append and every later one
 *   reject with an AuditStoreError, so the proxies refuse new statements (fail closed)
 *   rather than run them unrecorded.
 */
import { AgentgateError, ExitCode } from '../../errors.js';
import { ChainVerifier, type AuditRecord, type ChainResult } from '../../shared/audit-hash.js';
import type { AuditCheckpoint, DsseEnvelope } from '../../shared/receipt.js';

export type { AuditRecord } from '../../shared/audit-hash.js';

/** What a caller hands in: the store assigns seq, prev and hash, and stamps time if absent. */
export type NewAuditEvent = Omit<AuditRecord, 'seq' | 'prev' | 'hash' | 'time'> & {
  /** ISO-8601; defaults to now. Normalised to UTC with milliseconds. */
  time?: string | Date;
};

export interface AuditQuery {
  /** Only events with a greater seq: the cursor for paging. */
  afterSeq?: number;
  /** Inclusive lower bound on `time`. */
  since?: string | Date;
  /** Exclusive upper bound on `time`. */
  until?: string | Date;
  session?: string;
  target?: string;
  /** At most this many events. */
  limit?: number;
  /**
   * Only events this broker wrote. Stores shared by several brokers (PostgreSQL) filter on
   * it; a store only one broker writes (SQLite) ignores it: every event is that broker's.
   */
  broker?: string;
}

export interface AuditHead {
  /** 0 for an empty log. */
  seq: number;
  /** GENESIS_PREV for an empty log. */
  hash: string;
}

/** One stored event as its hashed text (the canonical JSON without `hash`) plus the indexed columns. */
export interface RawAuditRow {
  seq: number;
  time: string;
  session: string | null;
  target: string | null;
  type: string;
  event: string;
  prev: string;
  hash: string;
}

/**
 * A page of an export, built by the store: the jsonl lines of a page of events (stored
 * text + `"hash"` + newline each) as one string, and their hashes concatenated — two
 * allocations per page instead of several per event.
 */
export interface ExportPage {
  count: number;
  firstSeq: number;
  lastSeq: number;
  /** Every event's hash (64 hex digits each), in seq order. */
  hashes: string;
  lines: string;
}

/** A signed retention checkpoint: the last pruned event's seq and hash. */
export interface StoredCheckpoint {
  seq: number;
  hash: string;
  time: string;
  /** DSSE envelope over the AuditCheckpoint, signed with the receipt key. */
  envelope: DsseEnvelope;
}

export interface PruneOptions {
  /** Events strictly older than this go (the newest event always stays). */
  before: Date;
  /** Signs the checkpoint left at the cut (the receipt key); nothing is deleted if this fails. */
  sign(checkpoint: AuditCheckpoint): Promise<DsseEnvelope>;
  /** Deletes per transaction (each briefly holds the write lock a commit may wait on). Default 1000. */
  chunk?: number;
}

export interface PruneResult {
  deleted: number;
  checkpoint: StoredCheckpoint | undefined;
  /** True when the store closed before the prune finished (it resumes at the next run). */
  interrupted: boolean;
}

export interface AuditStore {
  append(event: NewAuditEvent): Promise<AuditRecord>;
  /** The last durable event: what a receipt may cite. */
  head(): AuditHead;
  /**
   * Stores several brokers write (PostgreSQL): reads the newest event whoever wrote it, so
   * head() then covers every broker's events (exports call it first). Others omit it.
   */
  refreshHead?(): Promise<AuditHead>;
  /** Events in seq order, fetched a page at a time: memory stays bounded for any size. */
  read(q: AuditQuery): AsyncIterable<AuditRecord>;
  /** The same rows as stored text (exports write them without re-encoding). Optional. */
  readRaw?(q: AuditQuery): AsyncIterable<RawAuditRow>;
  /** Pages of ready-made jsonl lines for exports, up to and including `throughSeq`. Optional. */
  readExportPages?(q: AuditQuery & { throughSeq: number }): AsyncIterable<ExportPage>;
  /** The retention checkpoint at exactly `seq`, if events up to it were pruned. */
  checkpointAt?(seq: number): StoredCheckpoint | undefined;
  /** Retention: prune old events behind a signed checkpoint. Stores that never prune omit it. */
  prune?(opts: PruneOptions): Promise<PruneResult>;
  /** Waits for pending appends, then releases the store. */
  close(): Promise<void>;
  /** Set once a write failed; the store accepts nothing after that (until it recovers, where it can). */
  readonly failed: Error | undefined;
  /** Times the store has failed closed so far (a session that saw it change may have lost events). */
  readonly failures: number;
  /** Stores that recover from a failure without a restart (PostgreSQL) call `listener` each time they do. */
  onRecovered?(listener: () => void): void;
}

export type AuditStoreErrorCode =
  | 'AG_AUDIT_WRITE_FAILED'
  | 'AG_AUDIT_CLOSED'
  | 'AG_AUDIT_CORRUPT'
  | 'AG_AUDIT_OPEN_FAILED'
  | 'AG_AUDIT_BAD_QUERY';

export class AuditStoreError extends AgentgateError {
  override readonly name = 'AuditStoreError';
  declare readonly code: AuditStoreErrorCode;
  constructor(code: AuditStoreErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(code, message, ExitCode.error, options);
  }
}

/** A query with its bounds checked and times normalised to the stored ISO form. */
export interface NormalizedAuditQuery {
  afterSeq: number;
  since: string | undefined;
  until: string | undefined;
  session: string | undefined;
  target: string | undefined;
  broker: string | undefined;
  limit: number;
}

/** Validates a query (it may come straight from an API request) and names the bad field. */
export function normalizeAuditQuery(q: AuditQuery): NormalizedAuditQuery {
  const bad = (field: string, why: string): never => {
    throw new AuditStoreError('AG_AUDIT_BAD_QUERY', `audit query: ${field} ${why}`, {
      hint: 'Times are ISO-8601 (2024-05-01 or 2024-05-01T12:00:00Z); seq and limit are whole numbers.',
    });
  };
  const afterSeq = q.afterSeq ?? 0;
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) bad('afterSeq', `must be a whole number ≥ 0, got ${String(q.afterSeq)}`);
  const limit = q.limit ?? Number.POSITIVE_INFINITY;
  if (q.limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) bad('limit', `must be a whole number ≥ 0, got ${String(q.limit)}`);
  const time = (field: string, v: string | Date | undefined): string | undefined => {
    if (v === undefined) return undefined;
    const d = v instanceof Date ? v : new Date(v);
    if (Number.isNaN(d.getTime())) bad(field, `is not a valid time: ${String(v)}`);
    return d.toISOString();
  };
  for (const f of ['session', 'target', 'broker'] as const) {
    if (q[f] !== undefined && typeof q[f] !== 'string') bad(f, 'must be a string');
  }
  return { afterSeq, since: time('since', q.since), until: time('until', q.until), session: q.session, target: q.target, broker: q.broker, limit };
}

/** Records from stored rows: `event` is the hashed text without its hash, which the row keeps beside it. */
export async function* recordsFromRows(rows: AsyncIterable<RawAuditRow>): AsyncIterable<AuditRecord> {
  for await (const row of rows) {
    const record = JSON.parse(row.event) as AuditRecord;
    record.hash = row.hash;
    yield record;
  }
}

/** Normalises an event time to what `Date.prototype.toISOString` prints (UTC, ms); undefined = now. */
export function normalizeEventTime(t: string | Date | undefined, now?: () => Date): string {
  if (t === undefined) return now ? now().toISOString() : isoTime(Date.now());
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) throw new TypeError(`audit event time is not a valid time: ${String(t)}`);
  return d.toISOString();
}

/**
 * Re-check the whole stored chain, streaming. For `broker start --verify-audit` and tests.
 * After retention the stored chain starts at the checkpoint left at the cut (its signature
 * is checked by `agentgate audit verify --key`, not here).
 */
export async function verifyStore(store: AuditStore): Promise<ChainResult> {
  await store.refreshHead?.();
  let v: ChainVerifier | undefined;
  for await (const r of store.read({})) {
    if (!v) {
      const cp = r.seq > 1 ? store.checkpointAt?.(r.seq - 1) : undefined;
      v = new ChainVerifier(cp ? cp.hash : undefined);
    }
    if (!v.push(r)) break;
  }
  return (v ?? new ChainVerifier()).result();
}

/** Years 0000–9999: where toISOString prints four digits (outside, ±YYYYYY). */
const FOUR_DIGIT_YEARS_END = 253402300800000;
let lastMs = Number.NaN;
let lastIso = '';
let minuteStart = Number.NaN;
let minutePrefix = '';

/**
 * `new Date(ms).toISOString()`, cheaply: every statement stamps two audit events, and
 * formatting a Date each time cost more than hashing the event. The text up to the minute
 * is reused while the minute lasts, and a repeated millisecond reuses the whole string.
 */
export function isoTime(ms: number): string {
  if (ms === lastMs) return lastIso;
  if (!(ms >= 0 && ms < FOUR_DIGIT_YEARS_END) || !Number.isInteger(ms)) return new Date(ms).toISOString();
  const minute = ms - (ms % 60_000);
  if (minute !== minuteStart) {
    minuteStart = minute;
    minutePrefix = new Date(minute).toISOString().slice(0, 17); // 'YYYY-MM-DDTHH:MM:'
  }
  const rest = ms - minute;
  const sec = Math.floor(rest / 1000);
  const milli = rest % 1000;
  lastIso = `${minutePrefix}${sec < 10 ? '0' : ''}${sec}.${milli < 100 ? (milli < 10 ? '00' : '0') : ''}${milli}Z`;
  lastMs = ms;
  return lastIso;
}
