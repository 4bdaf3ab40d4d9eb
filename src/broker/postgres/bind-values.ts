/**
 * A Bind's parameter values as approvals see them: a digest that binds an approval (and
 * any grant) to exactly these values, and the values as a reviewer is shown them. A held
 * `update orders set status=$1 where id=$2` is approved for the values on the screen, not
 * for whatever a later Bind supplies.
 *
 * https://www.postgresql.org/docs/current/protocol-message-formats.html (Bind)
 */
import { createHash } from 'node:crypto';
import { bindParamFormat, bindParamValues, decodeBind } from './decode-frontend.js';

/**
 * Longest value shown in full (characters of its text, or of its hex for a binary value). A
 * longer one is cut where shown; a hold bound to exact values refuses it (bindValueCut),
 * since the reviewer would approve bytes they were never shown.
 */
export const SHOWN_CHARS = 2000;

/** SHA-256 over each value's format and bytes (NULL apart from empty), in order. */
export function bindValuesDigest(bindBody: Buffer): string {
  const bind = decodeBind(bindBody);
  const h = createHash('sha256');
  const c = bindParamValues(bindBody, bind);
  const head = Buffer.alloc(5);
  while (c.next()) {
    head.writeUInt8(bindParamFormat(bind, c.index), 0);
    head.writeInt32BE(c.length, 1);
    h.update(head);
    if (c.length > 0) h.update(c.body.subarray(c.offset, c.offset + c.length));
  }
  return h.digest('hex');
}

/**
 * "The same statement" for an approval: the statement's fingerprint with its values, and the
 * parameter types Parse declared, if any (the same `'now'` is text as text and the current
 * time as timestamptz).
 */
export function fingerprintWithValues(statementFingerprint: string, bindBody: Buffer, declaredTypes?: readonly number[]): string {
  const types = declaredTypes?.some((t) => t !== 0) ? `\ntypes:${declaredTypes.join(',')}` : '';
  return createHash('sha256').update(`${statementFingerprint}\nbind:${bindValuesDigest(bindBody)}${types}`).digest('hex');
}

/**
 * Each value as a reviewer reads it: a text value as a quoted literal passed through `mask`
 * (with its 0-based index: masking/sql-text.ts bindValueMasker), a binary one in hex unless
 * `mask` hides something in its bytes read as text (then that text, masked: hex would carry
 * the secret past every detector), NULL as NULL; long values cut, saying so.
 */
export function shownBindValues(bindBody: Buffer, mask: (literal: string, index: number) => string, declaredTypes?: readonly number[]): string[] {
  const bind = decodeBind(bindBody);
  const out: string[] = [];
  const c = bindParamValues(bindBody, bind);
  while (c.next()) {
    const declared = declaredTypes?.[c.index] ?? 0;
    const typed = declared !== 0 ? ` (declared type OID ${declared})` : '';
    if (c.length < 0) {
      out.push(`NULL${typed}`);
      continue;
    }
    const bytes = c.body.subarray(c.offset, c.offset + c.length);
    const cut = (s: string, limit: number): string => (s.length > limit ? `${s.slice(0, limit)}… (${c.length} bytes)` : s);
    const literal = `'${cut(bytes.toString('utf8'), SHOWN_CHARS).replace(/'/g, "''")}'`;
    const masked = mask(literal, c.index);
    if (bindParamFormat(bind, c.index) !== 1) out.push(masked + typed);
    else if (masked !== literal) out.push(`binary, as text ${masked}${typed}`);
    else out.push(`binary ${cut(`\\x${bytes.toString('hex')}`, SHOWN_CHARS)}${typed}`);
  }
  return out;
}

/** The 1-based number of the first value too long to be shown whole (see SHOWN_CHARS), or undefined when every one fits. */
export function bindValueCut(bindBody: Buffer): number | undefined {
  const bind = decodeBind(bindBody);
  const c = bindParamValues(bindBody, bind);
  while (c.next()) {
    if (c.length < 0) continue;
    const bytes = c.body.subarray(c.offset, c.offset + c.length);
    const shown = bindParamFormat(bind, c.index) === 1 ? 2 + 2 * c.length : bytes.toString('utf8').length;
    if (shown > SHOWN_CHARS) return c.index + 1;
  }
  return undefined;
}
