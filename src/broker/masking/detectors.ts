/**
 * Content detectors: find sensitive values inside a string value (a whole column, a JSON
 * document, an error message, a SQL statement) so masking can replace just those spans.
 *
 * Every detector is a hand-written scanner over the value's UTF-8 bytes, run from one
 * pass that dispatches on trigger bytes ('@' for email, a digit at a word start for cards
 * and SSNs, `eyJ` for JWTs, …). No regular expressions on this path, so the cost is
 * linear in the input and never depends on what an attacker puts in a row. Every pattern
 * is ASCII, so spans start and end on ASCII bytes and replacing them keeps UTF-8 valid.
 *
 * Spans are reported in order and never overlap; the first detector to match at a
 * position wins (the more specific formats are tried first).
 */

export const DETECTOR_NAMES = [
  'email',
  'credit_card',
  'us_ssn',
  'iban',
  'aws_key',
  'github_token',
  'slack_token',
  'stripe_key',
  'jwt',
  'private_key',
  'high_entropy',
] as const;
export type DetectorName = (typeof DETECTOR_NAMES)[number];

/** Detector ids, as stored in a SpanList: the index in DETECTOR_NAMES. */
export const DetectorId: { readonly [K in DetectorName]: number } = Object.fromEntries(DETECTOR_NAMES.map((n, i) => [n, i])) as {
  [K in DetectorName]: number;
};

/** A set of detectors as a bit mask (bit i = DETECTOR_NAMES[i]). */
export type DetectorSet = number;
export const ALL_DETECTORS: DetectorSet = (1 << DETECTOR_NAMES.length) - 1;
export const bit = (name: DetectorName): DetectorSet => 1 << DetectorId[name];

/** Names the config may use besides DETECTOR_NAMES. */
const ALIASES: Readonly<Record<string, DetectorName>> = { ssn: 'us_ssn' };

/**
 * Parse config names (`email`, `ssn`, `all`, …) into a set. Unknown names are returned,
 * not thrown: the caller knows the config path to name in its error.
 */
export function parseDetectorNames(names: readonly string[]): { set: DetectorSet; unknown: string[] } {
  let set = 0;
  const unknown: string[] = [];
  for (const raw of names) {
    const name = raw.trim().toLowerCase();
    if (name === 'all') {
      set |= ALL_DETECTORS;
      continue;
    }
    const canonical = ALIASES[name] ?? name;
    const id = (DETECTOR_NAMES as readonly string[]).indexOf(canonical);
    if (id < 0) unknown.push(raw);
    else set |= 1 << id;
  }
  return { set, unknown };
}

export function detectorNames(set: DetectorSet): DetectorName[] {
  return DETECTOR_NAMES.filter((_, i) => (set & (1 << i)) !== 0);
}

/**
 * Spans found in one value: parallel arrays, reused across values so a scan allocates
 * nothing. Offsets are byte offsets into the scanned buffer.
 */
export class SpanList {
  starts = new Int32Array(16);
  ends = new Int32Array(16);
  kinds = new Uint8Array(16);
  length = 0;

  clear(): void {
    this.length = 0;
  }

  push(start: number, end: number, kind: number): void {
    if (this.length === this.starts.length) {
      const n = this.length * 2;
      const s = new Int32Array(n);
      s.set(this.starts);
      const e = new Int32Array(n);
      e.set(this.ends);
      const k = new Uint8Array(n);
      k.set(this.kinds);
      this.starts = s;
      this.ends = e;
      this.kinds = k;
    }
    this.starts[this.length] = start;
    this.ends[this.length] = end;
    this.kinds[this.length] = kind;
    this.length++;
  }
}

// ───────────────────────────── byte classes ─────────────────────────────

const DIGIT = 1;
const UPPER = 2;
const LOWER = 4;
/** [A-Za-z0-9_] */
const WORD = 8;
/** [A-Za-z0-9+/]: base64 (AWS secret keys). */
const B64 = 16;
/** [A-Za-z0-9+/_\-.~$]: a token that high_entropy measures. */
const TOKEN = 32;
/** [A-Za-z0-9._%+-]: an email local part (ASCII). */
const LOCAL = 64;
/** [A-Za-z0-9-]: a domain label (ASCII). */
const LABEL = 128;
/** [A-Za-z0-9_-]: base64url (JWT parts). */
const B64URL = 256;
const HEX = 512;
/** A byte where a detector may start: a word character, '@' or '-'. */
const TRIGGER = 1024;

const CLS = new Uint16Array(256);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  let k = 0;
  if (ch >= '0' && ch <= '9') k |= DIGIT | WORD | B64 | TOKEN | LOCAL | LABEL | B64URL | HEX;
  if (ch >= 'A' && ch <= 'Z') k |= UPPER | WORD | B64 | TOKEN | LOCAL | LABEL | B64URL;
  if (ch >= 'a' && ch <= 'z') k |= LOWER | WORD | B64 | TOKEN | LOCAL | LABEL | B64URL;
  if ((ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) k |= HEX;
  if (ch === '_') k |= WORD | TOKEN | LOCAL | B64URL;
  if (ch === '+' || ch === '/') k |= B64 | TOKEN;
  if (ch === '-') k |= TOKEN | LOCAL | LABEL | B64URL;
  if (ch === '.' || ch === '~' || ch === '$') k |= TOKEN;
  if (ch === '.' || ch === '%' || ch === '+') k |= LOCAL;
  if ((k & WORD) !== 0 || ch === '@' || ch === '-') k |= TRIGGER;
  CLS[c] = k;
}

const AT = 0x40;
const DOT = 0x2e;
const DASH = 0x2d;
const SPACE = 0x20;
const UNDERSCORE = 0x5f;
const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const ESC = 0x1b;
const QUOTE = 0x22;
const EQUALS = 0x3d;

const isDigit = (b: number): boolean => b >= 0x30 && b <= 0x39;

/**
 * Decode the UTF-8 code point whose lead byte is at `p` (no validation beyond what the
 * classification needs; malformed input just classifies as a non-word character).
 */
function codePointAt(buf: Buffer, p: number, end: number): number {
  const b0 = buf[p]!;
  if (b0 < 0x80) return b0;
  if (b0 >= 0xf0 && p + 3 < end) return ((b0 & 0x07) << 18) | ((buf[p + 1]! & 0x3f) << 12) | ((buf[p + 2]! & 0x3f) << 6) | (buf[p + 3]! & 0x3f);
  if (b0 >= 0xe0 && p + 2 < end) return ((b0 & 0x0f) << 12) | ((buf[p + 1]! & 0x3f) << 6) | (buf[p + 2]! & 0x3f);
  if (b0 >= 0xc0 && p + 1 < end) return ((b0 & 0x1f) << 6) | (buf[p + 1]! & 0x3f);
  return 0xfffd;
}

function utf8Length(b0: number): number {
  return b0 >= 0xf0 ? 4 : b0 >= 0xe0 ? 3 : b0 >= 0xc0 ? 2 : 1;
}

/**
 * Whether a non-ASCII code point can be part of an internationalized address (RFC 6531
 * local part, IDN label): letters and marks yes; spaces, punctuation, symbols, arrows,
 * CJK punctuation, full-width punctuation and emoji no. A coarse table of blocks, which
 * is all the decision needs: these end an address, everything else may be in one.
 */
function isUnicodeWord(cp: number): boolean {
  if (cp < 0x80) return false;
  if (cp <= 0xbf) return false; // C1 controls, NBSP, « » · ¿ …
  if (cp === 0xd7 || cp === 0xf7) return false; // × ÷
  if (cp >= 0x2000 && cp <= 0x2bff) return false; // general punctuation … misc symbols and arrows
  if (cp >= 0x3000 && cp <= 0x303f) return false; // CJK symbols and punctuation
  if (cp >= 0xfe10 && cp <= 0xfe6f) return false; // vertical, compatibility and small forms
  if (cp >= 0xff00 && cp <= 0xff0f) return false; // full-width punctuation
  if (cp >= 0xff1a && cp <= 0xff20) return false;
  if (cp >= 0xff3b && cp <= 0xff40) return false;
  if (cp >= 0xff5b && cp <= 0xff65) return false;
  if (cp >= 0xfff0) return cp > 0xffff && !(cp >= 0x1f000 && cp <= 0x1faff); // specials; emoji blocks
  return true;
}

// ───────────────────────────── the scan ─────────────────────────────

/**
 * Append to `out` every span of the enabled detectors inside `buf[start, end)`.
 * `secretColumn`: the value sits in a column whose name looks like a secret (see
 * looksLikeSecretName), which turns on high_entropy and AWS secret keys without other
 * context.
 */
export function scanSpans(buf: Buffer, start: number, end: number, detectors: DetectorSet, secretColumn: boolean, out: SpanList): void {
  if (detectors === 0 || end <= start) return;
  const email = (detectors & (1 << DetectorId.email)) !== 0;
  const pem = (detectors & (1 << DetectorId.private_key)) !== 0;
  const wordStart = detectors & WORD_START_DETECTORS;
  const tokens = (detectors & ((1 << DetectorId.aws_key) | (1 << DetectorId.high_entropy))) !== 0;
  let lastEnd = start;
  let i = start;
  while (i < end) {
    const c = buf[i]!;
    if (c >= 0x80 || (CLS[c]! & TRIGGER) === 0) {
      i++;
      continue;
    }
    let hit = -1;
    let kind = 0;
    let from = i;
    if (c === AT) {
      if (email) {
        const s = emailStart(buf, i, lastEnd);
        if (s >= 0) {
          const e = emailEnd(buf, i, end);
          if (e > 0) {
            from = s;
            hit = e;
            kind = DetectorId.email;
          }
        }
      }
    } else if (c === DASH) {
      if (pem) {
        const e = privateKeyEnd(buf, i, end);
        if (e > 0) {
          hit = e;
          kind = DetectorId.private_key;
        }
      }
    } else {
      const prev = i > start && !afterEscape(buf, i, start) ? buf[i - 1]! : SPACE;
      if (prev >= 0x80 || (CLS[prev]! & WORD) === 0) {
        if (wordStart !== 0) {
          const r = wordStartMatch(buf, i, start, end, c, prev, wordStart);
          if (r > 0) {
            hit = r;
            kind = lastKind;
          }
        }
        if (hit < 0 && tokens && (prev >= 0x80 || (CLS[prev]! & TOKEN) === 0)) {
          const e = tokenMatch(buf, i, start, end, detectors, secretColumn);
          if (e > 0) {
            hit = e;
            kind = lastKind;
          }
        }
      }
    }
    if (hit > 0) {
      // A span right after a backslash would swallow the escape's letter (`\n`, `\u00e9`)
      // and leave a dangling backslash in JSON or COPY text: start past the escape.
      if (from > start && buf[from - 1] === BACKSLASH && escapedAt(buf, from - 1, start)) {
        from += buf[from] === 0x75 && from + 5 <= hit && isHex4(buf, from + 1) ? 5 : 1;
      }
      if (from < hit) out.push(from, hit, kind);
      lastEnd = hit;
      i = hit;
      continue;
    }
    // Nothing starts inside a word: skip the rest of it ('@' and '-' are not word bytes),
    // except past an escape's letter (`\nAKIA…` in JSON): the word starts after it.
    const escape = escapeLength(buf, i, start, end);
    i += escape > 0 ? escape : 1;
    if (escape === 0 && c !== AT && c !== DASH) while (i < end && buf[i]! < 0x80 && (CLS[buf[i]!]! & WORD) !== 0) i++;
  }
}

/** Letters that end a one-letter escape (`\n`, `\t`…) in JSON, C-style and COPY text. */
const ESCAPE_LETTERS = new Set([0x6e, 0x74, 0x72, 0x62, 0x66, 0x76]);

/**
 * How many bytes from `i` are the rest of an escape that began at i - 1: a backslash's
 * (`n`, `u00e9`), a percent-encoded byte's (`3D` in `%3DAKIA…`), a terminal colour's
 * (`1m` in ESC `[1m`); 0 when none.
 */
function escapeLength(buf: Buffer, i: number, lo: number, end: number): number {
  if (i <= lo) return 0;
  if (buf[i - 1] === PERCENT) return i + 2 <= end && (CLS[buf[i]!]! & HEX) !== 0 && (CLS[buf[i + 1]!]! & HEX) !== 0 ? 2 : 0;
  if (buf[i - 1] === 0x5b && i - 2 >= lo && buf[i - 2] === ESC) {
    // ESC [ parameters (digits and ;) then a final letter.
    let q = i;
    while (q < end && ((buf[q]! >= 0x30 && buf[q]! <= 0x39) || buf[q] === 0x3b)) q++;
    return q < end && ((buf[q]! >= 0x41 && buf[q]! <= 0x5a) || (buf[q]! >= 0x61 && buf[q]! <= 0x7a)) ? q + 1 - i : 0;
  }
  if (buf[i - 1] !== BACKSLASH || !escapedAt(buf, i - 1, lo)) return 0;
  const c = buf[i]!;
  if (ESCAPE_LETTERS.has(c)) return 1;
  if (c === 0x75 && i + 5 <= end && isHex4(buf, i + 1)) return 5;
  return 0;
}

/** Whether the bytes right before `i` are a whole escape (see escapeLength): a word starts at i, as after a space. */
function afterEscape(buf: Buffer, i: number, lo: number): boolean {
  for (let n = 1; n <= 12 && i - n - 1 >= lo; n++) if (escapeLength(buf, i - n, lo, i) === n) return true;
  return false;
}

/** The kind of the last successful word-start/token match (avoids returning a pair). */
let lastKind = 0;

/** True when the backslash at `p` is itself unescaped (an odd run of backslashes ends at p). */
function escapedAt(buf: Buffer, p: number, lo: number): boolean {
  let n = 0;
  while (p >= lo && buf[p] === BACKSLASH) {
    n++;
    p--;
  }
  return n % 2 === 1;
}

function isHex4(buf: Buffer, p: number): boolean {
  return (CLS[buf[p]!]! & HEX) !== 0 && (CLS[buf[p + 1]!]! & HEX) !== 0 && (CLS[buf[p + 2]!]! & HEX) !== 0 && (CLS[buf[p + 3]!]! & HEX) !== 0;
}

const WORD_START_DETECTORS =
  (1 << DetectorId.credit_card) |
  (1 << DetectorId.us_ssn) |
  (1 << DetectorId.iban) |
  (1 << DetectorId.aws_key) |
  (1 << DetectorId.github_token) |
  (1 << DetectorId.slack_token) |
  (1 << DetectorId.stripe_key) |
  (1 << DetectorId.jwt);

const has = (set: number, id: number): boolean => (set & (1 << id)) !== 0;

/** Detectors anchored at a word start. Returns the span end (> 0) and sets lastKind, or -1. */
function wordStartMatch(buf: Buffer, i: number, lo: number, end: number, c: number, prev: number, set: number): number {
  let e: number;
  if (isDigit(c)) {
    // `3.4111…` or `12,4111…` continue a number; a digit run there is no card or SSN.
    if ((prev === DOT || prev === 0x2c) && i - 2 >= lo && isDigit(buf[i - 2]!)) return -1;
    if (has(set, DetectorId.credit_card) && (e = cardEnd(buf, i, end)) > 0) return found(e, DetectorId.credit_card);
    if (has(set, DetectorId.us_ssn) && !(prev === DASH && i - 2 >= lo && isDigit(buf[i - 2]!)) && (e = ssnEnd(buf, i, end)) > 0) {
      return found(e, DetectorId.us_ssn);
    }
    return -1;
  }
  switch (c) {
    case 0x65: // e
      if (has(set, DetectorId.jwt) && (e = jwtEnd(buf, i, end)) > 0) return found(e, DetectorId.jwt);
      break;
    case 0x67: // g
      if (has(set, DetectorId.github_token) && (e = githubEnd(buf, i, end)) > 0) return found(e, DetectorId.github_token);
      break;
    case 0x78: // x
      if (has(set, DetectorId.slack_token) && (e = slackEnd(buf, i, end)) > 0) return found(e, DetectorId.slack_token);
      break;
    case 0x73: // s
    case 0x72: // r
      if (has(set, DetectorId.stripe_key) && (e = stripeEnd(buf, i, end)) > 0) return found(e, DetectorId.stripe_key);
      break;
    default:
      break;
  }
  if ((CLS[c]! & UPPER) !== 0) {
    if (c === 0x41 && has(set, DetectorId.aws_key) && (e = awsKeyIdEnd(buf, i, end)) > 0) return found(e, DetectorId.aws_key);
    if (has(set, DetectorId.iban) && (e = ibanEnd(buf, i, end)) > 0) return found(e, DetectorId.iban);
  }
  return -1;
}

function found(end: number, kind: number): number {
  lastKind = kind;
  return end;
}

/** The byte at `p` (or a space past the end) does not continue a word. */
function wordBoundary(buf: Buffer, p: number, end: number): boolean {
  if (p >= end) return true;
  const b = buf[p]!;
  return b >= 0x80 || (CLS[b]! & WORD) === 0;
}

// ───────────────────────────── email ─────────────────────────────

const MAX_LOCAL = 64;
const MAX_DOMAIN = 255;

/** Start of the local part ending before the '@' at `at`, not before `lo`; -1 if empty. */
function emailStart(buf: Buffer, at: number, lo: number): number {
  let s = at;
  const min = Math.max(lo, at - MAX_LOCAL * 4);
  while (s > min) {
    const b = buf[s - 1]!;
    if (b < 0x80) {
      if ((CLS[b]! & LOCAL) === 0) break;
      s--;
      continue;
    }
    // Step back to the lead byte of this code point.
    let p = s - 1;
    while (p > min && (buf[p]! & 0xc0) === 0x80) p--;
    if (!isUnicodeWord(codePointAt(buf, p, at))) break;
    s = p;
  }
  while (s < at && buf[s] === DOT) s++;
  return s < at ? s : -1;
}

/** End of a domain after the '@' at `at`: at least two labels, the last a plausible TLD; -1 if none. */
function emailEnd(buf: Buffer, at: number, end: number): number {
  let p = at + 1;
  const max = Math.min(end, p + MAX_DOMAIN);
  let labels = 0;
  let good = -1;
  while (p < max) {
    const ls = p;
    let ascii = true;
    let letters = true;
    while (p < max) {
      const b = buf[p]!;
      if (b < 0x80) {
        if ((CLS[b]! & LABEL) === 0) break;
        if ((CLS[b]! & (UPPER | LOWER)) === 0) letters = false;
        p++;
      } else {
        const cp = codePointAt(buf, p, max);
        if (!isUnicodeWord(cp)) break;
        ascii = false;
        p += utf8Length(b);
      }
    }
    if (p > max) p = max;
    if (p === ls || buf[ls] === DASH || buf[p - 1] === DASH) break;
    labels++;
    if (labels >= 2 && isTld(buf, ls, p, ascii, letters)) good = p;
    if (p + 1 < max && buf[p] === DOT) p++;
    else break;
  }
  return good;
}

function isTld(buf: Buffer, s: number, e: number, ascii: boolean, letters: boolean): boolean {
  if (e - s < 2) return false;
  if (ascii) {
    if (letters) return true;
    // Punycode TLDs: xn--…
    return e - s > 4 && (buf[s]! | 0x20) === 0x78 && (buf[s + 1]! | 0x20) === 0x6e && buf[s + 2] === DASH && buf[s + 3] === DASH;
  }
  for (let p = s; p < e; p++) if (isDigit(buf[p]!)) return false;
  return true;
}

// ───────────────────────────── cards, SSNs, IBANs ─────────────────────────────

/**
 * A payment card number: 13–19 digits, optionally in groups split by single spaces or
 * dashes (one kind per number), first digit 2–6 (the issuer ranges of Visa, Mastercard,
 * Amex, Discover, JCB, Diners, UnionPay, Maestro), passing the Luhn check. The longest
 * valid number from this start wins. Digits touching letters (UUID parts) do not count.
 */
function cardEnd(buf: Buffer, i: number, end: number): number {
  const first = buf[i]!;
  if (first < 0x32 || first > 0x36) return -1;
  let p = i;
  let digits = 0;
  let sep = 0;
  let best = -1;
  for (;;) {
    while (p < end && isDigit(buf[p]!)) {
      p++;
      if (++digits > 19) return best;
    }
    if (!wordBoundary(buf, p, end)) return best; // a run glued to letters: no card
    if (digits >= 13 && numberEnds(buf, p, end) && luhn(buf, i, p)) best = p;
    const next = p < end ? buf[p]! : 0;
    if ((next === SPACE || next === DASH) && (sep === 0 || sep === next) && p + 1 < end && isDigit(buf[p + 1]!)) {
      sep = next;
      p++;
      continue;
    }
    return best;
  }
}

/** After a number: not followed by more of a decimal (`.5`, `,50`). */
function numberEnds(buf: Buffer, p: number, end: number): boolean {
  if (p >= end) return true;
  const b = buf[p]!;
  return !((b === DOT || b === 0x2c) && p + 1 < end && isDigit(buf[p + 1]!));
}

function luhn(buf: Buffer, s: number, e: number): boolean {
  let sum = 0;
  let double = false;
  for (let p = e - 1; p >= s; p--) {
    const b = buf[p]!;
    if (!isDigit(b)) continue;
    let d = b - 0x30;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

const SSN_DIGITS = [0, 1, 2, 4, 5, 7, 8, 9, 10] as const;

/**
 * A US SSN written AAA-GG-SSSS, without the ranges the SSA never issues: area 000, 666 or
 * 900–999, group 00, serial 0000. Not part of a longer dashed number.
 */
function ssnEnd(buf: Buffer, i: number, end: number): number {
  if (i + 11 > end) return -1;
  for (const k of SSN_DIGITS) if (!isDigit(buf[i + k]!)) return -1;
  if (buf[i + 3] !== DASH || buf[i + 6] !== DASH) return -1;
  const e = i + 11;
  if (!wordBoundary(buf, e, end)) return -1;
  if (e < end && (buf[e] === DASH || buf[e] === DOT) && e + 1 < end && isDigit(buf[e + 1]!)) return -1;
  const area = (buf[i]! - 0x30) * 100 + (buf[i + 1]! - 0x30) * 10 + (buf[i + 2]! - 0x30);
  if (area === 0 || area === 666 || area >= 900) return -1;
  if (buf[i + 4] === 0x30 && buf[i + 5] === 0x30) return -1;
  if (buf[i + 7] === 0x30 && buf[i + 8] === 0x30 && buf[i + 9] === 0x30 && buf[i + 10] === 0x30) return -1;
  return e;
}

/** IBAN length per country (ISO 13616 registry). */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29, BY: 28, CH: 21, CR: 22, CY: 28, CZ: 24,
  DE: 22, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28,
  HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20,
  LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MR: 27, MT: 31, MU: 30, NL: 18, NO: 15, PK: 24, PL: 28, PS: 29, PT: 25,
  QA: 29, RO: 24, RS: 22, SA: 24, SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26,
  UA: 29, VA: 22, VG: 24, XK: 20,
};
const IBAN_LEN = new Uint8Array(26 * 26);
for (const [cc, n] of Object.entries(IBAN_LENGTHS)) IBAN_LEN[(cc.charCodeAt(0) - 65) * 26 + (cc.charCodeAt(1) - 65)] = n;

/**
 * An IBAN: country code, two check digits, the country's BBAN length in capitals and
 * digits (single spaces allowed between characters, as in the printed form), and the
 * ISO 7064 mod-97 checksum equal to 1.
 */
function ibanEnd(buf: Buffer, i: number, end: number): number {
  if (i + 15 > end) return -1;
  const c1 = buf[i + 1]!;
  if ((CLS[c1]! & UPPER) === 0 || !isDigit(buf[i + 2]!) || !isDigit(buf[i + 3]!)) return -1;
  const want = IBAN_LEN[(buf[i]! - 65) * 26 + (c1 - 65)]!;
  if (want === 0) return -1;
  // The checksum runs over BBAN then country code and check digits; walk the BBAN first.
  let p = i + 4;
  let n = 4;
  let rem = 0;
  while (n < want) {
    if (p >= end) return -1;
    let b = buf[p]!;
    if (b === SPACE && p + 1 < end && (CLS[buf[p + 1]!]! & (UPPER | DIGIT)) !== 0) b = buf[++p]!;
    const k = CLS[b]!;
    if ((k & DIGIT) !== 0) rem = (rem * 10 + (b - 0x30)) % 97;
    else if ((k & UPPER) !== 0) rem = (rem * 100 + (b - 55)) % 97;
    else return -1;
    p++;
    n++;
  }
  if (!wordBoundary(buf, p, end)) return -1;
  rem = (rem * 100 + (buf[i]! - 55)) % 97;
  rem = (rem * 100 + (c1 - 55)) % 97;
  rem = (rem * 100 + (buf[i + 2]! - 0x30) * 10 + (buf[i + 3]! - 0x30)) % 97;
  return rem === 1 ? p : -1;
}

// ───────────────────────────── prefixed tokens ─────────────────────────────

function startsWith(buf: Buffer, p: number, end: number, prefix: string): boolean {
  if (p + prefix.length > end) return false;
  for (let k = 0; k < prefix.length; k++) if (buf[p + k] !== prefix.charCodeAt(k)) return false;
  return true;
}

/** Run of bytes of class `cls` from `p`; returns where it stops. */
function run(buf: Buffer, p: number, end: number, cls: number): number {
  while (p < end) {
    const b = buf[p]!;
    if (b >= 0x80 || (CLS[b]! & cls) === 0) break;
    p++;
  }
  return p;
}

/** AWS access key id: AKIA (long-term) or ASIA (temporary) and 16 capitals or digits. */
function awsKeyIdEnd(buf: Buffer, i: number, end: number): number {
  if (!startsWith(buf, i, end, 'AKIA') && !startsWith(buf, i, end, 'ASIA')) return -1;
  const e = i + 20;
  if (e > end) return -1;
  for (let p = i + 4; p < e; p++) if ((CLS[buf[p]!]! & (UPPER | DIGIT)) === 0) return -1;
  return wordBoundary(buf, e, end) ? e : -1;
}

/** GitHub: ghp_/gho_/ghu_/ghs_/ghr_ and 30+ alphanumerics (36 today), or github_pat_ and 22+. */
function githubEnd(buf: Buffer, i: number, end: number): number {
  if (startsWith(buf, i, end, 'github_pat_')) {
    const e = run(buf, i + 11, end, WORD);
    return e - (i + 11) >= 22 && wordBoundary(buf, e, end) ? e : -1;
  }
  if (i + 4 > end || buf[i + 1] !== 0x68 || buf[i + 3] !== UNDERSCORE) return -1;
  const t = buf[i + 2];
  if (t !== 0x70 && t !== 0x6f && t !== 0x75 && t !== 0x73 && t !== 0x72) return -1;
  const e = run(buf, i + 4, end, DIGIT | UPPER | LOWER);
  return e - (i + 4) >= 30 && wordBoundary(buf, e, end) ? e : -1;
}

/** Slack: xoxa-, xoxb-, xoxp-, xoxr-, xoxs- and 10+ of [A-Za-z0-9-]. */
function slackEnd(buf: Buffer, i: number, end: number): number {
  if (!startsWith(buf, i, end, 'xox') || i + 5 > end || buf[i + 4] !== DASH) return -1;
  const t = buf[i + 3];
  if (t !== 0x61 && t !== 0x62 && t !== 0x70 && t !== 0x72 && t !== 0x73) return -1;
  const e = run(buf, i + 5, end, DIGIT | UPPER | LOWER | LABEL);
  return e - (i + 5) >= 10 && wordBoundary(buf, e, end) ? e : -1;
}

/** Stripe secret and restricted keys: sk_live_, sk_test_, rk_live_, rk_test_ and 10+ alphanumerics. */
function stripeEnd(buf: Buffer, i: number, end: number): number {
  if (i + 8 > end || buf[i + 1] !== 0x6b || buf[i + 2] !== UNDERSCORE) return -1;
  if (!startsWith(buf, i + 3, end, 'live_') && !startsWith(buf, i + 3, end, 'test_')) return -1;
  const e = run(buf, i + 8, end, DIGIT | UPPER | LOWER);
  return e - (i + 8) >= 10 && wordBoundary(buf, e, end) ? e : -1;
}

/**
 * A JWT (JWS compact form): three base64url parts joined by dots (the signature may be
 * empty for alg none), whose header decodes to a JSON object with a string `alg`. The
 * header starts `eyJ` (base64 of `{"`), which is the trigger; only then is it decoded.
 */
function jwtEnd(buf: Buffer, i: number, end: number): number {
  if (!startsWith(buf, i, end, 'eyJ')) return -1;
  const h = run(buf, i, end, B64URL);
  if (h >= end || buf[h] !== DOT) return -1;
  const pl = run(buf, h + 1, end, B64URL);
  if (pl - (h + 1) < 2 || pl >= end || buf[pl] !== DOT) return -1;
  const s = run(buf, pl + 1, end, B64URL);
  if (s < end && buf[s] === DOT) return -1; // a fourth part: not a JWS
  if (!wordBoundary(buf, s, end)) return -1;
  try {
    const header: unknown = JSON.parse(Buffer.from(buf.toString('latin1', i, h), 'base64url').toString('utf8'));
    if (typeof header !== 'object' || header === null || typeof (header as { alg?: unknown }).alg !== 'string') return -1;
  } catch {
    return -1;
  }
  return s;
}

const PEM_BEGIN = Buffer.from('-----BEGIN ', 'latin1');
const PEM_END = Buffer.from('-----END ', 'latin1');
const PEM_DASHES = Buffer.from('-----', 'latin1');

/**
 * A PEM private key: `-----BEGIN … PRIVATE KEY-----` (RSA, EC, OPENSSH, ENCRYPTED, PGP
 * … BLOCK) through the matching END line. A key with no END line (truncated, or cut at
 * a column limit) is masked to the end of the value, or to the end of the JSON string
 * it sits in.
 */
function privateKeyEnd(buf: Buffer, i: number, end: number): number {
  if (!startsWith(buf, i, end, '-----BEGIN ')) return -1;
  let p = i + PEM_BEGIN.length;
  const labelEnd = Math.min(end, p + 48);
  while (p < labelEnd && ((CLS[buf[p]!]! & (UPPER | DIGIT)) !== 0 || buf[p] === SPACE)) p++;
  let label = p;
  if (startsWith(buf, label - 6, end, ' BLOCK')) label -= 6;
  if (!endsWith(buf, label, 'PRIVATE KEY') || !startsWith(buf, p, end, '-----')) return -1;
  p += 5;
  const view = buf.subarray(p, end);
  const at = view.indexOf(PEM_END);
  if (at >= 0) {
    const close = view.indexOf(PEM_DASHES, at + PEM_END.length);
    if (close >= 0) return p + close + PEM_DASHES.length;
  }
  // The marker with more text after it on its line is no key block (a key's body starts on
  // the next line): only the marker is masked, so the rest of that text stays visible (a
  // command shown to a reviewer keeps what follows it).
  const eol = buf[p] === 0x0a || (buf[p] === 0x0d && buf[p + 1] === 0x0a) || (buf[p] === BACKSLASH && (buf[p + 1] === 0x6e || buf[p + 1] === 0x72));
  if (p < end && !eol) return p;
  // No END line: stop at the closing quote of a JSON string, else take the rest.
  for (let q = p; q < end; q++) if (buf[q] === QUOTE && !(buf[q - 1] === BACKSLASH && escapedAt(buf, q - 1, p))) return q;
  return end;
}

function endsWith(buf: Buffer, e: number, suffix: string): boolean {
  const s = e - suffix.length;
  if (s < 0) return false;
  for (let k = 0; k < suffix.length; k++) if (buf[s + k] !== suffix.charCodeAt(k)) return false;
  return true;
}

// ───────────────────────────── secrets by shape and context ─────────────────────────────

/** Shannon entropy (bits per character) a token must reach for high_entropy. */
export const ENTROPY_THRESHOLD = 3.2;
/** Shortest token high_entropy considers. */
export const ENTROPY_MIN_LENGTH = 20;
const counts = new Uint32Array(256);

/**
 * At a token start: an AWS secret access key (40 base64 characters, mixed case, next to
 * `aws` or a secret-named key, or in a secret-named column), else a high-entropy token
 * (length ≥ 20, ≥ ENTROPY_THRESHOLD bits per character, at least two of lower/upper/digit)
 * in a secret context: a secret-named column, or a value under a secret-named key inside
 * the value (`"api_token": "…"`, `password=…`, `Bearer …`).
 */
function tokenMatch(buf: Buffer, i: number, lo: number, end: number, set: number, secretColumn: boolean): number {
  let e = run(buf, i, end, TOKEN);
  // Base64 padding belongs to the token, unless the `=` is an assignment (`name=value`).
  let pad = e;
  while (pad < end && pad - e < 2 && buf[pad] === EQUALS) pad++;
  if (pad > e && wordBoundary(buf, pad, end)) e = pad;
  const len = e - i;
  if (len < ENTROPY_MIN_LENGTH) return -1;
  if (e < end && buf[e] === AT) return -1; // an email's local part: the email detector's
  if (has(set, DetectorId.aws_key) && len === 40 && run(buf, i, e, B64) === e && mixedCase(buf, i, e)) {
    if (secretColumn || awsNearby(buf, lo, i) || secretKeyBefore(buf, lo, i)) return found(e, DetectorId.aws_key);
  }
  if (!has(set, DetectorId.high_entropy)) return -1;
  if (!secretColumn && !secretKeyBefore(buf, lo, i)) return -1;
  if (!highEntropy(buf, i, e)) return -1;
  return found(e, DetectorId.high_entropy);
}

function mixedCase(buf: Buffer, s: number, e: number): boolean {
  let k = 0;
  for (let p = s; p < e; p++) k |= CLS[buf[p]!]!;
  return (k & UPPER) !== 0 && (k & LOWER) !== 0;
}

export function highEntropy(buf: Buffer, s: number, e: number): boolean {
  const n = e - s;
  let classes = 0;
  for (let p = s; p < e; p++) {
    const b = buf[p]!;
    counts[b]!++;
    classes |= CLS[b]! & (UPPER | LOWER | DIGIT);
  }
  let sum = 0;
  for (let p = s; p < e; p++) {
    const b = buf[p]!;
    const c = counts[b]!;
    if (c === 0) continue;
    sum += c * Math.log2(c);
    counts[b] = 0;
  }
  const bits = Math.log2(n) - sum / n;
  const kinds = (classes & UPPER ? 1 : 0) + (classes & LOWER ? 1 : 0) + (classes & DIGIT ? 1 : 0);
  return kinds >= 2 && bits >= ENTROPY_THRESHOLD;
}

/** `aws` (any case) within 100 bytes before `i`. */
function awsNearby(buf: Buffer, lo: number, i: number): boolean {
  const from = Math.max(lo, i - 100);
  for (let p = i - 3; p >= from; p--) {
    if ((buf[p]! | 0x20) === 0x61 && (buf[p + 1]! | 0x20) === 0x77 && (buf[p + 2]! | 0x20) === 0x73) return true;
  }
  return false;
}

/**
 * Whether the token at `i` is the value of a secret-named key: `"client_secret": "…`,
 * `token=…`, `password: …`, or follows `Bearer `.
 */
function secretKeyBefore(buf: Buffer, lo: number, i: number): boolean {
  let p = i - 1;
  let skipped = 0;
  while (p >= lo && skipped < 4 && (buf[p] === QUOTE || buf[p] === 0x27 || buf[p] === SPACE || buf[p] === 0x09)) {
    p--;
    skipped++;
  }
  if (p < lo) return false;
  if (buf[p] === EQUALS || buf[p] === 0x3a) {
    p--;
    skipped = 0;
    while (p >= lo && skipped < 4 && (buf[p] === QUOTE || buf[p] === 0x27 || buf[p] === SPACE || buf[p] === 0x09)) {
      p--;
      skipped++;
    }
  } else if (i - p > 1 && buf[i - 1] === SPACE) {
    // `Bearer <token>`
    return p - 5 >= lo && caseEquals(buf, p - 5, p + 1, 'bearer') && (p - 6 < lo || (CLS[buf[p - 6]!]! & WORD) === 0);
  } else {
    return false;
  }
  const e = p + 1;
  while (p >= lo && e - p <= 64 && buf[p]! < 0x80 && ((CLS[buf[p]!]! & WORD) !== 0 || buf[p] === DASH || buf[p] === DOT)) p--;
  if (e - (p + 1) < 2) return false;
  return looksLikeSecretName(buf.toString('latin1', p + 1, e));
}

function caseEquals(buf: Buffer, s: number, e: number, lower: string): boolean {
  if (e - s !== lower.length) return false;
  for (let k = 0; k < lower.length; k++) if ((buf[s + k]! | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

const SECRET_SUBSTRINGS = ['secret', 'token', 'passw', 'passphrase', 'credential', 'apikey', 'privatekey', 'accesskey', 'authorization', 'signingkey'];
const SECRET_PARTS = new Set(['key', 'keys', 'pwd', 'pw', 'pass', 'pin', 'salt', 'otp', 'totp', 'mfa', 'dsn', 'cookie', 'session']);

/**
 * Whether a column or key name looks like it holds a secret: it contains secret, token,
 * passw…, credential, apikey, …, or one of its words (split at `_`, `-`, `.`, camelCase)
 * is key, pwd, pass, pin, salt, otp, dsn, cookie, session.
 */
export function looksLikeSecretName(name: string): boolean {
  const flat = name.toLowerCase().replace(/[^a-z0-9]/g, '');
  for (const s of SECRET_SUBSTRINGS) if (flat.includes(s)) return true;
  for (const part of name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().split(/[^a-z0-9]+/)) {
    if (SECRET_PARTS.has(part)) return true;
  }
  return false;
}

// ───────────────────────────── convenience ─────────────────────────────

export interface FoundSpan {
  detector: DetectorName;
  /** Byte offsets into the UTF-8 encoding of the input. */
  start: number;
  end: number;
  /** The matched text. */
  text: string;
}

/** Run detectors over a string (tests, one-off use; the proxy scans bytes in place). */
export function findSpans(text: string, detectors: DetectorSet | readonly DetectorName[], options: { secretColumn?: boolean } = {}): FoundSpan[] {
  const set = typeof detectors === 'number' ? detectors : detectors.reduce((s, n) => s | bit(n), 0);
  const buf = Buffer.from(text, 'utf8');
  const list = new SpanList();
  scanSpans(buf, 0, buf.length, set, options.secretColumn ?? false, list);
  const out: FoundSpan[] = [];
  for (let k = 0; k < list.length; k++) {
    const start = list.starts[k]!;
    const end = list.ends[k]!;
    out.push({ detector: DETECTOR_NAMES[list.kinds[k]!]!, start, end, text: buf.toString('utf8', start, end) });
  }
  return out;
}

/**
 * Whether `buf[start, end)` is one email address and nothing else; returns the index of
 * its '@' (so partial masking can keep the domain), else -1.
 */
export function emailAt(buf: Buffer, start: number, end: number): number {
  let p = end - 1;
  while (p > start && buf[p] !== AT) p--;
  if (p <= start) return -1;
  return emailStart(buf, p, start) === start && emailEnd(buf, p, end) === end ? p : -1;
}
