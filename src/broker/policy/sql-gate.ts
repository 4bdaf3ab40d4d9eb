/**
 * The Postgres proxy's statement gate for one session: classify (cached by text, see
 * sql-classify.ts), expand to what the statement runs and reads in the live catalog
 * (statement-expansion.ts), decide by policy, and shape the verdict the proxy and the
 * reviewers see. Verdicts are also cached per session, since identity and target are fixed
 * there.
 *
 * `gate.prepare(sql)` learns from the catalog whatever the expansion lacks (asynchronously,
 * once per name per session and TTL); `gate.judge(sql)` then decides synchronously. A
 * verdict depends on the effects only through the names the statement calls, so the
 * session cache keys such a verdict by the text plus, per called name, whether it is
 * effectful, unknown or neither.
 */
import type { BrokerConfig } from '../config/types.js';
import type { Identity } from '../identity/types.js';
import type { FunctionCatalog, GateVerdict, NamespaceChange, StatementGate } from './sql-gate-types.js';
import { judgeFunctionEffects, type FunctionEffects, type FunctionInfo } from './function-effects.js';
import { createStatementExpander } from './statement-expansion.js';
import { classifyFunctionCall, classifySql, functionsOfClassification, type ClassifiedStatement, type SqlClassification } from './sql-classify.js';
import { decideSql, decideSqlReadOnly } from './sql-rules.js';
import { sqlShape } from './sql-shape.js';
import { Lru } from './lru.js';
import { foldIdentifier } from './sql-kinds.js';

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

/** Kinds that change the catalog: what was resolved in it may be stale after one runs. */
const SCHEMA_KINDS: ReadonlySet<string> = new Set(['create', 'alter', 'drop', 'comment', 'grant', 'revoke']);

const changesSchema = (s: ClassifiedStatement): boolean => s.kinds.some((k) => SCHEMA_KINDS.has(k));

/**
 * Why a text must be refused because a statement in it follows one that changes the schema
 * (`create or replace function f …; select f()`): the whole text is judged before anything
 * runs, with the catalog as it was, so what comes after the change would be judged on stale
 * facts. Transaction control runs no user code and may follow. Undefined when none does.
 */
export function staleAfterSchemaChange(c: SqlClassification): string | undefined {
  if (!c.ok) return undefined;
  const at = c.statements.findIndex(changesSchema);
  if (at < 0) return undefined;
  const after = c.statements.slice(at + 1).find((s) => !s.kinds.every((k) => k === 'transaction'));
  if (!after) return undefined;
  return `${after.detail ?? after.kind.toUpperCase()} denied: it follows ${c.statements[at]!.detail ?? c.statements[at]!.kind.toUpperCase()} in the same text, and would be judged on the schema as it was before that ran; send the schema change on its own first`;
}

/** Kinds that run code the gate does not look into (a procedure's body, a DO block). */
const OPAQUE_KINDS: ReadonlySet<string> = new Set(['call', 'do']);

/** `v` marked opaque (see GateVerdict.opaque) when it lets unanalysed code run. */
function opaque(v: GateVerdict, c: SqlClassification, effects: FunctionEffects | undefined): GateVerdict {
  if (v.effect === 'deny' || !c.ok) return v;
  const runs = (effects?.userCode !== undefined && effects.userCode.size > 0) || c.statements.some((s) => s.kinds.some((k) => OPAQUE_KINDS.has(k)));
  return runs ? { ...v, opaque: true } : v;
}

/** What a statement does beyond its result: to prepared statements and cursors, and to the schema. */
function sideEffects(c: SqlClassification): Pick<GateVerdict, 'changes' | 'ddl' | 'sessionState' | 'unshowable'> {
  if (!c.ok) return {};
  let ddl = false;
  let named = false;
  let state = false;
  let copyIn = false;
  const changes = c.statements.map((s): NamespaceChange => {
    if (changesSchema(s)) ddl = true;
    if (s.settings.length > 0 || s.kinds.some((k) => k === 'session' || k === 'set' || k === 'reset' || k === 'discard')) state = true;
    if (s.detail === 'COPY FROM STDIN') copyIn = true;
    if (!s.names) return undefined;
    named = true;
    return { op: s.names, text: s.text };
  });
  const out: Pick<GateVerdict, 'changes' | 'ddl' | 'sessionState' | 'unshowable'> = {};
  if (named) out.changes = changes;
  if (ddl) out.ddl = true;
  if (state) out.sessionState = true;
  if (copyIn) out.unshowable = 'COPY FROM STDIN loads rows the client sends after the approval, which no reviewer sees';
  return out;
}

const NO_NAMES: string[] = [];
const NO_TYPES: readonly number[] = [];

/** Texts a session keeps classified at hand. */
const RECENT_TEXTS = 256;

/** How long a session trusts what it resolved before asking the catalog again. */
const RESOLVED_TTL_MS = 30_000;

/** Learn-and-retry rounds one prepare makes at most (each learns something new; this only bounds a pathological catalog). */
const MAX_LEARN_ROUNDS = 32;

export interface SqlGateOptions {
  /**
   * The live catalog: a statement is judged as it runs (statement-expansion.ts), and counts
   * as a read only if each function and operator it runs is free of side effects
   * (function-effects.ts). Without it nothing is resolved (for offline checks of a policy,
   * never in the proxy).
   */
  functions?: FunctionCatalog;
  /** The session is read-only upstream: refuse whatever would make it read-write. */
  readOnly?: boolean;
}

/**
 * The Postgres proxy's gate for one session: `prepare` resolves what a statement runs
 * (asynchronously, once per name per session and TTL), `judge` decides synchronously with
 * that. A name the catalog does not know, or a lookup that failed, is unknown, and a
 * statement calling an unknown function is denied.
 */
export function createSqlGate(identity: Identity, targetName: string, config: Pick<BrokerConfig, 'policies' | 'dangerousFunctions'>, opts: SqlGateOptions = {}): StatementGate {
  const judge = createSqlJudge(identity, targetName, config);
  const catalog = opts.functions;
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
  const expander = catalog ? createStatementExpander(catalog, classify) : undefined;
  let byOid = new Map<number, FunctionInfo | null>();
  /** Verdicts by the (memoized) effects of a classification: no text hashing on the hot path. */
  let verdicts = new WeakMap<FunctionEffects, GateVerdict>();
  /** Verdicts of classifications the expansion changed (no EXECUTE). */
  let extendedVerdicts = new WeakMap<SqlClassification, GateVerdict>();
  /** Classifications (without EXECUTE) whose expansion lacks nothing: prepare has nothing to do. */
  let ready = new WeakSet<SqlClassification>();
  let resolvedAt = performance.now();
  const dangerous = new Set(config.dangerousFunctions);

  /** Drops what was derived from the resolved facts (they changed). */
  const forgetDerived = (): void => {
    expander?.forgetDerived();
    verdicts = new WeakMap();
    extendedVerdicts = new WeakMap();
    ready = new WeakSet();
  };
  const forget = (): void => {
    byOid = new Map();
    expander?.forget();
    forgetDerived();
    resolvedAt = performance.now();
  };
  const expire = (): void => {
    if (performance.now() - resolvedAt >= RESOLVED_TTL_MS) forget();
  };

  /** Learns what `run` lacked, then calls `again`; undefined when nothing was lacking. */
  const learnThen = (run: () => void, again: () => Promise<void> | undefined, round: number): Promise<void> | undefined => {
    if (!expander || round >= MAX_LEARN_ROUNDS) return undefined;
    const needs = expander.missing(run);
    if (!needs) return undefined;
    return expander.learn(needs).then(() => {
      forgetDerived();
      return again();
    });
  };

  /** Refusals whatever the policy says: undoing a read-only session, a statement after a schema change in one text. */
  const standingRefusal = (c: SqlClassification, v: GateVerdict): GateVerdict => {
    if (v.effect === 'deny') return v;
    const reason = (opts.readOnly ? decideSqlReadOnly(c) : undefined) ?? staleAfterSchemaChange(c);
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

  const prepareRound = (
    sql: string,
    prepared: ReadonlyMap<string, string | undefined> | undefined,
    portals: ReadonlyMap<string, string | undefined> | undefined,
    types: readonly number[],
    round: number,
  ): Promise<void> | undefined => {
    if (!expander) return undefined;
    const c = classify(sql);
    if (types.length === 0 && ready.has(c)) return undefined;
    const executed = withExecuted(c, prepared, portals);
    if (typeof executed === 'string') return undefined;
    const pending = learnThen(
      () => void expander.effectsOf(expander.expand(executed, types)),
      () => prepareRound(sql, prepared, portals, types, round + 1),
      round,
    );
    if (!pending && executed === c && types.length === 0) ready.add(c);
    return pending;
  };

  /**
   * A verdict other than allow says whether the statement runs code the policy does not
   * allow, or code the gate could not resolve (it does not parse): parsing and planning it
   * may run that code, so its Parse cannot go ahead of the decision.
   */
  const marked = (v: GateVerdict, c: SqlClassification, effects: FunctionEffects | undefined): GateVerdict => {
    if (v.effect !== 'allow' && (!c.ok || (effects !== undefined && (effects.effectful.size > 0 || effects.unknown.size > 0)))) return { ...v, runsCode: true };
    return opaque(v, c, effects);
  };

  /** The declared parameter types that say something (0 leaves the type to the server's inference from the text). */
  const declared = (paramTypes: readonly number[] | undefined): readonly number[] => (paramTypes && paramTypes.some((t) => t !== 0) ? paramTypes.filter((t) => t !== 0) : NO_TYPES);

  /** A FunctionCall message's call as it runs: its arguments are coerced to the function's types. */
  const functionCallOf = (oid: number, args: number): { c: SqlClassification; info: FunctionInfo | undefined } => {
    const info = byOid.get(oid) ?? undefined;
    const c = classifyFunctionCall(info, args, { oid, dangerousFunctions: dangerous });
    return { c: info && expander ? expander.expand(c, info.types ?? []) : c, info };
  };

  const prepareFunctionCallRound = (oid: number, round: number): Promise<void> | undefined => {
    if (!catalog || !expander) return undefined;
    if (byOid.has(oid)) {
      return learnThen(
        () => void expander.effectsOf(functionCallOf(oid, 0).c),
        () => prepareFunctionCallRound(oid, round + 1),
        round,
      );
    }
    return catalog.byOid(oid).then(
      (info) => {
        byOid.set(oid, info ?? null);
        return prepareFunctionCallRound(oid, round);
      },
      () => void byOid.set(oid, null),
    );
  };

  const gate: StatementGate = {
    executes: (sql) => namesRun(sql, 'execute'),
    fetches: (sql) => namesRun(sql, 'fetch'),
    prepare(sql, prepared, portals, paramTypes) {
      if (!catalog) return undefined;
      expire();
      return prepareRound(sql, prepared, portals, declared(paramTypes), 0);
    },
    judge(sql, prepared, portals, paramTypes) {
      const c = classify(sql);
      const executed = withExecuted(c, prepared, portals);
      const resolved = typeof executed === 'string' ? executed : expander ? expander.expand(executed, declared(paramTypes)) : executed;
      if (resolved === c) {
        if (!expander) return marked(standingRefusal(c, judge.judge(sql)), c, undefined);
        const effects = expander.effectsOf(c);
        let v = verdicts.get(effects);
        if (v === undefined) {
          v = marked(standingRefusal(c, judge.judge(sql, effects)), c, effects);
          // A review verdict names the exact text's fingerprint (a grant covers that text only).
          if (v.effect !== 'review') verdicts.set(effects, v);
        }
        return v;
      }
      const side = sideEffects(c);
      // set_config in a view's definition changes the session as the statement's own would.
      if (typeof resolved !== 'string' && resolved.ok && resolved.statements.some((s) => s.settings.length > 0)) side.sessionState = true;
      if (typeof resolved === 'string') {
        return { effect: 'deny', policy: null, rule: null, reason: resolved, fingerprint: c.fingerprint, classification: summarize(c), ...side };
      }
      // EXECUTE runs what was prepared, a view runs its definition: decided on that.
      const cacheable = executed === c;
      const hit = cacheable ? extendedVerdicts.get(resolved) : undefined;
      if (hit) return hit;
      const effects = expander ? expander.effectsOf(resolved) : undefined;
      const d = decideSql(identity, targetName, config.policies, resolved, effects);
      const { statement: _statement, ...decision } = d;
      const v = marked(standingRefusal(resolved, { ...decision, fingerprint: c.fingerprint, classification: summarize(resolved), ...side }), resolved, effects);
      if (cacheable && v.effect !== 'review') extendedVerdicts.set(resolved, v);
      return v;
    },
    prepareFunctionCall(oid) {
      if (!catalog) return undefined;
      expire();
      return prepareFunctionCallRound(oid, 0);
    },
    judgeFunctionCall(oid, args) {
      const { c, info } = functionCallOf(oid, args);
      let effects: FunctionEffects | undefined;
      if (info && expander && c.ok) {
        // The function called is judged as the OID names it, not by every overload of its name.
        const name = foldIdentifier(`${info.schema}.${info.name}`);
        const own = judgeFunctionEffects([{ name, infos: [expander.vouch(info)] }]);
        const all = expander.effectsOf(c);
        const effectful = new Set([...all.effectful].filter((f) => f !== name).concat(own.effectful));
        const unknown = new Set([...all.unknown].filter((f) => f !== name).concat(own.unknown));
        const userCode = new Set([...(all.userCode ?? [])].filter((f) => f !== name).concat(own.userCode));
        effects = { effectful, unknown, userCode };
      }
      const d = decideSql(identity, targetName, config.policies, c, effects);
      const { statement: _statement, ...decision } = d;
      const verdict = opaque(standingRefusal(c, { ...decision, fingerprint: c.fingerprint, classification: summarize(c), ...sideEffects(c) }), c, effects);
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
