/**
 * The shape of a SQL text: the text with every numeric literal outside strings, quoted
 * identifiers, dollar quotes and comments replaced by `0`. Two texts with the same shape
 * classify the same unless the classification read a number's value (it says so:
 * `valueDependent`, e.g. EXPLAIN (ANALYZE 0)), so a gate may reuse a verdict across them
 * otherwise — what makes `WHERE aid = 12345`
 * with a new number per statement (ORMs without prepared statements, pgbench -M simple)
 * cost one parse, not one per statement.
 *
 * The scan is linear and conservative: when it is unsure whether it is inside a string
 * it leaves digits alone, which only makes shapes differ. A digit run is replaced only
 * where a token starts (not inside `t1`, `$1`, `"x1"`), so identifiers never collide.
 *
 * A number's magnitude is not a value the classification may ignore: an integer literal is
 * int4 to PostgreSQL up to 2147483647, then int8, then numeric, and the type picks the
 * operator (and the implicit cast to its argument, user code) the server runs — the gate
 * narrows an operator's candidates by its operands' types. So only runs of at most
 * MAX_INT4_DIGITS digits (always int4) are replaced; a longer run, and one joined to more
 * digits by `_` (one number to a PostgreSQL 16+ grammar), keeps its digits.
 * Returns undefined when nothing was replaced.
 */
/** Digits of the longest decimal run that is an int4 whatever its digits (999999999 < 2^31). */
const MAX_INT4_DIGITS = 9;

export function sqlShape(sql: string): string | undefined {
  const n = sql.length;
  let out: string[] | undefined;
  let last = 0;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    // -- line comment
    if (c === 45 /* - */ && sql.charCodeAt(i + 1) === 45) {
      const nl = sql.indexOf('\n', i + 2);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    // /* block comment */, nested as PostgreSQL nests them
    if (c === 47 /* / */ && sql.charCodeAt(i + 1) === 42 /* * */) {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql.charCodeAt(i) === 47 && sql.charCodeAt(i + 1) === 42) {
          depth++;
          i += 2;
        } else if (sql.charCodeAt(i) === 42 && sql.charCodeAt(i + 1) === 47) {
          depth--;
          i += 2;
        } else i++;
      }
      continue;
    }
    if (c === 39 /* ' */) {
      // E'…' (and e'…') strings take backslash escapes; others only ''.
      const prev = i > 0 ? sql.charCodeAt(i - 1) : 0;
      const escapes = (prev === 69 || prev === 101) && !isIdentChar(i > 1 ? sql.charCodeAt(i - 2) : 0);
      i = skipQuoted(sql, i + 1, 39, escapes);
      continue;
    }
    if (c === 34 /* " */) {
      i = skipQuoted(sql, i + 1, 34, false);
      continue;
    }
    if (c === 36 /* $ */) {
      const end = dollarTagEnd(sql, i);
      if (end > 0) {
        const tag = sql.slice(i, end);
        const close = sql.indexOf(tag, end);
        i = close < 0 ? n : close + tag.length;
        continue;
      }
      // `$1` (a parameter) or a `$` inside an identifier: its digits stay as they are.
      i++;
      while (i < n && isDigit(sql.charCodeAt(i))) i++;
      continue;
    }
    if (isDigit(c) && !isIdentChar(i > 0 ? sql.charCodeAt(i - 1) : 0)) {
      let j = i + 1;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      if (j - i <= MAX_INT4_DIGITS && sql.charCodeAt(j) !== 95 /* _ */ && (j - i > 1 || c !== 48 /* already '0' */)) {
        out ??= [];
        out.push(sql.slice(last, i), '0');
        last = j;
      }
      i = j;
      continue;
    }
    i++;
  }
  if (!out) return undefined;
  out.push(sql.slice(last));
  return out.join('');
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Characters that continue an unquoted identifier (PostgreSQL: letters, digits, _, $, and any non-ASCII). */
function isIdentChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c >= 128;
}

/** Index after the closing quote (doubled quotes stay inside); the end of text when unterminated. */
function skipQuoted(sql: string, i: number, quote: number, backslashEscapes: boolean): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (backslashEscapes && c === 92 /* \ */) {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (sql.charCodeAt(i + 1) === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return n;
}

/** For `$tag$` or `$$` at `i` (not preceded by an identifier character), the index after it; else 0. */
function dollarTagEnd(sql: string, i: number): number {
  if (i > 0 && isIdentChar(sql.charCodeAt(i - 1))) return 0;
  let j = i + 1;
  const first = sql.charCodeAt(j);
  if (first === 36) return j + 1;
  if (isDigit(first) || !isIdentChar(first)) return 0;
  while (j < sql.length && isIdentChar(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
  return sql.charCodeAt(j) === 36 ? j + 1 : 0;
}
