/**
 * The row rewriter of the result masker (proxy-masking.ts): writes a DataRow (or a chunk
 * of COPY data, for mask-copy.ts) with the values its RowPlan (mask-row-plan.ts) masks
 * replaced, and counts what it masked, by rule or detector.
 *
 * Output starts lazily, at the first change: a message with nothing to mask is returned
 * as the same Buffer, and one with a change is copied once, up to each masked value
 * (`cut`), into one reused OutBuffer. Per value there is no allocation; plans are typed
 * arrays read by column index.
 */
import { BackendType } from './protocol.js';
import { ProtocolError } from './errors.js';
import { DETECTOR_NAMES, scanSpans, SpanList } from '../masking/detectors.js';
import type { MaskingPlan } from '../masking/rules.js';
import { OutBuffer } from '../masking/out-buffer.js';
import { writeMask, type MaskStyle } from '../masking/styles.js';
import { keepFor } from '../masking/sql-text.js';
import { BYTEA_UNREADABLE_RULE, ByteaMasker } from '../masking/bytea.js';
import { DETECT, FLAG_BINARY, FLAG_BPCHAR, FLAG_BYTEA, FLAG_DECODE, FLAG_JSON, FLAG_SECRET, NONE, NULLIFY, type RowPlan } from './mask-row-plan.js';
import { binaryHit, type Scan } from './binary-scan.js';
import type { MaskRules } from './mask-rules.js';

const EMPTY = Buffer.alloc(0);
const QUOTE = 0x22;
const SPACE = 0x20;

/** What the COPY masker (mask-copy.ts) writes through: the lazy output and the value maskers. */
export interface FieldRewriter {
  /** The output being written (valid once `cut` has started it). */
  readonly out: OutBuffer;
  /** Whether the output has started (something changed since `begin`). */
  readonly started: boolean;
  /** Start rewriting `src`; `copyFrame`: the output is a CopyData frame, else the source's own header is copied. */
  begin(src: Buffer, copyFrame: boolean): void;
  /** Start the output if needed and copy the source up to `at`. */
  cut(at: number): void;
  /** The source resumes at `at` (what lies before it was replaced). */
  resume(at: number): void;
  /** The rewritten message (source copied up to `until`), or undefined when nothing changed. */
  finish(until: number): Buffer | undefined;
  /** Mask a length-prefixed value whose Int32 length is at `lenPos`. */
  maskSized(rp: RowPlan, i: number, src: Buffer, lenPos: number, vs: number, ve: number): void;
  /** Run the detectors over src[s, e); true when they found something (then `writeSpans`). */
  scan(src: Buffer, s: number, e: number, secret: boolean): boolean;
  /** Write src[s, e) with the spans the last `scan` found masked. */
  writeSpans(src: Buffer, s: number, e: number): void;
  /** A whole-value mask of src[s, e) in `style`, into `out`. */
  writeWhole(src: Buffer, s: number, e: number, style: MaskStyle, flags: number, out: OutBuffer): void;
  /** A bytea value masked: `rule` >= 0 for a masked column, -1 for detectors; undefined when it passes. */
  byteaMask(src: Buffer, s: number, e: number, flags: number, rule: number): Buffer | undefined;
  /** One value masked whole under `rule`. */
  count(rule: number): void;
}

export class RowRewriter implements FieldRewriter {
  readonly #plan: MaskingPlan;
  readonly #key: Buffer;
  readonly #rules: MaskRules;
  readonly #styles: readonly MaskStyle[];
  readonly #detBase: number;
  readonly #counts: Float64Array;
  readonly #otherCounts = new Map<string, number>();
  #values = 0;

  readonly #spans = new SpanList();
  readonly #out = new OutBuffer();
  readonly #bytea: ByteaMasker;

  // The rewrite in progress: output starts lazily, at the first change.
  #src: Buffer = EMPTY;
  #copied = 0;
  #started = false;
  #copyFrame = false;

  constructor(plan: MaskingPlan, key: Buffer, rules: MaskRules) {
    this.#plan = plan;
    this.#key = key;
    this.#rules = rules;
    this.#styles = rules.styles;
    this.#detBase = rules.detBase;
    this.#counts = new Float64Array(rules.names.length);
    this.#bytea = new ByteaMasker(plan, key);
  }

  // ───────────────────────────── DataRow ─────────────────────────────

  /** A DataRow under an active plan: the frame to forward (the same Buffer when nothing was masked). */
  dataRow(rp: RowPlan, frame: Buffer): Buffer {
    if (frame.length < 7) throw new ProtocolError('malformed DataRow message: no column count');
    const count = frame.readUInt16BE(5);
    const last = Math.min(rp.last, count - 1);
    this.begin(frame, false);
    let pos = 7;
    for (let i = 0; i <= last; i++) {
      if (pos + 4 > frame.length) throw new ProtocolError(`malformed DataRow message: value ${i} has no length`);
      const len = (frame[pos]! << 24) | (frame[pos + 1]! << 16) | (frame[pos + 2]! << 8) | frame[pos + 3]!;
      const vs = pos + 4;
      const ve = len > 0 ? vs + len : vs;
      if (len < -1 || ve > frame.length) throw new ProtocolError(`malformed DataRow message: value ${i} claims ${len} bytes`);
      if (len >= 0 && rp.mode[i] !== NONE) this.maskSized(rp, i, frame, pos, vs, ve);
      pos = ve;
    }
    return this.finish(frame.length) ?? frame;
  }

  /** Mask a length-prefixed value (DataRow, binary COPY) whose Int32 length is at `lenPos`. */
  maskSized(rp: RowPlan, i: number, src: Buffer, lenPos: number, vs: number, ve: number): void {
    const out = this.#out;
    const mode = rp.mode[i]!;
    const flags = rp.flags[i]!;
    const pre = vs + rp.prefix[i]!;
    if ((flags & FLAG_BYTEA) !== 0 && mode !== NULLIFY) {
      const m = this.byteaMask(src, vs, ve, flags, mode === DETECT ? -1 : rp.rule[i]!);
      if (m === undefined) return;
      this.cut(lenPos);
      out.int32(m.length);
      out.bytes(m, 0, m.length);
      this.#copied = ve;
      return;
    }
    if (mode === DETECT && (flags & FLAG_DECODE) !== 0) {
      // Read as text (binary-scan.ts); a hit cannot be written back into the binary form: NULL.
      if (!binaryHit(rp.types[i]!, src, vs, ve, (flags & FLAG_SECRET) !== 0 ? this.#scanSecret : this.#scanPlain, rp.headers[i])) return;
      this.cut(lenPos);
      out.int32(-1);
      this.#copied = ve;
      return;
    }
    if (mode === DETECT) {
      const spans = this.#spans;
      spans.clear();
      scanSpans(src, pre, ve, this.#plan.detectors, (flags & FLAG_SECRET) !== 0, spans);
      if (spans.length === 0) return;
      this.cut(lenPos);
      const at = out.length;
      out.int32(0);
      out.bytes(src, vs, pre);
      this.writeSpans(src, pre, ve);
      out.setInt32(at, out.length - at - 4);
      this.#copied = ve;
      return;
    }
    const rule = rp.rule[i]!;
    this.count(rule);
    this.cut(lenPos);
    if (mode === NULLIFY) {
      out.int32(-1);
    } else {
      const at = out.length;
      out.int32(0);
      out.bytes(src, vs, pre);
      this.writeWhole(src, pre, ve, this.#styles[rule]!, flags, out);
      out.setInt32(at, out.length - at - 4);
    }
    this.#copied = ve;
  }

  // ───────────────────────────── values ─────────────────────────────

  /** binaryHit's scans: each hit counted by its detector. */
  readonly #scanPlain: Scan = (buf, s, e) => this.#scanCounted(buf, s, e, false);
  readonly #scanSecret: Scan = (buf, s, e) => this.#scanCounted(buf, s, e, true);

  #scanCounted(buf: Buffer, s: number, e: number, secret: boolean): boolean {
    if (!this.scan(buf, s, e, secret)) return false;
    const spans = this.#spans;
    for (let k = 0; k < spans.length; k++) this.count(this.#detBase + spans.kinds[k]!);
    return true;
  }

  scan(src: Buffer, s: number, e: number, secret: boolean): boolean {
    const spans = this.#spans;
    spans.clear();
    scanSpans(src, s, e, this.#plan.detectors, secret, spans);
    return spans.length !== 0;
  }

  /** A whole-value mask: json values as a JSON string, bpchar without its padding. */
  writeWhole(src: Buffer, s: number, e: number, style: MaskStyle, flags: number, out: OutBuffer): void {
    // bpchar's padding is not part of the value (what partial keeps, what hash covers).
    if ((flags & FLAG_BPCHAR) !== 0 && (style === 'partial' || style === 'hash')) while (e > s && src[e - 1] === SPACE) e--;
    if ((flags & FLAG_JSON) !== 0) {
      out.byte(QUOTE);
      writeMask(out, style, src, s, e, this.#key, 'none');
      out.byte(QUOTE);
    } else {
      writeMask(out, style, src, s, e, this.#key, 'auto');
    }
  }

  /** Write src[s, e) with the spans in this.#spans masked. */
  writeSpans(src: Buffer, s: number, e: number): void {
    const out = this.#out;
    const spans = this.#spans;
    let p = s;
    for (let k = 0; k < spans.length; k++) {
      const kind = spans.kinds[k]!;
      out.bytes(src, p, spans.starts[k]!);
      writeMask(out, this.#styles[this.#detBase + kind]!, src, spans.starts[k]!, spans.ends[k]!, this.#key, keepFor(DETECTOR_NAMES[kind]!));
      p = spans.ends[k]!;
      this.count(this.#detBase + kind);
    }
    out.bytes(src, p, e);
  }

  /**
   * A bytea value masked (bytea.ts): `rule` >= 0 for a masked column, -1 for detectors.
   * Undefined when it passes unchanged; otherwise a view to copy at once.
   */
  byteaMask(src: Buffer, s: number, e: number, flags: number, rule: number): Buffer | undefined {
    const r = this.#bytea.mask(src, s, e, (flags & FLAG_BINARY) !== 0, rule >= 0 ? this.#styles[rule] : undefined, (flags & FLAG_SECRET) !== 0);
    if (r === undefined) return undefined;
    if (rule >= 0) this.count(rule);
    else if (r.unreadable) this.countRegions({ [BYTEA_UNREADABLE_RULE]: 1 });
    for (const kind of r.kinds) this.count(this.#detBase + kind);
    return r.bytes;
  }

  // ───────────────────────────── counts ─────────────────────────────

  count(rule: number): void {
    this.#values++;
    this.#counts[rule]!++;
  }

  /** Values masked outside rows (errors, notices, …), by rule or detector name. */
  countRegions(byRule: Record<string, number>): void {
    for (const [name, n] of Object.entries(byRule)) {
      this.#values += n;
      const idx = this.#rules.names.indexOf(name);
      if (idx >= 0) this.#counts[idx]! += n;
      else this.#otherCounts.set(name, (this.#otherCounts.get(name) ?? 0) + n);
    }
  }

  /** Values masked so far, by rule (`column:<pattern>`) or detector name. */
  counts(): { values: number; byRule: Record<string, number> } {
    const byRule: Record<string, number> = {};
    const names = this.#rules.names;
    this.#counts.forEach((n, i) => {
      if (n > 0) byRule[names[i]!] = n;
    });
    for (const [name, n] of this.#otherCounts) byRule[name] = (byRule[name] ?? 0) + n;
    return { values: this.#values, byRule };
  }

  // ───────────────────────────── lazy rewriting ─────────────────────────────

  get out(): OutBuffer {
    return this.#out;
  }

  get started(): boolean {
    return this.#started;
  }

  begin(src: Buffer, copyFrame: boolean): void {
    this.#src = src;
    this.#copied = 0;
    this.#started = false;
    this.#copyFrame = copyFrame;
  }

  /** Start the output if needed and copy the source up to `at`. */
  cut(at: number): void {
    const out = this.#out;
    if (!this.#started) {
      out.begin();
      if (this.#copyFrame) {
        out.byte(BackendType.copyData);
        out.int32(0);
      }
      this.#started = true;
    }
    out.bytes(this.#src, this.#copied, at);
    this.#copied = at;
  }

  resume(at: number): void {
    this.#copied = at;
  }

  /** The rewritten message (source copied up to `until`), or undefined when nothing changed. */
  finish(until: number): Buffer | undefined {
    if (!this.#started) return undefined;
    const out = this.#out;
    out.bytes(this.#src, this.#copied, until);
    out.setInt32(1, out.length - 1);
    this.#started = false;
    return out.finish();
  }
}
