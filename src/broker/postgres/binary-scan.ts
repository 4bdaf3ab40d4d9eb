/**
 * What the detectors can read of a result value sent in binary format (mask-row-plan.ts,
 * mask-row-rewriter.ts). For the text-like types the binary form is the text itself; int8
 * and numeric are read as the decimal text their text format shows (a card number fits in
 * either); a built-in array is read element by element. A type this module does not list
 * is read as the built-in type whose send function the catalog says it uses (SEND_FUNCTIONS,
 * wire-types.ts: citext, enums, arrays of them). Any other binary form (records, ranges,
 * tsvector …) is not read: its bytes interleave lengths and flags with the text, so the
 * layout could keep a detector from matching, and the masker sends such a value as NULL
 * instead (unknown means no).
 *
 * https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-FORMAT-CODES
 */

/** Binary formats that are the text itself: 1 = from the first byte, 2 = jsonb, whose text follows a version byte. */
export const BINARY_TEXT = new Map<number, number>([
  [25, 1], // text
  [1043, 1], // varchar
  [1042, 1], // bpchar
  [19, 1], // name
  [18, 1], // "char"
  [114, 1], // json
  [142, 1], // xml (xml_send writes the text itself)
  [705, 1], // unknown
  [3802, 2], // jsonb
]);

/**
 * Types whose text form cannot hold what a detector looks for (numbers other than int8
 * and numeric, which can hold a card number; dates; booleans; network and geometric
 * types). Everything else, user-defined types included, is scanned; bytea is decoded
 * first (bytea.ts), in text and binary format.
 */
export const NOT_STRINGISH = new Set([
  16, 21, 23, 24, 26, 27, 28, 29, 600, 601, 602, 603, 604, 628, 650, 700, 701, 718, 774, 790, 829, 869, 1082, 1083, 1114, 1184,
  1186, 1266, 1560, 1562, 2202, 2203, 2204, 2205, 2206, 2950, 3220, 3734, 3769, 4089, 4096, 5069,
]);

const BYTEA = 17;
const INT8 = 20;
const NUMERIC = 1700;

/**
 * The binary forms above, by the server function that writes them (pg_type.typsend, an
 * `internal` function named by its prosrc): a type that does not ship with PostgreSQL, or
 * whose OID this module does not list, is read as the built-in type whose send function it
 * uses (wire-types.ts): citext sends with textsend, an enum's enum_send writes its label.
 * A domain's typsend is its base type's.
 */
export const SEND_FUNCTIONS: ReadonlyMap<string, number> = new Map([
  ['textsend', 25],
  ['varcharsend', 1043],
  ['bpcharsend', 1042],
  ['namesend', 19],
  ['charsend', 18],
  ['json_send', 114],
  ['xml_send', 142],
  ['unknownsend', 705],
  ['jsonb_send', 3802],
  ['enum_send', 25],
  ['int8send', 20],
  ['numeric_send', 1700],
]);

/** Built-in array types read element by element: array type OID → element type OID. */
const ARRAYS = new Map<number, number>([
  [1009, 25], [1015, 1043], [1014, 1042], [1003, 19], [1002, 18], [199, 114], [143, 142], [3807, 3802],
  [1001, BYTEA], [1016, INT8], [1231, NUMERIC],
  [1000, 16], [1005, 21], [1007, 23], [1028, 26], [1021, 700], [1022, 701], [1182, 1082], [1183, 1083],
  [1115, 1114], [1185, 1184], [1187, 1186], [1270, 1266], [2951, 2950], [651, 650], [1041, 869], [791, 790],
]);

/** The built-in array type whose elements are `elem` (undefined when none is read here). */
export function arrayTypeOf(elem: number): number | undefined {
  for (const [array, e] of ARRAYS) if (e === elem) return array;
  return undefined;
}

/** Run the detectors over buf[s, e); true when they found something. */
export type Scan = (buf: Buffer, s: number, e: number) => boolean;

/** Whether this module knows the binary form of the type (else wire-types.ts asks the catalog how it is sent). */
export function knownBinary(typeOid: number): boolean {
  return BINARY_TEXT.has(typeOid) || NOT_STRINGISH.has(typeOid) || typeOid === BYTEA || decodesBinary(typeOid);
}

/** Whether binaryHit reads a binary value of this type (one it cannot read goes out as NULL). */
export function decodesBinary(typeOid: number): boolean {
  return typeOid === INT8 || typeOid === NUMERIC || ARRAYS.has(typeOid);
}

/**
 * Whether the detectors find something in a binary value of `typeOid` (one decodesBinary
 * accepts), read as its text. A value that is not what its type's binary form must be
 * counts as a hit: the caller withholds it. `header`, for an array whose elements are of a
 * type read as a built-in one (an enum's, citext's): the element type its header names.
 */
export function binaryHit(typeOid: number, src: Buffer, s: number, e: number, scan: Scan, header = 0): boolean {
  const elem = ARRAYS.get(typeOid);
  if (elem !== undefined) return arrayHit(elem, header === 0 ? elem : header, src, s, e, scan);
  return valueHit(typeOid, src, s, e, scan);
}

function valueHit(typeOid: number, src: Buffer, s: number, e: number, scan: Scan): boolean {
  if (NOT_STRINGISH.has(typeOid)) return false;
  const prefix = BINARY_TEXT.get(typeOid);
  if (prefix !== undefined) return scan(src, s + prefix - 1, e);
  if (typeOid === BYTEA) return scan(src, s, e);
  const text = typeOid === INT8 ? int8Text(src, s, e) : typeOid === NUMERIC ? numericText(src, s, e) : undefined;
  if (text === undefined) return true;
  // The text goes through one reused buffer (scans do not keep what they are given).
  if (scratch.length < text.length) scratch = Buffer.alloc(Math.max(text.length, scratch.length * 2));
  const n = scratch.write(text, 'latin1');
  return scan(scratch, 0, n);
}

let scratch = Buffer.alloc(64);

/** array_send: ndim, has-nulls flag, element type, (length, lower bound) per dimension, then each element length-prefixed. */
function arrayHit(elem: number, header: number, src: Buffer, s: number, e: number, scan: Scan): boolean {
  if (e - s < 12) return true;
  const ndim = src.readInt32BE(s);
  if (ndim < 0 || ndim > 6 || src.readUInt32BE(s + 8) !== header || e - s < 12 + 8 * ndim) return true;
  let count = ndim === 0 ? 0 : 1;
  for (let d = 0; d < ndim; d++) {
    const n = src.readInt32BE(s + 12 + 8 * d);
    if (n < 0) return true;
    count *= n;
  }
  let p = s + 12 + 8 * ndim;
  let hit = false;
  for (let k = 0; k < count; k++) {
    if (p + 4 > e) return true;
    const len = src.readInt32BE(p);
    p += 4;
    if (len < 0) continue;
    if (p + len > e) return true;
    // Every element is scanned (its hits are counted), not only up to the first.
    if (valueHit(elem, src, p, p + len, scan)) hit = true;
    p += len;
  }
  return p !== e || hit;
}

function int8Text(src: Buffer, s: number, e: number): string | undefined {
  return e - s === 8 ? src.readBigInt64BE(s).toString() : undefined;
}

const NUMERIC_POS = 0x0000;
const NUMERIC_NEG = 0x4000;
/** NaN, +Infinity, -Infinity: no digits. */
const NUMERIC_SPECIAL = new Set([0xc000, 0xd000, 0xf000]);

/**
 * numeric_send: digit count, weight (of the first base-10000 digit), sign, display scale,
 * then the base-10000 digits. Returned as the decimal text numeric_out writes.
 */
function numericText(src: Buffer, s: number, e: number): string | undefined {
  if (e - s < 8) return undefined;
  const ndigits = src.readInt16BE(s);
  const weight = src.readInt16BE(s + 2);
  const sign = src.readUInt16BE(s + 4);
  const dscale = src.readInt16BE(s + 6);
  if (ndigits < 0 || dscale < 0 || e - s !== 8 + 2 * ndigits) return undefined;
  if (NUMERIC_SPECIAL.has(sign)) return 'NaN';
  if (sign !== NUMERIC_POS && sign !== NUMERIC_NEG) return undefined;
  const digit = (j: number): number => (j >= 0 && j < ndigits ? src.readInt16BE(s + 8 + 2 * j) : 0);
  const parts: string[] = [];
  for (let j = 0; j <= weight; j++) parts.push(j === 0 ? String(digit(j)) : String(digit(j)).padStart(4, '0'));
  let text = parts.length === 0 ? '0' : parts.join('');
  if (dscale > 0) {
    const frac: string[] = [];
    for (let j = weight + 1, n = 0; n < dscale; j++, n += 4) frac.push(String(digit(j)).padStart(4, '0'));
    text += `.${frac.join('').slice(0, dscale)}`;
  }
  return sign === NUMERIC_NEG ? `-${text}` : text;
}
