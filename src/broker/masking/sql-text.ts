/**
 * Masking applied to SQL text before it is written to the audit log, and the COPY
 * statement reader the result stage uses to learn a COPY's format and columns.
 *
 * In SQL text, every detector hit is masked (an email in an INSERT, a card number in a
 * WHERE clause), and so is a literal the statement ties to a masked column:
 * `col = '…'`, `col <> '…'`, `col LIKE '…'`, `col IN ('…', …)`, `'…' = col`,
 * `SET col = '…'`, and `INSERT INTO t (cols) VALUES (…)` by position. Column names in
 * text are matched like expressions (table aliases are unknown here), except for an
 * INSERT, whose table is named.
 */
import { scanSpans, SpanList, DETECTOR_NAMES } from './detectors.js';
import { matchColumn, matchExpression, type ColumnRule, type MaskingPlan } from './rules.js';
import { OutBuffer } from './out-buffer.js';
import { moreProtective, writeMask, type KeepHint, type MaskStyle } from './styles.js';
import { closingParen, statements, tokenize, type Token } from './sql-lexer.js';
import { tiedLiterals, tiedParameters, type TrustedCall } from './sql-text-tree.js';

export type { TrustedCall } from './sql-text-tree.js';

export interface MaskedText {
  text: string;
  /** Values masked. */
  count: number;
  /** Rule (`column:<pattern>`) or detector name → values masked. */
  byRule: Record<string, number>;
}

interface Region {
  start: number;
  end: number;
  style: MaskStyle;
  keep: KeepHint;
  rule: string;
}

const NO_KEY = Buffer.alloc(0);
const spans = new SpanList();
const out = new OutBuffer(8192);

/**
 * Mask what the plan hides inside SQL text. Without a key, `hash` falls back to `full`
 * (the audit log then shows no equality between values either). `trusted` says which called
 * functions the catalog vouches for (sql-text-tree.ts); given, the arguments of the others
 * and literals inside code bodies are masked too.
 */
export function maskSqlText(sql: string, plan: MaskingPlan, key?: Buffer, trusted?: TrustedCall): MaskedText {
  const buf = Buffer.from(sql, 'utf8');
  // Column literals first: where a detector finds the same value, the column rule is named.
  const regions: Region[] = plan.columns.length > 0 ? columnLiterals(buf, plan, trusted) : [];
  if (plan.detectors !== 0) {
    spans.clear();
    scanSpans(buf, 0, buf.length, plan.detectors, false, spans);
    for (let k = 0; k < spans.length; k++) {
      const kind = spans.kinds[k]!;
      const name = DETECTOR_NAMES[kind]!;
      regions.push({ start: spans.starts[k]!, end: spans.ends[k]!, style: plan.detectorStyles[kind]!, keep: keepFor(name), rule: name });
    }
  }
  if (regions.length === 0) return { text: sql, count: 0, byRule: {} };
  return applyRegions(buf, regions, key);
}

/**
 * How Bind values of `sql` are shown to a reviewer (each a quoted literal `'…'`, by 0-based
 * index): a value the statement ties to a masked column (`SET ssn = $1`, an argument of a
 * call the catalog does not vouch for) is masked whole in its rule's style, as the same
 * literal written into the text would be; any other goes through the detectors. When the
 * text does not parse, every value is masked under column rules.
 */
export function bindValueMasker(sql: string, plan: MaskingPlan, key?: Buffer, trusted?: TrustedCall): (literal: string, index: number) => string {
  const plain = (x: string): string => maskSqlText(x, plan, key).text;
  if (plan.columns.length === 0) return plain;
  const tied = tiedParameters(sql, plan, trusted);
  let strictest: ColumnRule | undefined;
  for (const r of plan.columns) if (strictest === undefined || (plan.strictestColumnStyle !== undefined && r.style === plan.strictestColumnStyle)) strictest = r;
  return (literal, index) => {
    const rule = tied === undefined ? strictest : tied.get(index + 1);
    if (rule === undefined || literal.length < 2) return plain(literal);
    const buf = Buffer.from(literal, 'utf8');
    return applyRegions(buf, [{ start: 1, end: buf.length - 1, style: rule.style, keep: 'auto', rule: rule.name }], key).text;
  };
}

/** Mask regions of text given as bytes (error fields keep the client's encoding byte for byte). */
export function applyRegions(buf: Buffer, regions: Region[], key: Buffer | undefined): MaskedText {
  const r = applyRegionsToBytes(buf, regions, key);
  return { text: r.bytes.toString('utf8'), count: r.count, byRule: r.byRule };
}

/**
 * Mask `regions` of `buf`. Overlapping regions are merged: the union is masked once, in the
 * most protective style among them (a `keep` of 'none' wins over what a partial mask would
 * keep). Why: a detector's partial mask of an email inside a quoted value that is masked
 * whole must not keep the "domain" of it, and a later region reaching past an earlier
 * one must not leave its tail in clear. Counted once, under the winning region's rule.
 */
export function applyRegionsToBytes(buf: Buffer, regions: Region[], key: Buffer | undefined): { bytes: Buffer; count: number; byRule: Record<string, number> } {
  regions.sort((a, b) => a.start - b.start || b.end - a.end);
  const byRule: Record<string, number> = {};
  let count = 0;
  out.begin();
  let pos = 0;
  let i = 0;
  while (i < regions.length) {
    const first = regions[i++]!;
    if (first.end <= first.start) continue;
    let end = first.end;
    let win = first;
    let keep = first.keep;
    while (i < regions.length && regions[i]!.start < end) {
      const r = regions[i++]!;
      if (r.end <= r.start) continue;
      end = Math.max(end, r.end);
      if (moreProtective(win.style, r.style) !== win.style) win = r;
      if (r.keep === 'none') keep = 'none';
    }
    out.bytes(buf, pos, first.start);
    const style = win.style === 'hash' && (key === undefined || key.length === 0) ? 'full' : win.style;
    writeMask(out, style, buf, first.start, end, key ?? NO_KEY, keep === 'none' ? 'none' : win.keep);
    pos = end;
    count++;
    byRule[win.rule] = (byRule[win.rule] ?? 0) + 1;
  }
  out.bytes(buf, pos, buf.length);
  return { bytes: out.finish(), count, byRule };
}

export function keepFor(detector: string): KeepHint {
  return detector === 'email' ? 'email' : detector === 'private_key' ? 'none' : 'auto';
}

export type { Region as TextRegion };

// ───────────────────────────── literals tied to columns ─────────────────────────────

const COMPARE = new Set(['=', '<>', '!=']);
const isPunct = (t: Token | undefined, v: string): boolean => t?.kind === 'punct' && t.value === v;
const isIdent = (t: Token | undefined, v?: string): boolean => t?.kind === 'ident' && (v === undefined || t.value === v);
const isLiteral = (t: Token | undefined): boolean => t?.kind === 'string' || t?.kind === 'number';

function regionFor(t: Token, rule: ColumnRule): Region {
  const start = t.contentStart ?? t.start;
  const end = t.contentEnd ?? t.end;
  return { start, end, style: rule.style, keep: 'auto', rule: rule.name };
}

function columnLiterals(buf: Buffer, plan: MaskingPlan, trusted?: TrustedCall): Region[] {
  const tokens = tokenize(buf);
  const regions: Region[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!isLiteral(t)) continue;
    const col = columnFor(tokens, i);
    if (col === undefined) continue;
    const rule = matchExpression(plan, tokens[col]!.value);
    if (rule) regions.push(regionFor(t, rule));
  }
  for (const [s, e] of statements(tokens)) regions.push(...insertValues(tokens, s, e, plan));
  regions.push(...treeLiterals(buf, tokens, plan, trusted));
  return regions;
}

/**
 * The parse tree's answer (sql-text-tree.ts) to which literals meet a masked column: the
 * token patterns above see `col = '…'`; the tree also sees `col > '…'`, `lower(col) = '…'`,
 * `SET (a, col) = (…)`, INSERT … SELECT, values that reach a column through a CTE. Parsed
 * only when a token could name a masked column or the statement assigns by position, so
 * statements far from masked columns cost nothing more. Text that does not parse has
 * every literal masked when it names a masked column.
 */
function treeLiterals(buf: Buffer, tokens: readonly Token[], plan: MaskingPlan, trusted?: TrustedCall): Region[] {
  let named: ColumnRule | undefined;
  let positional = false;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind !== 'ident') continue;
    named ??= matchExpression(plan, t.value) ?? matchColumn(plan, { column: t.value });
    positional ||= t.value === 'insert' || t.value === 'execute' || t.value === 'copy';
    // Code the catalog does not vouch for: a call of it, a procedure, a code body.
    if (trusted !== undefined && !positional) positional = t.value === 'call' || t.value === 'do' || t.value === 'function' || t.value === 'procedure' || untrustedCall(tokens, i, trusted);
  }
  // An operator the catalog does not vouch for runs user code with its operands.
  if (trusted !== undefined && !positional) positional = tokens.some((t) => t.kind === 'op' && trusted(t.value, true) !== true);
  if (named === undefined && !positional) return [];
  const tied = tiedLiterals(buf.toString('utf8'), plan, trusted);
  const regions: Region[] = [];
  if (tied === undefined) {
    if (named !== undefined) for (const t of tokens) if (isLiteral(t)) regions.push(regionFor(t, named));
    return regions;
  }
  const at = new Map<number, number>();
  tokens.forEach((t, i) => at.set(t.start, i));
  for (const { location, rule, body, option } of tied) {
    let i = at.get(location);
    if (i === undefined) continue;
    if (option) {
      // NULL [AS] '…'
      const k = isIdent(tokens[i + 1], 'as') ? i + 2 : i + 1;
      if (tokens[k]?.kind === 'string') regions.push(regionFor(tokens[k]!, rule));
      continue;
    }
    if (body) {
      regions.push(...bodyLiterals(buf, tokens, isIdent(tokens[i], 'as') ? i + 1 : i, rule));
      continue;
    }
    // A negative number's constant starts at its sign.
    if (tokens[i]!.kind === 'op' && (tokens[i]!.value === '-' || tokens[i]!.value === '+')) i++;
    // Adjacent string constants (split across lines) are one value.
    for (let k = i; k < tokens.length && isLiteral(tokens[k]) && (k === i || tokens[k]!.kind === 'string'); k++) regions.push(regionFor(tokens[k]!, rule));
  }
  return regions;
}

/** Whether the name ending at identifier `i` is called, `name(` or `s.name(`, and the catalog does not vouch for it. */
function untrustedCall(tokens: readonly Token[], i: number, trusted: TrustedCall): boolean {
  if (!isPunct(tokens[i + 1], '(')) return false;
  let name = tokens[i]!.value;
  let j = i;
  while (isPunct(tokens[j - 1], '.') && isIdent(tokens[j - 2])) {
    name = `${tokens[j - 2]!.value}.${name}`;
    j -= 2;
  }
  if (j === i && isKeyword(name)) return false;
  return trusted(name) !== true;
}

/**
 * The literals of the code body starting at token `i` (a function's AS may list two
 * strings, a C function's file and symbol). Dollar-quoted, the body is the text itself:
 * each literal inside it is masked and the code stays readable. Otherwise its quotes are
 * doubled inside, so offsets do not line up: the body is masked whole when it holds any.
 */
function bodyLiterals(buf: Buffer, tokens: readonly Token[], i: number, rule: ColumnRule): Region[] {
  const out: Region[] = [];
  for (let k = i; tokens[k]?.kind === 'string'; k += 2) {
    const t = tokens[k]!;
    const cs = t.contentStart ?? t.start;
    const ce = t.contentEnd ?? t.end;
    const inner = tokenize(buf.subarray(cs, ce)).filter(isLiteral);
    if (buf[t.start] === 0x24 /* $ */) {
      for (const x of inner) out.push({ ...regionFor(x, rule), start: cs + (x.contentStart ?? x.start), end: cs + (x.contentEnd ?? x.end) });
    } else if (inner.length > 0) out.push(regionFor(t, rule));
    if (!isPunct(tokens[k + 1], ',')) break;
  }
  return out;
}

/** The index of the column identifier a literal at `i` is compared with or assigned to. */
function columnFor(tokens: readonly Token[], i: number): number | undefined {
  const prev = tokens[i - 1];
  if ((prev?.kind === 'op' && COMPARE.has(prev.value)) || isIdent(prev, 'like') || isIdent(prev, 'ilike')) {
    let j = i - 2;
    if (isIdent(tokens[j], 'not')) j--;
    if (isIdent(tokens[j]) && !isKeyword(tokens[j]!.value)) return j;
    return undefined;
  }
  // col IN ('a', 'b', …)
  let j = i - 1;
  while (isPunct(tokens[j], ',') && isLiteral(tokens[j - 1])) j -= 2;
  if (isPunct(tokens[j], '(') && isIdent(tokens[j - 1], 'in')) {
    const k = isIdent(tokens[j - 2], 'not') ? j - 3 : j - 2;
    if (isIdent(tokens[k]) && !isKeyword(tokens[k]!.value)) return k;
  }
  // '…' = col, '…' = t.col
  const next = tokens[i + 1];
  if (next?.kind === 'op' && COMPARE.has(next.value)) {
    let k = i + 2;
    while (isIdent(tokens[k]) && isPunct(tokens[k + 1], '.') && isIdent(tokens[k + 2])) k += 2;
    if (isIdent(tokens[k]) && !isPunct(tokens[k + 1], '(') && !isKeyword(tokens[k]!.value)) return k;
  }
  return undefined;
}

const KEYWORDS = new Set(['and', 'or', 'not', 'where', 'set', 'select', 'values', 'then', 'else', 'when', 'case', 'is', 'null', 'true', 'false', 'any', 'all', 'some']);
function isKeyword(v: string): boolean {
  return KEYWORDS.has(v);
}

/** INSERT INTO rel (cols) VALUES (…), (…): literals by column position. */
function insertValues(tokens: readonly Token[], s: number, e: number, plan: MaskingPlan): Region[] {
  if (!isIdent(tokens[s], 'insert') || !isIdent(tokens[s + 1], 'into')) return [];
  let i = s + 2;
  const names: string[] = [];
  while (i < e && isIdent(tokens[i])) {
    names.push(tokens[i]!.value);
    if (!isPunct(tokens[i + 1], '.')) break;
    i += 2;
  }
  i++;
  if (names.length === 0) return [];
  const table = names[names.length - 1]!;
  const schema = names.length > 1 ? names[names.length - 2] : undefined;
  if (isIdent(tokens[i], 'as') && isIdent(tokens[i + 1])) i += 2;
  if (!isPunct(tokens[i], '(')) return []; // no column list: positions unknown
  const close = closingParen(tokens, i);
  const cols: string[] = [];
  for (let k = i + 1; k < close; k++) if (isIdent(tokens[k])) cols.push(tokens[k]!.value);
  i = close + 1;
  if (!isIdent(tokens[i], 'values')) return [];
  i++;
  const rules = cols.map((column) => matchColumn(plan, { schema, table, column }));
  if (!rules.some((r) => r !== undefined)) return [];
  const regions: Region[] = [];
  while (i < e && isPunct(tokens[i], '(')) {
    const end = closingParen(tokens, i);
    let pos = 0;
    let elemStart = i + 1;
    let depth = 0;
    for (let k = i + 1; k <= end; k++) {
      const t = tokens[k]!;
      if (isPunct(t, '(')) depth++;
      else if (isPunct(t, ')') && k !== end) depth--;
      if ((isPunct(t, ',') && depth === 0) || k === end) {
        const rule = rules[pos];
        const first = tokens[elemStart];
        if (rule && first !== undefined && isLiteral(first) && (k === elemStart + 1 || isPunct(tokens[elemStart + 1], ':'))) {
          regions.push(regionFor(first, rule));
        }
        pos++;
        elemStart = k + 1;
      }
    }
    i = end + 1;
    if (isPunct(tokens[i], ',')) i++;
    else break;
  }
  return regions;
}

// ───────────────────────────── COPY … TO STDOUT ─────────────────────────────

export interface CopyOutStatement {
  /** The relation as written (quoting kept, safe to put back into SQL), or undefined for COPY (query). */
  relation: string | undefined;
  /** The column list as written, or undefined for all columns. */
  columns: string[] | undefined;
  /** COPY (query): the query text. */
  query: string | undefined;
  format: 'text' | 'csv' | 'binary';
  delimiter: number;
  quote: number;
  escape: number;
  /** The NULL marker's bytes (`\N` in text, empty in CSV unless set). */
  nullString: Buffer;
  header: boolean;
  /** The ENCODING option, as PostgreSQL compares encoding names (lowercase letters and digits), when given. */
  encoding?: string;
}

/** Every `COPY … TO STDOUT` in the text, in order (each gets one CopyOutResponse). */
export function copyOutStatements(sql: string): CopyOutStatement[] {
  const buf = Buffer.from(sql, 'utf8');
  const tokens = tokenize(buf);
  const found: CopyOutStatement[] = [];
  for (const [s, e] of statements(tokens)) {
    const c = parseCopy(buf, tokens, s, e);
    if (c) found.push(c);
  }
  return found;
}

const src = (buf: Buffer, tokens: readonly Token[], a: number, b: number): string => buf.toString('utf8', tokens[a]!.start, tokens[b]!.end);

function parseCopy(buf: Buffer, tokens: readonly Token[], s: number, e: number): CopyOutStatement | undefined {
  if (!isIdent(tokens[s], 'copy')) return undefined;
  let i = s + 1;
  let format: CopyOutStatement['format'] = 'text';
  if (isIdent(tokens[i], 'binary')) {
    format = 'binary';
    i++;
  }
  let relation: string | undefined;
  let columns: string[] | undefined;
  let query: string | undefined;
  if (isPunct(tokens[i], '(')) {
    const close = closingParen(tokens, i);
    if (close >= e || close === i + 1) return undefined;
    query = src(buf, tokens, i + 1, close - 1);
    i = close + 1;
  } else {
    const first = i;
    while (i < e && isIdent(tokens[i]) && isPunct(tokens[i + 1], '.')) i += 2;
    if (!isIdent(tokens[i])) return undefined;
    relation = src(buf, tokens, first, i);
    i++;
    if (isPunct(tokens[i], '(')) {
      const close = closingParen(tokens, i);
      columns = [];
      for (let k = i + 1; k < close; k++) {
        const t = tokens[k]!;
        if (t.kind === 'ident') columns.push(buf.toString('utf8', t.start, t.end));
        else if (!isPunct(t, ',')) return undefined;
      }
      i = close + 1;
    }
  }
  if (!isIdent(tokens[i], 'to') || !isIdent(tokens[i + 1], 'stdout')) return undefined;
  i += 2;
  const o: CopyOptions = { header: false, format };
  if (isIdent(tokens[i], 'with')) i++;
  if (isPunct(tokens[i], '(')) {
    const close = Math.min(closingParen(tokens, i), e);
    let k = i + 1;
    while (k < close) {
      const name = tokens[k]!;
      let v = k + 1;
      let value: Token | undefined;
      if (v < close && !isPunct(tokens[v], ',')) {
        if (isPunct(tokens[v], '(')) v = closingParen(tokens, v);
        else value = tokens[v];
        v++;
      }
      applyOption(o, name.value, value);
      k = isPunct(tokens[v], ',') ? v + 1 : v + 1;
    }
  } else {
    // The pre-9.0 syntax: WITH BINARY | DELIMITER [AS] 'x' | NULL [AS] 'x' | CSV [HEADER] [QUOTE …] …
    while (i < e) {
      const t = tokens[i]!;
      if (t.kind !== 'ident') {
        i++;
        continue;
      }
      switch (t.value) {
        case 'binary':
        case 'csv':
          o.format = t.value;
          i++;
          break;
        case 'header':
          o.header = true;
          i++;
          break;
        case 'delimiter':
        case 'null':
        case 'quote':
        case 'escape':
        case 'encoding': {
          let v = i + 1;
          if (isIdent(tokens[v], 'as')) v++;
          applyOption(o, t.value, tokens[v]);
          i = v + 1;
          break;
        }
        default:
          i++;
      }
    }
  }
  const csv = o.format === 'csv';
  const byte = (v: string | undefined, dflt: number): number => (v !== undefined && v.length > 0 ? Buffer.from(v, 'utf8')[0]! : dflt);
  const quote = byte(o.quote, 0x22);
  return {
    relation,
    columns,
    query,
    format: o.format,
    delimiter: byte(o.delimiter, csv ? 0x2c : 0x09),
    quote,
    escape: byte(o.escape, quote),
    nullString: Buffer.from(o.nullString ?? (csv ? '' : '\\N'), 'utf8'),
    header: o.header,
    ...(o.encoding !== undefined ? { encoding: o.encoding } : {}),
  };
}

interface CopyOptions {
  delimiter?: string;
  quote?: string;
  escape?: string;
  nullString?: string;
  encoding?: string;
  header: boolean;
  format: CopyOutStatement['format'];
}

function applyOption(o: CopyOptions, name: string, value: Token | undefined): void {
  const text = value?.kind === 'string' ? value.value : value?.value;
  switch (name) {
    case 'format':
      if (text === 'csv' || text === 'binary' || text === 'text') o.format = text;
      break;
    case 'delimiter':
      if (text !== undefined) o.delimiter = text;
      break;
    case 'null':
      if (text !== undefined) o.nullString = text;
      break;
    case 'quote':
      if (text !== undefined) o.quote = text;
      break;
    case 'escape':
      if (text !== undefined) o.escape = text;
      break;
    case 'encoding':
      // clean_encoding_name: 'UTF-8', 'utf_8' and 'Utf8' name the same encoding.
      o.encoding = (text ?? '').toLowerCase().replace(/[^a-z0-9]/g, '');
      break;
    case 'header':
      o.header = text === undefined || ['true', 'on', '1', 'match'].includes(text.toLowerCase());
      break;
    default:
      break;
  }
}
