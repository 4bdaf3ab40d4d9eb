/**
 * The SQLite audit table, shared by the store (which creates it and reads) and its writer
 * thread (which inserts). `event` holds the exact text that was hashed — the canonical
 * JSON of the record without `hash` — so checking a row is one SHA-256, no re-encoding.
 * The other columns repeat fields of `event` only so queries can use indexes.
 */
import type { RawAuditRow } from './store.js';

export const SCHEMA_VERSION = 2;

export const CREATE_SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_events (
  seq     INTEGER PRIMARY KEY,
  time    TEXT NOT NULL,
  session TEXT,
  target  TEXT,
  type    TEXT NOT NULL,
  event   TEXT NOT NULL,
  prev    TEXT NOT NULL,
  hash    TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
CREATE INDEX IF NOT EXISTS audit_events_session ON audit_events (session);
CREATE INDEX IF NOT EXISTS audit_events_target ON audit_events (target);
-- Append-only, enforced where the data lives: a bug (or a stray sqlite3 shell) that tries
-- to rewrite history fails loudly. It does not stop someone editing the file itself;
-- the hash chain is what catches that.
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
`;

/**
 * Version 2: retention. `audit_checkpoints` holds one signed checkpoint per prune — the
 * seq and hash of the last pruned event, signed with the receipt key — and the delete
 * trigger lets a row go only when a checkpoint at or after its seq exists. So nothing can
 * be pruned without first leaving a signed anchor the rest of the chain still links to;
 * and checkpoints themselves are append-only. (Someone who can write the file can forge an
 * unsigned row; the signature is what `audit verify --key` checks.)
 */
export const MIGRATE_V2 = `
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq      INTEGER PRIMARY KEY,
  hash     TEXT NOT NULL,
  time     TEXT NOT NULL,
  envelope TEXT NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
DROP TRIGGER IF EXISTS audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  WHEN NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE seq >= OLD.seq)
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: events are pruned only up to a signed checkpoint'); END;
`;

export const INSERT_CHECKPOINT = 'INSERT OR IGNORE INTO audit_checkpoints (seq, hash, time, envelope) VALUES (?, ?, ?, ?)';

export const INSERT_EVENT = 'INSERT INTO audit_events (seq, time, session, target, type, event, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';

/** One row as the store hands it to the writer: the same columns export reads back. */
export type EventRow = RawAuditRow;

export type SyncMode = 'normal' | 'full';

export interface WriterInit {
  path: string;
  sync: SyncMode;
}

/** A prune: store the checkpoint, then delete events up to `upTo`, `chunk` rows per transaction. */
export interface PruneRequest {
  type: 'prune';
  id: number;
  checkpoint: { seq: number; hash: string; time: string; envelope: string };
  upTo: number;
  chunk: number;
}

export type ToWriter = { type: 'commit'; id: number; rows: EventRow[] } | PruneRequest | { type: 'close' };

export interface WriterFailure {
  message: string;
  /** SQLite's extended result code when the error came from SQLite. */
  errcode: number | undefined;
  errstr: string | undefined;
}

export type FromWriter =
  | { type: 'ready' }
  | { type: 'open-failed'; error: WriterFailure }
  | { type: 'committed'; id: number }
  | { type: 'failed'; id: number; error: WriterFailure }
  | { type: 'pruned'; id: number; deleted: number; interrupted: boolean }
  | { type: 'prune-failed'; id: number; deleted: number; error: WriterFailure };

/** Plain data for postMessage: SQLite's errors carry errcode/errstr beside the message. */
export function describeFailure(e: unknown): WriterFailure {
  const err = e as { message?: unknown; errcode?: unknown; errstr?: unknown };
  return {
    message: typeof err?.message === 'string' ? err.message : String(e),
    errcode: typeof err?.errcode === 'number' ? err.errcode : undefined,
    errstr: typeof err?.errstr === 'string' ? err.errstr : undefined,
  };
}

export function pragmasFor(sync: SyncMode): string {
  // busy_timeout: ride out a moment of contention (a backup tool reading) instead of failing.
  return `PRAGMA busy_timeout = 5000; PRAGMA synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'};`;
}
