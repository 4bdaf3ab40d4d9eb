/**
 * Masking rules compiled for one session: the target's `masking` entry, plus what the
 * deciding policy adds (`extend`), or nothing at all (`off`, e.g. a DBA policy).
 *
 * Column patterns are globs (`*` = any run of characters) matched case-insensitively
 * against `schema.table.column`, `table.column` and `column` of a real table column, so
 * `*.email`, `users.ssn`, `public.users.email` and `*password*` all do what they say. A
 * result column computed by an expression has no table: it matches on its label against
 * each pattern's column part (`*.email` → `email`); a pattern whose column part is just
 * `*` (`secrets.*`) names a table's columns and matches no expression.
 */
import { ConfigError } from '../../errors.js';
import type { MaskingConfig, PolicyConfig } from '../config/types.js';
import { compileGlob, type Glob } from '../glob.js';
import { DETECTOR_NAMES, parseDetectorNames, type DetectorSet } from './detectors.js';
import { moreProtective, MASK_STYLES, type MaskStyle } from './styles.js';

export interface ColumnRule {
  /** How counts and the audit name it: `column:<pattern>`. */
  readonly name: string;
  readonly pattern: string;
  readonly style: MaskStyle;
  /** The whole pattern, lower case. */
  readonly glob: Glob;
  /** The part after the last dot, for expressions; undefined when that part is only `*`. */
  readonly columnGlob: Glob | undefined;
  /** The part before the last dot (`public.users`, `*`), undefined for a bare column pattern. */
  readonly tableGlob: Glob | undefined;
}

export interface MaskingPlan {
  readonly target: string;
  readonly columns: readonly ColumnRule[];
  /** Detectors that run on string values. */
  readonly detectors: DetectorSet;
  /** Style per detector id (index in DETECTOR_NAMES); meaningful where `detectors` has the bit. */
  readonly detectorStyles: readonly MaskStyle[];
  /**
   * The most protective style among the column rules: what a value gets when its column
   * cannot be resolved (fail closed). Undefined when there are no column rules.
   */
  readonly strictestColumnStyle: MaskStyle | undefined;
}

/** A real table column, as far as it is known. */
export interface ColumnRef {
  schema?: string | undefined;
  table?: string | undefined;
  column: string;
}

/**
 * Problems with one masking entry, as `path: text` lines (the config schema accepts any
 * detector name; this names the unknown ones).
 */
export function maskingConfigProblems(m: MaskingConfig, path = 'masking'): string[] {
  const problems: string[] = [];
  const { unknown } = parseDetectorNames(m.detectors);
  for (const name of unknown) {
    problems.push(`${path}.detectors: unknown detector "${name}" (known: ${[...DETECTOR_NAMES, 'ssn', 'all'].join(', ')})`);
  }
  m.columns.forEach((c, i) => {
    if (c.trim() === '' || c.trim() === '*') problems.push(`${path}.columns[${i}]: "${c}" would mask every column; list the columns (or use detectors)`);
  });
  if (!MASK_STYLES.includes(m.style)) problems.push(`${path}.style: expected one of ${MASK_STYLES.join(', ')}`);
  return problems;
}

/**
 * The plan for a session on `target`, decided by a policy whose masking mode is
 * `policyMasking` (absent = inherit). Undefined when nothing is to be masked.
 * Throws ConfigError for unknown detector names.
 */
export function compileMaskingPlan(
  target: string,
  masking: Readonly<Record<string, MaskingConfig>>,
  policyMasking?: PolicyConfig['masking'],
): MaskingPlan | undefined {
  if (policyMasking?.mode === 'off') return undefined;
  const sources: { config: MaskingConfig; path: string }[] = [];
  const own = masking[target];
  if (own) sources.push({ config: own, path: `masking.${target}` });
  if (policyMasking?.mode === 'extend') sources.push({ config: policyMasking.rules, path: 'policies[].masking' });

  const problems = sources.flatMap((s) => maskingConfigProblems(s.config, s.path));
  if (problems.length > 0) {
    throw new ConfigError(`invalid masking rules for target ${target}`, problems, { hint: 'fix the masking section of the broker config' });
  }

  const columns: ColumnRule[] = [];
  let detectors = 0;
  const detectorStyles: MaskStyle[] = DETECTOR_NAMES.map(() => 'partial');
  let strictest: MaskStyle | undefined;
  for (const { config } of sources) {
    for (const pattern of config.columns) {
      columns.push(compileColumnRule(pattern.trim(), config.style));
      strictest = strictest === undefined ? config.style : moreProtective(strictest, config.style);
    }
    const { set } = parseDetectorNames(config.detectors);
    for (let id = 0; id < DETECTOR_NAMES.length; id++) {
      if ((set & (1 << id)) === 0) continue;
      // Enabled twice (target and policy): the stricter style wins.
      detectorStyles[id] = (detectors & (1 << id)) === 0 ? config.style : moreProtective(detectorStyles[id]!, config.style);
    }
    detectors |= set;
  }
  if (columns.length === 0 && detectors === 0) return undefined;
  return { target, columns, detectors, detectorStyles, strictestColumnStyle: strictest };
}

function compileColumnRule(pattern: string, style: MaskStyle): ColumnRule {
  const lower = pattern.toLowerCase();
  const dot = lower.lastIndexOf('.');
  const columnPart = dot < 0 ? lower : lower.slice(dot + 1);
  return {
    name: `column:${pattern}`,
    pattern,
    style,
    glob: compileGlob(lower),
    columnGlob: /^\**$/.test(columnPart) ? undefined : compileGlob(columnPart),
    tableGlob: dot < 0 ? undefined : compileGlob(lower.slice(0, dot)),
  };
}

function pick(best: ColumnRule | undefined, rule: ColumnRule): ColumnRule {
  return best === undefined || moreProtective(best.style, rule.style) !== best.style ? rule : best;
}

/** The rule for a real table column (the most protective when several match), if any. */
export function matchColumn(plan: MaskingPlan, ref: ColumnRef): ColumnRule | undefined {
  if (plan.columns.length === 0) return undefined;
  const column = ref.column.toLowerCase();
  const table = ref.table?.toLowerCase();
  const schema = ref.schema?.toLowerCase();
  const forms = [column];
  if (table !== undefined) {
    forms.push(`${table}.${column}`);
    if (schema !== undefined) forms.push(`${schema}.${table}.${column}`);
  }
  let best: ColumnRule | undefined;
  for (const rule of plan.columns) {
    if (forms.some((f) => rule.glob.test(f))) best = pick(best, rule);
  }
  return best;
}

/** The rule for a computed column, by its label (see the module comment), if any. */
export function matchExpression(plan: MaskingPlan, label: string): ColumnRule | undefined {
  const l = label.toLowerCase();
  let best: ColumnRule | undefined;
  for (const rule of plan.columns) if (rule.columnGlob?.test(l)) best = pick(best, rule);
  return best;
}

/** Whether some column rule could apply to a column of this table. */
export function rulesMayTouchTable(plan: MaskingPlan, schema: string | undefined, table: string | undefined): boolean {
  if (plan.columns.length === 0) return false;
  if (table === undefined) return true;
  const t = table.toLowerCase();
  const qualified = schema === undefined ? undefined : `${schema.toLowerCase()}.${t}`;
  // A bare column pattern (`*password*`) may match a column of any table.
  return plan.columns.some((r) => r.tableGlob === undefined || r.tableGlob.test(t) || (qualified !== undefined && r.tableGlob.test(qualified)));
}
