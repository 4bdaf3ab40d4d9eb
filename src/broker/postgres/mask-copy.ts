/**
 * The COPY masker of the result masker (proxy-masking.ts): COPY TO STDOUT rows in text,
 * CSV and binary format. CopyOutResponse gives the format and the column count; the
 * statement (COPY's options, and the table or query it copies) gives the dialect and,
 * described through the catalog, the columns (mask-shape.ts, then mask-row-plan.ts). Rows may span CopyData
 * messages: the incomplete tail is held until the rest arrives, and only whole rows are
 * rewritten (through the row rewriter, mask-row-rewriter.ts).
 *
 * A COPY's rows are a result like a SELECT's: when a masked column decides how many rows
 * it copies (Shape.hideRows), only the first row passes (or none, RowsMode) and its
 * `COPY n` tag counts the rows forwarded; when an output is computed over a masked column
 * (Shape.holdRows), or the columns are not known, its rows are held until CopyDone and
 * dropped with an error, so neither the number of CopyData messages nor where an error
 * stops the copy shows the value.
 */
import type { CopyResponse } from './decode-backend.js';
import { ProtocolError } from './errors.js';
import { BackendType } from './protocol.js';
import { DetectorId } from '../masking/detectors.js';
import type { MaskingPlan } from '../masking/rules.js';
import { OutBuffer } from '../masking/out-buffer.js';
import type { CopyOutStatement } from '../masking/sql-text.js';
import { csvFieldEnd, csvRowEnd, equalsBytes, escapeText, textFieldEnd, unescapeText, unquoteCsv, writeCsv, type CsvDialect } from '../masking/copy-format.js';
import { DETECT, FLAG_BYTEA, FLAG_SECRET, NONE, NULLIFY, RowPlan, type RowPlanBuilder } from './mask-row-plan.js';
import { FIRST_ROW_ONLY, ROWS_SHOWN, ROWS_WITHHELD, rowsModeOf, type CopyShapes, type RowsMode, type Shape } from './mask-shape.js';
import { HOLD_LIMIT, HeldRows } from './held-rows.js';
import type { FieldRewriter } from './mask-row-rewriter.js';
import type { MaskRules, NoticeSink } from './mask-rules.js';

const EMPTY = Buffer.alloc(0);
/** The text format's default NULL marker: no value is written as it. */
const TEXT_NULL = Buffer.from('\\N');
const QUOTE = 0x22;
const NO_FIELDS: Shape = { fields: [], formats: [] };
/** ENCODING names (as PostgreSQL compares them) whose COPY text is the server's UTF-8 bytes. */
const UTF8_NAMES: ReadonlySet<string> = new Set(['utf8', 'unicode', 'sqlascii']);

interface CopyState {
  format: 'text' | 'csv' | 'binary';
  dialect: CsvDialect;
  nullString: Buffer;
  /**
   * Whether a field reading as the NULL marker may be a value: in text format PostgreSQL
   * writes a value equal to a NULL string of the client's choosing (`NULL 'hit'`) as those
   * same bytes (only `\N` cannot be data, whose backslashes are doubled; CSV quotes such a
   * value). Such a field is masked like a value, or the marker would pass exactly the values
   * equal to a guess, unmasked: an equality test per field, a whole value in one statement.
   */
  nullAmbiguous: boolean;
  /** The next row is CSV/text HEADER: passed through. */
  header: boolean;
  plan: RowPlan;
  /** Bytes of an incomplete row or tuple, held until the rest arrives. */
  carry: Buffer | undefined;
  binaryHeaderDone: boolean;
  /** Whether the copy's row count is withheld (the rows past the first, or all, are dropped). */
  mode: RowsMode;
  /** Whether rows are held until CopyDone (and dropped with an error). */
  hold: boolean;
  /** The copy's payload held so far (rows already masked); past HOLD_LIMIT its rows are withheld (and its count, `COPY 0`). */
  held: HeldRows;
  /** Rows forwarded (with a withheld count: the count the tag reports). */
  sent: number;
}

export class CopyMasker {
  readonly #plan: MaskingPlan;
  readonly #rules: MaskRules;
  readonly #rw: FieldRewriter;
  readonly #shapes: CopyShapes;
  readonly #plans: RowPlanBuilder;
  readonly #notices: NoticeSink;
  readonly #scratch = new OutBuffer(4096);
  readonly #scratch2 = new OutBuffer(4096);
  #copy: CopyState | undefined;
  /** The row count for the `COPY n` tag of the copy that just ended, when its count is withheld. */
  #tagCount: number | undefined;

  constructor(plan: MaskingPlan, rules: MaskRules, rewriter: FieldRewriter, shapes: CopyShapes, plans: RowPlanBuilder, notices: NoticeSink) {
    this.#plan = plan;
    this.#rules = rules;
    this.#rw = rewriter;
    this.#shapes = shapes;
    this.#plans = plans;
    this.#notices = notices;
  }

  /** Forget any COPY in progress (the statement ended, or failed). */
  reset(): void {
    this.#copy = undefined;
    this.#tagCount = undefined;
  }

  /** The count the CommandComplete of the copy that just ended reports, when withheld (once). */
  takeTagCount(): number | undefined {
    const n = this.#tagCount;
    this.#tagCount = undefined;
    return n;
  }

  /**
   * CopyOutResponse (or CopyBothResponse) `r` of `stmt` (undefined when not known): learn
   * the COPY's format and columns. Returns a promise when the columns must be looked up.
   */
  start(r: CopyResponse, stmt: CopyOutStatement | undefined): Promise<void> | undefined {
    const format = r.format === 1 ? 'binary' : stmt?.format === 'csv' ? 'csv' : 'text';
    const n = r.columnFormats.length;
    const state: CopyState = {
      format,
      dialect: { delimiter: stmt?.delimiter ?? (format === 'csv' ? 0x2c : 0x09), quote: stmt?.quote ?? QUOTE, escape: stmt?.escape ?? QUOTE },
      nullString: stmt?.nullString ?? Buffer.from(format === 'csv' ? '' : '\\N'),
      nullAmbiguous: format === 'text' && stmt?.nullString !== undefined && !stmt.nullString.equals(TEXT_NULL),
      header: format !== 'binary' && (stmt?.header ?? false),
      plan: new RowPlan(n), // inactive until the columns are known
      carry: undefined,
      binaryHeaderDone: false,
      mode: ROWS_SHOWN,
      hold: false,
      held: this.#newHold(),
      sent: 0,
    };
    this.#copy = state;
    this.#tagCount = undefined;
    if (format !== 'binary' && stmt?.encoding !== undefined && !UTF8_NAMES.has(stmt.encoding)) {
      this.#withholdEncoded(state);
      return undefined;
    }
    // Binary fields are read by their type (binary-scan.ts): a binary COPY is described whenever detectors run.
    const needNames =
      this.#plan.columns.length > 0 ||
      (this.#plan.detectors & ((1 << DetectorId.high_entropy) | (1 << DetectorId.aws_key))) !== 0 ||
      (format === 'binary' && this.#plan.detectors !== 0);
    const plans = this.#plans;
    if (!needNames) {
      state.plan = plans.buildPlan(NO_FIELDS, () => (format === 'binary' ? 1 : 0), n);
      return undefined;
    }
    if (!stmt || !this.#shapes.canDescribe || (stmt.relation === undefined && stmt.query === undefined)) {
      this.#noteUnknownCopy(state);
      return undefined;
    }
    const query = stmt.query ?? `SELECT ${stmt.columns ? stmt.columns.join(', ') : '*'} FROM ${stmt.relation!}`;
    return (async () => {
      try {
        const shape = await this.#shapes.describeCopy(query, stmt.relation !== undefined && stmt.columns === undefined, n);
        state.plan = plans.buildPlan(shape, () => (format === 'binary' ? 1 : 0));
        state.mode = rowsModeOf(shape);
        state.hold = state.mode !== ROWS_SHOWN || shape.holdRows === true;
      } catch {
        this.#noteUnknownCopy(state);
      }
    })();
  }

  /** CopyData of a COPY TO STDOUT. May return an empty Buffer (forward nothing: a partial row is held). */
  data(frame: Buffer): Buffer {
    const st = this.#copy;
    if (!st || (!st.plan.active && !st.hold)) return frame;
    if (st.held.over) return EMPTY;
    const rw = this.#rw;
    let data = frame.subarray(5);
    const held = st.carry !== undefined;
    if (st.carry !== undefined) {
      data = Buffer.concat([st.carry, data]);
      st.carry = undefined;
    }
    rw.begin(data, true);
    const consumed = st.format === 'binary' ? this.#copyBinary(st, data) : this.#copyRows(st, data, false);
    if (consumed < data.length) st.carry = Buffer.from(data.subarray(consumed));
    if (st.hold) {
      // Held until CopyDone: a copy of the masked payload (the rewriter's output is a view).
      const out = rw.started ? rw.finish(consumed)!.subarray(5) : data.subarray(0, consumed);
      st.held.keep(out);
      return EMPTY;
    }
    if (!rw.started) {
      if (!held && consumed === data.length) return frame;
      if (consumed === 0) return EMPTY;
      rw.cut(consumed);
    }
    return rw.finish(consumed)!;
  }

  /** CopyDone: a final CopyData holding a held partial row, if any (forward it before CopyDone). */
  done(): Buffer | undefined {
    const st = this.#copy;
    this.#copy = undefined;
    if (!st) return undefined;
    if (st.held.over) {
      this.#tagCount = 0;
      return undefined;
    }
    if (st.mode !== ROWS_SHOWN) this.#tagCount = st.sent;
    let tail: Buffer | undefined;
    // A partial binary tuple at the end is malformed: where rows are held it is dropped.
    if (st.carry && !(st.hold && st.format === 'binary')) {
      const rw = this.#rw;
      const data = st.carry;
      rw.begin(data, true);
      if (st.format !== 'binary') this.#copyRows(st, data, true);
      rw.cut(data.length);
      tail = rw.finish(data.length);
    }
    if (!st.hold) return tail;
    // The held rows go out as one CopyData: how many messages arrive shows nothing.
    if (tail !== undefined) st.held.keep(tail.subarray(5));
    if (st.held.over) {
      this.#tagCount = 0;
      return undefined;
    }
    const payload = Buffer.concat(st.held.take()?.rows ?? []);
    if (payload.length === 0) return undefined;
    const out = Buffer.alloc(5 + payload.length);
    out[0] = BackendType.copyData;
    out.writeInt32BE(4 + payload.length, 1);
    payload.copy(out, 5);
    return out;
  }

  /** A hold for one copy's rows; past HOLD_LIMIT they are withheld, with a notice. */
  #newHold(): HeldRows {
    return new HeldRows(() =>
      this.#notices.notice(
        'copy-hold-limit',
        `agentgate: the rows of a COPY that computes over a masked column are held until it completes (an error part-way would show where the value stopped it); this one outgrew ${HOLD_LIMIT >> 20} MiB, so its rows are withheld`,
      ),
    );
  }

  /** Whether the row starting now is forwarded (a withheld count passes the first row at most). */
  #admit(st: CopyState): boolean {
    if (st.mode === ROWS_WITHHELD || (st.mode === FIRST_ROW_ONLY && st.sent > 0)) return false;
    st.sent++;
    return true;
  }

  /**
   * A text or CSV COPY written in another encoding (`ENCODING 'SJIS'`): in SJIS, BIG5, GBK,
   * UHC, GB18030 or JOHAB the second byte of a character may be a backslash, a delimiter
   * or a quote, which PostgreSQL leaves as it is and the masker, reading UTF-8, would take
   * for a field's end — the masks would fall on the wrong fields. Its rows are withheld
   * (the tag says COPY 0), with a notice.
   */
  #withholdEncoded(state: CopyState): void {
    this.#notices.notice(
      'copy-encoding',
      'agentgate: the rows of a COPY with an ENCODING other than UTF8 are withheld: masking reads COPY text as UTF-8 (in other encodings part of a character may look like a delimiter); leave the ENCODING option out',
    );
    state.mode = ROWS_WITHHELD;
    state.hold = true;
  }

  #noteUnknownCopy(state: CopyState): void {
    if (this.#plan.columns.length === 0) {
      state.plan = this.#plans.buildPlan(NO_FIELDS, () => (state.format === 'binary' ? 1 : 0), state.plan.size);
      return;
    }
    this.#notices.notice('copy-unknown', 'agentgate: the columns of this COPY could not be identified, so every field is masked; COPY a table, or SELECT, for per-column masking');
    state.plan = this.#plans.unknownPlan(state.plan.size, state.format === 'binary' ? 1 : 0);
    // What the columns compute is not known either: the rows are held like a computed result's.
    state.hold = true;
  }

  /** Text and CSV rows; returns how much of `data` holds complete rows (all of it when `final`). */
  #copyRows(st: CopyState, data: Buffer, final: boolean): number {
    const csv = st.format === 'csv';
    const d = st.dialect;
    const rw = this.#rw;
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
      if (!this.#admit(st)) {
        rw.cut(p);
        rw.resume(next);
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
    const rw = this.#rw;
    const csv = st.format === 'csv';
    // NULL: in text the marker as written (unless a value may read the same); in CSV only unquoted.
    if (!st.nullAmbiguous && equalsBytes(data, fs, fe, st.nullString)) return;
    const mode = rp.mode[i]!;
    const flags = rp.flags[i]!;
    if ((flags & FLAG_BYTEA) !== 0 && mode !== NULLIFY) {
      // The field is bytea text in the COPY's quoting: unquote, decode and mask, requote.
      const value = this.#scratch;
      value.begin();
      if (csv) unquoteCsv(data, fs, fe, st.dialect, value);
      else unescapeText(data, fs, fe, value);
      const v = value.finish();
      const m = rw.byteaMask(v, 0, v.length, flags, mode === DETECT ? -1 : rp.rule[i]!);
      if (m === undefined) return;
      rw.cut(fs);
      if (csv) writeCsv(m, 0, m.length, st.dialect, st.nullString, rw.out);
      else escapeText(m, 0, m.length, st.dialect.delimiter, rw.out);
      rw.resume(fe);
      return;
    }
    if (mode === DETECT) {
      if (!rw.scan(data, fs, fe, (flags & FLAG_SECRET) !== 0)) return;
      rw.cut(fs);
      rw.writeSpans(data, fs, fe);
      rw.resume(fe);
      return;
    }
    const rule = rp.rule[i]!;
    rw.count(rule);
    rw.cut(fs);
    const out = rw.out;
    if (mode === NULLIFY) {
      out.bytes(st.nullString, 0, st.nullString.length);
    } else {
      // Decode the value, mask it, and write the mask back in the COPY's own quoting.
      const value = this.#scratch;
      value.begin();
      if (csv) unquoteCsv(data, fs, fe, st.dialect, value);
      else unescapeText(data, fs, fe, value);
      const v = value.finish();
      const mask = this.#scratch2;
      mask.begin();
      rw.writeWhole(v, 0, v.length, this.#rules.styles[rule]!, flags, mask);
      const m = mask.finish();
      if (csv) writeCsv(m, 0, m.length, st.dialect, st.nullString, out);
      else escapeText(m, 0, m.length, st.dialect.delimiter, out);
    }
    rw.resume(fe);
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
    const rw = this.#rw;
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
      if (!this.#admit(st)) {
        rw.cut(p);
        rw.resume(q);
        p = q;
        continue;
      }
      q = p + 2;
      for (let i = 0; i < count; i++) {
        const len = data.readInt32BE(q);
        const vs = q + 4;
        const ve = len > 0 ? vs + len : vs;
        if (len >= 0 && i < rp.size && rp.mode[i] !== NONE) rw.maskSized(rp, i, data, q, vs, ve);
        q = ve;
      }
      p = q;
    }
    return p;
  }
}
