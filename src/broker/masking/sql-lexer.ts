/**
 * Just enough of PostgreSQL's lexical structure to find string literals, identifiers and
 * statement boundaries in SQL text: comments (nested block comments too), standard and
 * escape strings, dollar quoting, quoted identifiers. It works on UTF-8 bytes, so offsets
 * line up with the detectors' spans; it never fails (unterminated input ends the token).
 *
 * https://www.postgresql.org/docs/current/sql-syntax-lexical.html
 */

export type TokenKind = 'ident' | 'string' | 'number' | 'param' | 'op' | 'punct';

export interface Token {
  kind: TokenKind;
  start: number;
  end: number;
  /** ident: lower-cased unless quoted; string: the decoded value; op/punct: the text. */
  value: string;
  /** string: where the literal's content lies (between the quotes or dollar tags). */
  contentStart?: number;
  contentEnd?: number;
}

const SQ = 0x27;
const DQ = 0x22;

function isIdentStart(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f || b >= 0x80;
}
function isIdentChar(b: number): boolean {
  return isIdentStart(b) || (b >= 0x30 && b <= 0x39) || b === 0x24;
}
const OP_CHARS = new Set('+-*/<>=~!@#%^&|`?'.split('').map((c) => c.charCodeAt(0)));

export function tokenize(buf: Buffer): Token[] {
  const tokens: Token[] = [];
  const n = buf.length;
  let p = 0;
  while (p < n) {
    const b = buf[p]!;
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0c) {
      p++;
      continue;
    }
    if (b === 0x2d && buf[p + 1] === 0x2d) {
      while (p < n && buf[p] !== 0x0a) p++;
      continue;
    }
    if (b === 0x2f && buf[p + 1] === 0x2a) {
      let depth = 1;
      p += 2;
      while (p < n && depth > 0) {
        if (buf[p] === 0x2f && buf[p + 1] === 0x2a) {
          depth++;
          p += 2;
        } else if (buf[p] === 0x2a && buf[p + 1] === 0x2f) {
          depth--;
          p += 2;
        } else p++;
      }
      continue;
    }
    const start = p;
    // E'…' (backslash escapes), and B'…', X'…', N'…', U&'…' read as standard strings.
    if ((b | 0x20) === 0x65 && buf[p + 1] === SQ) {
      tokens.push(quoted(buf, start, p + 1, true));
      p = tokens[tokens.length - 1]!.end;
      continue;
    }
    if (((b | 0x20) === 0x62 || (b | 0x20) === 0x78 || (b | 0x20) === 0x6e) && buf[p + 1] === SQ) {
      tokens.push(quoted(buf, start, p + 1, false));
      p = tokens[tokens.length - 1]!.end;
      continue;
    }
    if ((b | 0x20) === 0x75 && buf[p + 1] === 0x26 && (buf[p + 2] === SQ || buf[p + 2] === DQ)) {
      const t = buf[p + 2] === SQ ? quoted(buf, start, p + 2, false) : quotedIdent(buf, start, p + 2);
      tokens.push(t);
      p = t.end;
      continue;
    }
    if (b === SQ) {
      const t = quoted(buf, start, p, false);
      tokens.push(t);
      p = t.end;
      continue;
    }
    if (b === DQ) {
      const t = quotedIdent(buf, start, p);
      tokens.push(t);
      p = t.end;
      continue;
    }
    if (b === 0x24) {
      // $1 parameter, or a dollar-quoted string $tag$…$tag$.
      if (buf[p + 1] !== undefined && buf[p + 1]! >= 0x30 && buf[p + 1]! <= 0x39) {
        p++;
        while (p < n && buf[p]! >= 0x30 && buf[p]! <= 0x39) p++;
        tokens.push({ kind: 'param', start, end: p, value: buf.toString('latin1', start, p) });
        continue;
      }
      let q = p + 1;
      while (q < n && isIdentChar(buf[q]!) && buf[q] !== 0x24) q++;
      if (q < n && buf[q] === 0x24 && (q === p + 1 || isIdentStart(buf[p + 1]!))) {
        const tag = buf.subarray(p, q + 1);
        const contentStart = q + 1;
        const close = buf.indexOf(tag, contentStart);
        const contentEnd = close < 0 ? n : close;
        const end = close < 0 ? n : close + tag.length;
        tokens.push({ kind: 'string', start, end, value: buf.toString('utf8', contentStart, contentEnd), contentStart, contentEnd });
        p = end;
        continue;
      }
      tokens.push({ kind: 'op', start, end: p + 1, value: '$' });
      p++;
      continue;
    }
    if (isIdentStart(b)) {
      while (p < n && isIdentChar(buf[p]!)) p++;
      tokens.push({ kind: 'ident', start, end: p, value: buf.toString('utf8', start, p).toLowerCase() });
      continue;
    }
    if ((b >= 0x30 && b <= 0x39) || (b === 0x2e && buf[p + 1] !== undefined && buf[p + 1]! >= 0x30 && buf[p + 1]! <= 0x39)) {
      while (p < n && ((buf[p]! >= 0x30 && buf[p]! <= 0x39) || buf[p] === 0x2e || buf[p] === 0x5f || (buf[p]! | 0x20) === 0x65 || (buf[p]! | 0x20) === 0x78)) {
        // an exponent's sign
        if ((buf[p]! | 0x20) === 0x65 && (buf[p + 1] === 0x2b || buf[p + 1] === 0x2d)) p++;
        p++;
      }
      tokens.push({ kind: 'number', start, end: p, value: buf.toString('latin1', start, p) });
      continue;
    }
    if (OP_CHARS.has(b)) {
      while (p < n && OP_CHARS.has(buf[p]!) && !(buf[p] === 0x2d && buf[p + 1] === 0x2d) && !(buf[p] === 0x2f && buf[p + 1] === 0x2a)) p++;
      tokens.push({ kind: 'op', start, end: p, value: buf.toString('latin1', start, p) });
      continue;
    }
    p++;
    tokens.push({ kind: 'punct', start, end: p, value: String.fromCharCode(b) });
  }
  return tokens;
}

/** A '…' literal whose opening quote is at `q` (the token may start earlier, at a prefix). */
function quoted(buf: Buffer, start: number, q: number, backslashes: boolean): Token {
  const n = buf.length;
  let p = q + 1;
  const parts: Buffer[] = [];
  let from = p;
  while (p < n) {
    const b = buf[p]!;
    if (backslashes && b === 0x5c && p + 1 < n) {
      parts.push(buf.subarray(from, p), unescapeOne(buf, p));
      p += escapeLength(buf, p);
      from = p;
      continue;
    }
    if (b === SQ) {
      if (buf[p + 1] === SQ) {
        parts.push(buf.subarray(from, p + 1));
        p += 2;
        from = p;
        continue;
      }
      break;
    }
    p++;
  }
  parts.push(buf.subarray(from, Math.min(p, n)));
  const contentEnd = Math.min(p, n);
  return { kind: 'string', start, end: Math.min(p + 1, n), value: Buffer.concat(parts).toString('utf8'), contentStart: q + 1, contentEnd };
}

function escapeLength(buf: Buffer, p: number): number {
  const c = buf[p + 1]!;
  if (c >= 0x30 && c <= 0x37) {
    let k = 2;
    while (k < 4 && buf[p + k]! >= 0x30 && buf[p + k]! <= 0x37) k++;
    return k;
  }
  if (c === 0x78) {
    let k = 2;
    while (k < 4 && /[0-9a-fA-F]/.test(String.fromCharCode(buf[p + k] ?? 0))) k++;
    return k;
  }
  return 2;
}

function unescapeOne(buf: Buffer, p: number): Buffer {
  const c = buf[p + 1]!;
  const len = escapeLength(buf, p);
  switch (c) {
    case 0x62:
      return Buffer.from([8]);
    case 0x66:
      return Buffer.from([12]);
    case 0x6e:
      return Buffer.from([10]);
    case 0x72:
      return Buffer.from([13]);
    case 0x74:
      return Buffer.from([9]);
    case 0x78:
      return Buffer.from([parseInt(buf.toString('latin1', p + 2, p + len), 16) || 0]);
    default:
      if (c >= 0x30 && c <= 0x37) return Buffer.from([parseInt(buf.toString('latin1', p + 1, p + len), 8) & 0xff]);
      return Buffer.from([c]);
  }
}

function quotedIdent(buf: Buffer, start: number, q: number): Token {
  const n = buf.length;
  let p = q + 1;
  let value = '';
  let from = p;
  while (p < n) {
    if (buf[p] === DQ) {
      if (buf[p + 1] === DQ) {
        value += buf.toString('utf8', from, p + 1);
        p += 2;
        from = p;
        continue;
      }
      break;
    }
    p++;
  }
  value += buf.toString('utf8', from, Math.min(p, n));
  return { kind: 'ident', start, end: Math.min(p + 1, n), value };
}

/** Token index ranges of the statements in `tokens` (split at top-level semicolons; empty ones dropped). */
export function statements(tokens: readonly Token[]): [number, number][] {
  const out: [number, number][] = [];
  let from = 0;
  let depth = 0;
  for (let i = 0; i <= tokens.length; i++) {
    const t = tokens[i];
    if (t?.kind === 'punct' && (t.value === '(' || t.value === '[')) depth++;
    else if (t?.kind === 'punct' && (t.value === ')' || t.value === ']')) depth = Math.max(0, depth - 1);
    if (t === undefined || (t.kind === 'punct' && t.value === ';' && depth === 0)) {
      if (i > from) out.push([from, i]);
      from = i + 1;
    }
  }
  return out;
}

/** Index of the `)` closing the `(` at `open`, or tokens.length. */
export function closingParen(tokens: readonly Token[], open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind !== 'punct') continue;
    if (t.value === '(') depth++;
    else if (t.value === ')' && --depth === 0) return i;
  }
  return tokens.length;
}
