/**
 * SQL rule matching and the per-string decision.
 *
 * A rule matches a statement when every criterion the rule gives matches (an absent
 * criterion matches anything):
 * - `sql` (kinds; aliases `ddl` = create/alter/drop/truncate/comment, `transaction`): an
 *   `allow` rule needs EVERY kind in `statement.kinds` listed, so an allow for `select` does
 *   not cover a writable CTE that deletes, nor EXPLAIN ANALYZE DELETE. A `deny`/`review`
 *   rule matches when ANY of the statement's kinds is listed.
 * - `relations` (globs, `*` = any run of characters; `!glob` excludes): a relation matches
 *   the list when it matches some positive glob and no negative one. A glob with a dot is
 *   compared with `schema.name`; one without (`users`, `audit_*`) with the name alone, in
 *   any schema. An `allow` rule needs every relation read or written to match; a
 *   `deny`/`review` rule needs any one. A statement touching no relation: allow rules with
 *   `relations` still match, deny/review rules with `relations` do not.
 * - `flags`: the statement carries any listed flag.
 * - Safety default: an `allow` rule never matches a statement flagged `dangerous_function`
 *   or `copy_program` unless the rule's own `flags` names that flag.
 * - A rule with criteria for another protocol (`k8s`) or keys this module does not know
 *   never matches a SQL statement.
 *
 * decideSql: text that does not parse is denied (`cannot parse SQL: <parser message>`).
 * Otherwise each statement is decided on its own (first matching policy, first matching
 * rule, none = deny) and the most restrictive decision wins; `statement` is its index. An
 * empty string (only whitespace or comments) runs nothing and is allowed when a policy
 * gives the identity this target. A statement that would change how the server tokenizes
 * SQL (`hazard`, see sql-classify.ts) is denied whatever the policy says.
 */
import type { PolicyConfig, RuleConfig, SqlFlag } from '../config/types.js';
import { decidingPolicy } from '../access.js';
import { compileGlob, type Glob } from '../glob.js';
import type { Identity } from '../identity/types.js';
import { decide, mostRestrictive, type PolicyDecision } from './decision.js';
import type { ClassifiedStatement, SqlClassification } from './sql-classify.js';
import { expandSqlKinds, type StatementKind } from './sql-kinds.js';

/** Flags an allow rule must name explicitly to cover a statement carrying them. */
const OPT_IN_FLAGS: readonly SqlFlag[] = ['dangerous_function', 'copy_program'];

interface RelationGlob {
  glob: Glob;
  /** Contains a dot: compared with `schema.name`, else with the name alone. */
  qualified: boolean;
}

interface CompiledRule {
  kinds?: Set<StatementKind>;
  relations?: { include: RelationGlob[]; exclude: RelationGlob[] };
  flags?: Set<SqlFlag>;
}

const compiled = new WeakMap<RuleConfig, CompiledRule>();

function compile(rule: RuleConfig): CompiledRule {
  let c = compiled.get(rule);
  if (c) return c;
  c = {};
  if (rule.sql) c.kinds = expandSqlKinds(rule.sql.map((s) => s.toLowerCase()));
  if (rule.relations) {
    const include: RelationGlob[] = [];
    const exclude: RelationGlob[] = [];
    for (const raw of rule.relations) {
      const negated = raw.startsWith('!');
      const pattern = negated ? raw.slice(1) : raw;
      (negated ? exclude : include).push({ glob: compileGlob(pattern), qualified: pattern.includes('.') });
    }
    c.relations = { include, exclude };
  }
  if (rule.flags) c.flags = new Set(rule.flags);
  compiled.set(rule, c);
  return c;
}

/** Relations are `schema.name`; the name is everything after the first dot. */
function relationMatches(list: NonNullable<CompiledRule['relations']>, relation: string): boolean {
  const dot = relation.indexOf('.');
  const name = dot < 0 ? relation : relation.slice(dot + 1);
  const hit = (g: RelationGlob): boolean => g.glob.test(g.qualified ? relation : name);
  return list.include.some(hit) && !list.exclude.some(hit);
}

export function ruleMatchesStatement(rule: RuleConfig, s: ClassifiedStatement): boolean {
  if (rule.k8s !== undefined || Object.keys(rule.extra).length > 0) return false;
  const allow = rule.effect === 'allow';
  const c = compile(rule);
  if (c.kinds) {
    const kinds = c.kinds;
    if (allow ? !s.kinds.every((k) => kinds.has(k)) : !s.kinds.some((k) => kinds.has(k))) return false;
  }
  if (c.relations) {
    const list = c.relations;
    const touched = s.reads.length + s.writes.length;
    const match = (r: string): boolean => relationMatches(list, r);
    if (allow) {
      if (!s.reads.every(match) || !s.writes.every(match)) return false;
    } else if (touched === 0 || !(s.reads.some(match) || s.writes.some(match))) return false;
  }
  if (c.flags) {
    const flags = c.flags;
    if (!s.flags.some((f) => flags.has(f))) return false;
  }
  if (allow) {
    for (const f of OPT_IN_FLAGS) if (s.flags.includes(f) && !c.flags?.has(f)) return false;
  }
  return true;
}

const descriptions = new WeakMap<ClassifiedStatement, string>();

/** e.g. `drop on public.users`, `select calling a listed function (pg_read_file)`, `delete on public.t (no_where)`. */
export function describeStatement(s: ClassifiedStatement): string {
  let out = descriptions.get(s);
  if (out === undefined) {
    out = describe(s);
    descriptions.set(s, out);
  }
  return out;
}

function describe(s: ClassifiedStatement): string {
  let out = s.kinds.join('+');
  const rels = [...new Set([...s.writes, ...s.reads])];
  if (rels.length > 0) out += ` on ${rels.length > 5 ? `${rels.slice(0, 5).join(', ')} and ${rels.length - 5} more` : rels.join(', ')}`;
  const flags = s.flags.filter((f) => f !== 'multi_statement' && f !== 'dangerous_function');
  if (s.flags.includes('dangerous_function')) out += ` calling a listed function (${s.functions.join(', ')})`;
  if (flags.length > 0) out += ` (${flags.join(', ')})`;
  return out;
}

export function decideSql(
  identity: Identity,
  targetName: string,
  policies: readonly PolicyConfig[],
  c: SqlClassification,
): PolicyDecision & { statement?: number } {
  if (!c.ok) {
    const policy = decidingPolicy(identity, targetName, policies);
    return { effect: 'deny', policy: policy?.name ?? null, rule: null, reason: `cannot parse SQL: ${c.error}` };
  }
  if (c.statements.length === 0) {
    const policy = decidingPolicy(identity, targetName, policies);
    if (!policy) return decide(identity, targetName, policies, () => false, 'an empty query');
    return { effect: 'allow', policy: policy.name, rule: null, reason: 'empty query: nothing runs' };
  }
  const decisions = c.statements.map((s): PolicyDecision => {
    if (s.hazard) {
      const policy = decidingPolicy(identity, targetName, policies);
      return { effect: 'deny', policy: policy?.name ?? null, rule: null, reason: `${s.detail ?? s.kind} denied: ${s.hazard}` };
    }
    return decide(identity, targetName, policies, (rule) => ruleMatchesStatement(rule, s), describeStatement(s));
  });
  const worst = mostRestrictive(decisions)!;
  return { ...worst, statement: decisions.indexOf(worst) };
}
