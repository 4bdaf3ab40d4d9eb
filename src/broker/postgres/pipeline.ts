/**
 * The one record of a proxied session's extended-protocol state: which prepared statements
 * and portals exist, what the server still owes for each message sent to it, and which
 * statement each result belongs to. The gate (what a Bind or Execute will run), the audit
 * log (each statement and its outcome) and the masker (which columns a DataRow holds) all
 * read this one tracker, so they cannot disagree about what a name means.
 *
 * State advances only on the server's confirmations:
 * - a statement exists once ParseComplete arrives, a portal once BindComplete does, and
 *   one is gone once CloseComplete does;
 * - after an ErrorResponse the server skips every message up to the next Sync, and so
 *   does the tracker (a skipped Close closed nothing, a skipped Parse created nothing);
 *   when the client has not sent that Sync yet, the server ignores whatever it sends until
 *   then, a simple Query or FunctionCall included (`discarding`): the proxy drops those;
 * - ReadyForQuery with status I ends the transaction, and with it every portal; a simple
 *   Query destroys the unnamed statement and portal.
 *
 * What a name means when a client message refers to it (`statement()`, `portal()`):
 * messages waiting for their answers in the SAME Sync batch are taken as given (if one of
 * them fails, the server skips the referring message too); anything pending from an
 * EARLIER batch makes the answer `wait`, and the proxy holds the message until the server
 * has answered (`ready()`), then asks again. A name that is not known is `unknown`, and
 * the proxy refuses the message without forwarding it.
 *
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 * Allocation is per message, never per row.
 */
import { BackendType, FrontendType, type TransactionStatus } from './protocol.js';
import { decodeBind, decodeClose, decodeDescribe, decodeExecute, decodeParse, decodeQuery } from './decode-frontend.js';
import { decodeCommandComplete, decodeErrorResponse, decodeReadyForQuery } from './decode-backend.js';

/** What the proxy's gate decided about a statement, carried to its audit record. */
export interface StatementNote {
  effect: 'allow' | 'deny' | 'review';
  rule: string | null;
  reason?: string;
  approval?: string;
  classification?: Record<string, unknown>;
}

export interface StatementRecord {
  /** The session's statement number: the intent event and the outcome event both carry it. */
  id: number;
  protocol: 'simple' | 'extended' | 'function';
  /** The gate's decision; absent for what the gate did not judge (a failed Parse or Bind). */
  note: StatementNote | undefined;
  sql: string;
  /** Parameter count of the Bind (extended protocol) or arguments of a FunctionCall. */
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
  /** `skipped`: the server skipped it after an earlier error in its batch; it did not run. */
  status: 'ok' | 'error' | 'skipped';
  sqlstate: string | undefined;
  /** True when an Execute with a row limit stopped early (PortalSuspended). */
  suspended: boolean;
  startedAt: number;
  durationMs: number;
  /** The text as recorded (masked), computed once for the intent and the outcome. */
  shown: string | undefined;
}

/** A prepared statement as the server holds it (or will, once its Parse is confirmed). */
export interface PreparedStatement {
  readonly name: string;
  readonly sql: string;
  readonly paramTypes: number;
  /** The parameter type OIDs Parse declared (0: left to the server), when any was: they decide what a bound value means. */
  readonly declaredTypes?: readonly number[];
}

/** A portal: a statement bound to parameters and result formats. */
export interface Portal {
  readonly name: string;
  readonly statement: PreparedStatement;
  readonly params: number;
  /** Result format codes from Bind (none = all text, one = all, else per column). */
  readonly resultFormats: readonly number[];
  /** The Bind message's body (a copy), whose parameter values an approval is bound to; absent for cursors. */
  readonly bindBody?: Buffer;
  /** A cursor DECLAREd WITH HOLD: it outlives the transaction that made it. */
  readonly hold?: true;
}

import type { NamespaceChange } from '../policy/sql-gate-types.js';
export type { NamespaceChange } from '../policy/sql-gate-types.js';

export type Outstanding =
  | {
      kind: 'query';
      rec: StatementRecord;
      batch: number;
      /** Per statement of the text, in order. */
      changes: readonly NamespaceChange[] | undefined;
      /** CommandCompletes so far: the index of the running statement. */
      completed: number;
    }
  | { kind: 'function'; rec: StatementRecord; batch: number; /** The function ships with PostgreSQL (its result is not opaque to masking). */ builtin: boolean }
  | { kind: 'parse'; statement: PreparedStatement; batch: number }
  | { kind: 'bind'; portal: Portal; batch: number }
  | { kind: 'describe'; statement: PreparedStatement | undefined; portal: Portal | undefined; batch: number }
  | { kind: 'execute'; portal: Portal; rec: StatementRecord; batch: number }
  | { kind: 'close'; what: 'S' | 'P'; name: string; batch: number }
  | { kind: 'sync'; batch: number }
  /** ParseComplete/BindComplete owed for the proxy's own refusal: not the client's to see. */
  | { kind: 'swallow'; what: 'parse' | 'bind'; batch: number };

export type Lookup<T> = T | 'unknown' | 'wait';

function record(id: number, protocol: StatementRecord['protocol'], sql: string, params: number, statement: string | undefined, note?: StatementNote): StatementRecord {
  return {
    id,
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
    shown: undefined,
  };
}

export class PipelineTracker {
  readonly #queue: Outstanding[] = [];
  /** Confirmed by the server. */
  readonly #statements = new Map<string, PreparedStatement>();
  readonly #portals = new Map<string, Portal>();
  /** The batch the next client message belongs to; a Sync, Query or FunctionCall closes one. */
  #batch = 0;
  readonly #onStatement: (rec: StatementRecord) => void;
  readonly #onForward: (rec: StatementRecord) => void;
  #nextId = 1;
  /** Refused statements the server skipped, not yet taken (see #skipped). */
  #skippedRefusals = 0;
  /** An extended-protocol error came before the client's Sync: the server ignores every message until it. */
  #discarding = false;

  /**
   * `onStatement` gets each statement's record once the server has finished with it;
   * `onForward` gets the record of each statement the gate allowed, when it is queued for
   * the server (its intent must be on record before it is sent).
   */
  constructor(onStatement: (rec: StatementRecord) => void = () => {}, onForward: (rec: StatementRecord) => void = () => {}) {
    this.#onStatement = onStatement;
    this.#onForward = onForward;
  }

  /** The oldest message the server has not finished answering. */
  get head(): Outstanding | undefined {
    return this.#queue[0];
  }

  /** True while the server owes an answer to something the client sent. */
  get busy(): boolean {
    return this.#queue.length > 0;
  }

  /**
   * True from an extended-protocol error the client had not sent the Sync for yet, until it
   * does: the server ignores every message meanwhile (a Query, a FunctionCall, a Parse …)
   * and answers none of them, so none may be queued as owed an answer.
   */
  get discarding(): boolean {
    return this.#discarding;
  }

  /** True while a statement is executing (an Execute, Query or FunctionCall awaits its end). */
  get executing(): boolean {
    return this.#queue.some((i) => i.kind === 'query' || i.kind === 'execute' || i.kind === 'function');
  }

  // ───────────────────────────── names ─────────────────────────────

  /** What prepared statement `name` will be when the server reaches the next client message. */
  statement(name: string): Lookup<PreparedStatement> {
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const item = this.#queue[i]!;
      const same = item.batch === this.#batch;
      if (item.kind === 'parse' && item.statement.name === name) return same ? item.statement : 'wait';
      if (item.kind === 'close' && item.what === 'S' && item.name === name) return same ? 'unknown' : 'wait';
      // A simple Query may PREPARE or DEALLOCATE anything, and destroys the unnamed statement.
      if (item.kind === 'query') return 'wait';
      if (item.kind === 'swallow' && item.what === 'parse' && name === '') return 'wait';
    }
    return this.#statements.get(name) ?? 'unknown';
  }

  /** What portal `name` will be when the server reaches the next client message. */
  portal(name: string): Lookup<Portal> {
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const item = this.#queue[i]!;
      const same = item.batch === this.#batch;
      if (item.kind === 'bind' && item.portal.name === name) return same ? item.portal : 'wait';
      if (item.kind === 'close' && item.what === 'P' && item.name === name) return same ? 'unknown' : 'wait';
      // A Sync or Query before this may end the transaction, and every portal with it.
      if (item.kind === 'query' || item.kind === 'sync' || item.kind === 'function') return 'wait';
      if (item.kind === 'swallow' && item.what === 'bind' && name === '') return 'wait';
    }
    return this.#portals.get(name) ?? 'unknown';
  }

  // ───────────────────────────── client → server ─────────────────────────────

  query(sql: string, note: StatementNote | undefined, changes?: readonly NamespaceChange[]): void {
    const rec = record(this.#nextId++, 'simple', sql, 0, undefined, note);
    this.#queue.push({ kind: 'query', rec, batch: this.#batch, changes, completed: 0 });
    this.#batch++;
    if (note?.effect === 'allow') this.#onForward(rec);
  }

  functionCall(label: string, args: number, note: StatementNote | undefined, builtin = false): void {
    const rec = record(this.#nextId++, 'function', label, args, undefined, note);
    this.#queue.push({ kind: 'function', rec, batch: this.#batch, builtin });
    this.#batch++;
    if (note?.effect === 'allow') this.#onForward(rec);
  }

  parse(name: string, sql: string, paramTypes: number, declaredTypes?: readonly number[]): PreparedStatement {
    const statement: PreparedStatement = { name, sql, paramTypes, ...(declaredTypes?.some((t) => t !== 0) ? { declaredTypes: [...declaredTypes] } : {}) };
    this.#queue.push({ kind: 'parse', statement, batch: this.#batch });
    return statement;
  }

  bind(name: string, statement: PreparedStatement, params: number, resultFormats: readonly number[], bindBody?: Buffer): Portal {
    const portal: Portal = { name, statement, params, resultFormats, ...(bindBody ? { bindBody } : {}) };
    this.#queue.push({ kind: 'bind', portal, batch: this.#batch });
    return portal;
  }

  describe(target: PreparedStatement | Portal): void {
    const isPortal = 'statement' in target;
    this.#queue.push({
      kind: 'describe',
      statement: isPortal ? undefined : target,
      portal: isPortal ? target : undefined,
      batch: this.#batch,
    });
  }

  execute(portal: Portal, note: StatementNote | undefined): void {
    const rec = record(this.#nextId++, 'extended', portal.statement.sql, portal.params, portal.statement.name, note);
    this.#queue.push({ kind: 'execute', portal, rec, batch: this.#batch });
    if (note?.effect === 'allow') this.#onForward(rec);
  }

  close(what: 'S' | 'P', name: string): void {
    this.#queue.push({ kind: 'close', what, name, batch: this.#batch });
  }

  sync(): void {
    this.#discarding = false;
    this.#queue.push({ kind: 'sync', batch: this.#batch });
    this.#batch++;
  }

  /**
   * A refused extended-protocol message, answered by a Parse/Bind/Execute of a raise
   * statement (sent at the client's Flush or Sync; the caller records that Sync with
   * sync()): the server's ParseComplete and BindComplete are
   * swallowed and its error completes the refused statement. If an earlier message of the
   * batch failed, the server skips all of it, as it would have skipped the refused one.
   */
  refusal(sql: string, params: number, statement: string | undefined, note: StatementNote): void {
    const b = this.#batch;
    this.#queue.push({ kind: 'swallow', what: 'parse', batch: b }, { kind: 'swallow', what: 'bind', batch: b });
    const st: PreparedStatement = { name: '', sql, paramTypes: 0 };
    this.#queue.push({ kind: 'execute', portal: { name: '', statement: st, params, resultFormats: [] }, rec: record(this.#nextId++, 'extended', sql, params, statement, note), batch: b });
  }

  /**
   * Whether the next error answers one of the proxy's refusals: `statement` when it is the
   * refused statement's own error, `batch` when the refusal's Parse/Bind failed first (e.g.
   * the transaction was already aborted), undefined otherwise.
   */
  get refusalHead(): 'statement' | 'batch' | undefined {
    const head = this.#queue[0];
    if ((head?.kind === 'query' || head?.kind === 'execute' || head?.kind === 'function') && head.rec.note?.effect === 'deny') return 'statement';
    return head?.kind === 'swallow' ? 'batch' : undefined;
  }

  /** COPY FROM STDIN data sent by the client. */
  copyIn(bytes: number): void {
    const rec = this.#current();
    if (rec) rec.bytes += bytes;
  }

  // ───────────────────────────── server → client ─────────────────────────────

  /** Returns true when the message answers the proxy's own refusal and must not reach the client. */
  parseComplete(): boolean {
    const head = this.#queue[0];
    if (head?.kind === 'parse') {
      this.#queue.shift();
      this.#statements.set(head.statement.name, head.statement);
    } else if (head?.kind === 'swallow' && head.what === 'parse') {
      this.#queue.shift();
      // The refusal replaced the client's unnamed statement: it no longer has one.
      this.#statements.delete('');
      return true;
    }
    return false;
  }

  /** Returns true when the message answers the proxy's own refusal and must not reach the client. */
  bindComplete(): boolean {
    const head = this.#queue[0];
    if (head?.kind === 'bind') {
      this.#queue.shift();
      this.#portals.set(head.portal.name, head.portal);
    } else if (head?.kind === 'swallow' && head.what === 'bind') {
      this.#queue.shift();
      this.#portals.delete('');
      return true;
    }
    return false;
  }

  closeComplete(): void {
    const head = this.#queue[0];
    if (head?.kind !== 'close') return;
    this.#queue.shift();
    if (head.what === 'S') this.#statements.delete(head.name);
    else this.#portals.delete(head.name);
  }

  /** RowDescription or NoData: ends a Describe (simple-query RowDescriptions pass by). */
  described(): void {
    if (this.#queue[0]?.kind === 'describe') this.#queue.shift();
  }

  /** A DataRow of `bytes` bytes. */
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
    if (head.kind === 'query') {
      head.rec.tags.push(tag);
      head.completed++;
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
    if (head?.kind === 'query') head.completed++;
    else if (head?.kind === 'execute') {
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
      case 'query':
      case 'function':
        // The server abandons the rest of the string; ReadyForQuery ends the record.
        head.rec.status = 'error';
        head.rec.sqlstate = sqlstate;
        return;
      case 'sync':
        return;
      case 'execute':
        this.#queue.shift();
        head.rec.status = 'error';
        head.rec.sqlstate = sqlstate;
        this.#finish(head.rec);
        break;
      case 'parse': {
        // A failed Parse of the unnamed statement has already dropped the old one.
        if (head.statement.name === '') this.#statements.delete('');
        const rec = record(this.#nextId++, 'extended', head.statement.sql, 0, head.statement.name);
        rec.status = 'error';
        rec.sqlstate = sqlstate;
        this.#finish(rec);
        break;
      }
      case 'bind': {
        if (head.portal.name === '') this.#portals.delete('');
        const rec = record(this.#nextId++, 'extended', head.portal.statement.sql, head.portal.params, head.portal.statement.name);
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
    // After an error the server discards messages until Sync: so does the tracker.
    while (this.#queue.length > 0 && this.#queue[0]?.kind !== 'sync') this.#skipped(this.#queue.shift() as Outstanding);
    // No Sync sent yet: what the client sends until it is ignored too.
    if (this.#queue.length === 0) this.#discarding = true;
  }

  /**
   * A message the server skipped: a statement whose intent is on record gets its outcome,
   * `skipped`. A refused one's raise statement never ran either: counted, so the proxy drops
   * the refusal it kept for that raise's error (takeSkippedRefusals).
   */
  #skipped(item: Outstanding): void {
    if (item.kind !== 'execute' && item.kind !== 'query' && item.kind !== 'function') return;
    if (item.rec.note?.effect === 'deny') this.#skippedRefusals++;
    else if (item.rec.note?.effect !== 'allow') return;
    item.rec.status = 'skipped';
    this.#finish(item.rec);
  }

  /** How many refused statements the server skipped since the last call (their raise statements did not run). */
  takeSkippedRefusals(): number {
    const n = this.#skippedRefusals;
    this.#skippedRefusals = 0;
    return n;
  }

  /** ReadyForQuery ends a simple Query, a FunctionCall or a Sync batch. */
  ready(status: TransactionStatus): void {
    while (this.#queue.length > 0) {
      const item = this.#queue.shift() as Outstanding;
      if (item.kind === 'query') {
        this.#statements.delete('');
        this.#portals.delete('');
        // The statements before an error ran (one CommandComplete each); the rest did not.
        const changes = item.changes ?? [];
        const ran = item.rec.status === 'error' ? Math.min(item.completed, changes.length) : changes.length;
        for (let i = 0; i < ran; i++) this.#apply(changes[i]);
        this.#finish(item.rec);
        break;
      }
      if (item.kind === 'function') {
        this.#finish(item.rec);
        break;
      }
      if (item.kind === 'sync') break;
      // Anything else left before ReadyForQuery was skipped by the server.
      this.#skipped(item);
    }
    if (status === 'I') for (const [name, p] of this.#portals) if (p.hold !== true) this.#portals.delete(name);
  }

  /** The connection ended: statements still outstanding are recorded as interrupted. */
  abort(sqlstate: string): void {
    for (const item of this.#queue.splice(0)) {
      if (item.kind === 'query' || item.kind === 'execute' || item.kind === 'function') {
        item.rec.status = 'error';
        item.rec.sqlstate = item.rec.sqlstate ?? sqlstate;
        this.#finish(item.rec);
      }
    }
  }

  #apply(change: NamespaceChange): void {
    if (!change) return;
    const { op, text } = change;
    switch (op.op) {
      case 'prepare':
        this.#statements.set(op.name, { name: op.name, sql: text, paramTypes: 0 });
        return;
      case 'deallocate':
        if (op.name === undefined) this.#statements.clear();
        else this.#statements.delete(op.name);
        return;
      case 'declare':
        // A cursor is a portal; Execute of it runs the DECLARE's query, judged as the DECLARE.
        this.#portals.set(op.name, { name: op.name, statement: { name: '', sql: text, paramTypes: 0 }, params: 0, resultFormats: [], ...(op.hold ? { hold: true as const } : {}) });
        return;
      case 'close':
        if (op.name === undefined) this.#portals.clear();
        else this.#portals.delete(op.name);
        return;
      case 'discard':
        this.#statements.clear();
        this.#portals.clear();
        return;
      case 'execute':
      case 'fetch':
        return;
    }
  }

  #current(): StatementRecord | undefined {
    const head = this.#queue[0];
    return head && (head.kind === 'query' || head.kind === 'execute' || head.kind === 'function') ? head.rec : undefined;
  }

  #finish(rec: StatementRecord): void {
    rec.durationMs = performance.now() - rec.startedAt;
    if (rec.tagRows !== undefined) rec.rows = rec.tagRows;
    this.#onStatement(rec);
  }
}

/**
 * Applies a client message that is forwarded as it is, without a gate's judgement (a
 * masker used on its own, e.g. in tests, follows the protocol this way). A message naming
 * a statement or portal the tracker does not know is followed as an empty one.
 */
export function followFrontend(t: PipelineTracker, type: number, body: Buffer): void {
  if (t.discarding && type !== FrontendType.sync) return; // the server ignores it
  switch (type) {
    case FrontendType.query:
      t.query(decodeQuery(body), undefined);
      return;
    case FrontendType.parse: {
      const p = decodeParse(body);
      t.parse(p.statement, p.sql, p.paramTypes.length, p.paramTypes);
      return;
    }
    case FrontendType.bind: {
      const b = decodeBind(body);
      const st = t.statement(b.statement);
      t.bind(b.portal, typeof st === 'string' ? { name: b.statement, sql: '', paramTypes: 0 } : st, b.paramCount, b.resultFormats);
      return;
    }
    case FrontendType.describe: {
      const d = decodeDescribe(body);
      const target = d.kind === 'S' ? t.statement(d.name) : t.portal(d.name);
      t.describe(typeof target === 'string' ? { name: d.name, sql: '', paramTypes: 0 } : target);
      return;
    }
    case FrontendType.execute: {
      const p = t.portal(decodeExecute(body).portal);
      if (typeof p !== 'string') t.execute(p, undefined);
      return;
    }
    case FrontendType.close: {
      const c = decodeClose(body);
      t.close(c.kind, c.name);
      return;
    }
    case FrontendType.sync:
      t.sync();
      return;
    case FrontendType.functionCall:
      t.functionCall('-- function call', 0, undefined);
      return;
    default:
      return;
  }
}

/**
 * Advances the tracker on one server message. Returns true when the message answers the
 * proxy's own refusal (a swallowed ParseComplete or BindComplete) and must not be relayed.
 */
export function followBackend(t: PipelineTracker, m: { type: number; frame: Buffer; body: Buffer }): boolean {
  switch (m.type) {
    case BackendType.dataRow:
      t.row(m.frame.length);
      return false;
    case BackendType.commandComplete: {
      const cc = decodeCommandComplete(m.body);
      t.commandComplete(cc.tag, cc.rows);
      return false;
    }
    case BackendType.emptyQueryResponse:
      t.emptyQuery();
      return false;
    case BackendType.portalSuspended:
      t.portalSuspended();
      return false;
    case BackendType.errorResponse:
      t.error(decodeErrorResponse(m.body).code);
      return false;
    case BackendType.parseComplete:
      return t.parseComplete();
    case BackendType.bindComplete:
      return t.bindComplete();
    case BackendType.closeComplete:
      t.closeComplete();
      return false;
    case BackendType.rowDescription:
    case BackendType.noData:
      t.described();
      return false;
    case BackendType.copyData:
      t.copyOut(m.frame.length);
      return false;
    case BackendType.readyForQuery:
      t.ready(decodeReadyForQuery(m.body));
      return false;
    default:
      return false;
  }
}
