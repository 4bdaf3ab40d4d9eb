/**
 * The row plans of the result masker (proxy-masking.ts): what each value of a result gets
 * (nothing, the rule's style over the whole value, NULL, or the detectors), from a Shape
 * (mask-shape.ts) under the formats in effect. A RowPlan is typed arrays that the row
 * rewriter (mask-row-rewriter.ts) and the COPY masker (mask-copy.ts) read per value.
 */
import { BYTEA_OID } from '../masking/bytea.js';
import type { MaskingPlan } from '../masking/rules.js';
import type { MaskRules, NoticeSink } from './mask-rules.js';
import type { Shape } from './mask-shape.js';
import { BINARY_TEXT, decodesBinary, NOT_STRINGISH } from './binary-scan.js';

/** What a value of a result column gets. */
export const NONE = 0;
/** The rule's style over the whole value. */
export const WHOLE = 1;
/** SQL NULL (style null, or a masked binary value of a non-text type). */
export const NULLIFY = 2;
/** Detectors; mask the spans they find. */
export const DETECT = 3;

export const FLAG_JSON = 1;
export const FLAG_BPCHAR = 2;
export const FLAG_SECRET = 4;
/** bytea: decoded before it is scanned or masked (bytea.ts). */
export const FLAG_BYTEA = 8;
/** With FLAG_BYTEA: binary format (the bytes), else text (hex or escape). */
export const FLAG_BINARY = 16;
/** With DETECT: a binary value read as text first (binary-scan.ts, by RowPlan.types); a hit withholds it whole (NULL). */
export const FLAG_DECODE = 32;

const JSON_TYPES = new Set([114, 3802]);
const BPCHAR = 1042;

/** Per-column work for one result (a RowDescription under the formats in effect). */
export class RowPlan {
  readonly mode: Uint8Array;
  readonly rule: Int32Array;
  readonly prefix: Uint8Array;
  readonly flags: Uint8Array;
  /** Type OIDs, for FLAG_DECODE (the built-in type a value is read as). */
  readonly types: Uint32Array;
  /** For FLAG_DECODE of an array read as a built-in one: the element type its header names (0: the built-in's). */
  readonly headers: Uint32Array;
  /** Index of the last column with work; -1 when none. */
  last = -1;

  constructor(readonly size: number) {
    this.mode = new Uint8Array(size);
    this.rule = new Int32Array(size).fill(-1);
    this.prefix = new Uint8Array(size);
    this.flags = new Uint8Array(size);
    this.types = new Uint32Array(size);
    this.headers = new Uint32Array(size);
  }

  get active(): boolean {
    return this.last >= 0;
  }
}

/** Builds RowPlans; keeps the fail-closed plans by column count and format. */
export class RowPlanBuilder {
  readonly #plan: MaskingPlan;
  readonly #rules: MaskRules;
  readonly #notices: NoticeSink;
  readonly #unknownPlans = new Map<number, RowPlan>();

  constructor(plan: MaskingPlan, rules: MaskRules, notices: NoticeSink) {
    this.#plan = plan;
    this.#rules = rules;
    this.#notices = notices;
  }

  /**
   * Columns of unknown origin. With column rules: every value masked (fail closed).
   * Otherwise detectors on values known to be text.
   */
  unknownPlan(n: number, format: ((i: number) => number) | number | undefined): RowPlan {
    const key = typeof format === 'number' ? n * 4 + format : format === undefined ? n * 4 + 2 : -1;
    const cached = key >= 0 ? this.#unknownPlans.get(key) : undefined;
    if (cached) return cached;
    const fmt = (i: number): number | undefined => (typeof format === 'number' ? format : format?.(i));
    const plan = new RowPlan(n);
    const strict = this.#plan.columns.length > 0;
    if (strict) this.#notices.notice('unknown-shape', 'agentgate: the columns of a result could not be identified, so every value in it is masked');
    const unresolved = this.#rules.unresolved;
    for (let i = 0; i < n; i++) {
      const f = fmt(i);
      if (strict) {
        const style = this.#rules.styles[unresolved]!;
        plan.mode[i] = f === 0 && style !== 'null' ? WHOLE : NULLIFY;
        plan.rule[i] = unresolved;
      } else if (f !== 1 && this.#plan.detectors !== 0) {
        // Format unknown too: read as text (most results are), so nothing slips through.
        plan.mode[i] = DETECT;
      } else if (this.#plan.detectors !== 0) {
        // Binary of a type not known: the detectors cannot read it (binary-scan.ts).
        this.#unreadable(plan, i, 'a result whose columns were not described');
      } else continue;
      plan.last = i;
    }
    if (key >= 0) this.#unknownPlans.set(key, plan);
    return plan;
  }

  buildPlan(shape: Shape, formatFor: (i: number) => number, size = shape.fields.length): RowPlan {
    const plan = new RowPlan(size);
    const rules = this.#rules;
    for (let i = 0; i < size; i++) {
      const f = shape.fields[i];
      const fmt = formatFor(i);
      // Unknown type (a COPY whose columns were not looked up): text is scanned, binary is not.
      // A type the catalog says is sent as a built-in one is read as that one (wire-types.ts).
      const typeOid = f?.wire?.oid ?? f?.typeOid ?? 0;
      const binaryText = BINARY_TEXT.get(typeOid) ?? 0;
      // bytea is decoded, masked and written back as bytea in either format.
      const bytea = typeOid === BYTEA_OID;
      let mode = NONE;
      if (f !== undefined && f.rule >= 0) {
        const style = rules.styles[f.rule]!;
        // A whole-value mask written into a number or a boolean would not parse: NULL.
        if (fmt === 0 && NOT_STRINGISH.has(typeOid) && (f.rule === rules.derived || f.rule === rules.unresolved)) mode = NULLIFY;
        else if (fmt === 0 || binaryText !== 0 || bytea) mode = style === 'null' ? NULLIFY : WHOLE;
        else {
          mode = NULLIFY;
          this.#notices.notice(
            `binary:${f.display}`,
            `masked binary column ${f.display} returned as NULL (agentgate masks binary values of text-like types only; ask for text format to see the mask)`,
          );
        }
        plan.rule[i] = f.rule;
      } else if (this.#plan.detectors !== 0) {
        if (fmt === 0 ? !NOT_STRINGISH.has(typeOid) : binaryText !== 0 || bytea) mode = DETECT;
        else if (decodesBinary(typeOid)) {
          mode = DETECT;
          plan.flags[i] = FLAG_DECODE;
          plan.types[i] = typeOid;
          plan.headers[i] = f?.wire?.header ?? 0;
        } else if (!NOT_STRINGISH.has(typeOid)) {
          // A binary form the detectors cannot read (a record, range, enum, extension type …).
          this.#unreadable(plan, i, f?.display ?? 'columns of unknown type');
          continue;
        }
      }
      if (mode === NONE) continue;
      plan.mode[i] = mode;
      plan.prefix[i] = fmt === 1 && binaryText === 2 ? 1 : 0;
      plan.flags[i] =
        plan.flags[i]! |
        (JSON_TYPES.has(typeOid) ? FLAG_JSON : 0) |
        (typeOid === BPCHAR ? FLAG_BPCHAR : 0) |
        (f?.secret ? FLAG_SECRET : 0) |
        (bytea ? FLAG_BYTEA | (fmt !== 0 ? FLAG_BINARY : 0) : 0);
      plan.last = i;
    }
    return plan;
  }

  /** A binary value the detectors cannot read goes out as NULL (counted as unresolved), with a notice. */
  #unreadable(plan: RowPlan, i: number, what: string): void {
    plan.mode[i] = NULLIFY;
    plan.rule[i] = this.#rules.unresolved;
    plan.last = i;
    this.#notices.notice(
      `binary-unreadable:${what}`,
      `agentgate: binary values of ${what} are returned as NULL: agentgate scans binary values of text-like types, int8, numeric and their arrays only; ask for text format to see them`,
    );
  }
}
