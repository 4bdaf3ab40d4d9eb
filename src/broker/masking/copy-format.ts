/**
 * The row formats of `COPY … TO STDOUT`, as far as masking needs them: where rows and
 * fields end, how a field's value is decoded (so a whole-field mask hashes or keeps the
 * same characters as in a result row), and how a masked value is written back.
 *
 * Text format: fields split by the delimiter (tab), backslash escapes, `\N` for NULL, a
 * newline ends the row; a raw newline never occurs inside a field.
 * CSV: fields split by the delimiter (comma), quoted when needed (quotes doubled, or
 * escaped by ESCAPE), so a quoted field may hold delimiters and newlines; an unquoted
 * empty field is NULL by default.
 *
 * https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9
 */
import type { OutBuffer } from './out-buffer.js';

const NL = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;

export interface CsvDialect {
  delimiter: number;
  quote: number;
  escape: number;
}

/** End of a text-format field starting at `p` (at the delimiter, or `end`). */
export function textFieldEnd(src: Buffer, p: number, end: number, delimiter: number): number {
  while (p < end) {
    const b = src[p]!;
    if (b === delimiter) return p;
    p += b === BACKSLASH ? 2 : 1;
  }
  return end;
}

/** End of a CSV field starting at `p` (at the delimiter, or `end`). */
export function csvFieldEnd(src: Buffer, p: number, end: number, d: CsvDialect): number {
  const at = csvFindUnquoted(src, p, end, d, d.delimiter);
  return at < 0 ? end : at;
}

/** Index of the newline that ends the CSV row starting at `p`, or -1 when the row is incomplete. */
export function csvRowEnd(src: Buffer, p: number, end: number, d: CsvDialect): number {
  return csvFindUnquoted(src, p, end, d, NL);
}

/** First `stop` byte at or after `p` outside CSV quotes (doubled or escaped quotes stay inside), or -1. */
function csvFindUnquoted(src: Buffer, p: number, end: number, d: CsvDialect, stop: number): number {
  let inQuote = false;
  while (p < end) {
    const b = src[p]!;
    if (inQuote) {
      if (b === d.escape && d.escape !== d.quote && p + 1 < end && (src[p + 1] === d.quote || src[p + 1] === d.escape)) {
        p += 2;
        continue;
      }
      if (b === d.quote) {
        if (d.escape === d.quote && p + 1 < end && src[p + 1] === d.quote) {
          p += 2;
          continue;
        }
        inQuote = false;
      }
    } else if (b === stop) {
      return p;
    } else if (b === d.quote) {
      inQuote = true;
    }
    p++;
  }
  return -1;
}

/** Whether `src[s, e)` equals `marker` byte for byte. */
export function equalsBytes(src: Buffer, s: number, e: number, marker: Buffer): boolean {
  if (e - s !== marker.length) return false;
  for (let k = 0; k < marker.length; k++) if (src[s + k] !== marker[k]) return false;
  return true;
}

/** Decode a text-format field into `out`. */
export function unescapeText(src: Buffer, s: number, e: number, out: OutBuffer): void {
  let p = s;
  while (p < e) {
    const b = src[p]!;
    if (b !== BACKSLASH || p + 1 >= e) {
      out.byte(b);
      p++;
      continue;
    }
    const c = src[p + 1]!;
    p += 2;
    switch (c) {
      case 0x62: // b
        out.byte(8);
        break;
      case 0x66: // f
        out.byte(12);
        break;
      case 0x6e: // n
        out.byte(NL);
        break;
      case 0x72: // r
        out.byte(CR);
        break;
      case 0x74: // t
        out.byte(9);
        break;
      case 0x76: // v
        out.byte(11);
        break;
      case 0x78: {
        // \xhh
        let v = 0;
        let k = 0;
        while (k < 2 && p < e && isHex(src[p]!)) {
          v = v * 16 + hexValue(src[p]!);
          p++;
          k++;
        }
        out.byte(k === 0 ? 0x78 : v);
        break;
      }
      default:
        if (c >= 0x30 && c <= 0x37) {
          let v = c - 0x30;
          let k = 1;
          while (k < 3 && p < e && src[p]! >= 0x30 && src[p]! <= 0x37) {
            v = v * 8 + (src[p]! - 0x30);
            p++;
            k++;
          }
          out.byte(v & 0xff);
        } else {
          out.byte(c);
        }
    }
  }
}

function isHex(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x66);
}
function hexValue(b: number): number {
  return b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x57;
}

/** Write `src[s, e)` as a text-format field. */
export function escapeText(src: Buffer, s: number, e: number, delimiter: number, out: OutBuffer): void {
  for (let p = s; p < e; p++) {
    const b = src[p]!;
    switch (b) {
      case BACKSLASH:
        out.byte(BACKSLASH);
        out.byte(BACKSLASH);
        break;
      case NL:
        out.byte(BACKSLASH);
        out.byte(0x6e);
        break;
      case CR:
        out.byte(BACKSLASH);
        out.byte(0x72);
        break;
      case 9:
        out.byte(BACKSLASH);
        out.byte(0x74);
        break;
      default:
        if (b === delimiter) out.byte(BACKSLASH);
        out.byte(b);
    }
  }
}

/** Decode a CSV field (quoted or not) into `out`. */
export function unquoteCsv(src: Buffer, s: number, e: number, d: CsvDialect, out: OutBuffer): void {
  let p = s;
  let inQuote = false;
  while (p < e) {
    const b = src[p]!;
    if (inQuote) {
      if (b === d.escape && p + 1 < e && (src[p + 1] === d.quote || (d.escape !== d.quote && src[p + 1] === d.escape))) {
        out.byte(src[p + 1]!);
        p += 2;
        continue;
      }
      if (b === d.quote) {
        inQuote = false;
        p++;
        continue;
      }
      out.byte(b);
      p++;
      continue;
    }
    if (b === d.quote) inQuote = true;
    else out.byte(b);
    p++;
  }
}

/**
 * Write `src[s, e)` as a CSV field: quoted when it holds the delimiter, quote, escape,
 * CR or LF, or when it would read as the NULL marker.
 */
export function writeCsv(src: Buffer, s: number, e: number, d: CsvDialect, nullString: Buffer, out: OutBuffer): void {
  let quote = equalsBytes(src, s, e, nullString);
  for (let p = s; p < e && !quote; p++) {
    const b = src[p]!;
    quote = b === d.delimiter || b === d.quote || b === d.escape || b === NL || b === CR;
  }
  if (!quote) {
    out.bytes(src, s, e);
    return;
  }
  out.byte(d.quote);
  for (let p = s; p < e; p++) {
    const b = src[p]!;
    if (b === d.quote || b === d.escape) out.byte(d.escape);
    out.byte(b);
  }
  out.byte(d.quote);
}
