/**
 * The masking stage of a proxied PostgreSQL session: rewrites what the server sends so
 * that values the session's MaskingPlan hides never reach the client (result rows in
 * text and binary format, COPY TO STDOUT rows, every field of errors and notices,
 * NOTIFY channels and payloads, ParameterStatus).
 *
 * ─── Wiring (what proxy-session.ts calls, and when) ───────────────────────────────────
 *
 * Create one per session when the plan is defined (no plan = no masker), on the session's
 * PipelineTracker (pipeline.ts):
 *   const masker = new ResultMasker(plan, key, createCatalogLookup(target, { params }), tracker, provenance, scanner);
 *   (close the lookup with the session: `lookup.close()`.)
 *
 * 1. Client → server: the proxy advances the shared tracker (Parse/Bind/Describe/Execute/
 *    Close/Sync/Query, confirmed by the server's answers); the masker only reads
 *    `tracker.head`, the message the server is answering, so each DataRow is read with the
 *    right columns and result formats (a client may Describe a statement once and Bind it
 *    later with binary results, with no RowDescription in between). Without a tracker the
 *    masker keeps its own, and then needs every forwarded client message, in order:
 *        masker.frontend(m.type, m.body)
 *    (and backend() follows the server's side too).
 *
 * 2. Server → client, relay phase: for every server message, in order, BEFORE the proxy
 *    advances the tracker with it:
 *        const out = masker.backend(m)
 *    - a Buffer: forward it instead of m.frame (the same Buffer when nothing changed;
 *      it may hold several frames — held rows come with the CommandComplete or
 *      PortalSuspended of their result —, or be empty = forward nothing);
 *    - a Promise (for RowDescription and CopyOutResponse, when table OIDs or a COPY's
 *      columns must be looked up first; for ErrorResponse and NoticeResponse, when the
 *      running statement's text has not been analysed yet; for a DataRow, CommandComplete
 *      or PortalSuspended of an Execute nothing described, and the CommandComplete of a
 *      DECLARE, PREPARE or MOVE, when whether a masked column decides a row count is not
 *      known yet): stop feeding server messages
 *      to the masker, hold them (copies or the views, in order) and stop reading the
 *      upstream; when the promise settles (it never rejects), forward the Buffer it
 *      resolves to (an error or notice, masked), or m.frame unchanged when it resolves
 *      to nothing, and then feed the held messages through masker.backend() in order.
 *    Then, after each backend() call: `for (let n; (n = masker.takeNoticeFrame()); ) send(n)`
 *    (a one-time NoticeResponse, e.g. `masked binary column public.users.ssn returned
 *    as NULL`). NoticeResponse may arrive at any time, so this is always allowed.
 *
 *    backend() dispatches to rowDescription / dataRow / copyOutStart / copyData /
 *    copyDone / errorOrNotice / notification / parameterStatus / functionResult /
 *    serverMessage, which are public for tests and for a proxy that wants to call them
 *    itself (then it must call serverMessage for every other message type, or result
 *    tracking falls back to "the latest RowDescription").
 *
 *    When the session changes the schema, masker.invalidate() drops what was cached of it.
 *
 * 3. Audit: statement text goes through maskSqlText(sql, plan, key) before it is
 *    recorded; masker.counts() gives the values masked so far, by rule or detector
 *    (`column:*.email`, `email`, …), for session.end and the receipt.
 *
 * ─── What is masked, and how ──────────────────────────────────────────────────────────
 *
 * A result column is resolved from RowDescription's table OID and attribute number to
 * schema.table.column (catalog lookups, cached per session) and matched against the
 * plan's column rules; a computed column (table OID 0) matches on its label. A matched
 * column's every value is masked in the rule's style; other string-ish columns are
 * scanned by the detectors and only the spans found are masked.
 *
 * Text format: any type (a masked json/jsonb value is written as a JSON string,
 * `"********"`, so drivers still parse it). Binary format: text, varchar, bpchar, name,
 * "char", unknown, json, xml and jsonb (after its version byte) are masked like text,
 * bytea as bytes (below); a masked column of any other type is sent as NULL, with a
 * one-time notice. For the detectors, int8, numeric and built-in arrays are read as their
 * text (binary-scan.ts) and a value with a find is sent as NULL; a binary value of any
 * other type the detectors would scan in text (records, ranges, enums, extension types)
 * is sent as NULL, with a notice: its layout could hide a find from them.
 *
 * bytea (text format, hex or escape, and binary) is decoded before the detectors run; a
 * hit masks the whole value, written back as valid bytea (masking/bytea.ts).
 *
 * Outside rows (masking/notice-fields.ts, masking/status-text.ts): every field of an
 * ErrorResponse or NoticeResponse, whatever its code, is scanned (a malformed SQLSTATE
 * becomes XX000); when the statement the tracker's head names reads a masked column
 * anywhere (error-reads.ts, masking/statement-reads.ts; FunctionCall and statements that
 * cannot be analysed count as such), quoted values in the message are masked whole and
 * the fields that echo input unquoted are withheld. ParameterStatus names and values and
 * NOTIFY channels and payloads are scanned; with column rules a NOTIFY payload and the
 * value of a free-text setting are masked whole (their source cannot be traced). The ParameterStatus and NoticeResponse frames of the server's startup go
 * through parameterStatus / startupNotice too (or maskParameterStatusFrame without a
 * masker).
 *
 * Copies: a relation a write filled from a masked column (CREATE TABLE AS, INSERT …
 * SELECT, UPDATE, MERGE, renamed or re-parented since; masking/written-relations.ts) is
 * read like a masked column, whole, in every session of the target; a statement described
 * before the taint is masked as of now when it runs (ShapeResolver.current).
 *
 * Fail closed: when a column cannot be resolved (catalog lookup failed, COPY of a query
 * that cannot be described, rows whose shape was never described) and the plan has
 * column rules, every value of it is masked whole (NULL if a rule says null), and a
 * notice says so.
 *
 * ─── Layout ───────────────────────────────────────────────────────────────────────────
 *
 * This file is the facade: it reads the tracker's head, dispatches server messages, keeps
 * what Describe said of statements and portals, and masks the text fields outside rows.
 * - mask-shape.ts: resolving a RowDescription (or a COPY's query) to a Shape, each
 *   column's rule (catalog, provenance, detector taint), with the per-session caches;
 * - mask-row-plan.ts: a Shape under the formats in effect to a RowPlan (typed arrays);
 * - mask-row-rewriter.ts: rewriting a DataRow by its RowPlan (lazy output), and the counts;
 * - mask-copy.ts: COPY TO STDOUT rows in text, CSV and binary format;
 * - mask-rules.ts: the rules by index, and the one-time notices.
 */
import { decodeCopyResponse } from './decode-backend.js';
import { followBackend, followFrontend, PipelineTracker, type Outstanding, type Portal, type PreparedStatement } from './pipeline.js';
import { noticeResponse } from './build-backend.js';
import { BackendType } from './protocol.js';
import { ProtocolError } from './errors.js';
import type { CatalogLookup } from './masking-catalog.js';
import { OPAQUE_BUILTINS, type Provenance } from '../masking/provenance.js';
import { EFFECTFUL_NONVOLATILE, type FunctionInfo } from '../policy/function-effects.js';
import type { ColumnScanner } from './column-scan.js';
import type { MaskingPlan } from '../masking/rules.js';
import { applyRegionsToBytes, copyOutStatements, type CopyOutStatement } from '../masking/sql-text.js';
import { detectorRegions } from '../masking/outbound-text.js';
import { maskNoticeFrame } from '../masking/notice-fields.js';
import { maskNotificationFrame, maskParameterStatusFrame } from '../masking/status-text.js';
import { MaskRules, Notices } from './mask-rules.js';
import { FIRST_ROW_ONLY, ROWS_SHOWN, ROWS_WITHHELD, rowsModeOf, ShapeResolver, type RowsMode, type Shape, type StatementSource } from './mask-shape.js';
import { HOLD_LIMIT, HeldRows, type HeldOut } from './held-rows.js';
import { RowPlanBuilder, type RowPlan } from './mask-row-plan.js';
import { RowRewriter } from './mask-row-rewriter.js';
import { CopyMasker } from './mask-copy.js';
import { ErrorReads } from './error-reads.js';
import type { ReadVerdict } from '../masking/statement-reads.js';
import type { WrittenRelations } from '../masking/written-relations.js';

export { createCatalogLookup, type CatalogLookup, type CatalogLookupOptions, type TableInfo } from './masking-catalog.js';
export { bindValueMasker, maskSqlText, type MaskedText } from '../masking/sql-text.js';

/** Built-ins that run SQL text or other stored code: their arguments may be anything. */
const RUNS_CODE: ReadonlySet<string> = new Set([...OPAQUE_BUILTINS, ...EFFECTFUL_NONVOLATILE]);
/** PostgreSQL's FirstNormalObjectId: what initdb did not create has an OID from here on. */
const FIRST_NORMAL_OID = 16384;

/**
 * Whether the audit text may show a call's literal arguments as written: every candidate
 * the gate resolved for the name (`candidates`, from the catalog's cache) ships with
 * PostgreSQL (a built-in schema, created with the cluster), is no procedure and runs no SQL
 * text. A user function may write its argument into a masked column or compare it with
 * one, where the statement's text does not show it; a name not resolved now is not vouched for.
 * For an operator, `candidates` are the functions operators of that name run.
 */
export function vouchedCall(candidates: readonly FunctionInfo[] | undefined, name: string, operator = false): boolean {
  if (candidates === undefined || candidates.length === 0) return false;
  if (!operator && RUNS_CODE.has(name.slice(name.lastIndexOf('.') + 1))) return false;
  return candidates.every((f) => (f.schema === 'pg_catalog' || f.schema === 'information_schema') && f.oid < FIRST_NORMAL_OID && f.kind !== 'p');
}
export { maskParameterStatusFrame, maskNotificationFrame } from '../masking/status-text.js';
export { maskNoticeFrame } from '../masking/notice-fields.js';

/** What the masker knows of a portal, beside the tracker's record of it. */
interface PortalMask {
  /** undefined: not described yet; null: returns no rows. */
  shape: Shape | null | undefined;
  /** The shape came from Describe of this portal (its formats are the real ones). */
  described: boolean;
  plan: RowPlan | undefined;
  /** Without a shape (no Describe): how its rows go out (RowsMode), once the analysis said. */
  mode?: RowsMode;
  /** With FIRST_ROW_ONLY: the row that passes has passed (in any Execute of the portal). */
  firstSent?: boolean;
}

export class ResultMasker {
  readonly #plan: MaskingPlan;
  readonly #key: Buffer;
  readonly #rules: MaskRules;
  readonly #notices = new Notices();
  readonly #shapes: ShapeResolver;
  readonly #plans: RowPlanBuilder;
  readonly #rewriter: RowRewriter;
  readonly #copier: CopyMasker;
  /** Whether the statement an error or notice answers reads a masked column (error-reads.ts). */
  readonly #reads: ErrorReads;

  /** The session's one record of statements, portals and what the server owes (pipeline.ts). */
  readonly #tracker: PipelineTracker;
  /** Whether this masker advances the tracker itself (used on its own, without a proxy). */
  readonly #ownsTracker: boolean;
  /** Result shapes of prepared statements (by the tracker's objects). */
  readonly #statementShapes = new WeakMap<PreparedStatement, Shape | null>();
  readonly #portalMasks = new WeakMap<Portal, PortalMask>();
  /** COPY statements of a simple Query, and how many have started. */
  readonly #queryCopies = new WeakMap<Outstanding, { list: CopyOutStatement[]; started: number }>();
  /** The result being read when no Execute is at the head (simple Query, or no frontend tracking). */
  #current: RowPlan | undefined;
  #currentMode: RowsMode = ROWS_SHOWN;
  #currentHoldsRows = false;
  /** Rows forwarded of the result at hand whose count is withheld (its tag's count). */
  #sentHidden = 0;
  /** With FIRST_ROW_ONLY, outside an Execute: the row that passes has passed. */
  #currentFirstSent = false;
  /** Rows held until the result at hand completes (Shape.holdRows), masked. */
  readonly #held = new HeldRows(() =>
    this.#notices.notice(
      'hold-limit',
      `agentgate: the rows of a statement that computes over a masked column are held until it completes (an error part-way would show where the value stopped it); this result outgrew ${HOLD_LIMIT >> 20} MiB, so its rows are withheld`,
    ),
  );
  #cachedFor: Outstanding | undefined;
  readonly #describedPlans = new WeakMap<Shape, RowPlan>();
  #cachedPlan: RowPlan | undefined;
  /** The Execute whose rows' withholding #hiddenCached holds. */
  #hiddenFor: Outstanding | undefined;
  #hiddenCached: RowsMode = ROWS_SHOWN;

  /**
   * `tracker`: the session's pipeline tracker, which the proxy advances; without one the
   * masker keeps its own and follows both directions itself (`frontend()` and `backend()`).
   */
  constructor(
    plan: MaskingPlan,
    key: Buffer,
    catalog: CatalogLookup,
    tracker?: PipelineTracker,
    provenance?: (sql: string) => Promise<Provenance[]>,
    scanner?: ColumnScanner,
    reads?: (sql: string) => Promise<ReadVerdict>,
    written?: WrittenRelations,
  ) {
    this.#reads = new ErrorReads(reads, written);
    this.#tracker = tracker ?? new PipelineTracker();
    this.#ownsTracker = tracker === undefined;
    this.#plan = plan;
    this.#key = key;
    this.#rules = new MaskRules(plan);
    this.#shapes = new ShapeResolver(plan, catalog, this.#rules, this.#notices, provenance, scanner, written);
    this.#plans = new RowPlanBuilder(plan, this.#rules, this.#notices);
    this.#rewriter = new RowRewriter(plan, key, this.#rules);
    this.#copier = new CopyMasker(plan, this.#rules, this.#rewriter, this.#shapes, this.#plans, this.#notices);
  }

  // ───────────────────────────── public API ─────────────────────────────

  /** Values masked so far, by rule (`column:<pattern>`) or detector name. */
  counts(): { values: number; byRule: Record<string, number> } {
    return this.#rewriter.counts();
  }

  /** The next one-time notice text, if any. */
  takeNotice(): string | undefined {
    return this.#notices.take();
  }

  /** The next one-time notice as a NoticeResponse frame, if any. */
  takeNoticeFrame(): Buffer | undefined {
    const text = this.#notices.take();
    return text === undefined ? undefined : noticeResponse({ severity: 'NOTICE', code: '01000', message: text });
  }

  /** The proxy ended a statement itself: forget the result and any COPY in progress. */
  resetStatement(): void {
    this.#current = undefined;
    this.#currentMode = ROWS_SHOWN;
    this.#currentHoldsRows = false;
    this.#held.drop();
    this.#copier.reset();
    this.#cachedFor = undefined;
  }

  /** The session changed the schema: analyses made before may be wrong now. */
  /** What the session read of relations and statements is read again (its cache's time is up; no schema change is known). */
  expire(): void {
    this.#shapes.expire();
    this.#reads.invalidate();
  }

  invalidate(): void {
    this.#shapes.invalidate();
    this.#reads.invalidate();
  }

  /** Every client message forwarded to the server, in order, when the masker keeps its own tracker. */
  frontend(type: number, body: Buffer): void {
    if (this.#ownsTracker) followFrontend(this.#tracker, type, body);
  }

  /** Every server message (see the wiring above). */
  backend(m: { type: number; frame: Buffer; body: Buffer }): Buffer | Promise<Buffer | void> {
    const out = this.#backend(m);
    if (this.#ownsTracker) followBackend(this.#tracker, m);
    return out;
  }

  #backend(m: { type: number; frame: Buffer; body: Buffer }): Buffer | Promise<Buffer | void> {
    switch (m.type) {
      case BackendType.rowDescription:
        return this.rowDescription(m.body) ?? m.frame;
      case BackendType.dataRow: {
        const mode = this.#rowsMode();
        if (mode instanceof Promise) {
          const copy = Buffer.from(m.frame); // the reader's buffer is not ours to keep
          return mode.then((md) => this.#row(md, copy, true));
        }
        return this.#row(mode, m.frame, true);
      }
      case BackendType.commandComplete:
        return this.#commandComplete(m.frame, m.body);
      case BackendType.portalSuspended: {
        // An Execute with a row limit of a portal whose count is withheld: how many Executes
        // it takes to complete would count its rows, so each one completes, with the rows it
        // forwarded (the first row at most) as its count.
        const mode = this.#rowsMode();
        const sent = this.#sentHidden;
        const held = this.#held.take();
        this.serverMessage(m.type);
        if (mode instanceof Promise) {
          const copy = Buffer.from(m.frame);
          return mode.then((md) => this.#release(held, md === ROWS_SHOWN ? copy : completeFrame(`SELECT ${sent}`)));
        }
        return this.#release(held, mode === ROWS_SHOWN ? m.frame : completeFrame(`SELECT ${sent}`));
      }
      case BackendType.copyOutResponse:
      case BackendType.copyBothResponse:
        return this.copyOutStart(m.body) ?? m.frame;
      case BackendType.copyData:
        return this.copyData(m.frame);
      case BackendType.copyDone: {
        const tail = this.copyDone();
        return tail === undefined ? m.frame : Buffer.concat([tail, m.frame]);
      }
      case BackendType.errorResponse:
      case BackendType.noticeResponse:
        return this.errorOrNotice(m.frame);
      case BackendType.notificationResponse:
        return this.notification(m.frame);
      case BackendType.parameterStatus:
        return this.parameterStatus(m.frame);
      case BackendType.functionCallResponse:
        return this.functionResult(m.frame);
      default:
        this.serverMessage(m.type);
        return m.frame;
    }
  }

  /**
   * Server messages the masker only follows (ParseComplete, BindComplete, NoData,
   * CommandComplete, EmptyQueryResponse, PortalSuspended, CloseComplete, ReadyForQuery).
   */
  serverMessage(type: number): void {
    switch (type) {
      case BackendType.noData: {
        const head = this.#tracker.head;
        if (head?.kind === 'describe') this.#describeTarget(head)(null);
        return;
      }
      case BackendType.commandComplete:
      case BackendType.emptyQueryResponse:
      case BackendType.portalSuspended:
        this.#endResult();
        return;
      case BackendType.readyForQuery:
        this.#held.drop(); // none left unless a result ended without completing: withheld
        this.#endResult();
        this.#copier.reset();
        return;
      default:
        return;
    }
  }

  /**
   * RowDescription. Returns a promise only when table OIDs must be looked up first; the
   * proxy then holds every later server message until it settles (it never rejects).
   */
  rowDescription(body: Buffer): Promise<void> | undefined {
    const head = this.#tracker.head;
    let apply: (shape: Shape) => void;
    /** The statement whose columns these are: its text and its index in a multi-statement Query. */
    let source: StatementSource | undefined;
    if (head?.kind === 'describe') {
      apply = this.#describeTarget(head);
      source = { sql: (head.statement ?? head.portal!.statement).sql, index: 0 };
    } else {
      apply = (shape) => {
        this.#current = this.#describedPlan(shape);
        this.#currentMode = rowsModeOf(shape);
        this.#currentFirstSent = false;
        this.#currentHoldsRows = shape.holdRows === true;
        this.#cachedFor = undefined;
      };
      if (head?.kind === 'query') source = { sql: head.rec.sql, index: head.completed };
      else if (head?.kind === 'execute') source = { sql: head.portal.statement.sql, index: 0 };
    }
    const shape = this.#shapes.shapeOf(body, source);
    if (shape instanceof Promise) return shape.then(apply);
    apply(shape);
    return undefined;
  }

  /**
   * DataRow: the frame to forward (the same Buffer when nothing was masked; empty when the
   * result's row count is withheld, or, when that is not known yet, fail closed).
   */
  dataRow(frame: Buffer): Buffer {
    const mode = this.#rowsMode();
    return mode instanceof Promise ? EMPTY_FRAME : this.#row(mode, frame, false);
  }

  /** A DataRow under the result's RowsMode: masked (and held, when `hold` and the result holds its rows), or withheld. */
  #row(mode: RowsMode, frame: Buffer, hold: boolean): Buffer {
    if (mode === ROWS_WITHHELD) return EMPTY_FRAME;
    if (mode === FIRST_ROW_ONLY) {
      if (!this.#takeFirstRow()) return EMPTY_FRAME;
      this.#sentHidden++;
    }
    const out = this.#maskRow(frame);
    return hold ? this.#holdOrPass(out) : out;
  }

  /** Under FIRST_ROW_ONLY: whether this row is the one that passes (of the result, or of the portal across Executes). */
  #takeFirstRow(): boolean {
    const head = this.#tracker.head;
    if (head?.kind === 'execute') {
      const pm = this.#portalMask(head.portal);
      if (pm.firstSent === true) return false;
      pm.firstSent = true;
      return true;
    }
    if (this.#currentFirstSent) return false;
    this.#currentFirstSent = true;
    return true;
  }

  /**
   * CommandComplete. A result whose row count is withheld has its count sent as 0; a
   * DECLARE … CURSOR or PREPARE that completed is recorded (what decides the count of the
   * rows its name returns) before any later message is read; MOVE, which returns no rows,
   * is judged by the cursor it names.
   */
  #commandComplete(frame: Buffer, body: Buffer): Buffer | Promise<Buffer> {
    const tag = commandTag(body);
    const source = this.#columns() ? this.#source() : undefined;
    let mode: RowsMode | Promise<RowsMode> = ROWS_SHOWN;
    let declared: void | Promise<void> = undefined;
    if (source && (tag === 'DECLARE CURSOR' || tag === 'PREPARE')) declared = this.#shapes.declared(source);
    else if (source && tag.startsWith('MOVE ')) mode = this.#shapes.rowsModeFor(source);
    // A write with no rows to send (no RETURNING; CREATE TABLE AS, SELECT INTO): its tag
    // counts the rows written, which a masked column may decide as a SELECT's.
    else if (source && this.#tracker.head?.kind === 'query' && this.#current === undefined && WRITE_TAG.test(tag)) mode = this.#shapes.rowsModeFor(source);
    else mode = this.#rowsMode();
    // A COPY whose row count is withheld reports the rows it forwarded (mask-copy.ts).
    const copied = tag.startsWith('COPY ') ? this.#copier.takeTagCount() : undefined;
    if (copied !== undefined) {
      this.serverMessage(BackendType.commandComplete);
      return completeFrame(`COPY ${copied}`);
    }
    const sent = this.#sentHidden;
    const held = this.#held.take();
    this.serverMessage(BackendType.commandComplete);
    if (declared instanceof Promise) {
      const copy = Buffer.from(frame);
      return declared.then(() => copy);
    }
    if (mode instanceof Promise) {
      const copy = Buffer.from(frame);
      return mode.then((md) => this.#release(held, md === ROWS_SHOWN ? copy : withRowCount(copy, copy.subarray(5), sent)));
    }
    return this.#release(held, mode === ROWS_SHOWN ? frame : withRowCount(frame, body, sent));
  }

  /** A masked row of a result whose rows are held (Shape.holdRows): kept, and nothing forwarded yet. */
  #holdOrPass(row: Buffer): Buffer {
    if (row.length === 0 || !this.#holdsRows()) return row;
    this.#held.keep(row);
    return EMPTY_FRAME;
  }

  /** The held rows, then the frame that completes (or suspends) their result; its count is withheld with rows that outgrew the limit. */
  #release(held: HeldOut | undefined, frame: Buffer): Buffer {
    if (!held) return frame;
    if (held.over) return frame[0] === BackendType.commandComplete ? withRowCount(frame, frame.subarray(5), 0) : completeFrame('SELECT 0');
    return Buffer.concat([...held.rows, frame]);
  }

  /** Whether the rows of the result at hand are held until it completes (Shape.holdRows; a result nothing described is). */
  #holdsRows(): boolean {
    const head = this.#tracker.head;
    if (head?.kind !== 'execute') return this.#currentHoldsRows;
    const shape = this.#portalMask(head.portal).shape ?? this.#statementShapes.get(head.portal.statement);
    return shape ? this.#shapes.current(shape).holdRows === true : this.#columns();
  }

  #columns(): boolean {
    return this.#plan.columns.length > 0;
  }

  /** The statement the server is answering: its text and its index in a multi-statement Query. */
  #source(): StatementSource | undefined {
    const head = this.#tracker.head;
    if (head?.kind === 'query') return { sql: head.rec.sql, index: head.completed };
    if (head?.kind === 'execute') return { sql: head.portal.statement.sql, index: 0 };
    return undefined;
  }

  #maskRow(frame: Buffer): Buffer {
    const rp = this.#rowPlan(frame);
    if (!rp.active) return frame;
    return this.#rewriter.dataRow(rp, frame);
  }

  /**
   * CopyOutResponse (or CopyBothResponse): learn the COPY's format and columns. `sql`
   * overrides the statement text the masker tracked. Returns a promise when the
   * columns must be looked up (same contract as rowDescription).
   */
  copyOutStart(body: Buffer, sql?: string): Promise<void> | undefined {
    const r = decodeCopyResponse(body);
    const stmt = sql !== undefined ? copyOutStatements(sql)[0] : this.#copyStatement();
    return this.#copier.start(r, stmt);
  }

  /** CopyData of a COPY TO STDOUT. May return an empty Buffer (forward nothing: a partial row is held). */
  copyData(frame: Buffer): Buffer {
    return this.#copier.data(frame);
  }

  /** CopyDone: a final CopyData holding a held partial row, if any (forward it before CopyDone). */
  copyDone(): Buffer | undefined {
    return this.#copier.done();
  }

  // ───────────────────────────── outside rows ─────────────────────────────

  /**
   * ErrorResponse or NoticeResponse: every field masked (detectors in all of them, masked
   * columns' values in the detail, a malformed SQLSTATE replaced, and, when the statement
   * the server is answering reads a masked column anywhere, quoted values and the fields
   * that echo input; see notice-fields.ts). A promise (never rejecting) when that
   * statement's text has not been analysed yet: the proxy holds later server messages and
   * forwards the frame it resolves to instead of this one.
   */
  errorOrNotice(frame: Buffer): Buffer | Promise<Buffer> {
    if (frame[0] === BackendType.errorResponse) this.#onError();
    const verdict = this.#reads.verdictFor(this.#tracker.head);
    if (!(verdict instanceof Promise)) return this.#maskNotice(frame, verdict);
    const copy = Buffer.from(frame); // the reader's buffer is not ours to keep
    return verdict.then((v) => this.#maskNotice(copy, v));
  }

  /** A NoticeResponse of the server's startup: no statement of the client's is running. */
  startupNotice(frame: Buffer): Buffer {
    return this.#maskNotice(frame, 'none');
  }

  #maskNotice(frame: Buffer, reads: ReadVerdict): Buffer {
    const byRule: Record<string, number> = {};
    const out = maskNoticeFrame(frame, this.#plan, this.#key, byRule, reads);
    if (out !== frame) this.#rewriter.countRegions(byRule);
    return out;
  }

  /**
   * FunctionCallResponse: the result of a fast-path call. A function that does not ship
   * with PostgreSQL may return any column's value, so with column rules its result is
   * withheld (NULL, with a notice); otherwise the detectors scan it as text.
   */
  functionResult(frame: Buffer): Buffer {
    if (frame.length < 9) throw new ProtocolError('malformed FunctionCallResponse message');
    const len = frame.readInt32BE(5);
    if (len < 0) return frame;
    if (9 + len > frame.length) throw new ProtocolError('malformed FunctionCallResponse message: value overruns the message');
    const head = this.#tracker.head;
    if (this.#plan.columns.length > 0 && !(head?.kind === 'function' && head.builtin)) {
      this.#rewriter.count(this.#rules.derived);
      this.#notices.notice('function-result', 'agentgate: the result of a call to a function that does not ship with PostgreSQL is withheld (NULL): it may carry masked data');
      const out = Buffer.alloc(9);
      out[0] = BackendType.functionCallResponse;
      out.writeInt32BE(8, 1);
      out.writeInt32BE(-1, 5);
      return out;
    }
    if (this.#plan.detectors === 0) return frame;
    const regions = detectorRegions(frame, 9, 9 + len, this.#plan);
    if (regions.length === 0) return frame;
    const masked = applyRegionsToBytes(frame.subarray(9, 9 + len), regions.map((r) => ({ ...r, start: r.start - 9, end: r.end - 9 })), this.#key);
    this.#rewriter.countRegions(masked.byRule);
    const out = Buffer.concat([frame.subarray(0, 5), Buffer.alloc(4), masked.bytes, frame.subarray(9 + len)]);
    out.writeInt32BE(masked.bytes.length, 5);
    out.writeInt32BE(out.length - 1, 1);
    return out;
  }

  /** NotificationResponse: detector hits in the channel name masked; the payload too, or, with column rules, masked whole (status-text.ts). */
  notification(frame: Buffer): Buffer {
    const byRule: Record<string, number> = {};
    const out = maskNotificationFrame(frame, this.#plan, this.#key, byRule);
    if (out !== frame) this.#rewriter.countRegions(byRule);
    return out;
  }

  /**
   * ParameterStatus: mask detector hits in the name and value (`set_config(…)` can make
   * the server report any text); with column rules the value of a setting that takes
   * free text is masked whole (status-text.ts), except for the frames of the server's
   * startup (`startup`: detectors only). The same Buffer when nothing changed.
   */
  parameterStatus(frame: Buffer, startup = false): Buffer {
    const byRule: Record<string, number> = {};
    const out = maskParameterStatusFrame(frame, this.#plan, this.#key, byRule, startup);
    if (out !== frame) this.#rewriter.countRegions(byRule);
    return out;
  }

  // ───────────────────────────── results ─────────────────────────────

  #endResult(): void {
    this.#current = undefined;
    this.#currentMode = ROWS_SHOWN;
    this.#currentHoldsRows = false;
    this.#currentFirstSent = false;
    this.#sentHidden = 0;
    this.#cachedFor = undefined;
    this.#hiddenFor = undefined;
  }

  #onError(): void {
    // Rows held for the result the error ends are dropped: where it stopped is not shown.
    this.#held.drop();
    this.#endResult();
    this.#copier.reset();
  }

  /**
   * How the rows of the result at hand go out (RowsMode, from Shape.hideRows). An Execute
   * of a portal nothing described (no Describe, or one answered before the Bind) is judged
   * by its statement's analysis: a promise (never rejecting) when that is not known yet.
   */
  #rowsMode(): RowsMode | Promise<RowsMode> {
    const head = this.#tracker.head;
    if (head?.kind !== 'execute') return this.#currentMode;
    if (this.#hiddenFor === head) return this.#hiddenCached;
    const pm = this.#portalMask(head.portal);
    const described = pm.shape ?? this.#statementShapes.get(head.portal.statement);
    // A shape from before the schema changed: the statement's own analysis decides, as when nothing described it.
    const shape = described && !this.#shapes.stale(described) ? described : undefined;
    let mode: RowsMode | Promise<RowsMode>;
    if (shape) mode = rowsModeOf(this.#shapes.current(shape));
    else if (pm.mode !== undefined) mode = pm.mode;
    else if (!this.#columns()) mode = ROWS_SHOWN;
    else {
      mode = this.#shapes.rowsModeFor({ sql: head.portal.statement.sql, index: 0 });
      if (mode instanceof Promise) {
        return mode.then((md) => {
          pm.mode = md;
          return md;
        });
      }
      pm.mode = mode;
    }
    this.#hiddenFor = head;
    this.#hiddenCached = mode;
    return mode;
  }

  /** Where a Describe's answer goes. */
  #describeTarget(head: Extract<Outstanding, { kind: 'describe' }>): (shape: Shape | null) => void {
    if (head.statement) {
      const st = head.statement;
      return (shape) => {
        this.#statementShapes.set(st, shape);
      };
    }
    const pm = this.#portalMask(head.portal!);
    return (shape) => {
      pm.shape = shape;
      pm.described = true;
      pm.plan = undefined;
    };
  }

  #portalMask(portal: Portal): PortalMask {
    let pm = this.#portalMasks.get(portal);
    if (!pm) {
      pm = { shape: undefined, described: false, plan: undefined };
      this.#portalMasks.set(portal, pm);
    }
    return pm;
  }

  /**
   * The plan for a shape under the formats its RowDescription gave. Shapes are shared
   * (ShapeResolver.shapeOf) and plans never change once built, so one plan serves them all.
   */
  #describedPlan(shape: Shape): RowPlan {
    let plan = this.#describedPlans.get(shape);
    if (!plan) {
      plan = this.#plans.buildPlan(shape, (i) => shape.formats[i] ?? 0);
      this.#describedPlans.set(shape, plan);
    }
    return plan;
  }

  /** The plan for the row at hand. */
  #rowPlan(frame: Buffer): RowPlan {
    const head = this.#tracker.head;
    if (head?.kind === 'execute') {
      if (this.#cachedFor === head && this.#cachedPlan) return this.#cachedPlan;
      const portal = head.portal;
      const pm = this.#portalMask(portal);
      let plan: RowPlan;
      // A statement described after the Bind still describes the portal's columns.
      if (!pm.shape && !pm.described) pm.shape = this.#statementShapes.get(portal.statement);
      // Described before the schema changed (another session replaced a view it reads):
      // what the Describe said no longer identifies the columns, so they are masked whole.
      if (pm.shape && this.#shapes.stale(pm.shape)) {
        plan = this.#plans.unknownPlan(columnCount(frame), (i: number) => formatOf(portal.resultFormats, i));
        this.#cachedFor = head;
        this.#cachedPlan = plan;
        return plan;
      }
      // Described before a relation it reads was tainted: masked as it must be now.
      const now = pm.shape && this.#shapes.current(pm.shape);
      if (now !== pm.shape) {
        pm.shape = now;
        pm.plan = undefined;
      }
      if (pm.shape) {
        const shape = pm.shape;
        pm.plan ??= pm.described ? this.#describedPlan(shape) : this.#plans.buildPlan(shape, (i) => formatOf(portal.resultFormats, i));
        plan = pm.plan;
      } else {
        plan = this.#plans.unknownPlan(columnCount(frame), (i: number) => formatOf(portal.resultFormats, i));
      }
      this.#cachedFor = head;
      this.#cachedPlan = plan;
      return plan;
    }
    return this.#current ?? this.#plans.unknownPlan(columnCount(frame), undefined);
  }

  /** The COPY statement the CopyOutResponse at hand answers, as far as the tracker knows it. */
  #copyStatement(): CopyOutStatement | undefined {
    const head = this.#tracker.head;
    if (head?.kind === 'query') {
      let q = this.#queryCopies.get(head);
      if (!q) {
        q = { list: copyOutStatements(head.rec.sql), started: 0 };
        this.#queryCopies.set(head, q);
      }
      return q.list[q.started++];
    }
    if (head?.kind === 'execute') return copyOutStatements(head.portal.statement.sql)[0];
    return undefined;
  }
}

function formatOf(formats: readonly number[], i: number): number {
  return formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[i] ?? 0);
}

function columnCount(frame: Buffer): number {
  return frame.length >= 7 ? frame.readUInt16BE(5) : 0;
}

const EMPTY_FRAME = Buffer.alloc(0);

function commandTag(body: Buffer): string {
  const end = body.indexOf(0);
  return body.toString('latin1', 0, end < 0 ? body.length : end);
}

function completeFrame(tag: string): Buffer {
  const text = Buffer.from(`${tag}\0`, 'latin1');
  const out = Buffer.alloc(5 + text.length);
  out[0] = BackendType.commandComplete;
  out.writeInt32BE(4 + text.length, 1);
  text.copy(out, 5);
  return out;
}

/** The tags of statements that write rows and count them (`INSERT 0 n`; `SELECT n` of CREATE TABLE AS). */
const WRITE_TAG = /^(?:INSERT 0|UPDATE|DELETE|MERGE|SELECT) \d+$/;

/**
 * A CommandComplete whose `SELECT n`, `FETCH n`, `MOVE n` or write count (`INSERT 0 n`,
 * `UPDATE n`, `DELETE n`, `MERGE n`) is withheld: n is the rows forwarded (other tags pass as they are).
 */
function withRowCount(frame: Buffer, body: Buffer, n: number): Buffer {
  const m = /^(SELECT|FETCH|MOVE|INSERT 0|UPDATE|DELETE|MERGE) \d+$/.exec(commandTag(body));
  return m ? completeFrame(`${m[1]!} ${n}`) : frame;
}
