/**
 * ErrorResponse and NoticeResponse: every field, whatever its code, is masked before it
 * reaches the client. PL/pgSQL puts arbitrary text in most of them (`RAISE … USING
 * MESSAGE, DETAIL, HINT, COLUMN, CONSTRAINT, DATATYPE, TABLE, SCHEMA`), a server or
 * pooler may send codes not defined today, and clients print or log them all.
 *
 * - Every field: the detectors, over the field's text (outbound-text.ts; a field that
 *   is not valid UTF-8 is replaced by NON_UTF8_TEXT when the plan has detectors).
 * - `C` (SQLSTATE): must be five characters of [0-9A-Z], or it is replaced by XX000
 *   (internal_error), counted as `sqlstate`. Drivers branch on it; it carries nothing
 *   else.
 * - `D` (detail): also the values of masked columns PostgreSQL echoes (error-text.ts).
 * - `s`, `t`, `c`, `d`, `n` (schema, table, column, data type, constraint): the same
 *   `(cols)=(values)` reading as the detail, without the detail's "class 23 and not
 *   understood: mask it whole" rule. PostgreSQL puts only names in these fields, so the
 *   reading only ever fires on text a statement chose to put there. A value of a masked
 *   column that a statement copies in some other form is covered by the `reads` rules
 *   below, not by this reading.
 *
 * When the statement being answered reads a masked column anywhere (`reads`, from
 * statement-reads.ts; a statement that cannot be analysed counts as one), every error and
 * notice it produces is taken to carry a value computed from one (`schema "qxzjv" does
 * not exist` for `split_part(email,'@',1)::regclass`, which no detector recognises):
 * - `M`: every quoted segment ("…" and '…') is masked whole;
 * - `D`, `H`, `W`, `q` and any field not listed here (they echo input unquoted: an XML
 *   parser's detail, a JSON CONTEXT line, an internal query) are replaced whole by
 *   READS_MASKED_TEXT;
 * - `S`, `V`, `C`, `P`, `p`, `F`, `L`, `R` keep their values (severity, SQLSTATE,
 *   positions, the server's source location: no data);
 * - `s`, `t`, `c`, `d`, `n` keep theirs under `masked`: PostgreSQL fills them from the
 *   catalog objects an error concerns (a `regclass` cast of a missing name raises
 *   42P01 without a table field), and drivers map constraint names to errors. Under
 *   `opaque` (user code may run, and `RAISE … USING TABLE = v` fills them with anything)
 *   they are replaced too.
 *   so is what the message states unquoted: everything after its first ": " and every
 *   number in it (`date field value out of range: 113-01-01` for
 *   `make_date(ascii(email), 1, 1)`, `setseed parameter 113 is out of allowed range`).
 *
 * The field order and codes are kept; only the texts change.
 */
import type { MaskingPlan } from './rules.js';
import { detailRegions } from './error-text.js';
import type { TextRegion } from './sql-text.js';
import type { ReadVerdict } from './statement-reads.js';
import { addCount, buildFrame, cstringEnd, maskTextBytes } from './outbound-text.js';

/** What replaces a SQLSTATE that is not five characters of [0-9A-Z]. */
export const INVALID_SQLSTATE_REPLACEMENT = 'XX000';
/** The count name of that replacement. */
export const SQLSTATE_RULE = 'sqlstate';

const C = 0x43;
const D = 0x44;
/** s, t, c, d, n */
const NAME_FIELDS = new Set([0x73, 0x74, 0x63, 0x64, 0x6e]);
const SQLSTATE_BYTES = Buffer.from(INVALID_SQLSTATE_REPLACEMENT, 'latin1');

interface Field {
  code: number;
  start: number;
  end: number;
}

/** Whether buf[s, e) is a well-formed SQLSTATE: five characters of [0-9A-Z]. */
export function isValidSqlState(buf: Buffer, s: number, e: number): boolean {
  if (e - s !== 5) return false;
  for (let p = s; p < e; p++) {
    const b = buf[p]!;
    if (!((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a))) return false;
  }
  return true;
}

/**
 * The ErrorResponse or NoticeResponse `frame` (type byte and length included) with every
 * field masked (see the module comment): the same Buffer when nothing changed. Counts
 * are added to `byRule` (rule or detector name → values masked). Throws ProtocolError
 * on a malformed message.
 */
export function maskNoticeFrame(
  frame: Buffer,
  plan: MaskingPlan,
  key: Buffer | undefined,
  byRule: Record<string, number> = {},
  reads: ReadVerdict = 'none',
): Buffer {
  const what = frame[0] === 0x45 ? 'ErrorResponse' : 'NoticeResponse';
  const fields: Field[] = [];
  let p = 5;
  while (p < frame.length && frame[p] !== 0) {
    const end = cstringEnd(frame, p + 1, what);
    fields.push({ code: frame[p]!, start: p + 1, end });
    p = end + 1;
  }
  const text = (code: number): string | undefined => {
    const f = fields.find((x) => x.code === code);
    return f ? frame.toString('utf8', f.start, f.end) : undefined;
  };
  const columns = plan.columns.length > 0;
  let schema: string | undefined;
  let table: string | undefined;
  let sqlstate: string | undefined;
  if (columns) {
    schema = text(0x73);
    table = text(0x74);
    const c = fields.find((x) => x.code === C);
    sqlstate = c && isValidSqlState(frame, c.start, c.end) ? frame.toString('latin1', c.start, c.end) : undefined;
  }

  // With column rules, text that may carry a masked column's value in a form no rule or
  // detector recognises is withheld: what user code put in a message (a RAISE or ASSERT in
  // a function or DO block), and the values data errors quote (`invalid input syntax for type integer:
  // "<a value computed from a masked column>"`).
  const where = columns ? text(W) : undefined;
  const userCode = columns && ((sqlstate?.startsWith('P0') ?? false) || (where !== undefined && USER_CODE.test(where)));
  const echoes = columns && sqlstate !== undefined && VALUE_ECHO_CLASSES.has(sqlstate.slice(0, 2));

  const replaced: (Buffer | undefined)[] = [];
  let any = false;
  for (const f of fields) {
    if (userCode && USER_TEXT_FIELDS.has(f.code) && f.end > f.start) {
      addCount(byRule, WITHHELD_RULE);
      replaced.push(WITHHELD_BYTES);
      any = true;
      continue;
    }
    if (reads !== 'none' && f.end > f.start && withheldWhenReading(f.code, reads)) {
      addCount(byRule, READS_MASKED_RULE);
      replaced.push(READS_MASKED_BYTES);
      any = true;
      continue;
    }
    let out: Buffer | undefined;
    if (f.code === C && !isValidSqlState(frame, f.start, f.end)) {
      addCount(byRule, SQLSTATE_RULE);
      out = SQLSTATE_BYTES;
    } else {
      let extra: TextRegion[] | undefined;
      if (columns && f.code === D) extra = detailRegions(frame, f.start, f.end, plan, schema, table, sqlstate);
      else if (columns && NAME_FIELDS.has(f.code)) extra = detailRegions(frame, f.start, f.end, plan, schema, table, undefined);
      if (reads !== 'none' && f.code === M) extra = [...(extra ?? []), ...quotedSpans(frame, f.start, f.end), ...unquotedValueRegions(frame, f.start, f.end)];
      else if (echoes && (f.code === M || f.code === D)) extra = [...(extra ?? []), ...quotedRegions(frame, f.start, f.end)];
      out = maskTextBytes(frame, f.start, f.end, plan, key, byRule, extra);
    }
    replaced.push(out);
    if (out !== undefined) any = true;
  }
  if (!any) return frame;

  const parts: Buffer[] = [];
  fields.forEach((f, k) => {
    const r = replaced[k];
    if (r === undefined) parts.push(frame.subarray(f.start - 1, f.end + 1));
    else parts.push(Buffer.from([f.code]), r, ZERO);
  });
  parts.push(ZERO);
  return buildFrame(frame[0]!, parts);
}

const ZERO = Buffer.from([0]);

const M = 0x4d;
const W = 0x57;
/** Fields user code can fill with any text: message, detail, hint, and the object-name fields. */
const USER_TEXT_FIELDS = new Set([M, D, 0x48, 0x73, 0x74, 0x63, 0x64, 0x6e]);
/** A context line that shows the text was written by a RAISE (or ASSERT) in a function or DO block. */
const USER_CODE = /\bat (?:RAISE|ASSERT)\b/;
/** Data exceptions quote the offending value (`invalid input syntax for type integer: "…"`); integrity violations put theirs in the detail, read above. */
const VALUE_ECHO_CLASSES = new Set(['22']);
export const WITHHELD_RULE = 'withheld';
const WITHHELD_BYTES = Buffer.from('agentgate: withheld (text from a function may carry masked data)', 'utf8');

/** S, V, C, P, p, F, L, R: severity, SQLSTATE, positions, the server's source location. */
const NO_DATA_FIELDS = new Set([0x53, 0x56, C, 0x50, 0x70, 0x46, 0x4c, 0x52]);
export const READS_MASKED_RULE = 'withheld_reads_masked';
/** What replaces a field that may echo a masked value unquoted (see the module comment). */
export const READS_MASKED_TEXT = 'agentgate: withheld (the statement reads a masked column)';
const READS_MASKED_BYTES = Buffer.from(READS_MASKED_TEXT, 'utf8');

/** Whether field `code` is replaced whole when the statement reads a masked column. */
function withheldWhenReading(code: number, reads: ReadVerdict): boolean {
  if (code === M || NO_DATA_FIELDS.has(code)) return false;
  if (NAME_FIELDS.has(code)) return reads === 'opaque';
  return true;
}

/**
 * For a statement that reads a masked column: everything from the first to the last
 * quote, for "…" and for '…' each (the regions may overlap; applyRegionsToBytes masks the
 * union). Why not pair quotes: PostgreSQL does not escape a quote inside the value it
 * quotes, so `"qx"zj"` would leave `zj` between two pairs. One quote: to the end.
 */
function quotedSpans(buf: Buffer, s: number, e: number): TextRegion[] {
  const out: TextRegion[] = [];
  for (const quote of [0x22, 0x27]) {
    const first = buf.indexOf(quote, s);
    if (first < 0 || first >= e) continue;
    const last = buf.lastIndexOf(quote, e - 1);
    const end = last > first ? last : e;
    if (end > first + 1) out.push({ start: first + 1, end, style: 'full', keep: 'none', rule: 'quoted_value' });
  }
  return out;
}

/** A number as messages state them: `113`, `113-01-01`, `1.5e3`, `0x71`, `-4`. */
const NUMBER = /0x[0-9a-f]+|\d+(?:[.,:/eE+-]\d+)*/gi;

/**
 * For a statement that reads a masked column: what a message states unquoted. PostgreSQL
 * puts a value after a colon (`date field value out of range: 113-01-01`, `cross-database
 * references are not implemented: qxzjv.a.b`, `requested character too large for
 * encoding: 113`) or as a number inside the sentence (`setseed parameter 113 is out of
 * allowed range`, `character with byte sequence 0x71 0x78 in encoding …`): everything after
 * the first ": ", and every number, are masked whole. The sentence's words stay.
 */
function unquotedValueRegions(buf: Buffer, s: number, e: number): TextRegion[] {
  const out: TextRegion[] = [];
  const colon = buf.indexOf(': ', s, 'latin1');
  const rest = colon >= 0 && colon < e ? colon + 2 : e;
  if (rest < e) out.push({ start: rest, end: e, style: 'full', keep: 'none', rule: 'quoted_value' });
  const text = buf.toString('latin1', s, rest);
  for (const m of text.matchAll(NUMBER)) out.push({ start: s + m.index, end: s + m.index + m[0].length, style: 'full', keep: 'none', rule: 'quoted_value' });
  return out;
}

/** The insides of every "…" in buf[s, e), masked whole (a quoted value). */
function quotedRegions(buf: Buffer, s: number, e: number): TextRegion[] {
  const out: TextRegion[] = [];
  let p = buf.indexOf(0x22, s);
  while (p >= 0 && p < e) {
    const close = buf.indexOf(0x22, p + 1);
    if (close < 0 || close >= e) {
      // An unterminated quote: mask to the end.
      if (p + 1 < e) out.push({ start: p + 1, end: e, style: 'full', keep: 'none', rule: 'quoted_value' });
      break;
    }
    if (close > p + 1) out.push({ start: p + 1, end: close, style: 'full', keep: 'none', rule: 'quoted_value' });
    p = buf.indexOf(0x22, close + 1);
  }
  return out;
}
