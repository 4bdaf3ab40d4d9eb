/**
 * Issued receipts, kept in their own SQLite file (`<state_dir>/receipts.db`, 0600): one row
 * per session, indexed by connect session so `GET /v1/receipts?connect=…` is one lookup.
 * A table rather than one file per receipt because the CLI lists by connect session and
 * an auditor by session; both are index lookups here, a directory scan otherwise.
 *
 * Rows are immutable (triggers refuse UPDATE and DELETE). A receipt is written once, on
 * the main thread: one small row per ended session, in WAL mode without fsync, so a write
 * costs tens of microseconds. A receipt lost to a power cut can be reissued from the audit
 * log, which is the record of truth; the receipt only attests it.
 */
import { closeSync, fchmodSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { DsseEnvelope } from '../../shared/receipt.js';
import type { ReceiptStore, StoredReceipt } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS receipts (
  session         TEXT PRIMARY KEY,
  connect_session TEXT,
  sub             TEXT NOT NULL,
  target          TEXT NOT NULL,
  issued_at       TEXT NOT NULL,
  envelope        TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS receipts_connect ON receipts (connect_session, sub);
CREATE TRIGGER IF NOT EXISTS receipts_no_update BEFORE UPDATE ON receipts
  BEGIN SELECT RAISE(ABORT, 'receipts are immutable'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_delete BEFORE DELETE ON receipts
  BEGIN SELECT RAISE(ABORT, 'receipts are immutable'); END;
`;

interface Row {
  session: string;
  connect_session: string | null;
  sub: string;
  target: string;
  issued_at: string;
  envelope: string;
}

export function openSqliteReceiptStore(path: string): ReceiptStore {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // Created 0600 before SQLite opens it; its -wal and -shm files take the same mode.
  const fd = openSync(path, 'a', 0o600);
  try {
    if ((fstatSync(fd).mode & 0o077) !== 0) fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
  db.exec(SCHEMA);
  const insert: StatementSync = db.prepare(
    'INSERT OR IGNORE INTO receipts (session, connect_session, sub, target, issued_at, envelope) VALUES (?, ?, ?, ?, ?, ?)',
  );
  const bySession: StatementSync = db.prepare('SELECT * FROM receipts WHERE session = ?');
  const byConnect: StatementSync = db.prepare('SELECT * FROM receipts WHERE connect_session = ? AND sub = ? ORDER BY issued_at, session');
  const fromRow = (r: Row): StoredReceipt => ({
    session: r.session,
    connectSession: r.connect_session,
    sub: r.sub,
    target: r.target,
    issuedAt: r.issued_at,
    envelope: JSON.parse(r.envelope) as DsseEnvelope,
  });
  let open = true;
  return {
    put(e) {
      insert.run(e.session, e.connectSession, e.sub, e.target, e.issuedAt, JSON.stringify(e.envelope));
    },
    get(session) {
      const r = bySession.get(session) as Row | undefined;
      return r ? fromRow(r) : undefined;
    },
    listForConnect(connectSession, sub) {
      return (byConnect.all(connectSession, sub) as unknown as Row[]).map(fromRow);
    },
    close() {
      if (!open) return;
      open = false;
      db.close();
    },
  };
}
