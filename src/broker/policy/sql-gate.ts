/**
 * The Postgres proxy's statement gate for one session: classify (cached by text, see
 * sql-classify.ts), decide by policy, and shape the verdict the proxy and the reviewers
 * see. Verdicts are also cached per session, since identity and target are fixed there.
 *
 * With function effects the session does: `c = gate.classify(sql)` (synchronous) →
 * `gate.functionsOf(c)` → resolve those names in the catalog (function-catalog.ts) and judge
 * them (judgeFunctionEffects) → `gate.judge(sql, effects)`. A verdict depends on the
 * effects only through the names the statement calls, so the session cache keys such a
 * verdict by the text plus, per called name, whether it is effectful, unknown or neither.
 */
import type { BrokerConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import type { GateVerdict, StatementGate } from '../postgres/proxy-gate.js';
import type { FunctionEffects } from './function-effects.js';
import { classifySql, type SqlClassification } from './sql-classify.js';
import { decideSql } from './sql-rules.js';
import { sqlShape } from './sql-shape.js';
import { Lru } from './lru.js';

/**
 * Classifications by shape (numbers replaced, see sql-shape.ts), shared by all sessions:
 * one parse serves every `… WHERE id = <n>`. Only parsed texts go in, and a `review`
 * verdict is always re-classified from the exact text, whose fingerprint a grant names.
 */
const byShape = new Lru<string, { functions: ReadonlySet<string>; c: SqlClassification }>({
  maxEntries: 2000,
  maxBytes: 8 * 1024 * 1024,
  sizeOf: (k) => 2 * k.length + 2048,
});

const SESSION_CACHE = 256;

/** One Set per config's list, so the classifier's cache (keyed by text and this Set) is shared by sessions. */
const functionSets = new WeakMap<readonly string[], ReadonlySet<string>>();

/** Function and operator names of every statement, each once, in order of appearance. */
export function functionsOfClassification(c: SqlClassification): { functions: string[]; operators: string[] } {
  if (!c.ok) return { functions: [], operators: [] };
  const functions = new Set<string>();
  const operators = new Set<string>();
  for (const s of c.statements) {
    for (const f of s.functions) functions.add(f);
    for (const o of s.operators) operators.add(o);
  }
  return { functions: [...functions], operators: [...operators] };
}

/** Per called name: `e` effectful, `u` unknown, `-` neither. Names are fixed by the text, so this identifies the effects that matter. */
function effectsKey(c: SqlClassification, effects: FunctionEffects): string {
  const { functions, operators } = functionsOfClassification(c);
  let key = '';
  for (const n of functions) key += effects.effectful.has(n) ? 'e' : effects.unknown.has(n) ? 'u' : '-';
  key += '|';
  for (const n of operators) key += effects.effectful.has(n) ? 'e' : effects.unknown.has(n) ? 'u' : '-';
  return key;
}

export function createSqlGate(identity: Identity, targetName: string, config: Pick<BrokerConfig, 'policies' | 'dangerousFunctions'>): StatementGate {
  let dangerousFunctions = functionSets.get(config.dangerousFunctions);
  if (!dangerousFunctions) {
    dangerousFunctions = new Set(config.dangerousFunctions);
    functionSets.set(config.dangerousFunctions, dangerousFunctions);
  }
  const functions = dangerousFunctions;
  const plain = new Map<string, GateVerdict>();
  /** Verdicts decided with effects, keyed by `<effects key>\0<text>`; kept apart from `plain`. */
  const withEffects = new Map<string, GateVerdict>();

  /** The shape cache's classification when there is one (`shaped`), else the exact text's. */
  function classifyShaped(sql: string): { c: SqlClassification; shape: string | undefined; shaped: boolean } {
    const shape = sqlShape(sql);
    const hit = shape === undefined ? undefined : byShape.get(shape);
    if (hit && hit.functions === functions) return { c: hit.c, shape, shaped: true };
    const c = classifySql(sql, { dangerousFunctions: functions });
    if (shape !== undefined && c.ok) byShape.set(shape, { functions, c });
    return { c, shape, shaped: false };
  }

  return {
    classify(sql: string): SqlClassification {
      return classifyShaped(sql).c;
    },
    functionsOf: functionsOfClassification,
    judge(sql: string, effects?: FunctionEffects): GateVerdict {
      let key = sql;
      let classified: ReturnType<typeof classifyShaped> | undefined;
      if (effects) {
        classified = classifyShaped(sql);
        key = `${effectsKey(classified.c, effects)}\0${sql}`;
      }
      const cache = effects ? withEffects : plain;
      const hit = cache.get(key);
      if (hit) return hit;
      classified ??= classifyShaped(sql);
      let c = classified.c;
      let d = decideSql(identity, targetName, config.policies, c, effects);
      if (d.effect === 'review' && classified.shaped) {
        c = classifySql(sql, { dangerousFunctions: functions });
        d = decideSql(identity, targetName, config.policies, c, effects);
      }
      const { statement: _statement, ...decision } = d;
      const verdict: GateVerdict = { ...decision, fingerprint: c.fingerprint, classification: summarize(c) };
      if (cache.size >= SESSION_CACHE) cache.delete(cache.keys().next().value as string);
      cache.set(key, verdict);
      return verdict;
    },
  };
}

/** Kinds, relations and flags across the string's statements: small, and free of values. */
export function summarize(c: SqlClassification): Record<string, unknown> {
  if (!c.ok) return { parse_error: c.error };
  const kinds = new Set<string>();
  const reads = new Set<string>();
  const writes = new Set<string>();
  const flags = new Set<string>();
  for (const s of c.statements) {
    for (const k of s.kinds) kinds.add(k);
    for (const r of s.reads) reads.add(r);
    for (const w of s.writes) writes.add(w);
    for (const f of s.flags) flags.add(f);
  }
  return { kinds: [...kinds], reads: [...reads], writes: [...writes], flags: [...flags], statements: c.statements.length };
}
