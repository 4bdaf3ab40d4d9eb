/**
 * Issued receipts in the PostgreSQL store: the same table as the SQLite receipt store
 * (schema.ts), so a receipt issued by one broker is served by every other.
 */
import type pg from 'pg';
import type { DsseEnvelope } from '../../shared/receipt.js';
import type { ReceiptStore, StoredReceipt } from '../receipts/types.js';

interface Row {
  session: string;
  connect_session: string | null;
  sub: string;
  target: string;
  issued_at: string;
  envelope: string;
}

const fromRow = (r: Row): StoredReceipt => ({
  session: r.session,
  connectSession: r.connect_session,
  sub: r.sub,
  target: r.target,
  issuedAt: r.issued_at,
  envelope: JSON.parse(r.envelope) as DsseEnvelope,
});

/** The pool is the PostgresStore's: closing the store closes it. */
export function createPgReceiptStore(pool: pg.Pool): ReceiptStore {
  return {
    async put(e) {
      await pool.query(
        'INSERT INTO receipts (session, connect_session, sub, target, issued_at, envelope) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session) DO NOTHING',
        [e.session, e.connectSession, e.sub, e.target, e.issuedAt, JSON.stringify(e.envelope)],
      );
    },
    async get(session) {
      const r = await pool.query<Row>('SELECT * FROM receipts WHERE session = $1', [session]);
      return r.rows[0] ? fromRow(r.rows[0]) : undefined;
    },
    async listForConnect(connectSession, sub) {
      const r = await pool.query<Row>('SELECT * FROM receipts WHERE connect_session = $1 AND sub = $2 ORDER BY issued_at, session', [connectSession, sub]);
      return r.rows.map(fromRow);
    },
    close() {
      // The pool belongs to the store.
    },
  };
}
