/**
 * The PostgreSQL store's schema and its versioned migrations.
 *
 * Every broker runs `migrate()` at start. Migrations run under a session-level advisory
 * lock, so when several brokers start at once on an empty database one migrates and the
 * others wait for it, then find the schema current and do nothing. Each migration is one
 * transaction that also records its version in `agentgate_schema`: a broker killed
 * mid-migration leaves the previous version, and the next start redoes the step.
 *
 * The tables mirror the SQLite store: `audit_events` holds the exact hashed text of each
 * event (`event`) beside indexed columns, and is append-only (triggers); events go only
 * behind a signed retention checkpoint in `audit_checkpoints`; `receipts` are immutable.
 * `audit_chain` is the head every append locks. `audit_events.broker` names the broker that wrote the event (not hashed: it is where
 * the event came from, not what it says), so crash recovery reads only its own events.
 */
import type pg from 'pg';
import { AuditStoreError } from '../audit/store.js';

/** Advisory lock keys (one 64-bit space per database; "agentgat" in ASCII, then a kind). */
export const LOCK_MIGRATE = 0x6167656e74676174n;

export const PG_SCHEMA_VERSION = 3;

const MIGRATIONS: readonly string[] = [
  // 1: audit events, checkpoints, receipts.
  `
CREATE TABLE audit_events (
  seq     bigint PRIMARY KEY,
  time    text NOT NULL,
  session text,
  target  text,
  type    text NOT NULL,
  event   text NOT NULL,
  prev    text NOT NULL,
  hash    text NOT NULL,
  broker  text NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_session ON audit_events (session);
CREATE INDEX audit_events_target ON audit_events (target);
CREATE INDEX audit_events_broker ON audit_events (broker, seq);
-- The chain's head: one row, locked (SELECT … FOR UPDATE) by every append transaction and
-- moved by it, so brokers extend the chain one transaction at a time. In READ COMMITTED a
-- FOR UPDATE that waited reads the row as the transaction before it left it, so the head
-- read is never stale; and it is one row, not a max() over the events.
CREATE TABLE audit_chain (
  one  boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq  bigint NOT NULL,
  hash text NOT NULL
);
INSERT INTO audit_chain (seq, hash) VALUES (0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE audit_checkpoints (
  seq      bigint PRIMARY KEY,
  hash     text NOT NULL,
  time     text NOT NULL,
  envelope text NOT NULL
);
CREATE FUNCTION agentgate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE FUNCTION agentgate_prune_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE seq >= OLD.seq) THEN
    RAISE EXCEPTION 'audit_events is append-only: events are pruned only up to a signed checkpoint';
  END IF;
  RETURN OLD;
END $$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events FOR EACH ROW EXECUTE FUNCTION agentgate_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION agentgate_prune_guard();
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION agentgate_append_only();
CREATE TABLE receipts (
  session         text PRIMARY KEY,
  connect_session text,
  sub             text NOT NULL,
  target          text NOT NULL,
  issued_at       text NOT NULL,
  envelope        text NOT NULL
);
CREATE INDEX receipts_connect ON receipts (connect_session, sub);
CREATE TRIGGER receipts_no_change BEFORE UPDATE OR DELETE ON receipts FOR EACH ROW EXECUTE FUNCTION agentgate_append_only();
`,
  // 2: approvals across brokers (approvals.ts): the owners' snapshots, and decisions relayed to owners.
  `
CREATE TABLE approval_requests (
  id         text PRIMARY KEY,
  owner      text NOT NULL,
  revision   integer NOT NULL,
  request    text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approval_requests_updated ON approval_requests (updated_at);
CREATE TABLE approval_decisions (
  no         bigserial PRIMARY KEY,
  request_id text NOT NULL,
  owner      text NOT NULL,
  approver   text NOT NULL,
  decision   text NOT NULL CHECK (decision IN ('approve', 'deny')),
  reason     text,
  done       boolean NOT NULL DEFAULT false,
  result     text,
  error      text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approval_decisions_todo ON approval_decisions (owner) WHERE NOT done;
`,
  // 3: write taint across brokers (written-relations.ts): relations holding copies of masked values, per target.
  `
CREATE TABLE written_relations (
  target   text NOT NULL,
  name     text NOT NULL,
  broker   text NOT NULL,
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target, name)
);
-- Taint is never removed: a relation made again under a tainted name is still read masked.
CREATE TRIGGER written_relations_no_change BEFORE UPDATE OR DELETE ON written_relations FOR EACH ROW EXECUTE FUNCTION agentgate_append_only();
`,
];

export interface MigrateResult {
  from: number;
  to: number;
}

/**
 * Brings the schema to PG_SCHEMA_VERSION. Safe to run from several brokers at once: the
 * advisory lock serializes them, and each step is checked against the recorded version.
 */
export async function migrate(client: pg.Client | pg.PoolClient): Promise<MigrateResult> {
  await client.query(`SELECT pg_advisory_lock(${LOCK_MIGRATE})`);
  try {
    await client.query('CREATE TABLE IF NOT EXISTS agentgate_schema (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const from = await currentVersion(client);
    if (from > PG_SCHEMA_VERSION) {
      throw new AuditStoreError('AG_AUDIT_OPEN_FAILED', `the PostgreSQL store was migrated by a newer agentgate (schema ${from})`, {
        hint: 'Run the agentgate version that created it, or a newer one, on every broker.',
      });
    }
    for (let v = from + 1; v <= PG_SCHEMA_VERSION; v++) {
      await client.query('BEGIN');
      try {
        await client.query(MIGRATIONS[v - 1]!);
        await client.query('INSERT INTO agentgate_schema (version) VALUES ($1)', [v]);
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK');
        throw e;
      }
    }
    return { from, to: PG_SCHEMA_VERSION };
  } finally {
    await client.query(`SELECT pg_advisory_unlock(${LOCK_MIGRATE})`);
  }
}

async function currentVersion(client: pg.Client | pg.PoolClient): Promise<number> {
  const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM agentgate_schema');
  return r.rows[0]?.v ?? 0;
}
