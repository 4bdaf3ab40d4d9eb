/**
 * Pairs what the client asked for with what the server answered, so each statement can
 * be recorded with its outcome. The proxy calls one method per message it relays; the
 * tracker calls `onStatement` when a statement has finished:
 *
 * - simple protocol: one record per Query message (however many statements its text
 *   holds), finished by ReadyForQuery;
 * - extended protocol: one record per Execute, finished by CommandComplete,
 *   EmptyQueryResponse, PortalSuspended or ErrorResponse. A failing Parse or Bind is
 *   recorded too (the statement was attempted); messages the server skips after an error
 *   (up to Sync) were never executed and are not recorded.
 *
 * The server answers every client message in order, so a FIFO of what is outstanding is
 * enough: https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 * Allocation is per statement, never per row.
 */

/** What the proxy's gate decided about a statement, carried to its audit record. */
export interface StatementNote {
  effect: 'allow' | 'deny' | 'review';
  rule: string | null;
  reason?: string;
  approval?: string;
  classification?: Record<string, unknown>;
}

export interface StatementRecord {
  protocol: 'simple' | 'extended' | 'function';
  /** The gate's decision; absent for statements the gate does not judge (function calls). */
  note: StatementNote | undefined;
  sql: string;
  /** Parameter count of the Bind (extended protocol). */
  params: number;
  /** Prepared statement name ('' for unnamed), extended protocol only. */
  statement: string | undefined;
  /** Command tags, in order (a simple Query may run several statements). */
  tags: string[];
  /** Rows affected or returned: the command tags' counts, else the DataRows relayed. */
  rows: number;
  /** Sum of the counts in command tags, when any tag had one. */
  tagRows: number | undefined;
  /** Bytes of result rows and COPY data relayed for this statement. */
  bytes: number;
  status: 'ok' | 'error';
  sqlstate: string | undefined;
  /** True when an Execute with a row limit stopped early (PortalSuspended). */
  suspended: boolean;
  /** performance.now() when the request was relayed. */
  startedAt: number;
  durationMs: number;
}

type Item =
  | { kind: 'simple'; rec: StatementRecord }
  | { kind: 'function'; rec: StatementRecord }
  | { kind: 'execute'; rec: StatementRecord }
  | { kind: 'parse'; name: string; sql: string }
  | { kind: 'bind'; sql: string; params: number; statement: string }
  | { kind: 'describe' }
  /** ParseComplete/BindComplete owed for a refusal the proxy sent: not the client's to see. */
  | { kind: 'swallow'; what: 'parse' | 'bind' }
  | { kind: 'close' }
  | { kind: 'sync' };

function record(protocol: StatementRecord['protocol'], sql: string, params: number, statement: string | undefined, note?: StatementNote): StatementRecord {
  return {
    protocol,
    note,
    sql,
    params,
    statement,
    tags: [],
    rows: 0,
    tagRows: undefined,
    bytes: 0,
    status: 'ok',
    sqlstate: undefined,
    suspended: false,
    startedAt: performance.now(),
    durationMs: 0,
  };
}

export class StatementTracker {
  readonly #queue: Item[] = [];
  /** Prepared statement name → SQL; '' is the unnamed statement. */
  readonly #statements = new Map<string, string>();
  /** Portal name → statement it was bound from. */
  readonly #portals = new Map<string, { sql: string; params: number; statement: string }>();
  readonly #onStatement: (rec: StatementRecord) => void;

  constructor(onStatement: (rec: StatementRecord) => void) {
    this.#onStatement = onStatement;
  }

  /** True while the server owes an answer to something the client sent. */
  get busy(): boolean {
    return this.#queue.length > 0;
  }

  /** True while a statement is executing (an Execute, Query or FunctionCall awaits its end). */
  get executing(): boolean {
    return this.#queue.some((i) => i.kind === 'simple' || i.kind === 'execute' || i.kind === 'function');
  }

  // ---- client → server ----

  query(sql: string, note?: StatementNote): void {
    this.#queue.push({ kind: 'simple', rec: record('simple', sql, 0, undefined, note) });
  }

  parse(name: string, sql: string): void {
    this.#queue.push({ kind: 'parse', name, sql });
  }

  bind(portal: string, statement: string, params: number): void {
    // A Parse still awaiting its ParseComplete is newer than what the server confirmed.
    const sql = this.#pendingParse(statement) ?? this.#statements.get(statement) ?? '';
    const entry = { sql, params, statement };
    this.#portals.set(portal, entry);
    this.#queue.push({ kind: 'bind', ...entry });
  }

  describe(): void {
    this.#queue.push({ kind: 'describe' });
  }

  close(kind: 'S' | 'P', name: string): void {
    if (kind === 'S') this.#statements.delete(name);
    else this.#portals.delete(name);
    this.#queue.push({ kind: 'close' });
  }

  /** The SQL an Execute of `portal` would run (its Bind's statement). */
  portalSql(portal: string): string {
    return this.#portals.get(portal)?.sql ?? '';
  }

  execute(portal: string, note?: StatementNote): void {
    const p = this.#portals.get(portal);
    this.#queue.push({ kind: 'execute', rec: record('extended', p?.sql ?? '', p?.params ?? 0, p?.statement, note) });
  }

  functionCall(oid: number): void {
    this.#queue.push({ kind: 'function', rec: record('function', `-- function call, oid ${oid}`, 0, undefined) });
  }

  sync(): void {
    this.#queue.push({ kind: 'sync' });
  }

  /**
   * A refused Execute, answered by a Parse/Bind/Execute of a raise statement plus the
   * client's Sync: the server's ParseComplete and BindComplete are swallowed and its error
   * completes the refused statement. If an earlier message of the batch failed, the server
   * skips all of it, as it would have skipped the refused Execute.
   */
  refusalBatch(portal: string, note: StatementNote): void {
    this.#queue.push({ kind: 'swallow', what: 'parse' }, { kind: 'swallow', what: 'bind' });
    this.execute(portal, note);
    this.sync();
  }

  /**
   * Whether the next error answers one of the proxy's refusals: `statement` when it is the
   * refused statement's own error, `batch` when the refusal's Parse/Bind failed first (e.g.
   * the transaction was already aborted), undefined otherwise.
   */
  get refusalHead(): 'statement' | 'batch' | undefined {
    const head = this.#queue[0];
    if ((head?.kind === 'simple' || head?.kind === 'execute') && head.rec.note?.effect === 'deny') return 'statement';
    return head?.kind === 'swallow' ? 'batch' : undefined;
  }

  /** COPY FROM STDIN data sent by the client. */
  copyIn(bytes: number): void {
    const rec = this.#current();
    if (rec) rec.bytes += bytes;
  }

  // ---- server → client ----

  /** Returns true when the message answers the proxy's own refusal and must not reach the client. */
  parseComplete(): boolean {
    const head = this.#queue[0];
    if (head?.kind === 'parse') {
      this.#queue.shift();
      this.#statements.set(head.name, head.sql);
    } else if (head?.kind === 'swallow' && head.what === 'parse') {
      this.#queue.shift();
      return true;
    }
    return false;
  }

  /** Returns true when the message answers the proxy's own refusal and must not reach the client. */
  bindComplete(): boolean {
    const head = this.#queue[0];
    if (head?.kind === 'bind') this.#queue.shift();
    else if (head?.kind === 'swallow' && head.what === 'bind') {
      this.#queue.shift();
      return true;
    }
    return false;
  }

  closeComplete(): void {
    if (this.#queue[0]?.kind === 'close') this.#queue.shift();
  }

  /** RowDescription or NoData: ends a Describe (simple-query RowDescriptions pass by). */
  described(): void {
    if (this.#queue[0]?.kind === 'describe') this.#queue.shift();
  }

  /** A DataRow or server CopyData of `bytes` bytes. */
  row(bytes: number): void {
    const rec = this.#current();
    if (rec) {
      rec.rows++;
      rec.bytes += bytes;
    }
  }

  copyOut(bytes: number): void {
    const rec = this.#current();
    if (rec) rec.bytes += bytes;
  }

  commandComplete(tag: string, rows: number | null): void {
    const head = this.#queue[0];
    if (!head) return;
    if (head.kind === 'simple') {
      head.rec.tags.push(tag);
      if (rows !== null) head.rec.tagRows = (head.rec.tagRows ?? 0) + rows;
      return;
    }
    if (head.kind === 'execute') {
      this.#queue.shift();
      head.rec.tags.push(tag);
      if (rows !== null) head.rec.tagRows = (head.rec.tagRows ?? 0) + rows;
      this.#finish(head.rec);
    }
  }

  emptyQuery(): void {
    const head = this.#queue[0];
    if (head?.kind === 'execute') {
      this.#queue.shift();
      this.#finish(head.rec);
    }
  }

  portalSuspended(): void {
    const head = this.#queue[0];
    if (head?.kind === 'execute') {
      this.#queue.shift();
      head.rec.suspended = true;
      this.#finish(head.rec);
    }
  }

  error(sqlstate: string | undefined): void {
    const head = this.#queue[0];
    if (!head) return; // an asynchronous error (e.g. FATAL at shutdown): nothing to pair with
    switch (head.kind) {
      case 'simple':
      case 'function':
        // The server abandons the rest of the string; ReadyForQuery ends the record.
        head.rec.status = 'error';
        head.rec.sqlstate = sqlstate;
        return;
      case 'sync':
        return;
      case 'execute':
        head.rec.status = 'error';
        head.rec.sqlstate = sqlstate;
        this.#finish(head.rec);
        break;
      case 'parse':
      case 'bind': {
        const rec = record('extended', head.sql, head.kind === 'bind' ? head.params : 0, head.kind === 'parse' ? head.name : head.statement);
        rec.status = 'error';
        rec.sqlstate = sqlstate;
        this.#finish(rec);
        break;
      }
      case 'describe':
      case 'close':
      case 'swallow':
        break;
    }
    // After an error the server discards messages until Sync: drop what it will skip.
    while (this.#queue.length > 0 && this.#queue[0]?.kind !== 'sync') this.#queue.shift();
  }

  /** ReadyForQuery ends a simple Query, a FunctionCall or a Sync batch. */
  ready(): void {
    while (this.#queue.length > 0) {
      const item = this.#queue.shift() as Item;
      if (item.kind === 'simple' || item.kind === 'function') {
        this.#finish(item.rec);
        return;
      }
      if (item.kind === 'sync') return;
      // Anything else left before ReadyForQuery was skipped by the server.
    }
  }

  /** The connection ended: statements still outstanding are recorded as interrupted. */
  abort(sqlstate: string): void {
    for (const item of this.#queue.splice(0)) {
      if (item.kind === 'simple' || item.kind === 'execute' || item.kind === 'function') {
        item.rec.status = 'error';
        item.rec.sqlstate = item.rec.sqlstate ?? sqlstate;
        this.#finish(item.rec);
      }
    }
  }

  #current(): StatementRecord | undefined {
    const head = this.#queue[0];
    return head && (head.kind === 'simple' || head.kind === 'execute' || head.kind === 'function') ? head.rec : undefined;
  }


  #pendingParse(name: string): string | undefined {
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const item = this.#queue[i];
      if (item?.kind === 'parse' && item.name === name) return item.sql;
    }
    return undefined;
  }

  #finish(rec: StatementRecord): void {
    rec.durationMs = performance.now() - rec.startedAt;
    if (rec.tagRows !== undefined) rec.rows = rec.tagRows;
    this.#onStatement(rec);
  }
}
