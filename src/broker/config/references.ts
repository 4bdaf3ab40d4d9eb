/**
 * Checks across sections that a per-key schema cannot see: policies and masking must name
 * targets that exist, names must be usable. Runs on the raw parsed YAML (not the schema's
 * output) so it still reports when other keys are broken; it skips whatever has the wrong
 * shape, since the schema reports that.
 */
import { globMatch } from '../glob.js';
import type { Problem } from './issues.js';
import { didYouMean } from './suggest.js';

const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function checkReferences(raw: unknown): Problem[] {
  const problems: Problem[] = [];
  if (!isPlainObject(raw)) return problems;

  const targets = isPlainObject(raw['targets']) ? Object.keys(raw['targets']) : undefined;
  for (const name of targets ?? []) {
    if (!TARGET_NAME.test(name)) {
      problems.push({ path: ['targets', name], text: 'a target name may use only letters, digits, ".", "_" and "-", and must start with a letter or digit' });
    }
  }

  const policies = Array.isArray(raw['policies']) ? raw['policies'] : [];
  const seen = new Map<string, number>();
  policies.forEach((policy: unknown, i) => {
    if (!isPlainObject(policy)) return;
    const name = policy['name'];
    if (typeof name === 'string') {
      const first = seen.get(name);
      if (first !== undefined) problems.push({ path: ['policies', i, 'name'], text: `duplicate policy name ${JSON.stringify(name)} (also policies.${first}.name)` });
      else seen.set(name, i);
    }
    const refs = policy['targets'];
    if (targets === undefined || !Array.isArray(refs)) return;
    refs.forEach((ref: unknown, j) => {
      if (typeof ref !== 'string' || ref === '') return;
      if (targets.some((t) => globMatch(ref, t))) return;
      const text = ref.includes('*')
        ? `no target matches ${JSON.stringify(ref)}`
        : `unknown target ${JSON.stringify(ref)}${didYouMean(ref, targets)}`;
      problems.push({ path: ['policies', i, 'targets', j], text });
    });
  });

  if (targets !== undefined && isPlainObject(raw['masking'])) {
    for (const key of Object.keys(raw['masking'])) {
      if (!targets.includes(key)) problems.push({ path: ['masking', key], text: `unknown target${didYouMean(key, targets)}` });
    }
  }
  return problems;
}
