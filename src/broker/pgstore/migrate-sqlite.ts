/**
 * `agentgate broker migrate --from <state_dir>/audit.db --to <postgres URL>`: moves a
 * stopped broker's SQLite store into an empty PostgreSQL store, verifying the chain on both
 * sides.
 *
 * 1. The SQLite store is opened as the broker would (so a crash's journal is recovered
 *    into it first) and its whole chain verified: a damaged log is not copied.
 * 2. The PostgreSQL store is opened (schema migrated) and must hold no events.
 * 3. Events are copied verbatim — the exact hashed text, seq, prev and hash — in one
 *    transaction that holds the chain head row (no broker can append meanwhile) and moves
 *    the head to the last copied event; retention checkpoints and receipts come along.
 * 4. The PostgreSQL chain is verified from the start and its head compared with SQLite's.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { BrokerError } from '../../errors.js';
import { openSqliteAuditStore } from '../audit/sqlite-store.js';
import { verifyStore, type AuditHead } from '../audit/store.js';
import { silentLogger, type Logger } from '../log.js';
import { openPostgresStore } from './audit-store.js';

export interface MigrateSqliteOptions {
  /** The SQLite audit database (`<state_dir>/audit.db`). */
  from: string;
  /** PostgreSQL URL of the store. A secret: never printed. */
  to: string;
  /** Issued receipts; default `receipts.db` beside `from` (skipped if absent). */
  receipts?: string;
  logger?: Logger;
}

export interface MigrateSqliteResult {
  events: number;
  checkpoints: number;
  receipts: number;
  head: AuditHead;
}

const BATCH = 500;
/** The `broker` column of copied events: they were written before the store was shared. */
export const MIGRATED_BROKER_ID = 'sqlite-migrated';

export async function migrateSqliteToPostgres(opts: MigrateSqliteOptions): Promise<MigrateSqliteResult> {
  const logger = opts.logger ?? silentLogger;
  if (!existsSync(opts.from)) {
    throw new BrokerError('AG_MIGRATE_SOURCE', `no SQLite audit store at ${opts.from}`, { hint: 'pass the broker\'s <state_dir>/audit.db with --from' });
  }
  // 1. Recover and verify the source.
  const lite = await openSqliteAuditStore(opts.from, { logger });
  let sourceHead: AuditHead;
  try {
    const v = await verifyStore(lite);
    if (!v.ok) {
      throw new BrokerError('AG_MIGRATE_SOURCE', `the SQLite audit chain does not verify at seq ${v.seq}: ${v.message}; nothing was copied`, {
        hint: 'keep the file for investigation; an export of it with `agentgate audit verify` shows the same',
      });
    }
    sourceHead = lite.head();
  } finally {
    await lite.close();
  }

  // 2. The target, empty.
  const store = await openPostgresStore(opts.to, { brokerId: MIGRATED_BROKER_ID, logger });
  const db = new DatabaseSync(opts.from, { readOnly: true });
  const client = new pg.Client({ connectionString: opts.to });
  let copied = 0;
  let checkpoints = 0;
  let receipts = 0;
  try {
    await client.connect();
    await client.query('BEGIN');
    const head = (await client.query<{ seq: string }>('SELECT seq::text AS seq FROM audit_chain FOR UPDATE')).rows[0];
    const any = (await client.query('SELECT 1 FROM audit_events LIMIT 1')).rowCount;
    if (!head || Number(head.seq) !== 0 || any) {
      throw new BrokerError('AG_MIGRATE_TARGET', 'the PostgreSQL store already holds audit events; nothing was copied', {
        hint: 'migrate into an empty database (a broker started on it writes events at once: migrate before starting any)',
      });
    }
    // 3. Events verbatim, in seq order.
    const page = db.prepare('SELECT seq, time, session, target, type, event, prev, hash FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?');
    let after = 0;
    let last: AuditHead = { seq: 0, hash: '' };
    for (;;) {
      const rows = page.all(after, BATCH) as unknown as { seq: number; time: string; session: string | null; target: string | null; type: string; event: string; prev: string; hash: string }[];
      if (rows.length === 0) break;
      const col = <K extends keyof (typeof rows)[number]>(k: K): (typeof rows)[number][K][] => rows.map((r) => r[k]);
      await client.query(
        'INSERT INTO audit_events (seq, time, session, target, type, event, prev, hash, broker) ' +
          'SELECT *, $9 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])',
        [col('seq'), col('time'), col('session'), col('target'), col('type'), col('event'), col('prev'), col('hash'), MIGRATED_BROKER_ID],
      );
      copied += rows.length;
      const end = rows[rows.length - 1]!;
      after = end.seq;
      last = { seq: end.seq, hash: end.hash };
    }
    const cps = db.prepare('SELECT seq, hash, time, envelope FROM audit_checkpoints ORDER BY seq').all() as unknown as { seq: number; hash: string; time: string; envelope: string }[];
    for (const c of cps) await client.query('INSERT INTO audit_checkpoints (seq, hash, time, envelope) VALUES ($1, $2, $3, $4)', [c.seq, c.hash, c.time, c.envelope]);
    checkpoints = cps.length;
    if (copied > 0) await client.query('UPDATE audit_chain SET seq = $1, hash = $2', [last.seq, last.hash]);
    const receiptsPath = opts.receipts ?? join(dirname(opts.from), 'receipts.db');
    if (existsSync(receiptsPath)) {
      const rdb = new DatabaseSync(receiptsPath, { readOnly: true });
      try {
        const rows = rdb.prepare('SELECT session, connect_session, sub, target, issued_at, envelope FROM receipts').all() as unknown as { session: string; connect_session: string | null; sub: string; target: string; issued_at: string; envelope: string }[];
        for (const r of rows) {
          await client.query('INSERT INTO receipts (session, connect_session, sub, target, issued_at, envelope) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session) DO NOTHING', [
            r.session,
            r.connect_session,
            r.sub,
            r.target,
            r.issued_at,
            r.envelope,
          ]);
        }
        receipts = rows.length;
      } finally {
        rdb.close();
      }
    }
    await client.query('COMMIT');
    logger.info('audit store copied to PostgreSQL', { events: copied, checkpoints, receipts });

    // 4. Verify what PostgreSQL now holds, from its start, against the source's head.
    const v = await verifyStore(store);
    const pgHead = store.head();
    if (!v.ok) throw new BrokerError('AG_MIGRATE_VERIFY', `the copied chain does not verify at seq ${v.seq}: ${v.message}`, { hint: 'the copy is committed: drop the database and migrate again; report this as a bug' });
    if (pgHead.seq !== sourceHead.seq || pgHead.hash !== sourceHead.hash) {
      throw new BrokerError('AG_MIGRATE_VERIFY', `the copied chain ends at seq ${pgHead.seq}, the SQLite one at ${sourceHead.seq}`, { hint: 'drop the database and migrate again; report this as a bug' });
    }
    return { events: copied, checkpoints, receipts, head: pgHead };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    db.close();
    await client.end().catch(() => {});
    await store.close();
  }
}
