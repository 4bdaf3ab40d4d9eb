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
import type { FunctionCatalog, GateVerdict, NamespaceChange, StatementGate } from './sql-gate-types.js';
import { judgeFunctionEffects, toFunctionEffects, type FunctionEffects, type FunctionInfo } from './function-effects.js';
import { classifyFunctionCall, classifySql, type ClassifiedStatement, type SqlClassification } from './sql-classify.js';
import { decideSql, decideSqlReadOnly } from './sql-rules.js';
import { sqlShape } from './sql-shape.js';
import { Lru } from './lru.js';

/**
 * Classifications by shape (numbers replaced, see sql-shape.ts), shared by all sessions:
 * one parse serves every `… WHERE id = <n>`. Only parsed texts go in (and only those
 * shareableByShape), and a `review` verdict is always re-classified from the exact text,
 * whose fingerprint a grant names.
 */
const byShape = new Lru<string, { functions: ReadonlySet<string>; c: SqlClassification }>({
  maxEntries: 2000,
  maxBytes: 8 * 1024 * 1024,
  sizeOf: (k) => 2 * k.length + 2048,
});

const SESSION_CACHE = 256;

/**
 * Whether texts of the same shape may share this classification: not when it read a
 * number's value (valueDependent), and not when it keeps its own text for later (PREPARE
 * and DECLARE record the statement a Bind or FETCH runs and the audit names).
 */
function shareableByShape(c: SqlClassification): boolean {
  return c.ok && c.valueDependent !== true && c.statements.every((s) => s.names?.op !== 'prepare' && s.names?.op !== 'declare');
}

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

/** Classify and decide with the function effects given: the synchronous core of a gate. */
export interface SqlJudge {
  judge(sql: string, effects?: FunctionEffects): GateVerdict;
  /** The classification judge uses (synchronous, cached by text and by shape). */
  classify(sql: string): SqlClassification;
  /** The function and operator names of a classification, to resolve in the catalog before judge. */
  functionsOf(c: SqlClassification): { functions: string[]; operators: string[] };
}

export function createSqlJudge(identity: Identity, targetName: string, config: Pick<BrokerConfig, 'policies' | 'dangerousFunctions'>): SqlJudge {
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
    if (shape !== undefined && shareableByShape(c)) byShape.set(shape, { functions, c });
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
      const verdict: GateVerdict = { ...decision, fingerprint: c.fingerprint, classification: summarize(c), ...sideEffects(c) };
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

/** What a statement does beyond its result: to prepared statements and cursors, and to the schema. */
function sideEffects(c: SqlClassification): { changes?: NamespaceChange[]; ddl?: boolean } {
  if (!c.ok) return {};
  let ddl = false;
  let named = false;
  const changes = c.statements.map((s): NamespaceChange => {
    for (const k of s.kinds) if (k === 'create' || k === 'alter' || k === 'drop' || k === 'comment' || k === 'grant' || k === 'revoke') ddl = true;
    if (!s.names) return undefined;
    named = true;
    return { op: s.names, text: s.text };
  });
  const out: { changes?: NamespaceChange[]; ddl?: boolean } = {};
  if (named) out.changes = changes;
  if (ddl) out.ddl = true;
  return out;
}

const NO_NAMES: string[] = [];

/** SQL function bodies followed this deep when vouching for a function. */
const MAX_BODY_DEPTH = 4;

/**
 * Keys of what may run when a statement executes beyond its own text: each relation it
 * reads (a view's definition, a row-level security policy) and each type it casts to
 * (`type:<name>`: a domain's CHECK). Unqualified names are matched in every schema.
 */
function runsOnRead(st: ClassifiedStatement): string[] {
  if (st.casts.length === 0) return st.reads;
  return [...st.reads, ...st.casts.map((t) => `type:${t.slice(t.lastIndexOf('.') + 1)}`)];
}

function isBuiltinSchema(schema: string): boolean {
  return schema === 'pg_catalog' || schema === 'information_schema';
}

/** Texts a session keeps classified at hand. */
const RECENT_TEXTS = 256;
/** Views inside views followed this deep; deeper counts as unanalysable. */
const MAX_VIEW_DEPTH = 8;
/** Stands for a call that cannot be known (a view definition that would not parse or load): never resolves, so denied. */
const UNANALYSABLE_VIEW = 'agentgate.unanalysable_view()';
/** A definition that makes the view unanalysable (it does not parse). */
const UNANALYSABLE_DEFINITION = '(';
/**
 * The schema reported for an unqualified relation name the catalog could not place: its
 * lookup failed, or a statement creates it and the session's search_path decides where.
 * No `schema.*` glob names it, so only a rule that allows every schema covers it.
 */
const UNKNOWN_SCHEMA = '?';

/** How long a session trusts what it resolved before asking the catalog again. */
const RESOLVED_TTL_MS = 30_000;

export interface SqlGateOptions {
  /**
   * The live catalog: every function and operator a statement calls is resolved there, and
   * a statement counts as a read only if each is free of side effects (function-effects.ts).
   * Without it nothing is resolved (for offline checks of a policy, never in the proxy).
   */
  functions?: FunctionCatalog;
  /** The session is read-only upstream: refuse whatever would make it read-write. */
  readOnly?: boolean;
}

/**
 * The Postgres proxy's gate for one session: `prepare` resolves what a statement calls
 * (asynchronously, once per name per session and TTL), `judge` decides synchronously with
 * those effects. A name the catalog does not know, or a lookup that failed, is unknown,
 * and a statement calling an unknown function is denied.
 */
export function createSqlGate(identity: Identity, targetName: string, config: Pick<BrokerConfig, 'policies' | 'dangerousFunctions'>, opts: SqlGateOptions = {}): StatementGate {
  const judge = createSqlJudge(identity, targetName, config);
  const catalog = opts.functions;
  let byName = new Map<string, FunctionInfo[]>();
  let byOperator = new Map<string, FunctionInfo[]>();
  let byOid = new Map<number, FunctionInfo | null>();
  /** Relation (as classified) → the view definitions it may be ([] = not a view). */
  let viewDefs = new Map<string, string[]>();
  /** Relation name written without a schema → the schemas holding it ([UNKNOWN_SCHEMA] when the lookup failed). */
  let relSchemas = new Map<string, string[]>();
  /** Per classification: with each unqualified name read or written in every schema holding it. */
  let schemed = new WeakMap<SqlClassification, SqlClassification>();
  /** Relation → what its view definitions call, through nested views. */
  let viewCalls = new Map<string, { functions: string[]; operators: string[] }>();
  /** Per classification (classifications are shared and immutable): with view calls, and its effects. */
  let viewed = new WeakMap<SqlClassification, SqlClassification>();
  let effectsMemo = new WeakMap<SqlClassification, FunctionEffects>();
  /** Verdicts by the (memoized) effects of a classification: no text hashing on the hot path. */
  let verdicts = new WeakMap<FunctionEffects, GateVerdict>();
  /** Verdicts of classifications extended by view calls or attribute-style calls (no EXECUTE). */
  let extendedVerdicts = new WeakMap<SqlClassification, GateVerdict>();
  /** Function OID → its info with the volatility that can be trusted (see vouch). */
  let vouched = new Map<number, FunctionInfo>();
  /** Classifications (without EXECUTE) whose every call, view and body is resolved: prepare has nothing to do. */
  let ready = new WeakSet<SqlClassification>();
  let resolvedAt = performance.now();
  /** The session's recent texts → classification: a statement is asked about several times. */
  const recent = new Map<string, SqlClassification>();
  const classify = (sql: string): SqlClassification => {
    let c = recent.get(sql);
    if (!c) {
      c = judge.classify(sql);
      if (recent.size >= RECENT_TEXTS) recent.delete(recent.keys().next().value as string);
      recent.set(sql, c);
    }
    return c;
  };
  const dangerous = new Set(config.dangerousFunctions);

  /** Drops what was derived from the resolved names and definitions (they changed). */
  const forgetDerived = (): void => {
    viewCalls = new Map();
    viewed = new WeakMap();
    schemed = new WeakMap();
    effectsMemo = new WeakMap();
    verdicts = new WeakMap();
    extendedVerdicts = new WeakMap();
    vouched = new Map();
    ready = new WeakSet();
  };
  const forget = (): void => {
    byName = new Map();
    byOperator = new Map();
    byOid = new Map();
    viewDefs = new Map();
    relSchemas = new Map();
    forgetDerived();
    resolvedAt = performance.now();
  };

  /**
   * Asks the catalog for function and operator names and files the answers; a failed
   * lookup files them as unknown (unknown means no). Never rejects.
   */
  const resolveNames = async (cat: FunctionCatalog, names: readonly string[], ops: readonly string[]): Promise<void> => {
    try {
      const [fns, operatorFns] = await Promise.all([names.length > 0 ? cat.byNames(names) : undefined, ops.length > 0 ? cat.byOperators(ops) : undefined]);
      for (const n of names) byName.set(n, fns?.get(n) ?? []);
      for (const o of ops) byOperator.set(o, operatorFns?.get(o) ?? []);
    } catch {
      for (const n of names) byName.set(n, []);
      for (const o of ops) byOperator.set(o, []);
    }
    forgetDerived();
  };
  const expire = (): void => {
    if (performance.now() - resolvedAt >= RESOLVED_TTL_MS) forget();
  };

  /** Reads of `c` and of the views they reach whose definitions are not known yet. */
  const unknownViews = (c: SqlClassification): string[] => {
    const out = new Set<string>();
    const seen = new Set<string>();
    const visit = (rel: string, depth: number): void => {
      if (seen.has(rel) || depth > MAX_VIEW_DEPTH) return;
      seen.add(rel);
      const defs = viewDefs.get(rel);
      if (!defs) {
        out.add(rel);
        return;
      }
      for (const def of defs) {
        const d = judge.classify(def);
        if (d.ok) for (const st of d.statements) for (const r of runsOnRead(st)) visit(r, depth + 1);
      }
    };
    if (c.ok) for (const st of c.statements) for (const r of runsOnRead(st)) visit(r, 0);
    return [...out];
  };

  /**
   * What a relation's view definitions call, nested views included: a SELECT from a view
   * runs the functions in its definition. A definition too deep or unparseable counts as
   * calling an unknown function (denied).
   */
  const callsThrough = (rel: string, depth = 0): { functions: string[]; operators: string[] } => {
    const hit = viewCalls.get(rel);
    if (hit) return hit;
    const functions = new Set<string>();
    const operators = new Set<string>();
    const defs = viewDefs.get(rel) ?? [];
    for (const def of defs) {
      const d = judge.classify(def);
      if (!d.ok || depth > MAX_VIEW_DEPTH) {
        functions.add(UNANALYSABLE_VIEW);
        continue;
      }
      for (const st of d.statements) {
        for (const f of st.functions) functions.add(f);
        for (const o of st.operators) operators.add(o);
        for (const r of runsOnRead(st)) {
          const inner = callsThrough(r, depth + 1);
          for (const f of inner.functions) functions.add(f);
          for (const o of inner.operators) operators.add(o);
        }
      }
    }
    const out = { functions: [...functions], operators: [...operators] };
    viewCalls.set(rel, out);
    return out;
  };

  /** `c` with each statement's calls extended by what the views it reads call. */
  const withViews = (c: SqlClassification): SqlClassification => {
    if (!c.ok || !catalog) return c;
    const hit = viewed.get(c);
    if (hit) return hit;
    const out = addViewCalls(c);
    viewed.set(c, out);
    return out;
  };
  const addViewCalls = (c: Extract<SqlClassification, { ok: true }>): SqlClassification => {
    let changed = false;
    const statements = c.statements.map((st) => {
      const functions = new Set(st.functions);
      const operators = new Set(st.operators);
      for (const r of runsOnRead(st)) {
        const calls = callsThrough(r);
        for (const f of calls.functions) functions.add(f);
        for (const o of calls.operators) operators.add(o);
      }
      // `u.f` calls f(u) when a function f exists (and u has no column f): count it as a call.
      for (const m of st.maybeCalls) if ((byName.get(m)?.length ?? 0) > 0) functions.add(m);
      if (functions.size === st.functions.length && operators.size === st.operators.length) return st;
      changed = true;
      return { ...st, functions: [...functions], operators: [...operators] };
    });
    return changed ? { ...c, statements } : c;
  };

  /** Unqualified relation names of `c` not placed in the catalog yet. */
  const unplacedRelations = (c: SqlClassification): string[] => {
    if (!c.ok) return [];
    const out = new Set<string>();
    for (const st of c.statements) for (const n of st.unqualified ?? []) if (!relSchemas.has(n)) out.add(n);
    return [...out];
  };

  /**
   * `c` with each relation name written without a schema read or written in every schema
   * that holds one of that name: the server picks by the session's search_path, which the
   * session may change (SET search_path is harmless otherwise) and which puts pg_catalog and
   * a schema named like the role before public. Relation rules then judge every relation
   * the name could be, as calls are judged by every function a name could be. A name to
   * be created that exists nowhere, or one the lookup could not place, gets UNKNOWN_SCHEMA.
   */
  const withSchemas = (c: SqlClassification): SqlClassification => {
    if (!c.ok || !catalog || !c.statements.some((st) => st.unqualified !== undefined)) return c;
    const hit = schemed.get(c);
    if (hit) return hit;
    let changed = false;
    const statements = c.statements.map((st) => {
      if (!st.unqualified) return st;
      const reads = new Set(st.reads);
      const writes = new Set(st.writes);
      for (const n of st.unqualified) {
        const inPublic = `public.${n}`;
        const found = relSchemas.get(n) ?? [UNKNOWN_SCHEMA];
        const read = reads.has(inPublic);
        const written = writes.has(inPublic);
        for (const schema of found.length > 0 ? found : written ? [UNKNOWN_SCHEMA] : []) {
          if (read) reads.add(`${schema}.${n}`);
          if (written) writes.add(`${schema}.${n}`);
        }
      }
      if (reads.size === st.reads.length && writes.size === st.writes.length) return st;
      changed = true;
      return { ...st, reads: [...reads], writes: [...writes] };
    });
    const out = changed ? { ...c, statements } : c;
    schemed.set(c, out);
    return out;
  };

  /** The effects of what `c` calls, from what has been resolved (everything has, after prepare). */
  const effectsOf = (c: SqlClassification): FunctionEffects => {
    let e = effectsMemo.get(c);
    if (!e) {
      e = computeEffects(c);
      effectsMemo.set(c, e);
    }
    return e;
  };
  const computeEffects = (c: SqlClassification): FunctionEffects => {
    const { functions, operators } = judge.functionsOf(c);
    const list: { name: string; infos: FunctionInfo[] }[] = [];
    for (const f of functions) list.push({ name: f, infos: (byName.get(f) ?? []).map((i) => vouch(i)) });
    for (const o of operators) list.push({ name: o, infos: (byOperator.get(o) ?? []).map((i) => vouch(i)) });
    return toFunctionEffects(judgeFunctionEffects(list));
  };

  /**
   * A function's declared volatility, as far as it can be trusted. Built-ins and extension
   * functions: as declared. A user's non-volatile SQL function: only if its body is a read
   * whose every call is (resolved the same way); any other user function declared
   * IMMUTABLE or STABLE cannot be vouched for (a PL/pgSQL body may call anything that does
   * not write, pg_stat_reset say), so it counts as volatile: unknown means no.
   */
  const vouch = (info: FunctionInfo, depth = 0): FunctionInfo => {
    if (info.volatility === 'v' || isBuiltinSchema(info.schema) || info.extension === true) return info;
    const hit = vouched.get(info.oid);
    if (hit) return hit;
    const volatile = { ...info, volatility: 'v' as const };
    let out: FunctionInfo = volatile;
    if (info.language === 'sql' && info.source && depth <= MAX_BODY_DEPTH) {
      vouched.set(info.oid, volatile); // a cycle counts as volatile
      const body = judge.classify(info.source);
      if (body.ok && body.statements.every((st) => st.kinds.every((k) => k === 'select') && !st.readWrite)) {
        const { functions, operators } = judge.functionsOf(body);
        const list: { name: string; infos: FunctionInfo[] }[] = [];
        let resolved = true;
        for (const f of functions) {
          const infos = byName.get(f);
          if (!infos) resolved = false;
          list.push({ name: f, infos: (infos ?? []).map((i) => vouch(i, depth + 1)) });
        }
        for (const o of operators) {
          const infos = byOperator.get(o);
          if (!infos) resolved = false;
          list.push({ name: o, infos: (infos ?? []).map((i) => vouch(i, depth + 1)) });
        }
        const j = judgeFunctionEffects(list);
        if (resolved && j.effectful.length === 0 && j.unknown.length === 0) out = info;
      }
    }
    vouched.set(info.oid, out);
    return out;
  };

  /** Names called by the bodies of user SQL functions among `infos`, not resolved yet (to resolve before vouching). */
  const bodyNames = (infos: Iterable<FunctionInfo>, names: Set<string>, ops: Set<string>, seen = new Set<number>(), depth = 0): void => {
    for (const info of infos) {
      if (seen.has(info.oid) || depth > MAX_BODY_DEPTH) continue;
      seen.add(info.oid);
      if (info.volatility === 'v' || isBuiltinSchema(info.schema) || info.extension === true || info.language !== 'sql' || !info.source) continue;
      const body = judge.classify(info.source);
      if (!body.ok) continue;
      const { functions, operators } = judge.functionsOf(body);
      for (const f of functions) {
        const known = byName.get(f);
        if (known) bodyNames(known, names, ops, seen, depth + 1);
        else names.add(f);
      }
      for (const o of operators) {
        const known = byOperator.get(o);
        if (known) bodyNames(known, names, ops, seen, depth + 1);
        else ops.add(o);
      }
    }
  };

  const readOnlyRefusal = (c: SqlClassification, v: GateVerdict): GateVerdict => {
    if (!opts.readOnly || v.effect === 'deny') return v;
    const reason = decideSqlReadOnly(c);
    return reason === undefined ? v : { ...v, effect: 'deny', rule: null, reason };
  };

  /**
   * The classification with each EXECUTE replaced by the statement it runs, and each FETCH or
   * MOVE by the statement its portal runs (a cursor's DECLARE, or what a protocol Bind bound:
   * a portal Bound from a DELETE … RETURNING runs the DELETE on the first FETCH), so it is
   * judged by what it does; a string when that cannot be known (the reason to deny).
   */
  const withExecuted = (
    c: SqlClassification,
    prepared: ReadonlyMap<string, string | undefined> | undefined,
    portals: ReadonlyMap<string, string | undefined> | undefined,
  ): SqlClassification | string => {
    if (!c.ok || !c.statements.some((s) => s.names?.op === 'execute' || s.names?.op === 'fetch')) return c;
    const statements: ClassifiedStatement[] = [];
    for (const s of c.statements) {
      const op = s.names?.op;
      if (op !== 'execute' && op !== 'fetch') {
        statements.push(s);
        continue;
      }
      const name = s.names!.name as string;
      const what = op === 'execute' ? `prepared statement "${name}"` : `portal "${name}"`;
      const text = (op === 'execute' ? prepared : portals)?.get(name);
      if (text === undefined) return `${op === 'execute' ? 'EXECUTE' : 'FETCH/MOVE'} names ${what}, which does not exist (as far as the server has confirmed)`;
      const target = classify(text);
      if (!target.ok) return `cannot parse ${what}: ${target.error}`;
      if (target.statements.some((t) => t.names?.op === 'execute' || t.names?.op === 'fetch')) return `${what} itself runs EXECUTE or FETCH`;
      // A statement that runs p inside it (CREATE TABLE … AS EXECUTE p, EXPLAIN ANALYZE
      // EXECUTE p) is judged as itself and as p; EXECUTE p, FETCH and MOVE only as what they run.
      if (op === 'execute' && s.kind !== 'execute') statements.push({ ...s, kinds: s.kinds.filter((k) => k !== 'execute') });
      statements.push(...target.statements);
    }
    return { ok: true, statements, fingerprint: c.fingerprint };
  };

  /** The prepared statements (`execute`) or portals (`fetch`) the text runs, by name. */
  const namesRun = (sql: string, op: 'execute' | 'fetch'): string[] => {
    const c = classify(sql);
    if (!c.ok || ready.has(c)) return NO_NAMES;
    return c.statements.flatMap((s) => (s.names?.op === op ? [s.names.name] : []));
  };

  const gate: StatementGate = {
    executes: (sql) => namesRun(sql, 'execute'),
    fetches: (sql) => namesRun(sql, 'fetch'),
    prepare(sql, prepared, portals) {
      if (!catalog) return undefined;
      expire();
      const c = classify(sql);
      if (ready.has(c)) return undefined;
      const executed = withExecuted(c, prepared, portals);
      if (typeof executed === 'string') return undefined;
      /** Learn from the catalog (`learn` files a failed lookup as unknown, never rejects), then prepare again. */
      const learnThenPrepare = async (learn: () => Promise<void>): Promise<void> => {
        await learn();
        forgetDerived();
        await gate.prepare(sql, prepared, portals);
      };
      const views = unknownViews(executed);
      if (views.length > 0) {
        // Learn which relations are views (and what those read, in turn), then resolve calls.
        return learnThenPrepare(async () => {
          for (let round = 0, rels = views; rels.length > 0 && round <= MAX_VIEW_DEPTH; round++, rels = unknownViews(executed)) {
            try {
              const defs = await catalog.viewDefinitions(rels);
              for (const r of rels) viewDefs.set(r, defs.get(r) ?? []);
            } catch {
              for (const r of rels) viewDefs.set(r, [UNANALYSABLE_DEFINITION]);
            }
          }
        });
      }
      const unplaced = unplacedRelations(executed);
      if (unplaced.length > 0) {
        // Learn which schemas hold each unqualified name (withSchemas).
        return learnThenPrepare(async () => {
          try {
            const found = await catalog.relationSchemas(unplaced);
            for (const n of unplaced) relSchemas.set(n, found.get(n) ?? []);
          } catch {
            for (const n of unplaced) relSchemas.set(n, [UNKNOWN_SCHEMA]);
          }
        });
      }
      const resolved = withViews(executed);
      const { functions, operators } = judge.functionsOf(resolved);
      const wantNames = new Set(functions.filter((f) => !byName.has(f)));
      const wantOps = new Set(operators.filter((o) => !byOperator.has(o)));
      if (executed.ok) for (const st of executed.statements) for (const m of st.maybeCalls) if (!byName.has(m)) wantNames.add(m);
      const called: FunctionInfo[] = [];
      for (const f of functions) called.push(...(byName.get(f) ?? []));
      for (const o of operators) called.push(...(byOperator.get(o) ?? []));
      bodyNames(called, wantNames, wantOps);
      const names = [...wantNames];
      const ops = [...wantOps];
      if (names.length === 0 && ops.length === 0) {
        if (executed === c) ready.add(c);
        return undefined;
      }
      // Bodies of newly resolved SQL functions may call more: resolve those too.
      return resolveNames(catalog, names, ops).then(() => gate.prepare(sql, prepared, portals));
    },
    judge(sql, prepared, portals) {
      const c = classify(sql);
      const executed = withExecuted(c, prepared, portals);
      const resolved = typeof executed === 'string' ? executed : withSchemas(withViews(executed));
      if (resolved === c) {
        if (!catalog) return readOnlyRefusal(c, judge.judge(sql));
        const effects = effectsOf(c);
        let v = verdicts.get(effects);
        if (v === undefined) {
          v = readOnlyRefusal(c, judge.judge(sql, effects));
          // A review verdict names the exact text's fingerprint (a grant covers that text only).
          if (v.effect !== 'review') verdicts.set(effects, v);
        }
        return v;
      }
      const side = sideEffects(c);
      if (typeof resolved === 'string') {
        return { effect: 'deny', policy: null, rule: null, reason: resolved, fingerprint: c.fingerprint, classification: summarize(c), ...side };
      }
      // EXECUTE runs what was prepared, a view runs its definition: decided on that.
      const cacheable = executed === c;
      const hit = cacheable ? extendedVerdicts.get(resolved) : undefined;
      if (hit) return hit;
      const d = decideSql(identity, targetName, config.policies, resolved, catalog ? effectsOf(resolved) : undefined);
      const { statement: _statement, ...decision } = d;
      const v = readOnlyRefusal(resolved, { ...decision, fingerprint: c.fingerprint, classification: summarize(resolved), ...side });
      if (cacheable && v.effect !== 'review') extendedVerdicts.set(resolved, v);
      return v;
    },
    prepareFunctionCall(oid) {
      if (!catalog) return undefined;
      expire();
      if (byOid.has(oid)) {
        // A user SQL function is vouched for by its body: resolve what that calls first.
        const info = byOid.get(oid);
        const names = new Set<string>();
        const ops = new Set<string>();
        if (info) bodyNames([info], names, ops);
        if (names.size === 0 && ops.size === 0) return undefined;
        return resolveNames(catalog, [...names], [...ops]).then(() => gate.prepareFunctionCall(oid));
      }
      return catalog.byOid(oid).then(
        (info) => {
          byOid.set(oid, info ?? null);
          return gate.prepareFunctionCall(oid);
        },
        () => void byOid.set(oid, null),
      );
    },
    judgeFunctionCall(oid, args) {
      const info = byOid.get(oid) ?? undefined;
      const c = classifyFunctionCall(info, args, { oid, dangerousFunctions: dangerous });
      const name = info ? `${info.schema}.${info.name}` : undefined;
      const effects = info && name ? toFunctionEffects(judgeFunctionEffects([{ name, infos: [vouch(info)] }])) : undefined;
      const d = decideSql(identity, targetName, config.policies, c, effects);
      const { statement: _statement, ...decision } = d;
      const verdict = readOnlyRefusal(c, { ...decision, fingerprint: c.fingerprint, classification: summarize(c) });
      const label = c.ok ? (c.statements[0]?.text ?? `-- function call: oid ${oid}`) : `-- function call: oid ${oid} (unknown)`;
      const builtin = info !== undefined && (info.schema === 'pg_catalog' || info.schema === 'information_schema');
      return { ...verdict, label, builtin };
    },
    invalidate() {
      forget();
      catalog?.invalidate();
    },
  };
  return gate;
}
