/**
 * The Postgres proxy's statement gate for one session: classify (cached by text, see
 * sql-classify.ts), decide by policy, and shape the verdict the proxy and the reviewers
 * see. Verdicts are also cached per session, since identity and target are fixed there.
 */
import type { BrokerConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import type { GateVerdict, StatementGate } from '../postgres/proxy-gate.js';
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

export function createSqlGate(identity: Identity, targetName: string, config: Pick<BrokerConfig, 'policies' | 'dangerousFunctions'>): StatementGate {
  let dangerousFunctions = functionSets.get(config.dangerousFunctions);
  if (!dangerousFunctions) {
    dangerousFunctions = new Set(config.dangerousFunctions);
    functionSets.set(config.dangerousFunctions, dangerousFunctions);
  }
  const functions = dangerousFunctions;
  const cache = new Map<string, GateVerdict>();
  return {
    judge(sql: string): GateVerdict {
      const hit = cache.get(sql);
      if (hit) return hit;
      const shape = sqlShape(sql);
      const shaped = shape === undefined ? undefined : byShape.get(shape);
      let c = shaped && shaped.functions === functions ? shaped.c : classifySql(sql, { dangerousFunctions: functions });
      let d = decideSql(identity, targetName, config.policies, c);
      if (d.effect === 'review' && shaped?.c === c) {
        c = classifySql(sql, { dangerousFunctions: functions });
        d = decideSql(identity, targetName, config.policies, c);
      }
      if (shape !== undefined && !shaped && c.ok) byShape.set(shape, { functions, c });
      const { statement: _statement, ...decision } = d;
      const verdict: GateVerdict = { ...decision, fingerprint: c.fingerprint, classification: summarize(c) };
      if (cache.size >= SESSION_CACHE) cache.delete(cache.keys().next().value as string);
      cache.set(sql, verdict);
      return verdict;
    },
    prepare: () => undefined,
    prepareFunctionCall: () => undefined,
    judgeFunctionCall(oid: number, args: number) {
      const label = `-- function call: oid ${oid} (${args} args)`;
      return { effect: 'deny', policy: null, rule: null, reason: `function call by OID ${oid} cannot be resolved`, fingerprint: `fn:${oid}`, classification: {}, label, builtin: false };
    },
    invalidate: () => undefined,
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
