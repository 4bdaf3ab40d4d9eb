/**
 * Values PostgreSQL echoes in an error's DETAIL, located so masking can hide those of
 * masked columns:
 *
 * - `Key (email)=(a@example.com) already exists.` (unique), `… is not present in table`,
 *   `… is still referenced from table` (foreign key), `… conflicts with existing key
 *   (…)=(…)` (exclusion), `Partition key of the failing row contains (…) = (…).`:
 *   each value of a masked column;
 * - `Failing row contains (…).` (NOT NULL, CHECK): the whole row, since which position
 *   is which column (and which columns the user may see) is not known here.
 *
 * Anything else in an integrity-violation (class 23) DETAIL of a table with masked
 * columns is masked whole: a localized server (lc_messages) words these differently,
 * and a detail we cannot read is not let through. Offsets are bytes (the text is read as
 * latin1, one character per byte).
 */
import { matchColumn, matchExpression, rulesMayTouchTable, type ColumnRule, type MaskingPlan } from './rules.js';
import { moreProtective, type MaskStyle } from './styles.js';
import type { TextRegion } from './sql-text.js';

const KEY_ENDS = [') already exists', ') is not present', ') is still referenced', ') conflicts with', ').'];
const FAILING_ROW = 'ailing row contains (';

export function detailRegions(
  buf: Buffer,
  start: number,
  end: number,
  plan: MaskingPlan,
  schema: string | undefined,
  table: string | undefined,
  sqlstate: string | undefined,
): TextRegion[] {
  const regions: TextRegion[] = [];
  if (plan.columns.length === 0 || end <= start || !rulesMayTouchTable(plan, schema, table)) return regions;
  const text = buf.toString('latin1', start, end);
  const strictest: MaskStyle = plan.strictestColumnStyle ?? 'full';
  let understood = false;
  let from = 0;
  for (;;) {
    const eq1 = text.indexOf(')=(', from);
    const eq2 = text.indexOf(') = (', from);
    const idx = eq1 < 0 ? eq2 : eq2 < 0 ? eq1 : Math.min(eq1, eq2);
    if (idx < 0) break;
    const open = text.lastIndexOf('(', idx);
    const valsStart = idx + (idx === eq1 ? 3 : 5);
    let valsEnd = -1;
    for (const suffix of KEY_ENDS) {
      const at = text.indexOf(suffix, valsStart);
      if (at >= 0 && (valsEnd < 0 || at < valsEnd)) valsEnd = at;
    }
    if (valsEnd < 0) valsEnd = text.lastIndexOf(')');
    if (open < from || valsEnd < valsStart) break;
    understood = true;
    const cols = text.slice(open + 1, idx).split(', ');
    const rules = cols.map((c) => ruleFor(plan, schema, table, c));
    if (rules.some((r) => r !== undefined)) {
      const vals = text.slice(valsStart, valsEnd).split(', ');
      if (vals.length === cols.length) {
        let at = valsStart;
        vals.forEach((v, k) => {
          const rule = rules[k];
          if (rule && v.length > 0) regions.push({ start: start + at, end: start + at + v.length, style: rule.style, keep: 'auto', rule: rule.name });
          at += v.length + 2;
        });
      } else {
        // A value holding ", " makes positions ambiguous: mask them all.
        const style = rules.reduce<MaskStyle>((s, r) => (r ? moreProtective(s, r.style) : s), 'partial');
        const rule = rules.find((r) => r !== undefined)!;
        regions.push({ start: start + valsStart, end: start + valsEnd, style, keep: 'none', rule: rule.name });
      }
    }
    from = valsEnd + 1;
  }
  const fr = text.indexOf(FAILING_ROW);
  if (fr >= 0 && text.indexOf(') = (', fr) < 0) {
    const open = fr + FAILING_ROW.length;
    const close = text.lastIndexOf(')');
    understood = true;
    if (close > open) regions.push({ start: start + open, end: start + close, style: strictest, keep: 'none', rule: 'column:row' });
  }
  if (!understood && sqlstate?.startsWith('23')) {
    regions.push({ start, end, style: strictest, keep: 'none', rule: 'column:detail' });
  }
  return regions;
}

/** The rule for a column named in a key description: a name, a quoted name, or an index expression. */
function ruleFor(plan: MaskingPlan, schema: string | undefined, table: string | undefined, col: string): ColumnRule | undefined {
  const names = /^"(.*)"$/.test(col) ? [col.slice(1, -1).replaceAll('""', '"')] : (col.match(/[A-Za-z_][A-Za-z0-9_$]*/g) ?? []);
  for (const column of names) {
    const rule = table !== undefined ? matchColumn(plan, { schema, table, column }) : matchExpression(plan, column);
    if (rule) return rule;
  }
  return undefined;
}
