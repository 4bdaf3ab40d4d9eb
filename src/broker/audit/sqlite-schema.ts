/**
 * The SQLite audit table, shared by the store (which creates it and reads) and its writer
 * thread (which inserts). `event` holds the exact text that was hashed — the canonical
 * JSON of the record without `hash` — so checking a row is one SHA-256, no re-encoding.
 * The other columns repeat fields of `event` only so queries can use indexes.
 */

export const SCHEMA_VERSION = 1;

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

export const INSERT_EVENT = 'INSERT INTO audit_events (seq, time, session, target, type, event, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';

/** One row as the store hands it to the writer. */
export interface EventRow {
  seq: number;
  time: string;
  session: string | null;
  target: string | null;
  type: string;
  event: string;
  prev: string;
  hash: string;
}

export type SyncMode = 'normal' | 'full';

export interface WriterInit {
  path: string;
  sync: SyncMode;
}

export type ToWriter = { type: 'commit'; id: number; rows: EventRow[] } | { type: 'close' };

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
  | { type: 'failed'; id: number; error: WriterFailure };

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
