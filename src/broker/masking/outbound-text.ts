/**
 * Masking of text the server sends outside result rows: ErrorResponse and
 * NoticeResponse fields (notice-fields.ts), ParameterStatus and NotificationResponse
 * (status-text.ts). These carry text a session can choose (`RAISE … USING COLUMN = …`,
 * `set_config('application_name', …)`, `NOTIFY "…"`), so every one of them goes through
 * the detectors: what a plan masks in a row must not come back by another message.
 *
 * Text is read as UTF-8, as the server sends it (the proxy pins client_encoding to
 * UTF8). A field that is not valid UTF-8 (a SQL_ASCII database, a server that is not
 * PostgreSQL) is replaced whole by NON_UTF8_TEXT when the plan has detectors: the
 * client's reading of those bytes is not known, so they are not let through unscanned
 * in a form we could not read ourselves (fail closed). It is counted as `non_utf8`.
 */
import { isUtf8 } from 'node:buffer';
import { ProtocolError } from '../postgres/errors.js';
import { DETECTOR_NAMES, scanSpans, SpanList } from './detectors.js';
import type { MaskingPlan } from './rules.js';
import { applyRegionsToBytes, keepFor, type TextRegion } from './sql-text.js';

/** What replaces a field that is not valid UTF-8. */
export const NON_UTF8_TEXT = 'agentgate: removed non-UTF-8 text';
/** The count name of such a replacement. */
export const NON_UTF8_RULE = 'non_utf8';
const NON_UTF8_BYTES = Buffer.from(NON_UTF8_TEXT, 'utf8');

const spans = new SpanList();

/** Add `n` to a count by rule name. */
export function addCount(byRule: Record<string, number>, rule: string, n = 1): void {
  byRule[rule] = (byRule[rule] ?? 0) + n;
}

/** Detector hits in buf[s, e), as regions with the plan's detector styles (offsets into buf). */
export function detectorRegions(buf: Buffer, s: number, e: number, plan: MaskingPlan): TextRegion[] {
  const regions: TextRegion[] = [];
  if (plan.detectors === 0 || e <= s) return regions;
  spans.clear();
  scanSpans(buf, s, e, plan.detectors, false, spans);
  for (let k = 0; k < spans.length; k++) {
    const kind = spans.kinds[k]!;
    const name = DETECTOR_NAMES[kind]!;
    regions.push({ start: spans.starts[k]!, end: spans.ends[k]!, style: plan.detectorStyles[kind]!, keep: keepFor(name), rule: name });
  }
  return regions;
}

/**
 * The masked text of buf[s, e): detector hits and `extra` regions (offsets into buf)
 * masked, or NON_UTF8_TEXT (see the module comment). Undefined when nothing changes.
 * Counts go to `byRule`.
 */
export function maskTextBytes(
  buf: Buffer,
  s: number,
  e: number,
  plan: MaskingPlan,
  key: Buffer | undefined,
  byRule: Record<string, number>,
  extra?: readonly TextRegion[],
): Buffer | undefined {
  if (plan.detectors !== 0 && !isUtf8(buf.subarray(s, e))) {
    addCount(byRule, NON_UTF8_RULE);
    return NON_UTF8_BYTES;
  }
  const regions = detectorRegions(buf, s, e, plan);
  if (extra !== undefined) regions.push(...extra);
  if (regions.length === 0) return undefined;
  const masked = applyRegionsToBytes(
    buf.subarray(s, e),
    regions.map((r) => ({ ...r, start: r.start - s, end: r.end - s })),
    key,
  );
  for (const [rule, n] of Object.entries(masked.byRule)) addCount(byRule, rule, n);
  return masked.bytes;
}

/** A NUL-terminated string of a message at `p`: its end (the NUL's offset). */
export function cstringEnd(frame: Buffer, p: number, what: string): number {
  const end = frame.indexOf(0, p);
  if (end < 0) throw new ProtocolError(`malformed ${what} message: unterminated string`);
  return end;
}

/** A message of type `type` whose body is `parts`, with its length field. */
export function buildFrame(type: number, parts: readonly Buffer[]): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  const out = Buffer.concat([head, ...parts]);
  out.writeInt32BE(out.length - 1, 1);
  return out;
}
