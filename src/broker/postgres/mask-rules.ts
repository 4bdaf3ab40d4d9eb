/**
 * What the stages of the result masker share (proxy-masking.ts): the rules by index, and
 * the one-time notices. A RowPlan names a column's rule by its index here, so the row
 * path reads a style or bumps a counter without a lookup by name.
 */
import { DETECTOR_NAMES } from '../masking/detectors.js';
import type { MaskingPlan } from '../masking/rules.js';
import type { MaskStyle } from '../masking/styles.js';

const UNRESOLVED_RULE = 'column:unresolved';
/** A computed output that depends on a masked column, or on what cannot be analysed. */
const DERIVED_RULE = 'column:derived';

/** Rule names and styles by index: column rules, then detectors, then the fail-closed rules. */
export class MaskRules {
  readonly names: readonly string[];
  readonly styles: readonly MaskStyle[];
  /** Index of the first detector (DetectorId 0). */
  readonly detBase: number;
  /** A column that could not be resolved (fail closed: masked whole, or NULL when a rule says null). */
  readonly unresolved: number;
  /** A computed output that depends on a masked column or cannot be analysed. */
  readonly derived: number;

  constructor(plan: MaskingPlan) {
    this.detBase = plan.columns.length;
    this.unresolved = this.detBase + DETECTOR_NAMES.length;
    this.derived = this.unresolved + 1;
    this.names = [...plan.columns.map((r) => r.name), ...DETECTOR_NAMES, UNRESOLVED_RULE, DERIVED_RULE];
    const strict = plan.strictestColumnStyle === 'null' ? 'null' : 'full';
    // What cannot be identified is masked whole: a partial mask of an unknown value could
    // still show part of a secret (an email's domain, a card's last digits).
    this.styles = [...plan.columns.map((r) => r.style), ...plan.detectorStyles, strict, strict];
  }
}

/** Where a stage reports something the client should be told once. */
export interface NoticeSink {
  /** Queue `text` unless a notice with this `key` was queued before. */
  notice(key: string, text: string): void;
}

/** One-time notices, in the order they were raised. */
export class Notices implements NoticeSink {
  readonly #queue: string[] = [];
  readonly #seen = new Set<string>();

  notice(key: string, text: string): void {
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#queue.push(text);
  }

  /** The next notice text, if any. */
  take(): string | undefined {
    return this.#queue.shift();
  }
}
