/**
 * One `sql_query` tool call: a fresh PostgreSQL connection (node-postgres) to the local
 * end of this `agentgate mcp` session's tunnel, one simple Query, then Terminate. So each
 * call is one proxy session at the broker, judged, held, masked and recorded like a psql
 * connection of `agentgate connect` — nothing here decides anything.
 *
 * Values arrive as the broker sent them (text, masked where policy masks); they are not
 * parsed into numbers or dates, so a masked value of a numeric column stays what it is.
 * At most `maxRows` rows are kept; the rest are counted and dropped as they arrive.
 */
import pg from 'pg';
import { REASON_STARTUP_PARAM } from '../../shared/reason.js';

export interface SqlColumn {
  name: string;
  /** PostgreSQL type OID of the column. */
  type_oid: number;
}

export interface SqlResult {
  /** The last command's tag, e.g. `SELECT 3`, `UPDATE 1`. */
  command: string;
  columns: SqlColumn[];
  rows: (string | null)[][];
  /** Rows the statement returned (all of them, kept or not). */
  row_count: number;
  /** More rows came than max_rows: `rows` holds the first max_rows. */
  truncated: boolean;
}

/** The server (here: the broker, speaking for policy) refused or failed the statement. */
export interface SqlFailure {
  sqlstate: string;
  message: string;
  detail?: string;
  hint?: string;
}

export type SqlOutcome = { ok: true; result: SqlResult } | { ok: false; error: SqlFailure };

export interface RunSqlOptions {
  /** `postgresql://agent:<secret>@127.0.0.1:<port>/<db>?sslmode=disable` */
  url: string;
  sql: string;
  maxRows: number;
  /** Aborting ends the connection: the broker cancels or withdraws what it was doing. */
  signal: AbortSignal;
  /** Each NOTICE the broker (or the server) sends while the statement runs or waits. */
  onNotice?: (message: string) => void;
  applicationName?: string;
  /** This call's reason: sent as `-c agentgate.reason=…` in options; the broker records it and keeps it from PostgreSQL. */
  reason?: string | undefined;
}

/** A value inside PostgreSQL's `options`: a backslash makes the next character part of the word. */
function optionValue(v: string): string {
  return v.replace(/[\\\s]/g, (c) => `\\${c}`);
}

/** Text kept for one call's rows; past it, rows are counted but not kept (as past max_rows). */
export const MAX_RESULT_CHARS = 4 * 1024 * 1024;

/** Every value as text: what the broker sent, unparsed. */
const RAW_TYPES = { getTypeParser: () => (value: string) => value };

export async function runSql(o: RunSqlOptions): Promise<SqlOutcome> {
  const client = new pg.Client({
    connectionString: o.url,
    application_name: o.applicationName ?? 'agentgate-mcp',
    types: RAW_TYPES,
    ...(o.reason !== undefined ? { options: `-c ${REASON_STARTUP_PARAM}=${optionValue(o.reason)}` } : {}),
  });
  client.on('error', () => {
    // a connection error also fails the query or connect below; nothing more to do here
  });
  if (o.onNotice) {
    const onNotice = o.onNotice;
    client.on('notice', (n) => onNotice(n.message ?? ''));
  }
  const abort = (): void => {
    // The broker sees the connection end: a held statement's request is withdrawn, a running one cancelled.
    client.end().catch(() => {});
  };
  if (o.signal.aborted) throw abortError(o.signal);
  o.signal.addEventListener('abort', abort, { once: true });
  try {
    await client.connect();
    return await query(client, o);
  } catch (err) {
    if (o.signal.aborted) throw abortError(o.signal);
    const e = err as pg.DatabaseError;
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
      return { ok: false, error: { sqlstate: e.code, message: e.message, ...(e.detail ? { detail: e.detail } : {}), ...(e.hint ? { hint: e.hint } : {}) } };
    }
    throw err;
  } finally {
    o.signal.removeEventListener('abort', abort);
    await client.end().catch(() => {});
  }
}

function query(client: pg.Client, o: RunSqlOptions): Promise<SqlOutcome> {
  return new Promise((resolve, reject) => {
    const q = new pg.Query({ text: o.sql, rowMode: 'array' } as pg.QueryConfig);
    let columns: SqlColumn[] = [];
    let rows: (string | null)[][] = [];
    let count = 0;
    let kept = 0;
    let full = false;
    let current: pg.QueryResult | undefined;
    // A statement list returns several results: the answer is the last one that has rows.
    q.on('row', (row: (string | null)[], built?: pg.ResultBuilder) => {
      const result = built as pg.QueryResult;
      if (result !== current) {
        current = result;
        columns = result.fields.map((f) => ({ name: f.name, type_oid: f.dataTypeID }));
        rows = [];
        count = 0;
        kept = 0;
        full = false;
      }
      count++;
      const size = row.reduce((n, v) => n + (v?.length ?? 0), 0);
      // The rows kept are always the first ones: once one does not fit, none after it is kept.
      if (!full && rows.length < o.maxRows && kept + size <= MAX_RESULT_CHARS) {
        rows.push(row);
        kept += size;
      } else {
        full = true;
      }
    });
    q.on('error', reject);
    q.on('end', (results: pg.QueryResult | pg.QueryResult[]) => {
      const list = Array.isArray(results) ? results : [results];
      const last = list.at(-1);
      const withRows = [...list].reverse().find((r) => r.fields.length > 0);
      if (count === 0 && withRows) columns = withRows.fields.map((f) => ({ name: f.name, type_oid: f.dataTypeID }));
      const command = last?.command ? `${last.command}${last.rowCount !== null && last.rowCount !== undefined ? ` ${last.rowCount}` : ''}` : '';
      resolve({ ok: true, result: { command, columns, rows, row_count: count, truncated: count > rows.length } });
    });
    client.query(q);
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('the call was cancelled');
}
