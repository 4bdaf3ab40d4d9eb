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
import { decodeBind, decodeClose, decodeDescribe, decodeExecute, decodeParse, decodeQuery } from './decode-frontend.js';
import { ValueCursor } from './body-reader.js';
import { noticeResponse } from './build-backend.js';
import { BackendType, FrontendType } from './protocol.js';
import { ProtocolError } from './errors.js';
import type { CatalogLookup, TableInfo } from './masking-catalog.js';
import { DETECTOR_NAMES, DetectorId, looksLikeSecretName, scanSpans, SpanList } from '../masking/detectors.js';
import { matchColumn, matchExpression, type MaskingPlan } from '../masking/rules.js';
import { OutBuffer } from '../masking/out-buffer.js';
import { writeMask, type MaskStyle } from '../masking/styles.js';
import { copyOutStatements, keepFor, type CopyOutStatement } from '../masking/sql-text.js';
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

interface Statement {
  sql: string;
  /** undefined: not described yet; null: returns no rows. */
  shape: Shape | null | undefined;
}

interface Portal {
  sql: string;
  statement: string;
  shape: Shape | null | undefined;
  /** Result format codes from Bind (none = all text, one = all, else per column). */
  formats: number[];
  /** The shape came from Describe of this portal (its formats are the real ones). */
  described: boolean;
  plan: RowPlan | undefined;
}

/** What the server owes for each message forwarded to it, in order. */
type Pending =
  | { k: 'query'; sql: string; copies: number; copyList?: CopyOutStatement[] }
  | { k: 'parse'; name: string; sql: string }
  | { k: 'bind'; portal: string; statement: string; formats: number[] }
  | { k: 'describe'; kind: 'S' | 'P'; name: string }
  | { k: 'execute'; portal: string }
  | { k: 'close'; kind: 'S' | 'P'; name: string }
  | { k: 'sync' }
  | { k: 'function' };

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
  readonly #counts: Float64Array;
  readonly #otherCounts = new Map<string, number>();
  #values = 0;

  readonly #tables = new Map<number, TableInfo>();
  readonly #statements = new Map<string, Statement>();
  readonly #portals = new Map<string, Portal>();
  readonly #pending: Pending[] = [];
  /** The result being read when no Execute is at the head (simple Query, or no frontend tracking). */
  #current: RowPlan | undefined;
  #cachedFor: Pending | undefined;
  #cachedPlan: RowPlan | undefined;
  readonly #unknownPlans = new Map<number, RowPlan>();
  #copy: CopyState | undefined;

  readonly #notices: string[] = [];
  readonly #noticed = new Set<string>();

  readonly #spans = new SpanList();
  readonly #out = new OutBuffer();
  readonly #scratch = new OutBuffer(4096);
  readonly #scratch2 = new OutBuffer(4096);
  readonly #bindCursor = new ValueCursor();
  readonly #bytea: ByteaMasker;

  // The rewrite in progress: output starts lazily, at the first change.
  #src: Buffer = EMPTY;
  #copied = 0;
  #started = false;
  #copyFrame = false;

  constructor(plan: MaskingPlan, key: Buffer, catalog: CatalogLookup) {
    this.#plan = plan;
    this.#key = key;
    this.#catalog = catalog;
    this.#detBase = plan.columns.length;
    this.#unresolved = this.#detBase + DETECTOR_NAMES.length;
    this.#ruleNames = [...plan.columns.map((r) => r.name), ...DETECTOR_NAMES, UNRESOLVED_RULE];
    this.#ruleStyles = [...plan.columns.map((r) => r.style), ...plan.detectorStyles, plan.strictestColumnStyle ?? 'full'];
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

  /** Every client message forwarded to the server, in order (see the wiring above). */
  frontend(type: number, body: Buffer): void {
    switch (type) {
      case FrontendType.query:
        this.#pending.push({ k: 'query', sql: decodeQuery(body), copies: 0 });
        return;
      case FrontendType.parse: {
        const p = decodeParse(body);
        this.#pending.push({ k: 'parse', name: p.statement, sql: p.sql });
        return;
      }
      case FrontendType.bind: {
        const b = decodeBind(body, this.#bindCursor);
        this.#pending.push({ k: 'bind', portal: b.portal, statement: b.statement, formats: b.resultFormats });
        return;
      }
      case FrontendType.describe: {
        const d = decodeDescribe(body);
        this.#pending.push({ k: 'describe', kind: d.kind, name: d.name });
        return;
      }
      case FrontendType.execute:
        this.#pending.push({ k: 'execute', portal: decodeExecute(body).portal });
        return;
      case FrontendType.close: {
        const c = decodeClose(body);
        this.#pending.push({ k: 'close', kind: c.kind, name: c.name });
        return;
      }
      case FrontendType.sync:
        this.#pending.push({ k: 'sync' });
        return;
      case FrontendType.functionCall:
        this.#pending.push({ k: 'function' });
        return;
      default:
        return;
    }
  }

  /** Every server message (see the wiring above). */
  backend(m: { type: number; frame: Buffer; body: Buffer }): Buffer | Promise<void> {
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
    const head = this.#pending[0];
    switch (type) {
      case BackendType.parseComplete:
        if (head?.k === 'parse') {
          this.#pending.shift();
          this.#statements.set(head.name, { sql: head.sql, shape: undefined });
        }
        return;
      case BackendType.bindComplete:
        if (head?.k === 'bind') {
          this.#pending.shift();
          const st = this.#statements.get(head.statement);
          this.#portals.set(head.portal, {
            sql: st?.sql ?? '',
            statement: head.statement,
            shape: st?.shape,
            formats: head.formats,
            described: false,
            plan: undefined,
          });
        }
        return;
      case BackendType.noData:
        if (head?.k === 'describe') {
          this.#pending.shift();
          this.#describeTarget(head)(null);
        }
        return;
      case BackendType.commandComplete:
      case BackendType.emptyQueryResponse:
      case BackendType.portalSuspended:
        if (head?.k === 'execute') this.#pending.shift();
        this.#endResult();
        return;
      case BackendType.closeComplete:
        if (head?.k === 'close') {
          this.#pending.shift();
          if (head.kind === 'S') this.#statements.delete(head.name);
          else this.#portals.delete(head.name);
        }
        return;
      case BackendType.readyForQuery:
        while (this.#pending.length > 0) {
          const e = this.#pending.shift()!;
          if (e.k === 'sync' || e.k === 'query' || e.k === 'function') break;
        }
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
    const head = this.#pending[0];
    let apply: (shape: Shape) => void;
    if (head?.k === 'describe') {
      this.#pending.shift();
      apply = this.#describeTarget(head);
    } else {
      apply = (shape) => {
        this.#current = this.#buildPlan(shape, (i) => shape.formats[i] ?? 0);
        this.#cachedFor = undefined;
      };
    }
    const missing = this.#missingTables(desc);
    if (missing.length === 0) {
      apply(this.#resolve(desc, undefined));
      return undefined;
    }
    return this.#lookup(missing).then((failed) => apply(this.#resolve(desc, failed)));
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
        const failed = missing.length > 0 ? await this.#lookup(missing) : undefined;
        let fields = desc;
        if (stmt.relation !== undefined && stmt.columns === undefined) {
          // COPY table TO leaves generated columns out.
          fields = desc.filter((d) => !this.#tables.get(d.tableOid)?.generated?.has(d.columnAttr));
        }
        if (fields.length !== n) throw new Error('column count mismatch');
        const shape = this.#resolve(fields, failed);
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
    const head = this.#pending[0];
    // Extended protocol: the server skips everything up to the next Sync.
    if (head !== undefined && head.k !== 'query' && head.k !== 'function') {
      while (this.#pending.length > 0 && this.#pending[0]!.k !== 'sync') this.#pending.shift();
    }
    this.#endResult();
    this.#copy = undefined;
  }

  /** Where a Describe's answer goes. */
  #describeTarget(head: { kind: 'S' | 'P'; name: string }): (shape: Shape | null) => void {
    if (head.kind === 'S') {
      const st = this.#statements.get(head.name) ?? { sql: '', shape: undefined };
      this.#statements.set(head.name, st);
      return (shape) => {
        st.shape = shape;
      };
    }
    const portal = this.#portals.get(head.name) ?? { sql: '', statement: '', shape: undefined, formats: [], described: false, plan: undefined };
    this.#portals.set(head.name, portal);
    return (shape) => {
      portal.shape = shape;
      portal.described = true;
      portal.plan = undefined;
    };
  }

  /** The plan for the row at hand. */
  #rowPlan(frame: Buffer): RowPlan {
    const head = this.#pending[0];
    if (head?.k === 'execute') {
      if (this.#cachedFor === head && this.#cachedPlan) return this.#cachedPlan;
      const portal = this.#portals.get(head.portal);
      let plan: RowPlan;
      // A statement described after the Bind still describes the portal's columns.
      if (portal && !portal.shape && !portal.described) portal.shape = this.#statements.get(portal.statement)?.shape;
      if (portal?.shape) {
        const shape = portal.shape;
        portal.plan ??= this.#buildPlan(shape, portal.described ? (i) => shape.formats[i] ?? 0 : (i) => formatOf(portal.formats, i));
        plan = portal.plan;
      } else {
        plan = this.#unknownPlan(columnCount(frame), portal ? (i: number) => formatOf(portal.formats, i) : undefined);
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
        if (fmt === 0 || binaryText !== 0 || bytea) mode = style === 'null' ? NULLIFY : WHOLE;
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

  #resolve(desc: readonly FieldDescription[], failed: Set<number> | undefined): Shape {
    const columns = this.#plan.columns.length > 0;
    const fields = desc.map((d): FieldInfo => {
      let display = d.name;
      let rule = -1;
      let column: string | undefined;
      if (columns) {
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
          } else {
            rule = this.#unresolved;
          }
        }
      }
      const secret = looksLikeSecretName(d.name) || (column !== undefined && looksLikeSecretName(column));
      return { label: d.name, display, typeOid: d.typeOid, rule, secret };
    });
    return { fields, formats: desc.map((d) => d.format) };
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
    const head = this.#pending[0];
    if (head?.k === 'query') {
      head.copyList ??= copyOutStatements(head.sql);
      return head.copyList[head.copies++];
    }
    if (head?.k === 'execute') {
      const sql = this.#portals.get(head.portal)?.sql;
      return sql === undefined ? undefined : copyOutStatements(sql)[0];
    }
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
