/**
 * The masking stage of a proxied PostgreSQL session: rewrites what the server sends so
 * that values the session's MaskingPlan hides never reach the client (result rows in
 * text and binary format, COPY TO STDOUT rows, every field of errors and notices,
 * NOTIFY channels and payloads, ParameterStatus).
 *
 * ─── Wiring (what proxy-session.ts calls, and when) ───────────────────────────────────
 *
 * Create one per session when the plan is defined (no plan = no masker):
 *   const masker = new ResultMasker(plan, loadOrCreateMaskingKey(stateDir), createCatalogLookup(target, { params }));
 *   (close the lookup with the session: `lookup.close()`.)
 *
 * 1. Client → server, relay phase: for every message actually forwarded to the server
 *    (after the gate; not for ones the proxy answers itself), in order:
 *        masker.frontend(m.type, m.body)
 *    It follows Parse/Bind/Describe/Execute/Close/Sync/Query so each DataRow is read with
 *    the right columns and result formats (a client may Describe a statement once and
 *    Bind it later with binary results, with no RowDescription in between).
 *
 * 2. Server → client, relay phase: for every server message, in order:
 *        const out = masker.backend(m)
 *    - a Buffer: forward it instead of m.frame (the same Buffer when nothing changed;
 *      it may hold two frames, or be empty = forward nothing);
 *    - a Promise (only for RowDescription and CopyOutResponse, when table OIDs or a
 *      COPY's columns must be looked up first): stop feeding server messages to the
 *      masker, hold them (copies or the views, in order) and stop reading the upstream;
 *      when the promise settles (it never rejects), forward m.frame unchanged and then
 *      feed the held messages through masker.backend() in order.
 *    Then, after each backend() call: `for (let n; (n = masker.takeNoticeFrame()); ) send(n)`
 *    (a one-time NoticeResponse, e.g. `masked binary column public.users.ssn returned
 *    as NULL`). NoticeResponse may arrive at any time, so this is always allowed.
 *
 *    backend() dispatches to rowDescription / dataRow / copyOutStart / copyData /
 *    copyDone / errorOrNotice / notification / parameterStatus / serverMessage, which are public for
 *    tests and for a proxy that wants to call them itself (then it must call
 *    serverMessage for every other message type, or result tracking falls back to
 *    "the latest RowDescription").
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
 * "char", unknown, json and jsonb (after its version byte) are masked like text, bytea
 * as bytes (below); a masked column of any other type is sent as NULL, with a one-time
 * notice; detectors do not look inside other binary types.
 *
 * bytea (text format, hex or escape, and binary) is decoded before the detectors run; a
 * hit masks the whole value, written back as valid bytea (masking/bytea.ts).
 *
 * Outside rows (masking/notice-fields.ts, masking/status-text.ts): every field of an
 * ErrorResponse or NoticeResponse, whatever its code, is scanned (a malformed SQLSTATE
 * becomes XX000); so are ParameterStatus names and values and NOTIFY channels and
 * payloads. The ParameterStatus and NoticeResponse frames of the server's startup go
 * through parameterStatus / errorOrNotice too (or maskParameterStatusFrame without a
 * masker).
 *
 * Fail closed: when a column cannot be resolved (catalog lookup failed, COPY of a query
 * that cannot be described, rows whose shape was never described) and the plan has
 * column rules, every value of it is masked with the strictest column style, and a
 * notice says so.
 */
import type { FieldDescription } from './decode-backend.js';
import { decodeCopyResponse, decodeRowDescription } from './decode-backend.js';
import { followBackend, followFrontend, PipelineTracker, type Outstanding, type Portal, type PreparedStatement } from './pipeline.js';
import { noticeResponse } from './build-backend.js';
import { BackendType } from './protocol.js';
import { ProtocolError } from './errors.js';
import type { CatalogLookup, TableInfo } from './masking-catalog.js';
import type { Provenance } from '../masking/provenance.js';
import type { ColumnScanner } from './column-scan.js';
import { DETECTOR_NAMES, DetectorId, looksLikeSecretName, scanSpans, SpanList } from '../masking/detectors.js';
import { matchColumn, matchExpression, type MaskingPlan } from '../masking/rules.js';
import { OutBuffer } from '../masking/out-buffer.js';
import { writeMask, type MaskStyle } from '../masking/styles.js';
import { applyRegionsToBytes, copyOutStatements, keepFor, type CopyOutStatement } from '../masking/sql-text.js';
import { detectorRegions } from '../masking/outbound-text.js';
import { csvFieldEnd, csvRowEnd, equalsBytes, escapeText, textFieldEnd, unescapeText, unquoteCsv, writeCsv, type CsvDialect } from '../masking/copy-format.js';
import { maskNoticeFrame } from '../masking/notice-fields.js';
import { maskNotificationFrame, maskParameterStatusFrame } from '../masking/status-text.js';
import { BYTEA_OID, BYTEA_UNREADABLE_RULE, ByteaMasker } from '../masking/bytea.js';

export { createCatalogLookup, type CatalogLookup, type CatalogLookupOptions, type TableInfo } from './masking-catalog.js';
export { maskSqlText, type MaskedText } from '../masking/sql-text.js';
export { maskParameterStatusFrame, maskNotificationFrame } from '../masking/status-text.js';
export { maskNoticeFrame } from '../masking/notice-fields.js';

/** What a value of a result column gets. */
const NONE = 0;
/** The rule's style over the whole value. */
const WHOLE = 1;
/** SQL NULL (style null, or a masked binary value of a non-text type). */
const NULLIFY = 2;
/** Detectors; mask the spans they find. */
const DETECT = 3;

const FLAG_JSON = 1;
const FLAG_BPCHAR = 2;
const FLAG_SECRET = 4;
/** bytea: decoded before it is scanned or masked (bytea.ts). */
const FLAG_BYTEA = 8;
/** With FLAG_BYTEA: binary format (the bytes), else text (hex or escape). */
const FLAG_BINARY = 16;

/** Binary formats that are the text itself; 2 = jsonb, whose text follows a version byte. */
const BINARY_TEXT = new Map<number, number>([
  [25, 1], // text
  [1043, 1], // varchar
  [1042, 1], // bpchar
  [19, 1], // name
  [18, 1], // "char"
  [114, 1], // json
  [705, 1], // unknown
  [3802, 2], // jsonb
]);
const JSON_TYPES = new Set([114, 3802]);
const BPCHAR = 1042;
/**
 * Types whose text form cannot hold what a detector looks for (numbers other than int8
 * and numeric, which can hold a card number; dates; booleans; network and geometric
 * types). Everything else, user-defined types included, is scanned; bytea is decoded
 * first (bytea.ts), in text and binary format.
 */
const NOT_STRINGISH = new Set([
  16, 21, 23, 24, 26, 27, 28, 29, 600, 601, 602, 603, 604, 628, 650, 700, 701, 718, 774, 790, 829, 869, 1082, 1083, 1114, 1184,
  1186, 1266, 1560, 1562, 2202, 2203, 2204, 2205, 2206, 2950, 3220, 3734, 3769, 4089, 4096, 5069,
]);

/** Per-column work for one result (a RowDescription under the formats in effect). */
class RowPlan {
  readonly mode: Uint8Array;
  readonly rule: Int32Array;
  readonly prefix: Uint8Array;
  readonly flags: Uint8Array;
  /** Index of the last column with work; -1 when none. */
  last = -1;

  constructor(readonly size: number) {
    this.mode = new Uint8Array(size);
    this.rule = new Int32Array(size).fill(-1);
    this.prefix = new Uint8Array(size);
    this.flags = new Uint8Array(size);
  }

  get active(): boolean {
    return this.last >= 0;
  }
}

interface FieldInfo {
  label: string;
  /** schema.table.column when resolved, else the label: for notices. */
  display: string;
  typeOid: number;
  /** Index into the masker's rules; -1 = no column rule. */
  rule: number;
  secret: boolean;
}

/** A resolved RowDescription. */
interface Shape {
  fields: FieldInfo[];
  /** Format codes as the RowDescription gave them. */
  formats: number[];
}

/** What the masker knows of a portal, beside the tracker's record of it. */
interface PortalMask {
  /** undefined: not described yet; null: returns no rows. */
  shape: Shape | null | undefined;
  /** The shape came from Describe of this portal (its formats are the real ones). */
  described: boolean;
  plan: RowPlan | undefined;
}

interface CopyState {
  format: 'text' | 'csv' | 'binary';
  dialect: CsvDialect;
  nullString: Buffer;
  /** The next row is CSV/text HEADER: passed through. */
  header: boolean;
  plan: RowPlan;
  /** Bytes of an incomplete row or tuple, held until the rest arrives. */
  carry: Buffer | undefined;
  binaryHeaderDone: boolean;
}

const UNRESOLVED_RULE = 'column:unresolved';
/** A computed output that depends on a masked column, or on what cannot be analysed. */
const DERIVED_RULE = 'column:derived';
/** Distinct statement texts whose provenance a session keeps. */
const PROVENANCE_CACHE = 256;
const NO_OUTPUTS: ReadonlySet<number> = new Set();
const EMPTY = Buffer.alloc(0);
const QUOTE = 0x22;
const SPACE = 0x20;

export class ResultMasker {
  readonly #plan: MaskingPlan;
  readonly #key: Buffer;
  readonly #catalog: CatalogLookup;

  /** Rule names and styles by index: column rules, then detectors, then the fail-closed rule. */
  readonly #ruleNames: string[];
  readonly #ruleStyles: MaskStyle[];
  readonly #detBase: number;
  readonly #unresolved: number;
  readonly #derived: number;
  /** Output provenance of a statement text (one entry per statement it holds); undefined = not analysable here. */
  readonly #provenance: ((sql: string) => Promise<Provenance[]>) | undefined;
  readonly #provenanceCache = new Map<string, Provenance[]>();
  /** Reads a column's stored values for the detectors (column-scan.ts); absent = computed outputs are not checked so. */
  readonly #scanner: ColumnScanner | undefined;
  /** Columns (schema.table.column) whose stored values trip a detector, as far as scanned. */
  readonly #holdsSecrets = new Map<string, boolean>();
  readonly #counts: Float64Array;
  readonly #otherCounts = new Map<string, number>();
  #values = 0;

  readonly #tables = new Map<number, TableInfo>();
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
  #cachedFor: Outstanding | undefined;
  #cachedPlan: RowPlan | undefined;
  readonly #unknownPlans = new Map<number, RowPlan>();
  #copy: CopyState | undefined;

  readonly #notices: string[] = [];
  readonly #noticed = new Set<string>();

  readonly #spans = new SpanList();
  readonly #out = new OutBuffer();
  readonly #scratch = new OutBuffer(4096);
  readonly #scratch2 = new OutBuffer(4096);
  readonly #bytea: ByteaMasker;

  // The rewrite in progress: output starts lazily, at the first change.
  #src: Buffer = EMPTY;
  #copied = 0;
  #started = false;
  #copyFrame = false;

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
  ) {
    this.#scanner = scanner;
    this.#tracker = tracker ?? new PipelineTracker();
    this.#ownsTracker = tracker === undefined;
    this.#plan = plan;
    this.#key = key;
    this.#catalog = catalog;
    this.#detBase = plan.columns.length;
    this.#unresolved = this.#detBase + DETECTOR_NAMES.length;
    this.#derived = this.#unresolved + 1;
    this.#ruleNames = [...plan.columns.map((r) => r.name), ...DETECTOR_NAMES, UNRESOLVED_RULE, DERIVED_RULE];
    const strict = plan.strictestColumnStyle === 'null' ? 'null' : 'full';
    this.#ruleStyles = [...plan.columns.map((r) => r.style), ...plan.detectorStyles, plan.strictestColumnStyle ?? 'full', strict];
    this.#provenance = provenance;
    this.#counts = new Float64Array(this.#ruleNames.length);
    this.#bytea = new ByteaMasker(plan, key);
  }

  // ───────────────────────────── public API ─────────────────────────────

  /** Values masked so far, by rule (`column:<pattern>`) or detector name. */
  counts(): { values: number; byRule: Record<string, number> } {
    const byRule: Record<string, number> = {};
    this.#counts.forEach((n, i) => {
      if (n > 0) byRule[this.#ruleNames[i]!] = n;
    });
    for (const [name, n] of this.#otherCounts) byRule[name] = (byRule[name] ?? 0) + n;
    return { values: this.#values, byRule };
  }

  /** The next one-time notice text, if any. */
  takeNotice(): string | undefined {
    return this.#notices.shift();
  }

  /** The next one-time notice as a NoticeResponse frame, if any. */
  takeNoticeFrame(): Buffer | undefined {
    const text = this.#notices.shift();
    return text === undefined ? undefined : noticeResponse({ severity: 'NOTICE', code: '01000', message: text });
  }

  /** The proxy ended a statement itself: forget the result and any COPY in progress. */
  resetStatement(): void {
    this.#current = undefined;
    this.#copy = undefined;
    this.#cachedFor = undefined;
  }

  /** Every client message forwarded to the server, in order, when the masker keeps its own tracker. */
  frontend(type: number, body: Buffer): void {
    if (this.#ownsTracker) followFrontend(this.#tracker, type, body);
  }

  /** Every server message (see the wiring above). */
  backend(m: { type: number; frame: Buffer; body: Buffer }): Buffer | Promise<void> {
    const out = this.#backend(m);
    if (this.#ownsTracker) followBackend(this.#tracker, m);
    return out;
  }

  #backend(m: { type: number; frame: Buffer; body: Buffer }): Buffer | Promise<void> {
    switch (m.type) {
      case BackendType.rowDescription:
        return this.rowDescription(m.body) ?? m.frame;
      case BackendType.dataRow:
        return this.dataRow(m.frame);
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
        this.#endResult();
        this.#copy = undefined;
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
    const desc = decodeRowDescription(body);
    const head = this.#tracker.head;
    let apply: (shape: Shape) => void;
    /** The statement whose columns these are: its text and its index in a multi-statement Query. */
    let source: { sql: string; index: number } | undefined;
    if (head?.kind === 'describe') {
      apply = this.#describeTarget(head);
      source = { sql: (head.statement ?? head.portal!.statement).sql, index: 0 };
    } else {
      apply = (shape) => {
        this.#current = this.#buildPlan(shape, (i) => shape.formats[i] ?? 0);
        this.#cachedFor = undefined;
      };
      if (head?.kind === 'query') source = { sql: head.rec.sql, index: head.completed };
      else if (head?.kind === 'execute') source = { sql: head.portal.statement.sql, index: 0 };
    }
    const missing = this.#missingTables(desc);
    const prov = this.#provenanceFor(source);
    if (missing.length === 0 && !(prov instanceof Promise)) {
      const tainted = this.#detectorTaint(prov, desc.length);
      if (!(tainted instanceof Promise)) {
        apply(this.#resolve(desc, undefined, prov, tainted));
        return undefined;
      }
    }
    return (async () => {
      const [failed, p] = await Promise.all([missing.length > 0 ? this.#lookup(missing) : undefined, prov]);
      apply(this.#resolve(desc, failed, p, await this.#detectorTaint(p, desc.length)));
    })();
  }

  /**
   * Outputs computed from a column whose stored values trip a detector (column-scan.ts):
   * the detectors would not recognise the value once transformed, so such an output is
   * masked whole. Only computed outputs of columns no rule masks already are checked.
   */
  #detectorTaint(prov: Provenance | undefined, n: number): ReadonlySet<number> | Promise<ReadonlySet<number>> {
    const scanner = this.#scanner;
    if (!scanner || this.#plan.detectors === 0 || !prov?.ok || prov.columns.length !== n) return NO_OUTPUTS;
    const wanted: [number, string[]][] = [];
    const unknown = new Set<string>();
    prov.columns.forEach((out, i) => {
      if (out.direct || out.opaque || out.sources.size === 0 || this.#ruleForSources(out.sources) >= 0) return;
      const sources = [...out.sources];
      wanted.push([i, sources]);
      for (const src of sources) if (!this.#holdsSecrets.has(src)) unknown.add(src);
    });
    if (wanted.length === 0) return NO_OUTPUTS;
    const decide = (): ReadonlySet<number> => new Set(wanted.filter(([, sources]) => sources.some((src) => this.#holdsSecrets.get(src) !== false)).map(([i]) => i));
    if (unknown.size === 0) return decide();
    return Promise.all([...unknown].map(async (src) => this.#holdsSecrets.set(src, await scanner.holdsSecrets(src)))).then(decide);
  }

  /**
   * What the output columns of `source` depend on: at once when known, a promise (that never
   * rejects) when it must be analysed, undefined when the plan has no column rules (nothing
   * to trace) or the text is unknown.
   */
  #provenanceFor(source: { sql: string; index: number } | undefined): Provenance | undefined | Promise<Provenance | undefined> {
    const traced = this.#plan.columns.length > 0 || (this.#plan.detectors !== 0 && this.#scanner !== undefined);
    if (!traced || !source) return undefined;
    const analyse = this.#provenance;
    if (!analyse) return undefined;
    const pick = (all: Provenance[]): Provenance => all[source.index] ?? { ok: false, reason: 'no such statement in the text' };
    const hit = this.#provenanceCache.get(source.sql);
    if (hit) return pick(hit);
    return analyse(source.sql).then(
      (all) => {
        if (this.#provenanceCache.size >= PROVENANCE_CACHE) this.#provenanceCache.delete(this.#provenanceCache.keys().next().value as string);
        this.#provenanceCache.set(source.sql, all);
        return pick(all);
      },
      (err: unknown) => ({ ok: false, reason: (err as Error).message }) as Provenance,
    );
  }

  /** The session changed the schema: analyses made before may be wrong now. */
  invalidate(): void {
    this.#provenanceCache.clear();
    this.#tables.clear();
  }

  /** DataRow: the frame to forward (the same Buffer when nothing was masked). */
  dataRow(frame: Buffer): Buffer {
    const rp = this.#rowPlan(frame);
    if (!rp.active) return frame;
    if (frame.length < 7) throw new ProtocolError('malformed DataRow message: no column count');
    const count = frame.readUInt16BE(5);
    const last = Math.min(rp.last, count - 1);
    this.#begin(frame, false);
    let pos = 7;
    for (let i = 0; i <= last; i++) {
      if (pos + 4 > frame.length) throw new ProtocolError(`malformed DataRow message: value ${i} has no length`);
      const len = (frame[pos]! << 24) | (frame[pos + 1]! << 16) | (frame[pos + 2]! << 8) | frame[pos + 3]!;
      const vs = pos + 4;
      const ve = len > 0 ? vs + len : vs;
      if (len < -1 || ve > frame.length) throw new ProtocolError(`malformed DataRow message: value ${i} claims ${len} bytes`);
      if (len >= 0 && rp.mode[i] !== NONE) this.#maskSized(rp, i, frame, pos, vs, ve);
      pos = ve;
    }
    return this.#finish(frame.length) ?? frame;
  }

  /**
   * CopyOutResponse (or CopyBothResponse): learn the COPY's format and columns. `sql`
   * overrides the statement text the masker tracked. Returns a promise when the
   * columns must be looked up (same contract as rowDescription).
   */
  copyOutStart(body: Buffer, sql?: string): Promise<void> | undefined {
    const r = decodeCopyResponse(body);
    const stmt = sql !== undefined ? copyOutStatements(sql)[0] : this.#copyStatement();
    const format = r.format === 1 ? 'binary' : stmt?.format === 'csv' ? 'csv' : 'text';
    const n = r.columnFormats.length;
    const state: CopyState = {
      format,
      dialect: { delimiter: stmt?.delimiter ?? (format === 'csv' ? 0x2c : 0x09), quote: stmt?.quote ?? QUOTE, escape: stmt?.escape ?? QUOTE },
      nullString: stmt?.nullString ?? Buffer.from(format === 'csv' ? '' : '\\N'),
      header: format !== 'binary' && (stmt?.header ?? false),
      plan: new RowPlan(n), // inactive until the columns are known
      carry: undefined,
      binaryHeaderDone: false,
    };
    this.#copy = state;
    const needNames = this.#plan.columns.length > 0 || (this.#plan.detectors & ((1 << DetectorId.high_entropy) | (1 << DetectorId.aws_key))) !== 0;
    const describe = this.#catalog.describe;
    if (!needNames) {
      state.plan = this.#buildPlan({ fields: [], formats: [] }, () => (format === 'binary' ? 1 : 0), n);
      return undefined;
    }
    if (!stmt || describe === undefined || (stmt.relation === undefined && stmt.query === undefined)) {
      this.#noteUnknownCopy(state);
      return undefined;
    }
    const query = stmt.query ?? `SELECT ${stmt.columns ? stmt.columns.join(', ') : '*'} FROM ${stmt.relation!}`;
    return (async () => {
      try {
        const desc = await describe(query);
        if (desc === undefined) throw new Error('the server could not describe the COPY');
        const missing = this.#missingTables(desc);
        const [failed, prov] = await Promise.all([missing.length > 0 ? this.#lookup(missing) : undefined, this.#provenanceFor({ sql: query, index: 0 })]);
        const tainted = await this.#detectorTaint(prov, desc.length);
        let fields = desc;
        if (stmt.relation !== undefined && stmt.columns === undefined) {
          // COPY table TO leaves generated columns out.
          fields = desc.filter((d) => !this.#tables.get(d.tableOid)?.generated?.has(d.columnAttr));
        }
        if (fields.length !== n) throw new Error('column count mismatch');
        const shape = this.#resolve(fields, failed, fields === desc ? prov : undefined, fields === desc ? tainted : NO_OUTPUTS);
        state.plan = this.#buildPlan(shape, () => (format === 'binary' ? 1 : 0));
      } catch {
        this.#noteUnknownCopy(state);
      }
    })();
  }

  /** CopyData of a COPY TO STDOUT. May return an empty Buffer (forward nothing: a partial row is held). */
  copyData(frame: Buffer): Buffer {
    const st = this.#copy;
    if (!st?.plan.active) return frame;
    let data = frame.subarray(5);
    const held = st.carry !== undefined;
    if (st.carry !== undefined) {
      data = Buffer.concat([st.carry, data]);
      st.carry = undefined;
    }
    this.#begin(data, true);
    const consumed = st.format === 'binary' ? this.#copyBinary(st, data) : this.#copyRows(st, data, false);
    if (consumed < data.length) st.carry = Buffer.from(data.subarray(consumed));
    if (!this.#started) {
      if (!held && consumed === data.length) return frame;
      if (consumed === 0) return EMPTY;
      this.#cut(consumed);
    }
    return this.#finish(consumed)!;
  }

  /** CopyDone: a final CopyData holding a held partial row, if any (forward it before CopyDone). */
  copyDone(): Buffer | undefined {
    const st = this.#copy;
    this.#copy = undefined;
    if (!st?.carry) return undefined;
    const data = st.carry;
    this.#begin(data, true);
    if (st.format !== 'binary') this.#copyRows(st, data, true);
    this.#cut(data.length);
    return this.#finish(data.length);
  }

  /**
   * ErrorResponse or NoticeResponse: every field masked (detectors in all of them, masked
   * columns' values in the detail, a malformed SQLSTATE replaced; see notice-fields.ts).
   */
  errorOrNotice(frame: Buffer): Buffer {
    if (frame[0] === BackendType.errorResponse) this.#onError();
    const byRule: Record<string, number> = {};
    const out = maskNoticeFrame(frame, this.#plan, this.#key, byRule);
    if (out !== frame) this.#countRegions(byRule);
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
      this.#count(this.#derived);
      this.#notice('function-result', 'agentgate: the result of a call to a function that does not ship with PostgreSQL is withheld (NULL): it may carry masked data');
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
    this.#countRegions(masked.byRule);
    const out = Buffer.concat([frame.subarray(0, 5), Buffer.alloc(4), masked.bytes, frame.subarray(9 + len)]);
    out.writeInt32BE(masked.bytes.length, 5);
    out.writeInt32BE(out.length - 1, 1);
    return out;
  }

  /** NotificationResponse: mask detector hits in the channel name and the payload. */
  notification(frame: Buffer): Buffer {
    const byRule: Record<string, number> = {};
    const out = maskNotificationFrame(frame, this.#plan, this.#key, byRule);
    if (out !== frame) this.#countRegions(byRule);
    return out;
  }

  /**
   * ParameterStatus: mask detector hits in the name and value (`set_config(…)` can make
   * the server report any text). The same Buffer when nothing changed. For the frames of
   * the server's startup the proxy may call this, or maskParameterStatusFrame without a
   * masker.
   */
  parameterStatus(frame: Buffer): Buffer {
    const byRule: Record<string, number> = {};
    const out = maskParameterStatusFrame(frame, this.#plan, this.#key, byRule);
    if (out !== frame) this.#countRegions(byRule);
    return out;
  }

  // ───────────────────────────── results ─────────────────────────────

  #endResult(): void {
    this.#current = undefined;
    this.#cachedFor = undefined;
  }

  #onError(): void {
    this.#endResult();
    this.#copy = undefined;
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
      if (pm.shape) {
        const shape = pm.shape;
        pm.plan ??= this.#buildPlan(shape, pm.described ? (i) => shape.formats[i] ?? 0 : (i) => formatOf(portal.resultFormats, i));
        plan = pm.plan;
      } else {
        plan = this.#unknownPlan(columnCount(frame), (i: number) => formatOf(portal.resultFormats, i));
      }
      this.#cachedFor = head;
      this.#cachedPlan = plan;
      return plan;
    }
    return this.#current ?? this.#unknownPlan(columnCount(frame), undefined);
  }

  /**
   * Columns of unknown origin. With column rules: every value masked (fail closed).
   * Otherwise detectors on values known to be text.
   */
  #unknownPlan(n: number, format: ((i: number) => number) | number | undefined): RowPlan {
    const key = typeof format === 'number' ? n * 4 + format : format === undefined ? n * 4 + 2 : -1;
    const cached = key >= 0 ? this.#unknownPlans.get(key) : undefined;
    if (cached) return cached;
    const fmt = (i: number): number | undefined => (typeof format === 'number' ? format : format?.(i));
    const plan = new RowPlan(n);
    const strict = this.#plan.columns.length > 0;
    if (strict) this.#notice('unknown-shape', 'agentgate: the columns of a result could not be identified, so every value in it is masked');
    for (let i = 0; i < n; i++) {
      const f = fmt(i);
      if (strict) {
        const style = this.#ruleStyles[this.#unresolved]!;
        plan.mode[i] = f === 0 && style !== 'null' ? WHOLE : NULLIFY;
        plan.rule[i] = this.#unresolved;
      } else if (f !== 1 && this.#plan.detectors !== 0) {
        // Format unknown too: read as text (most results are), so nothing slips through.
        plan.mode[i] = DETECT;
      } else continue;
      plan.last = i;
    }
    if (key >= 0) this.#unknownPlans.set(key, plan);
    return plan;
  }

  #buildPlan(shape: Shape, formatFor: (i: number) => number, size = shape.fields.length): RowPlan {
    const plan = new RowPlan(size);
    for (let i = 0; i < size; i++) {
      const f = shape.fields[i];
      const fmt = formatFor(i);
      // Unknown type (a COPY whose columns were not looked up): text is scanned, binary is not.
      const typeOid = f?.typeOid ?? 0;
      const binaryText = BINARY_TEXT.get(typeOid) ?? 0;
      // bytea is decoded, masked and written back as bytea in either format.
      const bytea = typeOid === BYTEA_OID;
      let mode = NONE;
      if (f !== undefined && f.rule >= 0) {
        const style = this.#ruleStyles[f.rule]!;
        // A whole-value mask written into a number or a boolean would not parse: NULL.
        if (fmt === 0 && NOT_STRINGISH.has(typeOid) && (f.rule === this.#derived || f.rule === this.#unresolved)) mode = NULLIFY;
        else if (fmt === 0 || binaryText !== 0 || bytea) mode = style === 'null' ? NULLIFY : WHOLE;
        else {
          mode = NULLIFY;
          this.#notice(`binary:${f.display}`, `masked binary column ${f.display} returned as NULL (agentgate masks binary values of text-like types only; ask for text format to see the mask)`);
        }
        plan.rule[i] = f.rule;
      } else if (this.#plan.detectors !== 0) {
        if (fmt === 0 ? !NOT_STRINGISH.has(typeOid) : binaryText !== 0 || bytea) mode = DETECT;
      }
      if (mode === NONE) continue;
      plan.mode[i] = mode;
      plan.prefix[i] = fmt === 1 && binaryText === 2 ? 1 : 0;
      plan.flags[i] =
        (JSON_TYPES.has(typeOid) ? FLAG_JSON : 0) |
        (typeOid === BPCHAR ? FLAG_BPCHAR : 0) |
        (f?.secret ? FLAG_SECRET : 0) |
        (bytea ? FLAG_BYTEA | (fmt !== 0 ? FLAG_BINARY : 0) : 0);
      plan.last = i;
    }
    return plan;
  }

  /** Table OIDs of these fields that need a lookup. */
  #missingTables(desc: readonly FieldDescription[]): number[] {
    if (this.#plan.columns.length === 0) return [];
    const missing: number[] = [];
    for (const d of desc) if (d.tableOid !== 0 && !this.#tables.has(d.tableOid) && !missing.includes(d.tableOid)) missing.push(d.tableOid);
    return missing;
  }

  /** Look tables up; resolves to the OIDs that could not be resolved (never rejects). */
  async #lookup(oids: number[]): Promise<Set<number> | undefined> {
    let failed: Set<number> | undefined;
    try {
      const found = await this.#catalog(oids);
      for (const oid of oids) {
        const info = found.get(oid);
        if (info) this.#tables.set(oid, info);
        else (failed ??= new Set()).add(oid);
      }
    } catch (err) {
      failed = new Set(oids);
      this.#notice(`lookup:${(err as Error).message}`, `agentgate: could not look up column names (${(err as Error).message}), so every column of the affected tables is masked`);
    }
    return failed;
  }

  /**
   * Which rule each column gets. Two witnesses, and the stricter wins:
   * - the server's: RowDescription names the table column a plain reference comes from
   *   (through subqueries and CTEs; a view's own column for a view);
   * - the parse tree's (`prov`, provenance.ts): every table column an output depends on,
   *   through any expression, view, CTE or subquery. A plain reference keeps its rule's
   *   style; anything computed from a masked column is masked whole (DERIVED_RULE), and so is
   *   an output that cannot be analysed (a user-defined function's, say).
   * When the analysis fails, a computed column (no table) or a view's column is masked
   * whole when the plan has column rules: what cannot be analysed does not pass unmasked.
   * (A masker built without an analyser — the proxy always gives one — matches such
   * columns by label only.)
   */
  #resolve(desc: readonly FieldDescription[], failed: Set<number> | undefined, prov: Provenance | undefined, tainted: ReadonlySet<number> = NO_OUTPUTS): Shape {
    const columns = this.#plan.columns.length > 0;
    const traced = prov?.ok && prov.columns.length === desc.length ? prov.columns : undefined;
    const fields = desc.map((d, i): FieldInfo => {
      let display = d.name;
      let rule = -1;
      let column: string | undefined;
      if (columns) {
        let viaView = false;
        if (d.tableOid === 0) {
          const r = matchExpression(this.#plan, d.name);
          if (r) rule = this.#plan.columns.indexOf(r);
        } else {
          const info = failed?.has(d.tableOid) ? undefined : this.#tables.get(d.tableOid);
          if (info) {
            column = info.columns.get(d.columnAttr) ?? d.name;
            display = `${info.schema}.${info.table}.${column}`;
            const r = matchColumn(this.#plan, { schema: info.schema, table: info.table, column });
            if (r) rule = this.#plan.columns.indexOf(r);
            viaView = info.kind === 'v';
          } else {
            rule = this.#unresolved;
          }
        }
        const out = traced?.[i];
        if (out) {
          if (out.opaque) rule = this.#derived;
          else {
            const r = this.#ruleForSources(out.sources);
            if (r >= 0 && !out.direct) rule = this.#derived;
            else if (r >= 0 && (rule < 0 || rule === this.#unresolved)) rule = r;
          }
        } else if (rule < 0 && (d.tableOid === 0 || viaView) && this.#provenance !== undefined) {
          // The analysis failed (or the text is not known): fail closed.
          rule = this.#unresolved;
        }
      }
      if (tainted.has(i)) rule = this.#derived;
      const secret = looksLikeSecretName(d.name) || (column !== undefined && looksLikeSecretName(column));
      return { label: d.name, display, typeOid: d.typeOid, rule, secret };
    });
    return { fields, formats: desc.map((d) => d.format) };
  }

  /** The first column rule matching any `schema.table.column` source; -1 when none. */
  #ruleForSources(sources: ReadonlySet<string>): number {
    for (const src of sources) {
      const first = src.indexOf('.');
      const last = src.lastIndexOf('.');
      if (first < 0 || last === first) continue;
      // Identifiers may hold dots: try the split at either end.
      const splits = [
        { schema: src.slice(0, first), table: src.slice(first + 1, last), column: src.slice(last + 1) },
        { schema: src.slice(0, src.indexOf('.', first + 1)), table: src.slice(src.indexOf('.', first + 1) + 1, last), column: src.slice(last + 1) },
      ];
      for (const ref of splits) {
        const r = matchColumn(this.#plan, ref);
        if (r) return this.#plan.columns.indexOf(r);
      }
    }
    return -1;
  }

  /** Mask a length-prefixed value (DataRow, binary COPY) whose Int32 length is at `lenPos`. */
  #maskSized(rp: RowPlan, i: number, src: Buffer, lenPos: number, vs: number, ve: number): void {
    const out = this.#out;
    const mode = rp.mode[i]!;
    const flags = rp.flags[i]!;
    const pre = vs + rp.prefix[i]!;
    if ((flags & FLAG_BYTEA) !== 0 && mode !== NULLIFY) {
      const m = this.#byteaMask(src, vs, ve, flags, mode === DETECT ? -1 : rp.rule[i]!);
      if (m === undefined) return;
      this.#cut(lenPos);
      out.int32(m.length);
      out.bytes(m, 0, m.length);
      this.#copied = ve;
      return;
    }
    if (mode === DETECT) {
      const spans = this.#spans;
      spans.clear();
      scanSpans(src, pre, ve, this.#plan.detectors, (flags & FLAG_SECRET) !== 0, spans);
      if (spans.length === 0) return;
      this.#cut(lenPos);
      const at = out.length;
      out.int32(0);
      out.bytes(src, vs, pre);
      this.#writeSpans(src, pre, ve);
      out.setInt32(at, out.length - at - 4);
      this.#copied = ve;
      return;
    }
    const rule = rp.rule[i]!;
    this.#count(rule);
    this.#cut(lenPos);
    if (mode === NULLIFY) {
      out.int32(-1);
    } else {
      const at = out.length;
      out.int32(0);
      out.bytes(src, vs, pre);
      this.#writeWhole(src, pre, ve, this.#ruleStyles[rule]!, flags);
      out.setInt32(at, out.length - at - 4);
    }
    this.#copied = ve;
  }

  /** A whole-value mask: json values as a JSON string, bpchar without its padding. */
  #writeWhole(src: Buffer, s: number, e: number, style: MaskStyle, flags: number, out: OutBuffer = this.#out): void {
    // bpchar's padding is not part of the value (what partial keeps, what hash covers).
    if ((flags & FLAG_BPCHAR) !== 0 && (style === 'partial' || style === 'hash')) while (e > s && src[e - 1] === SPACE) e--;
    if ((flags & FLAG_JSON) !== 0) {
      out.byte(QUOTE);
      writeMask(out, style, src, s, e, this.#key, 'none');
      out.byte(QUOTE);
    } else {
      writeMask(out, style, src, s, e, this.#key, 'auto');
    }
  }

  /** Write src[s, e) with the spans in this.#spans masked. */
  #writeSpans(src: Buffer, s: number, e: number): void {
    const out = this.#out;
    const spans = this.#spans;
    let p = s;
    for (let k = 0; k < spans.length; k++) {
      const kind = spans.kinds[k]!;
      out.bytes(src, p, spans.starts[k]!);
      writeMask(out, this.#ruleStyles[this.#detBase + kind]!, src, spans.starts[k]!, spans.ends[k]!, this.#key, keepFor(DETECTOR_NAMES[kind]!));
      p = spans.ends[k]!;
      this.#count(this.#detBase + kind);
    }
    out.bytes(src, p, e);
  }

  #count(rule: number): void {
    this.#values++;
    this.#counts[rule]!++;
  }

  #countRegions(byRule: Record<string, number>): void {
    for (const [name, n] of Object.entries(byRule)) {
      this.#values += n;
      const idx = this.#ruleNames.indexOf(name);
      if (idx >= 0) this.#counts[idx]! += n;
      else this.#otherCounts.set(name, (this.#otherCounts.get(name) ?? 0) + n);
    }
  }

  /**
   * A bytea value masked (bytea.ts): `rule` >= 0 for a masked column, -1 for detectors.
   * Undefined when it passes unchanged; otherwise a view to copy at once.
   */
  #byteaMask(src: Buffer, s: number, e: number, flags: number, rule: number): Buffer | undefined {
    const r = this.#bytea.mask(src, s, e, (flags & FLAG_BINARY) !== 0, rule >= 0 ? this.#ruleStyles[rule] : undefined, (flags & FLAG_SECRET) !== 0);
    if (r === undefined) return undefined;
    if (rule >= 0) this.#count(rule);
    else if (r.unreadable) this.#countRegions({ [BYTEA_UNREADABLE_RULE]: 1 });
    for (const kind of r.kinds) this.#count(this.#detBase + kind);
    return r.bytes;
  }

  #notice(key: string, text: string): void {
    if (this.#noticed.has(key)) return;
    this.#noticed.add(key);
    this.#notices.push(text);
  }

  // ───────────────────────────── lazy rewriting ─────────────────────────────

  #begin(src: Buffer, copyFrame: boolean): void {
    this.#src = src;
    this.#copied = 0;
    this.#started = false;
    this.#copyFrame = copyFrame;
  }

  /** Start the output if needed and copy the source up to `at`. */
  #cut(at: number): void {
    const out = this.#out;
    if (!this.#started) {
      out.begin();
      if (this.#copyFrame) {
        out.byte(BackendType.copyData);
        out.int32(0);
      }
      this.#started = true;
    }
    out.bytes(this.#src, this.#copied, at);
    this.#copied = at;
  }

  /** The rewritten message (source copied up to `until`), or undefined when nothing changed. */
  #finish(until: number): Buffer | undefined {
    if (!this.#started) return undefined;
    const out = this.#out;
    out.bytes(this.#src, this.#copied, until);
    out.setInt32(1, out.length - 1);
    this.#started = false;
    return out.finish();
  }

  // ───────────────────────────── COPY ─────────────────────────────

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

  #noteUnknownCopy(state: CopyState): void {
    if (this.#plan.columns.length === 0) {
      state.plan = this.#buildPlan({ fields: [], formats: [] }, () => (state.format === 'binary' ? 1 : 0), state.plan.size);
      return;
    }
    this.#notice('copy-unknown', 'agentgate: the columns of this COPY could not be identified, so every field is masked; COPY a table, or SELECT, for per-column masking');
    state.plan = this.#unknownPlan(state.plan.size, state.format === 'binary' ? 1 : 0);
  }

  /** Text and CSV rows; returns how much of `data` holds complete rows (all of it when `final`). */
  #copyRows(st: CopyState, data: Buffer, final: boolean): number {
    const csv = st.format === 'csv';
    const d = st.dialect;
    let p = 0;
    const n = data.length;
    while (p < n) {
      let nl = csv ? csvRowEnd(data, p, n, d) : data.indexOf(0x0a, p);
      if (nl < 0) {
        if (!final) break;
        nl = n;
      }
      const next = Math.min(nl + 1, n);
      if (st.header) {
        st.header = false;
        p = next;
        continue;
      }
      let rowEnd = nl;
      if (rowEnd > p && data[rowEnd - 1] === 0x0d) rowEnd--;
      let fs = p;
      for (let i = 0; ; i++) {
        const fe = csv ? csvFieldEnd(data, fs, rowEnd, d) : textFieldEnd(data, fs, rowEnd, d.delimiter);
        if (i < st.plan.size && st.plan.mode[i] !== NONE) this.#maskCopyField(st, i, data, fs, fe);
        if (fe >= rowEnd) break;
        fs = fe + 1;
      }
      p = next;
    }
    return final ? n : p;
  }

  #maskCopyField(st: CopyState, i: number, data: Buffer, fs: number, fe: number): void {
    const rp = st.plan;
    const csv = st.format === 'csv';
    // NULL: in text the marker as written; in CSV only unquoted.
    if (equalsBytes(data, fs, fe, st.nullString)) return;
    const mode = rp.mode[i]!;
    const flags = rp.flags[i]!;
    if ((flags & FLAG_BYTEA) !== 0 && mode !== NULLIFY) {
      // The field is bytea text in the COPY's quoting: unquote, decode and mask, requote.
      const value = this.#scratch;
      value.begin();
      if (csv) unquoteCsv(data, fs, fe, st.dialect, value);
      else unescapeText(data, fs, fe, value);
      const v = value.finish();
      const m = this.#byteaMask(v, 0, v.length, flags, mode === DETECT ? -1 : rp.rule[i]!);
      if (m === undefined) return;
      this.#cut(fs);
      if (csv) writeCsv(m, 0, m.length, st.dialect, st.nullString, this.#out);
      else escapeText(m, 0, m.length, st.dialect.delimiter, this.#out);
      this.#copied = fe;
      return;
    }
    if (mode === DETECT) {
      const spans = this.#spans;
      spans.clear();
      scanSpans(data, fs, fe, this.#plan.detectors, (flags & FLAG_SECRET) !== 0, spans);
      if (spans.length === 0) return;
      this.#cut(fs);
      this.#writeSpans(data, fs, fe);
      this.#copied = fe;
      return;
    }
    const rule = rp.rule[i]!;
    this.#count(rule);
    this.#cut(fs);
    if (mode === NULLIFY) {
      this.#out.bytes(st.nullString, 0, st.nullString.length);
    } else {
      // Decode the value, mask it, and write the mask back in the COPY's own quoting.
      const value = this.#scratch;
      value.begin();
      if (csv) unquoteCsv(data, fs, fe, st.dialect, value);
      else unescapeText(data, fs, fe, value);
      const v = value.finish();
      const mask = this.#scratch2;
      mask.begin();
      this.#writeWhole(v, 0, v.length, this.#ruleStyles[rule]!, flags, mask);
      const m = mask.finish();
      if (csv) writeCsv(m, 0, m.length, st.dialect, st.nullString, this.#out);
      else escapeText(m, 0, m.length, st.dialect.delimiter, this.#out);
    }
    this.#copied = fe;
  }

  /** Binary COPY: header, then tuples (Int16 count, then Int32 length + bytes per field), then -1. */
  #copyBinary(st: CopyState, data: Buffer): number {
    const n = data.length;
    let p = 0;
    if (!st.binaryHeaderDone) {
      if (n < 19) return 0;
      const ext = data.readInt32BE(15);
      if (ext < 0) throw new ProtocolError('malformed binary COPY header');
      if (n < 19 + ext) return 0;
      p = 19 + ext;
      st.binaryHeaderDone = true;
    }
    const rp = st.plan;
    while (p + 2 <= n) {
      const count = data.readInt16BE(p);
      if (count === -1) {
        p += 2;
        continue;
      }
      // Only whole tuples are rewritten; a partial one waits for the next CopyData.
      let q = p + 2;
      let complete = true;
      for (let i = 0; i < count; i++) {
        if (q + 4 > n) {
          complete = false;
          break;
        }
        const len = data.readInt32BE(q);
        q += 4 + (len > 0 ? len : 0);
        if (q > n) {
          complete = false;
          break;
        }
      }
      if (!complete) break;
      q = p + 2;
      for (let i = 0; i < count; i++) {
        const len = data.readInt32BE(q);
        const vs = q + 4;
        const ve = len > 0 ? vs + len : vs;
        if (len >= 0 && i < rp.size && rp.mode[i] !== NONE) this.#maskSized(rp, i, data, q, vs, ve);
        q = ve;
      }
      p = q;
    }
    return p;
  }
}

function formatOf(formats: readonly number[], i: number): number {
  return formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[i] ?? 0);
}

function columnCount(frame: Buffer): number {
  return frame.length >= 7 ? frame.readUInt16BE(5) : 0;
}
