/**
 * bytea values, decoded so the detectors see the bytes and not their spelling:
 * `select email::bytea`, `convert_to(email, 'UTF8')` or `decode(…, 'hex')` return an
 * email as bytea, which no detector finds in `\x616c696365406578…`.
 *
 * Text format, as PostgreSQL writes it:
 * - hex (bytea_output = hex, the default): `\x` then two hex digits per byte (lower case
 *   from the server; either case is read);
 * - escape (bytea_output = escape): `\\` for a backslash, `\ooo` (three octal digits)
 *   for a byte that is not printable ASCII, any other byte as itself.
 * Binary format: the bytes themselves.
 *
 * A value in which a detector finds anything is masked whole: its spans are not
 * meaningful positions in binary data. The mask is written as bytea, so drivers still
 * parse it: hex text of the mask's bytes (`\x2a2a2a2a2a2a2a2a` for `********`), or the
 * mask's bytes in binary format. A value of a masked column is masked the same way
 * (in its rule's style, over the decoded bytes).
 *
 * Fail closed: text that is neither form (an odd number of hex digits, a lone
 * backslash) cannot be read, so when detectors are on it is masked whole (`full`),
 * counted as `bytea_unreadable`. PostgreSQL never sends such text.
 */
import { DETECTOR_NAMES, scanSpans, SpanList } from './detectors.js';
import { OutBuffer } from './out-buffer.js';
import type { MaskingPlan } from './rules.js';
import { keepFor } from './sql-text.js';
import { moreProtective, writeMask, type KeepHint, type MaskStyle } from './styles.js';

/** The type OID of bytea. */
export const BYTEA_OID = 17;
/** The count name of a text value that is not bytea text. */
export const BYTEA_UNREADABLE_RULE = 'bytea_unreadable';

const BACKSLASH = 0x5c;
const X = 0x78;
const HEX_DIGITS = Uint8Array.from(Buffer.from('0123456789abcdef', 'latin1'));

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  return -1;
}

const isOctal = (b: number | undefined): boolean => b !== undefined && b >= 0x30 && b <= 0x37;

/**
 * Decode bytea text (hex or escape form) in src[s, e) into `out`. False when the text is
 * neither form (what was written to `out` is then meaningless).
 */
export function decodeByteaText(src: Buffer, s: number, e: number, out: OutBuffer): boolean {
  if (e - s >= 2 && src[s] === BACKSLASH && src[s + 1] === X) {
    const n = e - s - 2;
    if (n % 2 !== 0) return false;
    out.ensure(n / 2);
    for (let p = s + 2; p < e; p += 2) {
      const hi = hexValue(src[p]!);
      const lo = hexValue(src[p + 1]!);
      if (hi < 0 || lo < 0) return false;
      out.byte((hi << 4) | lo);
    }
    return true;
  }
  out.ensure(e - s);
  let p = s;
  while (p < e) {
    const b = src[p]!;
    if (b !== BACKSLASH) {
      out.byte(b);
      p++;
      continue;
    }
    const b1 = src[p + 1];
    if (p + 1 < e && b1 === BACKSLASH) {
      out.byte(BACKSLASH);
      p += 2;
      continue;
    }
    if (p + 3 < e && b1! >= 0x30 && b1! <= 0x33 && isOctal(src[p + 2]) && isOctal(src[p + 3])) {
      out.byte(((b1! - 0x30) << 6) | ((src[p + 2]! - 0x30) << 3) | (src[p + 3]! - 0x30));
      p += 4;
      continue;
    }
    return false;
  }
  return true;
}

/** Write src[s, e) as bytea hex text: `\x` and two lower-case hex digits per byte. */
export function writeByteaHex(out: OutBuffer, src: Buffer, s: number, e: number): void {
  out.ensure(2 + 2 * (e - s));
  out.byte(BACKSLASH);
  out.byte(X);
  for (let p = s; p < e; p++) {
    const b = src[p]!;
    out.byte(HEX_DIGITS[b >>> 4]!);
    out.byte(HEX_DIGITS[b & 15]!);
  }
}

/** Decode bytea text (hex or escape form); undefined when it is neither. */
export function decodeBytea(text: Buffer | string): Buffer | undefined {
  const src = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const out = new OutBuffer(Math.max(64, src.length));
  return decodeByteaText(src, 0, src.length, out) ? Buffer.from(out.finish()) : undefined;
}

/** Bytes as bytea hex text (`\x…`). */
export function encodeByteaHex(bytes: Buffer): string {
  const out = new OutBuffer(2 + 2 * bytes.length);
  writeByteaHex(out, bytes, 0, bytes.length);
  return out.finish().toString('latin1');
}

/** A masked bytea value: the bytes to send, and what to count. */
export interface ByteaMask {
  /** The value in the format it came in (hex text, or the bytes in binary). A view: copy it before the next call. */
  bytes: Buffer;
  /** Detector ids of the spans found (detector mode). */
  kinds: number[];
  /** The text was not bytea text (masked whole, fail closed). */
  unreadable: boolean;
}

/** Masks bytea values for one plan; reuses its buffers across values. */
export class ByteaMasker {
  readonly #plan: MaskingPlan;
  readonly #key: Buffer;
  readonly #decoded = new OutBuffer(4096);
  readonly #mask = new OutBuffer(256);
  readonly #spans = new SpanList();

  constructor(plan: MaskingPlan, key: Buffer) {
    this.#plan = plan;
    this.#key = key;
  }

  /**
   * Mask the bytea value src[s, e) (`binary`: binary format, else text). `whole`: the
   * value belongs to a masked column and gets this style; undefined: detectors decide.
   * Undefined when the value passes unchanged.
   */
  mask(src: Buffer, s: number, e: number, binary: boolean, whole: MaskStyle | undefined, secret: boolean): ByteaMask | undefined {
    let v: Buffer;
    let unreadable = false;
    if (binary) {
      v = src.subarray(s, e);
    } else {
      const d = this.#decoded;
      d.begin();
      unreadable = !decodeByteaText(src, s, e, d);
      v = unreadable ? src.subarray(s, e) : d.finish();
    }
    const kinds: number[] = [];
    let style: MaskStyle;
    let keep: KeepHint = 'none';
    if (whole !== undefined) {
      style = whole;
      keep = 'auto';
    } else if (unreadable) {
      if (this.#plan.detectors === 0) return undefined;
      style = 'full';
    } else {
      const spans = this.#spans;
      spans.clear();
      scanSpans(v, 0, v.length, this.#plan.detectors, secret, spans);
      if (spans.length === 0) return undefined;
      style = 'partial';
      for (let k = 0; k < spans.length; k++) {
        kinds.push(spans.kinds[k]!);
        style = moreProtective(style, this.#plan.detectorStyles[spans.kinds[k]!]!);
      }
      // One span that is the whole value: the mask may keep what it would keep in text.
      if (spans.length === 1 && spans.starts[0] === 0 && spans.ends[0] === v.length) keep = keepFor(DETECTOR_NAMES[spans.kinds[0]!]!);
    }
    const m = this.#mask;
    m.begin();
    writeMask(m, style, v, 0, v.length, this.#key, keep);
    const masked = m.finish();
    if (binary) return { bytes: masked, kinds, unreadable };
    m.begin();
    writeByteaHex(m, masked, 0, masked.length);
    return { bytes: m.finish(), kinds, unreadable };
  }
}
