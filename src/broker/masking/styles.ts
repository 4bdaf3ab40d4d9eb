/**
 * How a masked value is written (config `style`):
 *
 * - `full`: `********`, eight asterisks whatever the value's length, so the mask does
 *   not reveal how long the value was.
 * - `partial`: `****` and the last 4 characters for values of 8 characters or more
 *   (`****1111` for a card); shorter values are masked in full. An email keeps its
 *   domain instead (`****@example.com`). Private keys are always masked in full.
 * - `hash`: `h:` and the first 16 hex digits of HMAC-SHA256(broker masking key, value
 *   bytes). The key lives in the broker's state dir (key.ts), so the same value masks to
 *   the same text in every session and across restarts: equality and joins still work,
 *   guessing needs the key.
 * - `null`: SQL NULL when a whole column is masked; inside a longer value (a span found
 *   by a detector) NULL is impossible, so the span is masked `full`.
 *
 * Writers go straight into an OutBuffer: nothing is allocated per value except the HMAC.
 */
import type { MaskingConfig } from '../config/types.js';
import { emailAt } from './detectors.js';
import { OutBuffer } from './out-buffer.js';
import { hmacSha256Words } from './hmac.js';

export type MaskStyle = MaskingConfig['style'];
export const MASK_STYLES: readonly MaskStyle[] = ['full', 'partial', 'hash', 'null'];

export const FULL_MASK = '********';
export const PARTIAL_PREFIX = '****';
export const PARTIAL_KEEP = 4;
export const PARTIAL_MIN_CHARS = 8;
export const HASH_PREFIX = 'h:';
export const HASH_HEX_DIGITS = 16;
/** The longest mask any style writes for a value with no kept part (`h:` + 16). */
export const MAX_FIXED_MASK = HASH_PREFIX.length + HASH_HEX_DIGITS;

const RANK: Readonly<Record<MaskStyle, number>> = { partial: 0, hash: 1, full: 2, null: 3 };

/** Of two styles, the one that reveals less (null > full > hash > partial). */
export function moreProtective(a: MaskStyle, b: MaskStyle): MaskStyle {
  return RANK[b] > RANK[a] ? b : a;
}

/**
 * What a partial mask may keep: `auto` a 4-character suffix, or the domain when the whole
 * range is one email address; `email` the domain after the last '@'; `none` nothing.
 */
export type KeepHint = 'auto' | 'email' | 'none';

const STAR = 0x2a;
const AT = 0x40;
const HEX = Uint8Array.from(Buffer.from('0123456789abcdef', 'latin1'));

/**
 * Write the mask of `src[start, end)` in `style`. `null` writes the full mask: callers
 * that can send SQL NULL handle that style themselves.
 */
export function writeMask(out: OutBuffer, style: MaskStyle, src: Buffer, start: number, end: number, key: Buffer, keep: KeepHint = 'auto'): void {
  switch (style) {
    case 'hash':
      writeHash(out, src, start, end, key);
      return;
    case 'partial':
      writePartial(out, src, start, end, keep);
      return;
    case 'full':
    case 'null':
      out.fill(STAR, FULL_MASK.length);
      return;
  }
}

function writeHash(out: OutBuffer, src: Buffer, start: number, end: number, key: Buffer): void {
  const words = hmacSha256Words(key, src, start, end);
  out.ensure(MAX_FIXED_MASK);
  out.byte(0x68); // h
  out.byte(0x3a); // :
  // The first 16 hex digits are the first two 32-bit words of the MAC.
  for (let w = 0; w < HASH_HEX_DIGITS / 8; w++) {
    const v = words[w]!;
    for (let shift = 28; shift >= 0; shift -= 4) out.byte(HEX[(v >>> shift) & 15]!);
  }
}

function writePartial(out: OutBuffer, src: Buffer, start: number, end: number, keep: KeepHint): void {
  if (keep === 'none') {
    out.fill(STAR, FULL_MASK.length);
    return;
  }
  let at = -1;
  if (keep === 'email') {
    for (let p = end - 1; p > start; p--) {
      if (src[p] === AT) {
        at = p;
        break;
      }
    }
  } else {
    at = emailAt(src, start, end);
  }
  if (at > start) {
    out.fill(STAR, PARTIAL_PREFIX.length);
    out.bytes(src, at, end);
    return;
  }
  // Count characters (UTF-8 lead bytes) and find where the last PARTIAL_KEEP begin.
  let chars = 0;
  let cut = end;
  for (let p = end - 1; p >= start; p--) {
    if ((src[p]! & 0xc0) !== 0x80) {
      chars++;
      if (chars === PARTIAL_KEEP) cut = p;
      if (chars >= PARTIAL_MIN_CHARS) break;
    }
  }
  if (chars < PARTIAL_MIN_CHARS) {
    out.fill(STAR, FULL_MASK.length);
    return;
  }
  out.fill(STAR, PARTIAL_PREFIX.length);
  out.bytes(src, cut, end);
}

const scratch = new OutBuffer(4096);

/**
 * The mask of a string value, as text; null only for the `null` style (SQL NULL). For
 * audit text, error messages and tests; the proxy writes masks into rows directly.
 */
export function maskText(value: string, style: MaskStyle, key: Buffer, keep: KeepHint = 'auto'): string | null {
  if (style === 'null') return null;
  const src = Buffer.from(value, 'utf8');
  scratch.begin();
  writeMask(scratch, style, src, 0, src.length, key, keep);
  return scratch.finish().toString('utf8');
}
