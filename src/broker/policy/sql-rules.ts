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
 *   `copy_program` or `copy_file` (COPY to or from a file on the database server) unless
 *   the rule's own `flags` names that flag.
 * - `functions` (globs over function and operator names; a glob with a dot is compared with
 *   the name as written, `schema.name`, one without with the name's last part): with
 *   effect information (decideSql's `effects`, see function-effects.ts), an `allow` rule
 *   never matches a statement that calls an effectful function or operator unless its
 *   `functions` list matches every such call: `{ sql: [select], functions: [nextval] }`
 *   allows `select nextval('s')`; a catch-all allow needs `functions: ['*']` to cover them.
 *   For an allow rule `functions` only widens, it never narrows. A `deny`/`review` rule
 *   with `functions` matches when the statement calls any listed function or operator
 *   (effectful or not; a qualified glob also matches an unqualified call of that name).
 *   set_config of a setting that is not harmless (settings.ts) counts as an effectful call
 *   of set_config. Without effect information (`effects` absent) no call is effectful.
 * - A rule with criteria for another protocol (`k8s`) or keys this module does not know
 *   never matches a SQL statement.
 *
 * decideSql: text that does not parse is denied (`cannot parse SQL: <parser message>`).
 * Otherwise each statement is decided on its own (first matching policy, first matching
 * rule, none = deny) and the most restrictive decision wins; `statement` is its index. An
 * empty string (only whitespace or comments) runs nothing and is allowed when a policy
 * gives the identity this target. A statement that would change how the server tokenizes
 * SQL (`hazard`, see sql-classify.ts) is denied whatever the policy says, and so is one that
 * calls a function or operator the catalog does not know (`unknown function <name>`).
 *
 * Read-only sessions: decideSqlReadOnly names a statement that would undo
 * `default_transaction_read_only = on` (the proxy refuses it in a session it opened
 * read-only); policyGrantsWrite tells whether the deciding policy grants any write at all.
 */
import type { PolicyConfig, RuleConfig, SqlFlag } from '../config/types.js';
import { decidingPolicy } from '../access.js';
import { compileGlob, type Glob } from '../glob.js';
import type { Identity } from '../identity/types.js';
import { decide, mostRestrictive, type PolicyDecision } from './decision.js';
import type { ClassifiedStatement, SqlClassification } from './sql-classify.js';
import { expandSqlKinds, foldIdentifier, type StatementKind } from './sql-kinds.js';
import { calledName, type FunctionEffects } from './function-effects.js';
import { isHarmlessSetting } from './settings.js';

/** Flags an allow rule must name explicitly to cover a statement carrying them. */
const OPT_IN_FLAGS: readonly SqlFlag[] = ['dangerous_function', 'copy_program', 'copy_file'];

interface RelationGlob {
  glob: Glob;
  /** Contains a dot: compared with `schema.name`, else with the name alone. */
  qualified: boolean;
}

interface CompiledRule {
  kinds?: Set<StatementKind>;
  relations?: { include: RelationGlob[]; exclude: RelationGlob[] };
  flags?: Set<SqlFlag>;
  functions?: FunctionGlob[];
}

interface FunctionGlob extends RelationGlob {
  /** Qualified globs: the part after the last dot, for unqualified calls under deny/review. */
  last?: Glob;
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
  if (rule.functions) {
    c.functions = rule.functions.map((raw): FunctionGlob => {
      const p = foldIdentifier(raw);
      const dot = p.lastIndexOf('.');
      return dot < 0 ? { glob: compileGlob(p), qualified: false } : { glob: compileGlob(p), qualified: true, last: compileGlob(p.slice(dot + 1)) };
    });
  }
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

/** The last dot-separated part of a function name (operators contain no dot). */
function lastPart(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? name : name.slice(dot + 1);
}

/**
 * `generous` (deny/review): a qualified glob also matches an unqualified call of the same
 * last part, since search_path may resolve it there.
 */
function functionMatches(globs: readonly FunctionGlob[], call: string, generous: boolean): boolean {
  const fn = calledName(call);
  const last = lastPart(fn);
  const qualifiedCall = last !== fn;
  return globs.some((g) => {
    if (!g.qualified) return g.glob.test(last);
    if (g.glob.test(fn)) return true;
    return generous && !qualifiedCall && g.last !== undefined && g.last.test(fn);
  });
}

/** Every function and operator the statement calls (names as the classifier reports them). */
function callsOf(s: ClassifiedStatement): string[] {
  return s.operators.length === 0 ? s.functions : [...s.functions, ...s.operators];
}

/**
 * The effectful calls of a statement: those `effects` calls effectful, plus set_config
 * when it changes a setting that is not harmless (or one named by an expression).
 */
export function effectfulCalls(s: ClassifiedStatement, effects: FunctionEffects): string[] {
  const out = callsOf(s).filter((f) => effects.effectful.has(f));
  if (!s.settings.every(isHarmlessSetting)) {
    for (const f of s.functions) if (lastPart(f) === 'set_config' && !out.includes(f)) out.push(f);
  }
  return out;
}

export function ruleMatchesStatement(rule: RuleConfig, s: ClassifiedStatement, effects?: FunctionEffects): boolean {
  if (rule.k8s !== undefined || rule.ssh !== undefined || Object.keys(rule.extra).length > 0) return false;
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
    // A rule that names kinds allows only calls free of side effects unless it names them;
    // a catch-all allow (no kinds) already allows every kind of statement.
    if (effects && c.kinds) {
      const globs = c.functions ?? [];
      if (!effectfulCalls(s, effects).every((f) => functionMatches(globs, f, false))) return false;
    }
  } else if (c.functions) {
    const globs = c.functions;
    if (!callsOf(s).some((f) => functionMatches(globs, f, true))) return false;
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
  effects?: FunctionEffects,
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
    const unknown = effects ? callsOf(s).find((f) => effects.unknown.has(f)) : undefined;
    if (unknown !== undefined) {
      const policy = decidingPolicy(identity, targetName, policies);
      return { effect: 'deny', policy: policy?.name ?? null, rule: null, reason: `unknown function ${unknown}` };
    }
    const describe = effects ? describeWithEffects(s, effects) : describeStatement(s);
    return decide(identity, targetName, policies, (rule) => ruleMatchesStatement(rule, s, effects), describe);
  });
  const worst = mostRestrictive(decisions)!;
  return { ...worst, statement: decisions.indexOf(worst) };
}

/** describeStatement plus the effectful calls, e.g. `select calling effectful nextval`. */
function describeWithEffects(s: ClassifiedStatement, effects: FunctionEffects): string {
  const calls = effectfulCalls(s, effects);
  const base = describeStatement(s);
  return calls.length === 0 ? base : `${base} calling effectful ${calls.join(', ')}`;
}

// ---------------------------------------------------------------------------------------
// Read-only sessions

/**
 * The reason text when the classification would undo a read-only session
 * (`ClassifiedStatement.readWrite`, see sql-classify.ts), else undefined. The proxy asks
 * this only in a session it opened with `default_transaction_read_only = on`, and refuses
 * such a statement whatever the policy says. Text that does not parse gives undefined:
 * decideSql denies it anyway.
 */
export function decideSqlReadOnly(c: SqlClassification): string | undefined {
  if (!c.ok) return undefined;
  const s = c.statements.find((x) => x.readWrite === true);
  if (!s) return undefined;
  return `${s.detail ?? s.kind} denied: this session is read-only (the policy grants no write) and the statement would make it read-write`;
}

/**
 * Kinds that run in a read-only transaction without changing data, so allowing them grants
 * no write: select, show, explain (EXPLAIN ANALYZE X also carries X's kinds), transaction,
 * session, set and reset (SET ROLE and the like change privileges, not data; the
 * read-write escapes among them are refused by decideSqlReadOnly), listen, unlisten,
 * prepare (PREPARE p AS X also carries X's kinds), execute (runs only what PREPARE
 * allowed), deallocate and discard. Not reads: lock (SELECT … FOR UPDATE and LOCK in
 * stronger modes fail in a read-only transaction), notify, copy (COPY FROM writes), call,
 * do, DDL, vacuum, analyze, refresh, other, and every DML kind.
 */
export const READ_KINDS: ReadonlySet<StatementKind> = new Set<StatementKind>([
  'select', 'show', 'explain', 'transaction', 'session', 'set', 'reset',
  'listen', 'unlisten', 'prepare', 'execute', 'deallocate', 'discard',
]);

/**
 * Whether the policy deciding for this identity and target grants any write: it has an
 * allow or review rule whose `sql` kinds include one outside READ_KINDS, or an allow or
 * review rule without `sql` that can match SQL (no `k8s` criteria, no unknown keys), which
 * covers every kind. No deciding policy: false. When this is false the broker may open the
 * upstream session read-only.
 */
export function policyGrantsWrite(identity: Identity, targetName: string, policies: readonly PolicyConfig[]): boolean {
  const policy = decidingPolicy(identity, targetName, policies);
  if (!policy) return false;
  return policy.rules.some((rule) => {
    if (rule.effect === 'deny') return false;
    if (rule.k8s !== undefined || rule.ssh !== undefined || Object.keys(rule.extra).length > 0) return false;
    const c = compile(rule);
    if (!c.kinds) return true;
    for (const k of c.kinds) if (!READ_KINDS.has(k)) return true;
    return false;
  });
}
