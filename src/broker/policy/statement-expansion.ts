/**
 * What a statement runs and reads beyond its own text, resolved in the live catalog: the
 * SQL gate (sql-gate.ts) judges the statement as this expansion, not as written.
 *
 * A statement, as PostgreSQL runs it, also
 * - reads every relation an unqualified name may resolve to (search_path is the session's);
 * - reads the inheritance children and partitions of a table it reads without ONLY (and
 *   writes those of one it writes), whatever schema they live in;
 * - reads every analysed relation's values when it reads a statistics view (pg_stats, …);
 * - runs each view's definition and each row-level security policy of what it reads;
 * - calls `f(u)` when it writes `u.f` and such a function exists;
 * - runs the code of every type its values have or are coerced to, without naming it:
 *   input and output, a domain's CHECK, the default btree and hash operator classes
 *   (ORDER BY, DISTINCT, GROUP BY, UNION, joins, greatest, CASE…), a range's support, user
 *   casts (an implicit or assignment cast wherever its target type appears; an explicit one
 *   where both ends appear and the target is named; any cast to json where json or jsonb is
 *   built, since the JSON builders convert a user type's values with it). Types come from the names the text
 *   writes (casts, literals, column definition lists, function-call syntax), the columns it
 *   references, the result and argument types of every function it calls, and for a SQL
 *   function's body its own argument and result types;
 * - reads what the body of each SQL function it calls reads;
 * - when it executes a write (INSERT, UPDATE, DELETE, MERGE, COPY FROM, TRUNCATE; not plain
 *   EXPLAIN), runs every trigger of each relation written (its function and WHEN
 *   condition, whatever its event, timing or enabled state: session_replication_role picks
 *   which fire) and the volatile code of its defaults, and writes what its rules' actions
 *   name, the tables whose foreign keys cascade from it (TRUNCATE: every referencing
 *   table), and a written view's base relations — each with its own code, transitively;
 * - when it is DDL (a kind that fires event triggers), runs the function of every event
 *   trigger (ddl_command_start/end, sql_drop, table_rewrite), whatever its WHEN TAG list
 *   or enabled state.
 * The user code found this way is added to the statement's calls under a synthetic name
 * (`schema.name[implicit]`) and judged like any call: a function the gate cannot vouch for
 * is effectful. Anything that could not be resolved (a lookup that failed, a definition too
 * deep or that does not parse) adds a call of `agentgate.unanalysable(…)`, which no catalog
 * knows: unknown means no.
 *
 * Resolution is two-phase: `missing` runs the expansion and collects what it lacked,
 * `learn` asks the catalog for all of it at once (never rejects; a failed lookup is filed
 * as failed), and the caller repeats until nothing is missing. After that `expand` and
 * `effectsOf` are synchronous and memoized per classification.
 */
import type { FunctionCatalog, RelationFacts, RelationWriteFacts, TypeFacts } from './sql-gate-types.js';
import { IMPLICIT_CALL, judgeFunctionEffects, toFunctionEffects, type FunctionEffects, type FunctionInfo } from './function-effects.js';
import { functionsOfClassification, type ClassifiedStatement, type SqlClassification } from './sql-classify.js';
import { isHarmlessSetting } from './settings.js';

/** Views inside views and SQL bodies inside bodies followed this deep; deeper is unanalysable. */
const MAX_DEPTH = 8;
/**
 * The schema reported for an unqualified relation name the catalog could not place: its
 * lookup failed, or a statement creates it and the session's search_path decides where.
 * No `schema.*` glob names it, so only a rule that allows every schema covers it.
 */
export const UNKNOWN_SCHEMA = '?';
/** A call that stands for what could not be analysed: no catalog knows it, so it is denied. */
const UNANALYSABLE = 'agentgate.unanalysable';
const unanalysable = (what: string): string => `${UNANALYSABLE}(${what})`;
/** A view definition that does not parse (what a failed definition lookup is filed as). */
const UNANALYSABLE_DEFINITION = '(';
/** Catalog views and tables that show values of every analysed relation's columns. */
const STATISTICS = new Set(['pg_catalog.pg_stats', 'pg_catalog.pg_stats_ext', 'pg_catalog.pg_stats_ext_exprs', 'pg_catalog.pg_statistic', 'pg_catalog.pg_statistic_ext_data']);

/** pg_type OIDs of json and jsonb: their builders convert a user type's values with its cast to json. */
const JSON_OID = 114;
const JSONB_OID = 3802;

/** Relations followed through rules' actions, foreign keys and views from one statement's write targets; more is unanalysable. */
const MAX_RULE_RELATIONS = 64;
/**
 * Kinds that may fire event triggers (ddl_command_start/end, sql_drop, table_rewrite): CREATE
 * (with SELECT INTO and CREATE TABLE AS), ALTER, DROP, COMMENT, GRANT, REVOKE, REFRESH
 * MATERIALIZED VIEW, and `other` (SECURITY LABEL, REINDEX, IMPORT FOREIGN SCHEMA…: unknown
 * means it may).
 */
const EVENT_TRIGGER_KINDS: ReadonlySet<string> = new Set(['create', 'alter', 'drop', 'comment', 'grant', 'revoke', 'refresh', 'other']);
/** Kinds whose write targets are planned with their defaults, rules, policies and stored code. */
const WRITE_DML: ReadonlySet<string> = new Set(['insert', 'update', 'delete', 'copy']);

const FAILED = 'failed' as const;
type Known<T> = T | typeof FAILED;

/** What an expansion lacked: the lookups `learn` makes. */
export interface Needs {
  names: Set<string>;
  operators: Set<string>;
  views: Set<string>;
  schemas: Set<string>;
  relations: Set<string>;
  /** Relations whose write facts are wanted (write and EXPLAIN targets only). */
  writeRelations: Set<string>;
  statistics: boolean;
  /** The event triggers' functions are wanted (a statement of a kind that fires them). */
  eventTriggers: boolean;
  typeNames: Set<string>;
  closures: Set<number>;
  facts: Set<number>;
}

function noNeeds(): Needs {
  return { names: new Set(), operators: new Set(), views: new Set(), schemas: new Set(), relations: new Set(), writeRelations: new Set(), statistics: false, eventTriggers: false, typeNames: new Set(), closures: new Set(), facts: new Set() };
}

function isEmpty(n: Needs): boolean {
  return (
    !n.statistics &&
    !n.eventTriggers &&
    n.names.size + n.operators.size + n.views.size + n.schemas.size + n.relations.size + n.writeRelations.size + n.typeNames.size + n.closures.size + n.facts.size === 0
  );
}

/** The first OID PostgreSQL gives a user object: what initdb made is below it, whatever its schema. */
export const FIRST_USER_OID = 16384;

const VOLATILITY_RANK: Readonly<Record<FunctionInfo['volatility'], number>> = { i: 0, s: 1, v: 2 };

/**
 * Whether a function's declared volatility is trusted as it stands: a built-in's, or an
 * extension's C function (only a superuser creates those) unless another function of the
 * same library symbol is declared more volatile. An extension's SQL or PL
 * function is judged like a user's: anyone owning the extension can add one.
 */
function trustedAsDeclared(info: FunctionInfo): boolean {
  if (info.oid < FIRST_USER_OID) return true;
  if (info.extension !== true || info.language !== 'c') return false;
  // Another function running the same library symbol declared more volatile: this one is an
  // alias that understates it (a superuser's IMMUTABLE pg_file_write added to adminpack).
  return info.wraps === undefined || VOLATILITY_RANK[info.wraps] <= VOLATILITY_RANK[info.volatility];
}

interface Calls {
  functions: string[];
  operators: string[];
  /** Settings the definitions change through set_config (they stay changed after the statement). */
  settings: string[];
  /** A definition would make the server read later SQL differently (see ClassifiedStatement.hazard). */
  hazard?: string;
  /** A definition could undo a read-only session. */
  readWrite?: true;
}

/** What a definition or body does to the session beyond its calls, carried to the statement that runs it. */
interface SessionEffects {
  settings: Set<string>;
  hazard?: string;
  readWrite?: true;
}

/** Adds `from`'s session effects (a statement, a view's calls) to `into`. */
function addSessionEffects(into: SessionEffects, from: { settings: readonly string[]; hazard?: string; readWrite?: true }): void {
  for (const s of from.settings) into.settings.add(s);
  if (from.hazard !== undefined) into.hazard ??= from.hazard;
  if (from.readWrite) into.readWrite = true;
}

export interface StatementExpander {
  /** `c` as it runs (see the file comment); `types` are extra type OIDs its values have (a function's arguments). */
  expand(c: SqlClassification, types?: readonly number[]): SqlClassification;
  /** The effects of what an expanded classification calls. */
  effectsOf(c: SqlClassification): FunctionEffects;
  /** A function's volatility as far as it can be trusted (see vouch). */
  vouch(info: FunctionInfo): FunctionInfo;
  /** What `run` (expansions and effects) lacked; undefined when nothing. */
  missing(run: () => void): Needs | undefined;
  /** Asks the catalog for what was missing and files the answers (failures as failed). Never rejects. */
  learn(needs: Needs): Promise<void>;
  /** Drops what was derived from the resolved facts (call after learn). */
  forgetDerived(): void;
  /** Drops everything resolved. */
  forget(): void;
}

export function createStatementExpander(catalog: FunctionCatalog, classify: (sql: string) => SqlClassification): StatementExpander {
  // What the catalog said.
  let byName = new Map<string, FunctionInfo[]>();
  let byOperator = new Map<string, FunctionInfo[]>();
  let viewDefs = new Map<string, string[]>();
  let relSchemas = new Map<string, string[]>();
  let relFacts = new Map<string, Known<RelationFacts | undefined>>();
  let relWriteFacts = new Map<string, Known<RelationWriteFacts | undefined>>();
  let statistics: Known<string[]> | undefined;
  /** The functions of the event triggers a DDL statement may fire. */
  let eventTriggers: Known<FunctionInfo[]> | undefined;
  let typeOids = new Map<string, Known<number[]>>();
  let closures = new Map<number, Known<number[]>>();
  let facts = new Map<number, Known<TypeFacts>>();
  /** Synthetic `schema.name[implicit]` → the functions so named that types run (kept: it only grows from facts). */
  let implicit = new Map<string, FunctionInfo[]>();
  // What was derived from it.
  let expanded = new WeakMap<SqlClassification, SqlClassification>();
  /** Expansions with extra types, by classification and the types' list. */
  let expandedWith = new WeakMap<SqlClassification, Map<string, SqlClassification>>();
  let effectsMemo = new WeakMap<SqlClassification, FunctionEffects>();
  let viewCalls = new Map<string, Calls>();
  /** Function OID → its body as it runs (null: unanalysable; 'cycle' while being expanded). */
  let bodies = new Map<number, SqlClassification | null | 'cycle'>();
  let vouched = new Map<number, FunctionInfo>();
  /** Set while `missing` runs: lookups that miss are recorded here. */
  let needs: Needs | undefined;
  /** A lookup missed outside `missing`: what was derived then is incomplete (and denies). */
  let partial = false;
  function want<K>(set: Set<K> | undefined, key: K): void {
    if (set) set.add(key);
    else partial = true;
  }

  const functionInfos = (name: string): FunctionInfo[] | undefined => {
    if (name.startsWith(UNANALYSABLE)) return [];
    const hit = implicit.get(name) ?? byName.get(name);
    if (!hit) want(needs?.names, name);
    return hit;
  };
  const operatorInfos = (op: string): FunctionInfo[] | undefined => {
    const hit = byOperator.get(op);
    if (!hit) want(needs?.operators, op);
    return hit;
  };
  const typesNamed = (name: string): Known<number[]> | undefined => {
    const hit = typeOids.get(name);
    if (!hit) want(needs?.typeNames, name);
    return hit;
  };
  /** A relation's entry in `cache` (FAILED, and wanted in `wanted`, when not looked up yet). */
  const relationKnown = <T>(cache: Map<string, Known<T | undefined>>, wanted: Set<string> | undefined, rel: string): Known<T | undefined> | undefined => {
    if (rel.startsWith(`${UNKNOWN_SCHEMA}.`)) return undefined;
    if (!cache.has(rel)) {
      want(wanted, rel);
      return FAILED;
    }
    return cache.get(rel);
  };
  const factsOf = (rel: string): Known<RelationFacts | undefined> | undefined => relationKnown(relFacts, needs?.relations, rel);
  const writeFactsOf = (rel: string): Known<RelationWriteFacts | undefined> | undefined => relationKnown(relWriteFacts, needs?.writeRelations, rel);

  /** What a relation's view definitions and row-level security policies call, through nested views. */
  const callsThrough = (rel: string, depth: number): Calls => {
    const hit = viewCalls.get(rel);
    if (hit) return hit;
    const defs = viewDefs.get(rel);
    if (!defs) {
      want(needs?.views, rel);
      return { functions: [unanalysable(`view ${rel}`)], operators: [], settings: [] };
    }
    // A policy that reads its own table recurses (the server refuses it too).
    viewCalls.set(rel, { functions: [unanalysable(`recursive definition of ${rel}`)], operators: [], settings: [] });
    const functions = new Set<string>();
    const operators = new Set<string>();
    const session: SessionEffects = { settings: new Set() };
    for (const def of defs) {
      const d = classify(def);
      if (!d.ok || depth > MAX_DEPTH) {
        functions.add(unanalysable(`definition of ${rel}`));
        continue;
      }
      for (const st of d.statements) {
        const e = expandStatement(st, depth + 1, []);
        for (const f of e.functions) functions.add(f);
        for (const o of e.operators) operators.add(o);
        // set_config in a view's definition changes the reading session's settings.
        addSessionEffects(session, e);
      }
    }
    const out: Calls = { functions: [...functions], operators: [...operators], settings: [...session.settings] };
    if (session.hazard !== undefined) out.hazard = session.hazard;
    if (session.readWrite) out.readWrite = true;
    viewCalls.set(rel, out);
    return out;
  };

  /** A user SQL function's body as it runs, with its own argument and result types; null when unanalysable. */
  const bodyOf = (info: FunctionInfo, depth: number): SqlClassification | null | 'cycle' | undefined => {
    if (info.language !== 'sql' || info.oid < FIRST_USER_OID) return undefined;
    const hit = bodies.get(info.oid);
    if (hit !== undefined) return hit;
    // BEGIN ATOMIC bodies keep no prosrc: not analysed, so not vouched for.
    if (!info.source || depth > MAX_DEPTH) return null;
    bodies.set(info.oid, 'cycle');
    const c = classify(info.source);
    const out = c.ok ? expandWith(c, depth, info.types ?? []) : null;
    bodies.set(info.oid, out);
    return out;
  };

  const addImplicit = (fn: FunctionInfo, functions: Set<string>): void => {
    const name = `${fn.schema}.${fn.name}${IMPLICIT_CALL}`;
    const list = implicit.get(name);
    if (!list) implicit.set(name, [fn]);
    else if (!list.some((x) => x.oid === fn.oid)) list.push(fn);
    functions.add(name);
  };

  /** The user code the statement's types run (see the file comment), added to `functions`. */
  const typeCode = (
    st: ClassifiedStatement,
    rels: readonly string[],
    written: readonly string[],
    calls: Iterable<string>,
    operators: Iterable<string>,
    extra: readonly number[],
    functions: Set<string>,
  ): void => {
    const named = new Set<number>();
    const other = new Set<number>(extra);
    const byNames = (list: Iterable<string>, into: Set<number>, what: string): void => {
      for (const t of list) {
        const oids = typesNamed(t);
        if (oids === FAILED) functions.add(unanalysable(`type ${what} ${t}`));
        else if (oids) for (const o of oids) into.add(o);
      }
    };
    byNames(st.types, named, 'named');
    // `d(1)` is a cast to d when no function d takes the argument.
    byNames(st.functions, named, 'or function');
    for (const f of calls) for (const info of functionInfos(f) ?? []) for (const t of info.types ?? []) other.add(t);

    // The relations, each with the columns visible under it (an alias's column list renames them by position).
    const relations: { rel: string; facts: RelationFacts; visible: Map<string, number> }[] = [];
    for (const r of rels) {
      const f = factsOf(r);
      if (f === FAILED) functions.add(unanalysable(`relation ${r}`));
      else if (f) relations.push({ rel: r, facts: f, visible: new Map(f.columns) });
    }
    // A relation as the classifier reports it (`public.n` for a bare n) is each placed relation of that name.
    const unqualified = new Set(st.unqualified ?? []);
    const same = (reported: string, placed: string): boolean => {
      if (reported === placed) return true;
      const n = reported.slice(reported.indexOf('.') + 1);
      return reported === `public.${n}` && unqualified.has(n) && placed.slice(placed.indexOf('.') + 1) === n;
    };
    for (const { relation, columns } of st.renames ?? []) {
      for (const r of relations) {
        if (!same(relation, r.rel)) continue;
        const types = [...r.facts.columns.values()];
        columns.forEach((name, i) => {
          if (types[i] !== undefined) r.visible.set(name, types[i]);
        });
      }
    }
    for (const r of relations) {
      for (const c of st.columns) {
        const t = r.visible.get(c);
        if (t !== undefined) other.add(t);
      }
      if (st.star) {
        for (const t of r.facts.columns.values()) other.add(t);
        other.add(r.facts.rowType);
      }
    }
    // Values written are coerced to every column's type (a domain column's CHECK runs).
    for (const w of written) {
      const f = factsOf(w);
      if (f && f !== FAILED) for (const t of f.columns.values()) other.add(t);
    }
    // A name referenced alone is a whole row when it is a relation's alias (whatever columns
    // other relations have: scopes nest), or when it is no column at all (a subquery's alias).
    const aliases = new Map<string, string[]>();
    for (const [a, rel] of st.aliases ?? []) aliases.set(a, [...(aliases.get(a) ?? []), rel]);
    for (const w of st.wholeRows) {
      const of = aliases.get(w) ?? [];
      const rows = of.length > 0 ? relations.filter((r) => of.some((rel) => same(rel, r.rel))) : [];
      if (!relations.some((r) => r.visible.has(w))) rows.push(...relations);
      for (const r of rows) other.add(r.facts.rowType);
    }

    // An operator contributes the types of the candidate PostgreSQL picks when every use's
    // operand types are known and one candidate matches them exactly; else of every candidate
    // (an implicit cast to a candidate's argument type runs user code). The server picks among
    // the operators its search_path sees, which the session sets: an exact candidate decides
    // only when every path sees it (an operator in pg_catalog) or the text names its schema.
    const operandType = (hint: string): number | undefined => {
      if (hint.startsWith('oid:')) return Number(hint.slice(4));
      if (hint.startsWith('type:')) {
        const oids = typesNamed(hint.slice(5));
        return Array.isArray(oids) && oids.length === 1 ? oids[0] : undefined;
      }
      if (!hint.startsWith('col:')) return undefined;
      const ref = hint.slice(4);
      const dot = ref.indexOf('.');
      let candidates = relations;
      let column = ref;
      if (dot >= 0) {
        const of = aliases.get(ref.slice(0, dot)) ?? [];
        candidates = relations.filter((r) => of.some((rel) => same(rel, r.rel)));
        column = ref.slice(dot + 1);
      } else if (st.derived) return undefined; // a bare name may be a derived table's column
      const types = new Set(candidates.flatMap((r) => (r.visible.has(column) ? [r.visible.get(column)!] : [])));
      return types.size === 1 ? [...types][0] : undefined;
    };
    const uses = new Map(st.operands ?? []);
    for (const o of operators) {
      const infos = operatorInfos(o) ?? [];
      let chosen: FunctionInfo[] | undefined;
      for (const use of uses.get(o) ?? [undefined]) {
        const args = use?.map(operandType);
        const exact = args && !args.includes(undefined) ? infos.filter((i) => i.nargs === args.length && args.every((a, k) => i.types?.[k + 1] === a)) : [];
        if (exact.length === 0 || (!o.includes('.') && !exact.some((i) => i.pinnedOperator === true))) {
          chosen = undefined;
          break;
        }
        chosen = [...(chosen ?? []), ...exact];
      }
      for (const info of chosen ?? infos) for (const t of info.types ?? []) other.add(t);
    }

    const closure = (roots: Iterable<number>): Set<number> => {
      const out = new Set<number>();
      for (const r of roots) {
        const c = closures.get(r);
        if (c === undefined) want(needs?.closures, r);
        if (c === undefined || c === FAILED) {
          functions.add(unanalysable(`type ${r}`));
          continue;
        }
        for (const t of c) out.add(t);
      }
      return out;
    };
    const namedClosure = closure(named);
    const all = closure(other);
    for (const t of namedClosure) all.add(t);
    // A statement that builds json or jsonb (to_json, row_to_json, json_agg, jsonb_build_object…
    // all return one) converts each value of a user type that is not composite, array or domain
    // with the type's cast to json, explicit or not, which it never writes.
    const buildsJson = all.has(JSON_OID) || all.has(JSONB_OID);
    for (const t of all) {
      const f = facts.get(t);
      if (f === undefined) want(needs?.facts, t);
      if (f === undefined || f === FAILED) {
        functions.add(unanalysable(`type ${t}`));
        continue;
      }
      for (const fn of f.functions) addImplicit(fn, functions);
      for (const cast of f.casts) {
        const applies =
          (cast.context !== 'e' && all.has(cast.target)) ||
          (all.has(cast.source) && namedClosure.has(cast.target)) ||
          (buildsJson && cast.target === JSON_OID && all.has(cast.source));
        if (applies) addImplicit(cast.fn, functions);
      }
    }
  };

  const expandStatement = (st: ClassifiedStatement, depth: number, extra: readonly number[]): ClassifiedStatement => {
    const reads = new Set(st.reads);
    const writes = new Set(st.writes);
    const planned = new Set(st.planned ?? []);
    const only = new Set(st.only ?? []);
    // Every schema an unqualified name may resolve to.
    for (const n of st.unqualified ?? []) {
      const inPublic = `public.${n}`;
      let found = relSchemas.get(n);
      if (!found) {
        want(needs?.schemas, n);
        found = [UNKNOWN_SCHEMA];
      }
      const read = reads.has(inPublic);
      const written = writes.has(inPublic);
      for (const schema of found.length > 0 ? found : written ? [UNKNOWN_SCHEMA] : []) {
        const name = `${schema}.${n}`;
        if (read) reads.add(name);
        if (written) writes.add(name);
        if (planned.has(inPublic)) planned.add(name);
        if (only.has(inPublic)) only.add(name);
      }
    }
    const named = [...reads];
    const placedWrites = [...writes];
    const functions = new Set(st.functions);
    const operators = new Set(st.operators);
    // The statistics views show every analysed relation's values.
    if (named.some((r) => STATISTICS.has(r))) {
      if (statistics === undefined) {
        if (needs) needs.statistics = true;
        else partial = true;
      }
      if (statistics === undefined || statistics === FAILED) functions.add(unanalysable('statistics'));
      else for (const r of statistics) reads.add(r);
    }
    // A table read (or written) without ONLY is read (written) with its descendants.
    for (const set of [reads, writes]) {
      for (const r of [...set]) {
        if (only.has(r)) continue;
        const f = factsOf(r);
        if (f === FAILED) functions.add(unanalysable(`relation ${r}`));
        else if (f) for (const d of f.descendants) set.add(d);
      }
    }
    // Planning and reading a relation runs the code stored with it (index expressions, CHECKs,
    // operator classes, a foreign table's wrapper…), whatever the statement names.
    const addStoredCode = (r: string): void => {
      const f = factsOf(r);
      if (!f || f === FAILED) return;
      for (const fn of f.code) addImplicit(fn, functions);
      if (f.foreign) functions.add(unanalysable(`foreign table ${r}`));
    };
    for (const r of reads) addStoredCode(r);
    // Planning a write (executed, or under plain EXPLAIN, or a protocol Bind) runs the code
    // stored with its target as planning a read does, its policies' and an updatable view's
    // expressions, and what the rewriter adds: defaults, domains' defaults, rules' actions.
    // A rule's action writes (and plans) the relations it names, with theirs, transitively.
    // Executing a write (not plain EXPLAIN) also runs the target's triggers and the volatile
    // code of its defaults, and writes what its rules' actions, its foreign keys' referential
    // actions (TRUNCATE … CASCADE: every referencing table) and, for a view, its base
    // relations name: those are written, with their own code, transitively.
    const dml = st.kinds.some((k) => WRITE_DML.has(k));
    const truncate = st.kinds.includes('truncate');
    const targets = dml || truncate ? [...writes] : [];
    const executed = new Set(targets);
    const ruled = new Set<string>();
    /** Relation → whether it was followed as executed (a planned one may be reached again as executed). */
    const followed = new Map<string, boolean>();
    const queue: string[] = [...targets, ...planned];
    for (let i = 0; i < queue.length; i++) {
      const r = queue[i]!;
      const run = executed.has(r);
      if (followed.get(r) === true || (followed.has(r) && !run)) continue;
      const again = followed.has(r);
      followed.set(r, run);
      const f = factsOf(r);
      const w = writeFactsOf(r);
      if (f === FAILED || w === FAILED) functions.add(unanalysable(`relation ${r}`));
      if (!f || f === FAILED || !w || w === FAILED) continue;
      if (!again) for (const fn of w.writeCode ?? []) addImplicit(fn, functions);
      const next = [...(w.ruleRelations ?? [])];
      if (run) {
        for (const fn of w.runCode ?? []) addImplicit(fn, functions);
        next.push(...(w.alsoWrites ?? []), ...(only.has(r) ? [] : f.descendants), ...(truncate ? (w.referencedBy ?? []) : []));
      }
      for (const n of next) {
        if (run) executed.add(n);
        if (followed.get(n) === true || (followed.has(n) && !run) || (queue.includes(n) && !followed.has(n))) continue;
        if (ruled.size >= MAX_RULE_RELATIONS) {
          functions.add(unanalysable(`writes through ${r}`));
          break;
        }
        queue.push(n);
        ruled.add(n);
      }
    }
    for (const r of executed) writes.add(r);
    targets.push(...ruled);
    for (const r of new Set(targets)) addStoredCode(r);
    // LIKE … INCLUDING copies a source's stored code to the new table (see ClassifiedStatement.copies).
    const copies = new Set(st.copies ?? []);
    const unplaced = new Set(st.unqualified ?? []);
    for (const r of copies.size > 0 ? named : []) {
      const n = r.slice(r.indexOf('.') + 1);
      if (!copies.has(r) && !(copies.has(`public.${n}`) && unplaced.has(n))) continue;
      const w = writeFactsOf(r);
      if (w === FAILED) functions.add(unanalysable(`relation ${r}`));
      else if (w) for (const fn of [...(w.writeCode ?? []), ...(w.runCode ?? [])]) addImplicit(fn, functions);
    }
    // A DDL statement runs the functions of the event triggers its command fires, whatever
    // their tag filter or enabled state: the server calls them around the command.
    if (st.kinds.some((k) => EVENT_TRIGGER_KINDS.has(k))) {
      if (eventTriggers === undefined) {
        if (needs) needs.eventTriggers = true;
        else partial = true;
      }
      if (eventTriggers === undefined || eventTriggers === FAILED) functions.add(unanalysable('event triggers'));
      else for (const fn of eventTriggers) addImplicit(fn, functions);
    }
    // `u.f` calls f(u) when a function f exists.
    for (const m of st.maybeCalls) if ((functionInfos(m)?.length ?? 0) > 0) functions.add(m);
    const calls = [...functions];
    const session: SessionEffects = { settings: new Set(st.settings) };
    if (st.hazard !== undefined) session.hazard = st.hazard;
    if (st.readWrite) session.readWrite = true;
    // Views and row-level security policies of what it reads run with it.
    for (const r of [...named, ...targets.filter((t) => !reads.has(t))]) {
      const through = callsThrough(r, depth);
      for (const f of through.functions) functions.add(f);
      for (const o of through.operators) operators.add(o);
      addSessionEffects(session, through);
    }
    typeCode(st, [...new Set([...named, ...placedWrites])], [...new Set([...placedWrites, ...executed])], calls, st.operators, extra, functions);
    // A SQL function's body reads with the caller's privileges: its reads are the statement's,
    // whether the text calls it, an operator runs it or a type does (views aside: judged by calls).
    const run: FunctionInfo[] = [];
    for (const f of calls) run.push(...(functionInfos(f) ?? []));
    for (const f of functions) if (f.endsWith(IMPLICIT_CALL)) run.push(...(functionInfos(f) ?? []));
    for (const o of st.operators) run.push(...(operatorInfos(o) ?? []));
    for (const info of run) {
      const body = bodyOf(info, depth + 1);
      if (body === null) reads.add(`${UNKNOWN_SCHEMA}.*`);
      else if (body && body !== 'cycle' && body.ok) {
        for (const b of body.statements) {
          for (const r of b.reads) reads.add(r);
          // A body that desyncs the parser or undoes read-only does so whoever vouched for the function.
          if (b.hazard !== undefined) session.hazard ??= b.hazard;
          if (b.readWrite) session.readWrite = true;
        }
      }
    }
    const same = (a: readonly string[], b: Set<string>): boolean => a.length === b.size;
    const sameSession = same(st.settings, session.settings) && session.hazard === st.hazard && (session.readWrite === true) === (st.readWrite === true);
    if (same(st.reads, reads) && same(st.writes, writes) && same(st.functions, functions) && same(st.operators, operators) && sameSession) return st;
    const out: ClassifiedStatement = { ...st, reads: [...reads], writes: [...writes], functions: [...functions], operators: [...operators], settings: [...session.settings] };
    if (session.hazard !== undefined) out.hazard = session.hazard;
    if (session.readWrite) out.readWrite = true;
    return out;
  };

  const expandWith = (c: SqlClassification, depth: number, types: readonly number[]): SqlClassification => {
    if (!c.ok) return c;
    let changed = false;
    const statements = c.statements.map((st) => {
      const e = expandStatement(st, depth, types);
      if (e !== st) changed = true;
      return e;
    });
    return changed ? { ...c, statements } : c;
  };

  const computeEffects = (c: SqlClassification): FunctionEffects => {
    const { functions, operators } = functionsOfClassification(c);
    const list: { name: string; infos: FunctionInfo[] }[] = [];
    for (const f of functions) list.push({ name: f, infos: (functionInfos(f) ?? []).map(vouch) });
    for (const o of operators) list.push({ name: o, infos: (operatorInfos(o) ?? []).map(vouch) });
    return toFunctionEffects(judgeFunctionEffects(list));
  };

  /**
   * A function's declared volatility, as far as it can be trusted. Built-ins (by OID, not
   * schema: a superuser may create a function in pg_catalog) and extensions' C functions: as declared. A user's LANGUAGE internal function: as declared when the
   * built-in it names is no more volatile. A user's non-volatile SQL function: only if its
   * body, as it runs (views, types, bodies), is a read whose every call is vouched for. Any
   * other user function declared IMMUTABLE or STABLE cannot be vouched for (a PL/pgSQL
   * body may call anything that does not write, pg_stat_reset say): volatile.
   */
  const vouch = (info: FunctionInfo): FunctionInfo => {
    if (info.volatility === 'v' || trustedAsDeclared(info)) return info;
    const hit = vouched.get(info.oid);
    if (hit) return hit;
    const volatile = { ...info, volatility: 'v' as const };
    vouched.set(info.oid, volatile); // a cycle counts as volatile
    // A SET clause (proconfig) of a setting that is not harmless runs the body as another role,
    // with triggers off, or read by other rules (standard_conforming_strings) than here.
    if (info.config?.some((n) => !isHarmlessSetting(n) || n === 'client_encoding' || n === 'standard_conforming_strings')) return volatile;
    let out: FunctionInfo = volatile;
    // A read whose every call is vouched for, and that changes no setting that outlives it
    // (set_config(…, false) in a body is not undone at exit: role, session_replication_role…).
    const clean = (c: SqlClassification): boolean => {
      const reads = (st: ClassifiedStatement): boolean => st.kinds.every((k) => k === 'select') && !st.readWrite && st.hazard === undefined && st.settings.every(isHarmlessSetting);
      if (!c.ok || !c.statements.every(reads)) return false;
      const e = computeEffects(c);
      return e.effectful.size === 0 && e.unknown.size === 0;
    };
    // An aggregate runs its support functions, which its declared volatility need not reflect;
    // a wrapper's own argument and result types run their code on the way in and out.
    if (info.kind === 'f' && info.language === 'internal' && (info.wraps === 'i' || info.wraps === 's')) {
      // The wrapper is trusted for what it runs itself (a type's input function is among its own type's code).
      const before = new Set(vouched.keys());
      vouched.set(info.oid, info);
      if (clean(expandWith(classify('SELECT'), 1, info.types ?? []))) out = info;
      // Judgements made while it was trusted do not stand if it is not.
      else for (const oid of vouched.keys()) if (!before.has(oid)) vouched.delete(oid);
    }
    else {
      const body = bodyOf(info, 0);
      if (body && body !== 'cycle' && clean(body)) out = info;
    }
    // Argument defaults run in the caller's call.
    if (out === info && info.defaults !== undefined && !clean(expandWith(classify(`SELECT ${info.defaults}`), 1, []))) out = volatile;
    vouched.set(info.oid, out);
    return out;
  };

  const forgetDerived = (): void => {
    expanded = new WeakMap();
    expandedWith = new WeakMap();
    effectsMemo = new WeakMap();
    viewCalls = new Map();
    bodies = new Map();
    vouched = new Map();
  };

  /** Files each key's answer, or `failed` for every key when the lookup threw. */
  async function file<K, V>(keys: Iterable<K>, into: Map<K, V>, lookup: (keys: K[]) => Promise<ReadonlyMap<K, V>>, none: V, failed: V): Promise<void> {
    const list = [...keys];
    if (list.length === 0) return;
    try {
      const got = await lookup(list);
      for (const k of list) into.set(k, got.get(k) ?? none);
    } catch {
      for (const k of list) into.set(k, failed);
    }
  }

  return {
    expand(c, types = []) {
      if (!c.ok) return c;
      if (types.length > 0) {
        const key = types.join(',');
        let byTypes = expandedWith.get(c);
        const hit = byTypes?.get(key);
        if (hit) return hit;
        const out = expandWith(c, 0, types);
        if (!needs) {
          if (!byTypes) expandedWith.set(c, (byTypes = new Map()));
          if (byTypes.size < 16) byTypes.set(key, out);
        }
        return out;
      }
      let hit = expanded.get(c);
      if (!hit) {
        hit = expandWith(c, 0, []);
        if (!needs) expanded.set(c, hit);
      }
      return hit;
    },
    effectsOf(c) {
      let e = effectsMemo.get(c);
      if (!e) {
        e = computeEffects(c);
        if (!needs) effectsMemo.set(c, e);
      }
      return e;
    },
    vouch,
    missing(run) {
      if (partial) forgetDerived();
      partial = false;
      const collected = noNeeds();
      needs = collected;
      try {
        run();
      } finally {
        needs = undefined;
      }
      if (isEmpty(collected)) return undefined;
      // What was derived while something was missing is incomplete.
      forgetDerived();
      return collected;
    },
    async learn(n) {
      await Promise.all([
        file(n.names, byName, (k) => catalog.byNames(k), [], []),
        file(n.operators, byOperator, (k) => catalog.byOperators(k), [], []),
        file(n.views, viewDefs, (k) => catalog.viewDefinitions(k), [], [UNANALYSABLE_DEFINITION]),
        file(n.schemas, relSchemas, (k) => catalog.relationSchemas(k), [], [UNKNOWN_SCHEMA]),
        file<string, Known<RelationFacts | undefined>>(n.relations, relFacts, (k) => catalog.relationFacts(k), undefined, FAILED),
        file<string, Known<RelationWriteFacts | undefined>>(n.writeRelations, relWriteFacts, (k) => catalog.relationWriteFacts(k), undefined, FAILED),
        file<string, Known<number[]>>(n.typeNames, typeOids, (k) => catalog.typesByName(k), [], FAILED),
        file<number, Known<number[]>>(n.closures, closures, (k) => catalog.typeClosure(k), [], FAILED),
        file<number, Known<TypeFacts>>(n.facts, facts, (k) => catalog.typeFacts(k), { functions: [], casts: [] }, FAILED),
        n.statistics
          ? catalog.statisticsRelations().then(
              (rels) => void (statistics = rels),
              () => void (statistics = FAILED),
            )
          : undefined,
        n.eventTriggers
          ? catalog.eventTriggerFunctions().then(
              (fns) => void (eventTriggers = fns),
              () => void (eventTriggers = FAILED),
            )
          : undefined,
      ]);
      forgetDerived();
    },
    forgetDerived,
    forget() {
      byName = new Map();
      byOperator = new Map();
      viewDefs = new Map();
      relSchemas = new Map();
      relFacts = new Map();
      relWriteFacts = new Map();
      statistics = undefined;
      eventTriggers = undefined;
      implicit = new Map();
      typeOids = new Map();
      closures = new Map();
      facts = new Map();
      forgetDerived();
    },
  };
}
