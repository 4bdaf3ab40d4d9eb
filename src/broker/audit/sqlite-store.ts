/**
 * The SQLite audit store (the default; one broker, one file under state_dir).
 *
 * Durability. With `sync: 'normal'` (the default) an event is durable once its line is in
 * the write-ahead event journal (event-journal.ts): one write(2) of its canonical text, so
 * the OS holds it before `append` resolves. A broker crash or SIGKILL loses nothing that
 * resolved; a power cut or kernel panic may lose the last moments. The writer thread then
 * inserts the rows into SQLite (WAL mode) in large batches, off the event loop, and the
 * journal segments they came from are deleted; at the next open, recovery inserts whatever
 * the journal holds beyond the database. With `sync: 'full'` there is no journal: every
 * group commit goes to SQLite on the writer thread and is fsynced before `append`
 * resolves, which survives power loss, at the cost of one fsync per group commit.
 *
 * Why a journal: the statement's result waits on its event. A SQLite commit of one row
 * (table and three indexes: several WAL pages) measured ~40–100 µs on the event loop;
 * the journal write measures a few. Reads (exports, receipts' session queries) wait until
 * the database has caught up with the journal, which is milliseconds behind.
 *
 * Group commit. The chain is extended in memory, synchronously and in call order, by
 * append(); everything appended in the same tick of the event loop goes into one journal
 * write (or, with `sync: 'full'`, one transaction), and each append resolves after that.
 *
 * Failure. If a transaction fails the store is failed for good: that batch and every later
 * append reject with AuditStoreError('AG_AUDIT_WRITE_FAILED'), and head() stays at the
 * last committed event, which is what is on disk.
 *
 * Retention. prune() deletes the oldest events up to a cut, after storing a checkpoint —
 * the last pruned event's seq and hash, signed by the caller (with the receipt key) — in
 * `audit_checkpoints`. The table's delete trigger refuses any delete no checkpoint covers.
 * The newest event is never pruned, so the chain always continues from a row on disk.
 */
import { mkdirSync, openSync, closeSync, fstatSync, fchmodSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { Worker } from 'node:worker_threads';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { GENESIS_PREV, canonicalize, sha256Hex, type AuditRecord } from '../../shared/audit-hash.js';
import { silentLogger, type Logger } from '../log.js';
import type { DsseEnvelope } from '../../shared/receipt.js';
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
  type ExportPage,
  type RawAuditRow,
  type StoredCheckpoint,
} from './store.js';
import { EventJournal, JournalDamaged, SEGMENT_BYTES, readJournal, removeJournal } from './event-journal.js';
import {
  CREATE_SCHEMA,
  INSERT_EVENT,
  describeFailure,
  MIGRATE_V2,
  SCHEMA_VERSION,
  pragmasFor,
  type EventRow,
  type FromWriter,
  type SyncMode,
  type ToWriter,
  type WriterFailure,
  type WriterInit,
} from './sqlite-schema.js';

export interface SqliteAuditStoreOptions {
  /** 'normal' (default): survives a broker crash. 'full': also power loss. */
  sync?: SyncMode;
  /**
   * Where an event becomes durable: `journal` (the default with sync normal; see above) or
   * `thread` (a SQLite commit on the writer thread per group; always so with sync full).
   */
  writer?: 'journal' | 'thread';
  logger?: Logger;
  /** Rows read per query while streaming; bounds memory. Default 500. */
  pageSize?: number;
  /** Most rows in one transaction (or journal write); a larger burst is split. Default 2000. */
  maxBatch?: number;
  /** A journal segment past this many bytes is closed and a new one started. Default 16 MiB. */
  journalSegmentBytes?: number;
}

/** Counters for operators and tests: how well group commit is batching. */
export interface AuditStoreStats {
  /** Transactions committed. */
  transactions: number;
  /** Events committed. */
  events: number;
  /** Most events committed in one transaction. */
  largestBatch: number;
}

interface Pending {
  row: EventRow;
  record: AuditRecord;
  resolve: (r: AuditRecord) => void;
  reject: (e: Error) => void;
}

/**
 * Events per export page. Small on purpose: a page's text (~60 KB) stays below V8's large-
 * object size, so it dies young in the new space instead of piling up until a full GC —
 * the broker's RSS stays flat through an export of any size.
 */
const EXPORT_PAGE_ROWS = 100;

/** Journalled rows go to the database in batches: after this long, or at this many rows. */
const INDEX_DELAY_MS = 50;
const INDEX_ROWS = 500;

const WRITE_FAILED_HINT =
  'The audit log cannot be written, so the broker refuses new statements. Check free space and permissions ' +
  'of the state directory (and that nothing removes or replaces files in it), then restart the broker.';

/** Opens (creating if needed) the audit database at `path` and starts its writer thread. */
export async function openSqliteAuditStore(path: string, opts: SqliteAuditStoreOptions = {}): Promise<SqliteAuditStore> {
  const file = resolvePath(path);
  const sync = opts.sync ?? 'normal';
  const logger = opts.logger ?? silentLogger;
  let db: DatabaseSync | undefined;
  try {
    prepareFile(file, logger);
    db = new DatabaseSync(file);
    const mode = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode?: string } | undefined;
    if (mode?.journal_mode !== 'wal') throw new Error(`could not switch to WAL mode (got ${String(mode?.journal_mode)})`);
    db.exec(pragmasFor(sync));
    migrate(db);
    let head = loadHead(db, file);
    // The journal is read whatever the mode, so switching to sync full never strands events.
    head = recoverJournal(db, file, head, logger);
    const worker = await startWriter({ path: file, sync });
    return new SqliteAuditStore(db, worker, head, file, logger, opts);
  } catch (e) {
    db?.close();
    if (e instanceof AuditStoreError) throw e;
    throw new AuditStoreError('AG_AUDIT_OPEN_FAILED', `cannot open the audit log ${file}: ${(e as Error).message}`, {
      hint: 'Check that the state directory exists and is writable by the broker user.',
      cause: e,
    });
  }
}

/** The file is created 0600 in a 0700 directory before SQLite opens it (its WAL and shm inherit the mode). */
function prepareFile(file: string, logger: Logger): void {
  // Only a directory we create gets 0700; an existing one is the operator's choice.
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const fd = openSync(file, 'a', 0o600);
  try {
    const st = fstatSync(fd);
    if ((st.mode & 0o077) !== 0) {
      fchmodSync(fd, 0o600);
      logger.warn('audit log was readable by others; tightened to 0600', { path: file, was: (st.mode & 0o777).toString(8) });
    }
  } finally {
    closeSync(fd);
  }
}

function migrate(db: DatabaseSync): void {
  const row = db.prepare('PRAGMA user_version').get() as { user_version: number };
  if (row.user_version > SCHEMA_VERSION) {
    throw new AuditStoreError('AG_AUDIT_OPEN_FAILED', `the audit log was written by a newer agentgate (schema ${row.user_version})`, {
      hint: 'Run the agentgate version that created it, or a newer one.',
    });
  }
  if (row.user_version === SCHEMA_VERSION) return;
  db.exec('BEGIN IMMEDIATE');
  try {
    if (row.user_version < 1) db.exec(CREATE_SCHEMA);
    if (row.user_version < 2) db.exec(MIGRATE_V2);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec('COMMIT');
  } catch (e) {
    db.exec('ROLLBACK');
    throw e;
  }
}

/**
 * The last row is where the chain continues, so it is checked before anything is added:
 * its stored text must hash to its hash, agree with its columns, and link to the row before.
 */
function loadHead(db: DatabaseSync, file: string): AuditHead {
  const rows = db.prepare('SELECT seq, event, prev, hash FROM audit_events ORDER BY seq DESC LIMIT 2').all() as unknown as {
    seq: number;
    event: string;
    prev: string;
    hash: string;
  }[];
  const [last, before] = rows;
  if (!last) return { seq: 0, hash: GENESIS_PREV };
  const corrupt = (why: string): never => {
    throw new AuditStoreError('AG_AUDIT_CORRUPT', `the audit log ${file} is damaged at seq ${last.seq}: ${why}`, {
      hint: 'Do not append to it. Keep the file for investigation, run `agentgate audit verify` on an export, ' +
        'and start the broker with a new state directory.',
    });
  };
  if (sha256Hex(last.event) !== last.hash) corrupt('its content does not match its hash');
  let parsed: { seq?: unknown; prev?: unknown };
  try {
    parsed = JSON.parse(last.event) as { seq?: unknown; prev?: unknown };
  } catch {
    return corrupt('its content is not JSON');
  }
  if (parsed.seq !== last.seq || parsed.prev !== last.prev) corrupt('its columns disagree with its content');
  if (before) {
    if (before.seq !== last.seq - 1) corrupt(`seq ${last.seq - 1} is missing`);
    if (sha256Hex(before.event) !== before.hash) corrupt(`seq ${before.seq} does not match its hash`);
    if (last.prev !== before.hash) corrupt('it does not link to the event before it');
  } else if (last.seq === 1) {
    if (last.prev !== GENESIS_PREV) corrupt('the only event is not the start of a chain');
  } else {
    // Everything before it was pruned: it must link to the checkpoint left at the cut.
    const cp = db.prepare('SELECT hash FROM audit_checkpoints WHERE seq = ?').get(last.seq - 1) as { hash: string } | undefined;
    if (!cp) corrupt(`seq ${last.seq - 1} is missing and no retention checkpoint covers it`);
    else if (cp.hash !== last.prev) corrupt('it does not link to the retention checkpoint before it');
  }
  return { seq: last.seq, hash: last.hash };
}

/** Inserts what the journal holds beyond the database (one transaction), then deletes the journal. */
function recoverJournal(db: DatabaseSync, file: string, head: AuditHead, logger: Logger): AuditHead {
  let rows: RawAuditRow[];
  try {
    rows = readJournal(file, head);
  } catch (e) {
    if (!(e instanceof JournalDamaged)) throw e;
    throw new AuditStoreError('AG_AUDIT_CORRUPT', `the audit journal of ${file} is damaged: ${e.message}`, {
      hint: 'Do not append to it. Keep the state directory for investigation, export what the database holds, ' +
        'and start the broker with a new state directory.',
    });
  }
  if (rows.length > 0) {
    const insert = db.prepare(INSERT_EVENT);
    db.exec('BEGIN IMMEDIATE');
    try {
      for (const r of rows) insert.run(r.seq, r.time, r.session, r.target, r.type, r.event, r.prev, r.hash);
      db.exec('COMMIT');
    } catch (e) {
      db.exec('ROLLBACK');
      throw e;
    }
    const last = rows[rows.length - 1]!;
    logger.info('audit journal recovered into the database', { path: file, events: rows.length, head: last.seq });
    head = { seq: last.seq, hash: last.hash };
  }
  removeJournal(file);
  return head;
}

function startWriter(init: WriterInit): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./sqlite-writer.js', import.meta.url), { workerData: init });
    const onMessage = (m: FromWriter): void => {
      cleanup();
      if (m.type === 'ready') {
        resolve(worker);
      } else {
        // The open already failed and is reported below; a failed terminate adds nothing.
        worker.terminate().catch(() => {});
        reject(new Error(m.type === 'open-failed' ? m.error.message : `unexpected ${m.type} from the writer`));
      }
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`the audit writer thread exited during startup (code ${code})`));
    };
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

export class SqliteAuditStore implements AuditStore {
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #worker: Worker;
  readonly #logger: Logger;
  readonly #pageSize: number;
  readonly #maxBatch: number;
  /** Last committed event: on disk. */
  #head: AuditHead;
  /** Last event chained in memory: where the next append links. */
  #tip: AuditHead;
  #queue: Pending[] = [];
  #inFlight: { id: number; batch: Pending[] } | undefined;
  #nextBatchId = 1;
  #flushScheduled = false;
  #failed: AuditStoreError | undefined;
  #closing: Promise<void> | undefined;
  #closed = false;
  #writerGone = false;
  #drained: (() => void) | undefined;
  #readStatements = new Map<string, StatementSync>();
  #stats: AuditStoreStats = { transactions: 0, events: 0, largestBatch: 0 };
  #prune: { id: number; resolve: (r: { deleted: number; interrupted: boolean }) => void; reject: (e: Error) => void } | undefined;
  #nextPruneId = 1;
  /** The write-ahead journal (sync: 'normal'); undefined = the writer thread's commits are the durability point. */
  #journal: EventJournal | undefined;
  /** Journalled rows not yet handed to the writer thread for the database. */
  #toIndex: EventRow[] = [];
  /** The batch the writer thread is inserting from the journal. */
  #indexing: { id: number; lastSeq: number } | undefined;
  /** Every event through this seq is in the database (readable). */
  #indexedSeq: number;
  /** Pending start of the next index batch (see #index). */
  #indexTimer: NodeJS.Timeout | undefined;
  /** Readers waiting for the database to reach a seq. */
  #indexWaiters: { seq: number; resolve: () => void }[] = [];

  /** Use openSqliteAuditStore(). */
  constructor(db: DatabaseSync, worker: Worker, head: AuditHead, path: string, logger: Logger, opts: SqliteAuditStoreOptions) {
    this.#db = db;
    this.#worker = worker;
    this.#head = head;
    this.#tip = head;
    this.path = path;
    this.#logger = logger;
    this.#pageSize = positiveInt(opts.pageSize, 500, 'pageSize');
    this.#maxBatch = positiveInt(opts.maxBatch, 2000, 'maxBatch');
    this.#indexedSeq = head.seq;
    if ((opts.sync ?? 'normal') === 'normal' && opts.writer !== 'thread') this.#journal = new EventJournal(path, positiveInt(opts.journalSegmentBytes, SEGMENT_BYTES, 'journalSegmentBytes'));
    worker.on('message', (m: FromWriter) => this.#onWriterMessage(m));
    worker.on('error', (e) => this.#fail({ message: `audit writer thread crashed: ${e.message}`, errcode: undefined, errstr: undefined }, e));
    worker.on('exit', (code) => {
      this.#writerGone = true;
      if (!this.#closed) this.#fail({ message: `audit writer thread exited (code ${code})`, errcode: undefined, errstr: undefined });
    });
    // An idle store must not keep the process alive; a pending append must.
    worker.unref();
  }

  get failed(): Error | undefined {
    return this.#failed;
  }

  /** 0 or 1: this store fails for good. */
  get failures(): number {
    return this.#failed ? 1 : 0;
  }

  head(): AuditHead {
    return { ...this.#head };
  }

  stats(): AuditStoreStats {
    return { ...this.#stats };
  }

  /** The journal's segment files not yet deleted (empty with sync full). */
  journalSegments(): string[] {
    return this.#journal?.segments ?? [];
  }

  append(event: NewAuditEvent): Promise<AuditRecord> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#closing) return Promise.reject(closedError());
    let pending: Omit<Pending, 'resolve' | 'reject'>;
    try {
      pending = this.#chain(event);
    } catch (e) {
      // A malformed event is the caller's bug; nothing was chained, the store stays healthy.
      return Promise.reject(e as Error);
    }
    const promise = new Promise<AuditRecord>((resolve, reject) => this.#queue.push({ ...pending, resolve, reject }));
    this.#schedule();
    return promise;
  }

  /** Builds the next link: seq, prev, the canonical text and its hash. */
  #chain(event: NewAuditEvent): Omit<Pending, 'resolve' | 'reject'> {
    if (typeof event?.type !== 'string' || event.type === '') throw new TypeError('audit event needs a type');
    if (event.detail === null || typeof event.detail !== 'object' || Array.isArray(event.detail)) {
      throw new TypeError('audit event detail must be an object');
    }
    const seq = this.#tip.seq + 1;
    const prev = this.#tip.hash;
    const body = {
      seq,
      time: normalizeEventTime(event.time),
      session: event.session ?? null,
      actor: event.actor ?? null,
      target: event.target ?? null,
      type: event.type,
      detail: event.detail,
      decision: event.decision ?? null,
      outcome: event.outcome ?? null,
      prev,
    };
    if (body.session !== null && typeof body.session !== 'string') throw new TypeError('audit event session must be a string or null');
    if (body.target !== null && typeof body.target !== 'string') throw new TypeError('audit event target must be a string or null');
    // The caller gets what read() will return: a copy taken now, so later changes to their
    // objects cannot make the record differ from what was hashed.
    const { text, copy } = canonicalize(body);
    const hash = sha256Hex(text);
    const record = copy as AuditRecord;
    record.hash = hash;
    this.#tip = { seq, hash };
    return {
      row: { seq, time: body.time, session: body.session, target: body.target, type: body.type, event: text, prev, hash },
      record,
    };
  }

  #schedule(): void {
    if (this.#flushScheduled || this.#inFlight) return;
    this.#flushScheduled = true;
    if (!this.#journal) this.#worker.ref();
    // setImmediate, not a microtask: everything appended during this turn of the event
    // loop (all the I/O callbacks that ran) joins the same journal write or transaction.
    // A microtask would also let a chain of appends made on resolution (append, then
    // append again when it resolves) run forever without the loop ever reaching I/O.
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#failed && this.#queue.length > 0) {
      const late = this.#queue;
      this.#queue = [];
      for (const p of late) p.reject(this.#failed);
    }
    if (this.#inFlight || this.#failed || this.#queue.length === 0) {
      this.#maybeIdle();
      return;
    }
    const batch = this.#queue.length <= this.#maxBatch ? this.#queue : this.#queue.slice(0, this.#maxBatch);
    this.#queue = batch === this.#queue ? [] : this.#queue.slice(this.#maxBatch);
    if (this.#journal) {
      this.#commitJournal(batch, this.#journal);
      return;
    }
    const id = this.#nextBatchId++;
    this.#inFlight = { id, batch };
    this.#worker.ref();
    const msg: ToWriter = { type: 'commit', id, rows: batch.map((p) => p.row) };
    this.#worker.postMessage(msg);
  }

  #commitJournal(batch: Pending[], journal: EventJournal): void {
    let lines = '';
    for (const p of batch) lines += `${p.row.event}\n`;
    try {
      journal.append(lines, batch[0]!.row.seq, batch[batch.length - 1]!.row.seq);
    } catch (e) {
      this.#fail(describeFailure(e), e as Error, batch);
      return;
    }
    this.#committed(batch);
    for (const p of batch) this.#toIndex.push(p.row);
    this.#index();
    if (this.#queue.length > 0) this.#schedule();
    else this.#maybeIdle();
  }

  /**
   * Hands journalled rows to the writer thread, one batch at a time. Not at once: a batch
   * waits up to INDEX_DELAY_MS or until INDEX_ROWS rows gathered, because one SQLite
   * transaction per statement (under light load every statement is its own group) costs
   * the writer thread a core's worth of CPU the data path needs. `now` skips the wait
   * (a reader is waiting, or the store is closing).
   */
  #index(now = false): void {
    if (this.#indexing || this.#failed || this.#toIndex.length === 0) return;
    if (!now && this.#toIndex.length < INDEX_ROWS && this.#indexWaiters.length === 0 && !this.#closing) {
      this.#indexTimer ??= setTimeout(() => {
        this.#indexTimer = undefined;
        this.#index(true);
      }, INDEX_DELAY_MS);
      return;
    }
    if (this.#indexTimer) {
      clearTimeout(this.#indexTimer);
      this.#indexTimer = undefined;
    }
    const rows = this.#toIndex.length <= this.#maxBatch ? this.#toIndex : this.#toIndex.slice(0, this.#maxBatch);
    this.#toIndex = rows === this.#toIndex ? [] : this.#toIndex.slice(this.#maxBatch);
    const id = this.#nextBatchId++;
    this.#indexing = { id, lastSeq: rows[rows.length - 1]!.seq };
    this.#worker.ref();
    this.#worker.postMessage({ type: 'commit', id, rows } satisfies ToWriter);
  }

  #indexedThrough(seq: number): void {
    this.#indexedSeq = seq;
    this.#journal?.indexed(seq);
    if (this.#indexWaiters.length === 0) return;
    const still: { seq: number; resolve: () => void }[] = [];
    for (const w of this.#indexWaiters) {
      if (w.seq <= seq) w.resolve();
      else still.push(w);
    }
    this.#indexWaiters = still;
  }

  /** Resolves once every event durable now is also in the database (at once without a journal, or after a failure). */
  #caughtUp(): Promise<void> {
    const seq = this.#head.seq;
    if (!this.#journal || this.#indexedSeq >= seq || this.#failed) return Promise.resolve();
    this.#worker.ref();
    const caught = new Promise<void>((resolve) => this.#indexWaiters.push({ seq, resolve }));
    this.#index(true);
    return caught;
  }

  #committed(batch: Pending[]): void {
    const last = batch[batch.length - 1]!.row;
    this.#head = { seq: last.seq, hash: last.hash };
    this.#stats.transactions++;
    this.#stats.events += batch.length;
    this.#stats.largestBatch = Math.max(this.#stats.largestBatch, batch.length);
    for (const p of batch) p.resolve(p.record);
  }

  #onWriterMessage(m: FromWriter): void {
    if (m.type === 'pruned' || m.type === 'prune-failed') {
      const p = this.#prune;
      if (!p || p.id !== m.id) return;
      this.#prune = undefined;
      if (m.type === 'pruned') p.resolve({ deleted: m.deleted, interrupted: m.interrupted });
      else p.reject(new AuditStoreError('AG_AUDIT_WRITE_FAILED', `audit retention: pruning failed after ${m.deleted} events: ${m.error.message}`, { hint: 'The log is intact (pruning resumes at the next run). Check free space and permissions of the state directory.' }));
      this.#maybeIdle();
      return;
    }
    if (this.#journal && (m.type === 'committed' || m.type === 'failed') && this.#indexing?.id === m.id) {
      const lastSeq = this.#indexing.lastSeq;
      this.#indexing = undefined;
      // The events are safe in the journal either way; but a database that cannot be
      // written cannot be read back or exported, so the store fails closed.
      if (m.type === 'failed') this.#fail(m.error);
      else {
        this.#indexedThrough(lastSeq);
        this.#index();
        this.#maybeIdle();
      }
      return;
    }
    const flight = this.#inFlight;
    if ((m.type !== 'committed' && m.type !== 'failed') || !flight || flight.id !== m.id) {
      this.#fail({ message: `audit writer sent an unexpected ${m.type}`, errcode: undefined, errstr: undefined });
      return;
    }
    this.#inFlight = undefined;
    if (m.type === 'failed') {
      this.#fail(m.error, undefined, flight.batch);
      return;
    }
    this.#committed(flight.batch);
    // What queued up during that commit goes out now, as the next transaction.
    this.#flush();
  }

  #fail(failure: WriterFailure, cause?: Error, batch: Pending[] = []): void {
    if (!this.#failed) {
      const detail = failure.errstr && !failure.message.includes(failure.errstr) ? `${failure.message} (${failure.errstr})` : failure.message;
      this.#failed = new AuditStoreError('AG_AUDIT_WRITE_FAILED', `the audit log could not be written: ${detail}`, {
        hint: WRITE_FAILED_HINT,
        cause: cause ?? Object.assign(new Error(failure.message), { errcode: failure.errcode, errstr: failure.errstr }),
      });
      this.#logger.error('audit store failed; refusing further events', {
        path: this.path,
        error: detail,
        errcode: failure.errcode,
        head: this.#head.seq,
      });
    }
    const err = this.#failed;
    const victims = [...batch, ...(this.#inFlight?.batch ?? []), ...this.#queue];
    this.#inFlight = undefined;
    this.#queue = [];
    // Journalled events stay in the journal (recovery inserts them at the next open);
    // readers waiting for the database read what it has.
    this.#toIndex = [];
    if (this.#indexTimer) clearTimeout(this.#indexTimer);
    this.#indexTimer = undefined;
    for (const w of this.#indexWaiters.splice(0)) w.resolve();
    // Nothing past the last commit exists on disk, so the chain continues from there in
    // nobody's memory either.
    this.#tip = this.#head;
    for (const p of victims) p.reject(err);
    this.#maybeIdle();
  }

  /** Appends not yet durable, or (until a failure) journalled rows not yet in the database. */
  #busy(): boolean {
    if (this.#inFlight || this.#queue.length > 0 || this.#flushScheduled) return true;
    return !this.#failed && (this.#indexing !== undefined || this.#toIndex.length > 0);
  }

  #maybeIdle(): void {
    if (this.#busy()) return;
    // A prune under way keeps the process alive; close() does not wait for it to finish.
    // Once closing, the writer stays referenced: close() waits for it to exit, and a batch's
    // answer arriving meanwhile (the store idle again) must not let the process end first.
    if (!this.#prune && !this.#closed) this.#worker.unref();
    const d = this.#drained;
    this.#drained = undefined;
    d?.();
  }

  read(q: AuditQuery): AsyncIterable<AuditRecord> {
    return recordsFromRows(this.readRaw(q));
  }

  /**
   * The stored rows themselves: `event` is the exact hashed text, so an export writes it
   * without parsing or re-encoding. Same paging and filters as read().
   */
  async *readRaw(q: AuditQuery): AsyncIterable<RawAuditRow> {
    const nq = normalizeAuditQuery(q);
    await this.#caughtUp();
    const { where, params } = filterClause(nq, ['seq > ?'], []);
    const sql = `SELECT seq, time, session, target, type, event, prev, hash FROM audit_events WHERE ${where} ORDER BY seq LIMIT ?`;
    let after = nq.afterSeq;
    let remaining = nq.limit;
    while (remaining > 0) {
      if (this.#closed) throw closedError();
      const want = Math.min(this.#pageSize, remaining);
      // One short query per page, no statement held open across yields: a slow consumer
      // never pins a read snapshot (which would keep WAL checkpoints from finishing).
      const rows = this.#readStatement(sql).all(after, ...params, want) as unknown as RawAuditRow[];
      for (const row of rows) {
        after = row.seq;
        remaining--;
        yield row;
      }
      if (rows.length < want) return;
      // Let the event loop breathe between pages of a long export.
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /**
   * Export pages built by SQLite: the jsonl lines (exactly eventLine() + "\\n" per event, in
   * seq order) as one string, and the events' hashes concatenated. Same filters as read().
   */
  async *readExportPages(q: AuditQuery & { throughSeq: number }): AsyncIterable<ExportPage> {
    const nq = normalizeAuditQuery(q);
    await this.#caughtUp();
    const { where, params } = filterClause(nq, ['seq > ?', 'seq <= ?'], [q.throughSeq]);
    // SQLite builds the page: each line is the event text with the hash appended, and
    // the page is one string, so the JavaScript heap sees two allocations per page.
    const line = `substr(event, 1, length(event) - 1) || ',"hash":"' || hash || '"}' || char(10)`;
    const page = (ordered: boolean): string => {
      // group_concat follows the ordered subquery in practice, but SQLite promises that only
      // with ORDER BY inside the aggregate (which costs a sort): the fast form is checked
      // against its seq list and the ordered form used if it ever disagrees.
      const by = ordered ? ' ORDER BY seq' : '';
      return (
        `SELECT count(*) AS count, group_concat(seq, ','${by}) AS seqs, group_concat(hash, ''${by}) AS hashes, group_concat(${line}, ''${by}) AS lines ` +
        `FROM (SELECT seq, event, hash FROM audit_events WHERE ${where} ORDER BY seq LIMIT ?)`
      );
    };
    const fast = page(false);
    const ordered = page(true);
    let after = nq.afterSeq;
    for (;;) {
      if (this.#closed) throw closedError();
      type Row = { count: number; seqs: string | null; hashes: string; lines: string };
      let row = this.#readStatement(fast).get(after, ...params, EXPORT_PAGE_ROWS) as Row | undefined;
      if (!row || row.count === 0 || row.seqs === null) return;
      let seqs = row.seqs.split(',').map(Number);
      if (!increasing(seqs)) {
        row = this.#readStatement(ordered).get(after, ...params, EXPORT_PAGE_ROWS) as Row;
        seqs = (row.seqs ?? '').split(',').map(Number);
      }
      const firstSeq = seqs[0]!;
      after = seqs[seqs.length - 1]!;
      yield { count: row.count, firstSeq, lastSeq: after, hashes: row.hashes, lines: row.lines };
      if (row.count < EXPORT_PAGE_ROWS) return;
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** The retention checkpoint whose seq is exactly `seq` (the event before the oldest kept one). */
  checkpointAt(seq: number): StoredCheckpoint | undefined {
    const row = this.#readStatement('SELECT seq, hash, time, envelope FROM audit_checkpoints WHERE seq = ?').get(seq) as
      | { seq: number; hash: string; time: string; envelope: string }
      | undefined;
    return row ? { seq: row.seq, hash: row.hash, time: row.time, envelope: JSON.parse(row.envelope) as DsseEnvelope } : undefined;
  }

  /** The newest retention checkpoint: where the stored chain now begins. */
  latestCheckpoint(): StoredCheckpoint | undefined {
    const row = this.#readStatement('SELECT seq FROM audit_checkpoints ORDER BY seq DESC LIMIT 1').get() as { seq: number } | undefined;
    return row ? this.checkpointAt(row.seq) : undefined;
  }

  /**
   * Prunes every event older than `before`, except the newest event, after storing a
   * signed checkpoint of the last one pruned. Events are pruned as a prefix of the chain:
   * the cut is just before the first event at or after `before`.
   */
  async prune(opts: PruneOptions): Promise<PruneResult> {
    if (this.#failed) throw this.#failed;
    if (this.#closing) throw closedError();
    if (this.#prune) throw new AuditStoreError('AG_AUDIT_BAD_QUERY', 'a prune is already running', { hint: 'wait for it to finish' });
    await this.#caughtUp();
    const cutoff = opts.before.toISOString();
    const firstKept = (this.#db.prepare('SELECT min(seq) AS seq FROM audit_events WHERE time >= ?').get(cutoff) as { seq: number | null }).seq;
    // The newest event the database holds (appends may have gone on in the journal meanwhile).
    const head = this.#journal ? this.#indexedSeq : this.#head.seq;
    const cut = Math.min(firstKept === null ? head : firstKept - 1, head - 1);
    const oldest = (this.#db.prepare('SELECT min(seq) AS seq FROM audit_events').get() as { seq: number | null }).seq;
    if (oldest === null || cut < oldest) return { deleted: 0, checkpoint: undefined, interrupted: false };
    const last = this.#db.prepare('SELECT seq, time, hash FROM audit_events WHERE seq = ?').get(cut) as { seq: number; time: string; hash: string } | undefined;
    if (!last) throw new AuditStoreError('AG_AUDIT_CORRUPT', `audit retention: seq ${cut} is missing from the log`, { hint: 'Export the log and run `agentgate audit verify` on it.' });
    const envelope = await opts.sign({
      type: 'agentgate.audit.checkpoint',
      version: 1,
      reason: 'retention',
      seq: last.seq,
      hash: last.hash,
      time: last.time,
      created_at: new Date().toISOString(),
    });
    if (this.#closing) throw closedError();
    const id = this.#nextPruneId++;
    const done = new Promise<{ deleted: number; interrupted: boolean }>((resolve, reject) => (this.#prune = { id, resolve, reject }));
    this.#worker.ref();
    this.#worker.postMessage({
      type: 'prune',
      id,
      checkpoint: { seq: last.seq, hash: last.hash, time: last.time, envelope: JSON.stringify(envelope) },
      upTo: cut,
      chunk: opts.chunk ?? 1000,
    } satisfies ToWriter);
    const r = await done;
    return { deleted: r.deleted, checkpoint: { seq: last.seq, hash: last.hash, time: last.time, envelope }, interrupted: r.interrupted };
  }

  #readStatement(sql: string): StatementSync {
    let st = this.#readStatements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#readStatements.set(sql, st);
    }
    return st;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#busy()) {
        const drained = new Promise<void>((r) => (this.#drained = r));
        this.#index(true);
        await drained;
      }
      // A prune under way stops after its current chunk (the writer answers, then exits).
      const pruning = this.#prune;
      this.#closed = true;
      if (!this.#writerGone) {
        this.#worker.ref();
        const exited = new Promise<void>((r) => this.#worker.once('exit', () => r()));
        this.#worker.postMessage({ type: 'close' } satisfies ToWriter);
        await exited;
      }
      if (pruning && this.#prune === pruning) {
        this.#prune = undefined;
        pruning.reject(closedError());
      }
      // Everything indexed: the journal goes. After a failure what is left is recovered at the next open.
      this.#journal?.close(this.#indexedSeq);
      this.#db.close();
    })();
    return this.#closing;
  }
}

/** The WHERE clause and its parameters for a query's filters, after `base` (the seq bounds). */
function filterClause(nq: NormalizedAuditQuery, base: string[], baseParams: (string | number)[]): { where: string; params: (string | number)[] } {
  const where = [...base];
  const params = [...baseParams];
  if (nq.since !== undefined) (where.push('time >= ?'), params.push(nq.since));
  if (nq.until !== undefined) (where.push('time < ?'), params.push(nq.until));
  if (nq.session !== undefined) (where.push('session = ?'), params.push(nq.session));
  if (nq.target !== undefined) (where.push('target = ?'), params.push(nq.target));
  return { where: where.join(' AND '), params };
}

function increasing(xs: number[]): boolean {
  for (let i = 1; i < xs.length; i++) if (!((xs[i] as number) > (xs[i - 1] as number))) return false;
  return true;
}

function closedError(): AuditStoreError {
  return new AuditStoreError('AG_AUDIT_CLOSED', 'the audit store is closed', {
    hint: 'This is a bug: an event was recorded after the broker began shutting down.',
  });
}

function positiveInt(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`SqliteAuditStore: ${name} must be a whole number ≥ 1, got ${v}`);
  return v;
}
