/**
 * Column names for masking: RowDescription names a result column only by table OID and
 * attribute number, so a session's masker asks the catalog once per unknown table, on a
 * connection of its own to the target (opened on first need, as the target's user, so it
 * sees what the session sees). It also describes COPY queries (Parse + Describe, never
 * executed) to learn which columns a COPY writes.
 *
 * Catalog traffic is metadata only and is not audited: it runs no statement of the
 * client's and reads no row.
 */
import type { Duplex } from 'node:stream';

import type { PostgresTargetConfig } from '../config/types.js';
import { connectUpstream } from './upstream.js';
import type { BackendReader } from './reader.js';
import { BackendType } from './protocol.js';
import { dataRowValues, decodeErrorResponse, decodeParameterStatus, decodeRowDescription, type FieldDescription } from './decode-backend.js';
import { describe, parse, query, SYNC, TERMINATE } from './build-frontend.js';
import { ValueCursor } from './body-reader.js';
import { PgError, SqlState } from './errors.js';

/** A table, as masking needs it. */
export interface TableInfo {
  schema: string;
  table: string;
  /** attnum → column name, in attnum order (dropped columns left out). */
  columns: Map<number, string>;
  /** attnum → type OID. */
  types?: Map<number, number>;
  /** Attribute numbers of generated columns (a COPY of the table leaves them out). */
  generated?: Set<number>;
  /** pg_class.relkind: 'v' for a view, whose columns RowDescription reports as its own ('m' too). */
  kind?: string;
  /** Part of an inheritance tree (a parent, a child, a partition): its columns hold its relatives' values. */
  inherits?: boolean;
}

/**
 * Resolve table OIDs (those it cannot resolve are left out of the map). `describe`, when
 * present, returns the result columns of a query without running it (undefined when the
 * server refuses the query, e.g. a temporary table of the client's session).
 */
export interface CatalogLookup {
  (oids: number[]): Promise<Map<number, TableInfo>>;
  describe?: (sql: string) => Promise<FieldDescription[] | undefined>;
  /** Runs one catalog query (simple protocol) and returns its rows as text; rejects on an error. */
  rows?: CatalogRows;
}

/** Runs one catalog query and returns its rows as text; rejects on an error. */
export type CatalogRows = (sql: string) => Promise<(string | null)[][]>;

export interface CatalogLookupOptions {
  /** Startup parameters for the catalog connection, e.g. the client's search_path. */
  params?: ReadonlyMap<string, string>;
  /** Per request; a request past it fails (and the masker fails closed). Default 10 s. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** The connection's application_name (pg_stat_activity); default "agentgate masking catalog". */
  applicationName?: string;
}

interface Message {
  type: number;
  body: Buffer;
}

/** One catalog connection: requests run one at a time, each up to its ReadyForQuery. */
class CatalogConnection {
  readonly #socket: Duplex;
  readonly #reader: BackendReader;
  #messages: Message[] = [];
  #waiter: { resolve: (m: Message[]) => void; reject: (e: Error) => void } | undefined;
  #failed: Error | undefined;
  readonly serverVersion: number;

  constructor(socket: Duplex, reader: BackendReader, serverVersion: number) {
    this.#socket = socket;
    this.#reader = reader;
    this.serverVersion = serverVersion;
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#reader.push(chunk, (m) => {
          this.#messages.push({ type: m.type, body: Buffer.from(m.body) });
          if (m.type === BackendType.readyForQuery) this.#settle();
        });
      } catch (err) {
        this.#fail(err as Error);
      }
    });
    socket.on('error', (err: Error) => this.#fail(err));
    socket.on('close', () => this.#fail(new PgError(SqlState.connectionFailure, 'the catalog connection closed')));
  }

  get failed(): boolean {
    return this.#failed !== undefined;
  }

  request(frames: Buffer, timeoutMs: number): Promise<Message[]> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#fail(new PgError(SqlState.connectionFailure, `catalog lookup timed out after ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      this.#waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#socket.write(frames);
    });
  }

  close(): void {
    this.#fail(new PgError(SqlState.connectionFailure, 'the catalog connection was closed'));
    if (!this.#socket.destroyed) this.#socket.end(TERMINATE);
    setTimeout(() => this.#socket.destroy(), 2_000).unref();
  }

  #settle(): void {
    const w = this.#waiter;
    const messages = this.#messages;
    this.#messages = [];
    this.#waiter = undefined;
    w?.resolve(messages);
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = err;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(err);
    this.#socket.destroy();
  }
}

/** The DataRows of an answer, as text values. */
function textRows(messages: Message[]): (string | null)[][] {
  const cursor = new ValueCursor();
  const out: (string | null)[][] = [];
  for (const m of messages) {
    if (m.type !== BackendType.dataRow) continue;
    const v: (string | null)[] = [];
    const cur = dataRowValues(m.body, cursor);
    while (cur.next()) v.push(cur.text());
    out.push(v);
  }
  return out;
}

function firstError(messages: Message[]): string | undefined {
  const e = messages.find((m) => m.type === BackendType.errorResponse);
  return e ? decodeErrorResponse(e.body).message : undefined;
}

/**
 * A CatalogLookup for one session: opens its connection to `target` lazily, reconnects
 * after a failure, and is closed with the session.
 */
export function createCatalogLookup(target: PostgresTargetConfig, options: CatalogLookupOptions = {}): CatalogLookup & { close(): void; rows: CatalogRows } {
  const timeoutMs = options.timeoutMs ?? 10_000;
  let conn: Promise<CatalogConnection> | undefined;
  let chain: Promise<unknown> = Promise.resolve();
  let closed = false;

  const connection = (): Promise<CatalogConnection> => {
    if (closed) return Promise.reject(new PgError(SqlState.connectionFailure, 'the catalog lookup is closed'));
    const current = conn;
    if (current) {
      return current.then((c) => {
        if (!c.failed) return c;
        if (conn === current) conn = undefined;
        return connection();
      });
    }
    const params = new Map(options.params ?? []);
    params.set('application_name', options.applicationName ?? 'agentgate masking catalog');
    const opening = connectUpstream(target, params, options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }).then((up) => {
      let version = 0;
      for (const f of up.relayFrames) {
        if (f[0] !== BackendType.parameterStatus) continue;
        const p = decodeParameterStatus(f.subarray(5));
        if (p.name === 'server_version_num') version = Number(p.value);
        else if (p.name === 'server_version' && version === 0) version = versionNumber(p.value);
      }
      const c = new CatalogConnection(up.socket, up.reader, version);
      if (closed) c.close();
      return c;
    });
    conn = opening;
    opening.catch(() => {
      if (conn === opening) conn = undefined;
    });
    return opening;
  };

  /** Requests run one after another on the one connection. */
  const serial = <T>(fn: (c: CatalogConnection) => Promise<T>): Promise<T> => {
    const run = chain.then(
      () => connection().then(fn),
      () => connection().then(fn),
    );
    chain = run.catch(() => undefined);
    return run;
  };

  const lookup = (async (oids: number[]): Promise<Map<number, TableInfo>> => {
    const wanted = [...new Set(oids.filter((o) => Number.isInteger(o) && o > 0 && o <= 0xffff_ffff))];
    const result = new Map<number, TableInfo>();
    if (wanted.length === 0) return result;
    const messages = await serial((c) => {
      // attgenerated exists from PostgreSQL 12 on.
      const generated = c.serverVersion >= 120000 ? 'a.attgenerated::text' : "''";
      const sql =
        `SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, a.atttypid, ${generated}, c.relkind::text, ` +
        'EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) ' +
        'FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
        'LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ' +
        `WHERE c.oid = ANY ('{${wanted.join(',')}}'::pg_catalog.oid[]) ORDER BY c.oid, a.attnum`;
      return c.request(query(sql), timeoutMs);
    });
    const err = firstError(messages);
    if (err !== undefined) throw new PgError(SqlState.internalError, `catalog lookup failed: ${err}`);
    for (const v of textRows(messages)) {
      const oid = Number(v[0]);
      let info = result.get(oid);
      if (!info) {
        info = { schema: v[1] ?? '', table: v[2] ?? '', columns: new Map(), types: new Map(), generated: new Set(), kind: v[7] ?? '', inherits: v[8] === 't' };
        result.set(oid, info);
      }
      if (v[3] === null || v[3] === undefined) continue; // a relation without columns
      const attnum = Number(v[3]);
      info.columns.set(attnum, v[4] ?? '');
      info.types?.set(attnum, Number(v[5]));
      if (v[6]) info.generated?.add(attnum);
    }
    return result;
  }) as CatalogLookup & { close(): void; rows: CatalogRows };

  lookup.describe = async (sql: string): Promise<FieldDescription[] | undefined> => {
    if (sql.includes('\0')) return undefined;
    const messages = await serial((c) => c.request(Buffer.concat([parse('', sql), describe('S', ''), SYNC]), timeoutMs));
    if (firstError(messages) !== undefined) return undefined;
    const rd = messages.find((m) => m.type === BackendType.rowDescription);
    return rd ? decodeRowDescription(rd.body) : [];
  };

  lookup.rows = async (sql: string): Promise<(string | null)[][]> => {
    if (sql.includes('\0')) throw new PgError(SqlState.internalError, 'catalog query contains a NUL byte');
    const messages = await serial((c) => c.request(query(sql), timeoutMs));
    const err = firstError(messages);
    if (err !== undefined) throw new PgError(SqlState.internalError, `catalog query failed: ${err}`);
    return textRows(messages);
  };

  lookup.close = (): void => {
    closed = true;
    const c = conn;
    conn = undefined;
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- ends in .catch: cannot reject
    void c?.then((x) => x.close()).catch(() => undefined);
  };
  return lookup;
}

/** `15.4 (Debian …)` → 150004; `9.6.2` → 90602. */
function versionNumber(v: string): number {
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(v);
  if (!m) return 0;
  const major = Number(m[1]);
  return major >= 10 ? major * 10000 + Number(m[2] ?? 0) : major * 10000 + Number(m[2] ?? 0) * 100 + Number(m[3] ?? 0);
}
