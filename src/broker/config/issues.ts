/**
 * Turns zod issues into problem lines of one form: `key.path: what was expected, got what
 * was found`. Found values are shown JSON-quoted, except under credential keys (and
 * anywhere a mapping or list was expected), where only the kind of value is named.
 */
import type { z } from 'zod';
import { CREDENTIAL_KEYS } from './schema.js';

export type KeyPath = readonly PropertyKey[];

export interface Problem {
  path: KeyPath;
  text: string;
}

type Issue = z.core.$ZodIssue;

export function formatPath(path: KeyPath): string {
  return path.length === 0 ? '(top level)' : path.map(String).join('.');
}

export function problemLine(p: Problem): string {
  return `${formatPath(p.path)}: ${p.text}`;
}

export function describeIssues(issues: readonly Issue[]): Problem[] {
  const out: Problem[] = [];
  const suggested = new Set<string>();
  for (const issue of issues) collect(issue, [], out, suggested);
  // A misspelt key already says what to fix; "required, missing" for the key it meant is noise.
  return out.filter((p) => !(p.text.startsWith('required') && suggested.has(formatPath(p.path))));
}

function collect(issue: Issue, prefix: KeyPath, out: Problem[], suggested: Set<string>): void {
  const path = [...prefix, ...issue.path];
  switch (issue.code) {
    case 'invalid_union': {
      if (issue.discriminator !== undefined) {
        const input = issue.input;
        const found = typeof input === 'object' && input !== null ? (input as Record<string, unknown>)[issue.discriminator] : undefined;
        // zod reports the discriminator's allowed values as `options` (not in its issue type).
        const options = (issue as { options?: unknown[] }).options ?? [];
        const expected = `expected one of ${options.map(String).join(', ')}`;
        out.push({ path, text: found === undefined ? 'required, missing' : `${expected}${got(found, path, false)}` });
        return;
      }
      // When exactly one branch got past the value's own type, its issues are the useful ones.
      const deep = issue.errors.filter((branch) => branch.some((i) => i.path.length > 0 || (i.code !== 'invalid_type' && i.code !== 'invalid_value')));
      if (deep.length === 1) {
        for (const inner of deep[0]!) collect(inner, path, out, suggested);
        return;
      }
      out.push({ path, text: `${expectation(issue)}${got(issue.input, path, true)}` });
      return;
    }
    case 'unrecognized_keys':
      for (const key of issue.keys) out.push({ path: [...path, key], text: 'unknown key' });
      return;
    case 'custom': {
      const suggestion = issue.params?.['suggestion'];
      if (typeof suggestion === 'string') suggested.add(formatPath([...path.slice(0, -1), suggestion]));
      const text = issue.message.startsWith('expected') ? `${issue.message}${got(issue.input, path, false)}` : issue.message;
      out.push({ path, text });
      return;
    }
    case 'invalid_type':
    case 'invalid_value':
      // With reportInput on, only an absent key reaches a type or enum check as undefined.
      if (issue.input === undefined) {
        out.push({ path, text: 'required, missing' });
        return;
      }
      out.push({ path, text: `${expectation(issue)}${got(issue.input, path, issue.code === 'invalid_type' && CONTAINERS.has(issue.expected))}` });
      return;
    default:
      out.push({ path, text: `${expectation(issue)}${got(issue.input, path, false)}` });
  }
}

/** The issue's own message when the schema set one ("expected …"), else one derived from its code. */
function expectation(issue: Issue): string {
  if (issue.message.startsWith('expected')) return issue.message;
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    case 'invalid_value':
      return issue.values.length === 1 ? `expected ${JSON.stringify(issue.values[0])}` : `expected one of ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      if (issue.origin === 'string') return 'expected a non-empty string';
      if (issue.origin === 'array') return `expected at least ${String(issue.minimum)} item(s)`;
      return `expected at least ${String(issue.minimum)}`;
    case 'too_big':
      if (issue.origin === 'array') return `expected at most ${String(issue.maximum)} item(s)`;
      return `expected at most ${String(issue.maximum)}`;
    case 'invalid_format':
      return `expected a ${issue.format}`;
    default:
      return `expected something else (${issue.message})`;
  }
}

const CONTAINERS: ReadonlySet<string> = new Set(['object', 'array', 'record', 'map', 'set']);

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
};

function isCredentialPath(path: KeyPath): boolean {
  const last = path.at(-1);
  return path[0] === 'store' || (typeof last === 'string' && CREDENTIAL_KEYS.has(last));
}

/** `, got …` — the value itself only where showing it is safe. */
function got(input: unknown, path: KeyPath, kindOnly: boolean): string {
  if (input === undefined) return '';
  if (input === null) return ', got an empty value';
  if (isCredentialPath(path)) return `, got ${kindOf(input)}`;
  if (kindOnly || typeof input === 'object') return `, got ${kindOf(input)}`;
  if (typeof input === 'string') return `, got ${JSON.stringify(input.length > 60 ? input.slice(0, 57) + '…' : input)}`;
  return `, got ${String(input)}`;
}

function kindOf(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : 'a list';
  if (typeof v === 'object') return Object.keys(v).length === 0 ? 'an empty mapping' : 'a mapping';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  if (typeof v === 'boolean') return 'a boolean';
  if (v === '') return 'an empty string';
  return `a ${typeof v}`;
}
