/**
 * Masked values laundered through what agents write: `CREATE TEMP TABLE t AS SELECT email
 * AS x FROM users`, then `SELECT x FROM t`. The read of `t` names no masked column, so
 * provenance alone (provenance.ts) would show it. This module records which relations
 * hold data that may come from a masked column, so that reads of them are masked like
 * reads of the column itself.
 *
 * The choice, and why:
 * - (b) "every relation an agent may write is untrusted" needs no tracking, but masks whole
 *   every column of a scratch area (counts, ids, aggregates of clean columns), and a policy
 *   that lets an agent INSERT anywhere would make every table untrusted.
 * - (a) "follow the data into the relations it is written to" is what is done here, per
 *   relation rather than per column (a write's column mapping — column lists, defaults,
 *   MERGE actions, rules — is a second analysis to get wrong; a relation is tainted whole):
 *   before a statement that writes rows or defines a relation is forwarded (the flow waits
 *   for this), its write targets are tainted when anything it reads ANYWHERE — values,
 *   WHERE, subqueries, views, functions that are not built in, what cannot be analysed —
 *   may be a masked column or a tainted relation's (statement-reads.ts, the same analysis
 *   the masking of errors uses). DDL after which one relation's reads show another's rows
 *   (RENAME, INHERIT, ATTACH PARTITION, PARTITION OF) carries the taint either way between
 *   the relations it links; CREATE TRIGGER taints its table (the function it runs is not analysed). Views and
 *   materialized views are not tainted: their definitions are analysed at each read.
 *
 * Taint is by relation NAME, in any schema (`scratch.t`, `pg_temp_3.t` and `public.t` are
 * one name): SET SCHEMA and ALTER COLUMN TYPE keep it, a RENAME carries it, a temporary
 * table is covered whatever its session's schema is called, and an unknown schema never
 * hides a name. The price: a clean relation that shares a tainted name is masked too.
 * Taint is never removed (a relation truncated or dropped and made again under the name
 * stays masked); it is kept per target, shared by all sessions (another session of the
 * agent, or a reconnect, reads the copy masked) and saved in the broker's state dir before
 * the write is forwarded (written-relations-file.ts; with the PostgreSQL store, in the store,
 * shared by every broker on it: pgstore/written-relations.ts), so a restart keeps it.
 */
import { loadSqlParser } from '../policy/sql-classify.js';
import { parseStatements } from './statement-reads.js';
import { sqlShape } from '../policy/sql-shape.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Relation names whose data may come from a masked column, for one target. */
export class WrittenRelations {
  readonly #names = new Set<string>();
  /**
   * Relations written from others while those were clean: a write judged clean may still
   * run after another session tainted a relation it reads (the taint comes at that
   * session's gate, the copy at this statement's execution), so taint follows these edges.
   */
  readonly #feeds = new Map<string, Set<string>>();
  #version = 0;
  /** Writes the whole list where it survives a restart (written-relations-file.ts); absent = memory only. */
  readonly #persist: ((names: readonly string[]) => Promise<void>) | undefined;
  readonly #fresh: (() => Promise<void> | undefined) | undefined;
  #saved: Promise<void> = Promise.resolve();
  #dirty = false;

  /**
   * `persist`: saves the whole list (see flush). `fresh`: where other brokers add names too
   * (pgstore/written-relations.ts), undefined while every name they saved is known here,
   * else a promise (never rejecting) that resolves once this list has caught up.
   */
  constructor(initial: Iterable<string> = [], opts: { persist?: (names: readonly string[]) => Promise<void>; fresh?: () => Promise<void> | undefined } = {}) {
    for (const n of initial) this.#names.add(n);
    this.#persist = opts.persist;
    this.#fresh = opts.fresh;
  }

  /** Undefined when this list holds every name saved anywhere, else a promise that resolves once it does (see the constructor). */
  fresh(): Promise<void> | undefined {
    return this.#fresh?.();
  }

  /**
   * Names another broker saved (already where they survive): added without saving them
   * again; relations this broker saw written from them are tainted (and saved) as add() does.
   */
  learn(names: Iterable<string>): void {
    const follow: string[] = [];
    for (const n of names) {
      if (this.#names.has(n)) continue;
      this.#names.add(n);
      this.#version++;
      for (const next of this.#feeds.get(n) ?? []) follow.push(next);
    }
    if (follow.length > 0) this.add(follow);
  }

  /** Resolves once every name added so far is saved (at once without persistence); rejects when the save failed. */
  flush(): Promise<void> {
    const persist = this.#persist;
    if (!persist || !this.#dirty) return this.#saved;
    this.#dirty = false;
    const names = [...this.#names];
    this.#saved = this.#saved
      .catch(() => undefined)
      .then(() => persist(names))
      .catch((err: unknown) => {
        // Not saved: the next flush tries again.
        this.#dirty = true;
        throw err;
      });
    return this.#saved;
  }

  /** Bumped whenever a name is added: what was resolved under an older version may be stale. */
  get version(): number {
    return this.#version;
  }

  /** Every tainted name. */
  names(): string[] {
    return [...this.#names];
  }

  has(name: string): boolean {
    return this.#names.has(name);
  }

  add(names: Iterable<string>): void {
    const todo = [...names];
    while (todo.length > 0) {
      const n = todo.pop()!;
      if (this.#names.has(n)) continue;
      this.#names.add(n);
      this.#version++;
      this.#dirty = true;
      for (const next of this.#feeds.get(n) ?? []) todo.push(next);
    }
  }

  /** `targets` were written from `sources` (judged clean): a later taint of a source reaches them. */
  feed(sources: Iterable<string>, targets: ReadonlySet<string>): void {
    if (targets.size === 0) return;
    for (const s of sources) {
      if (targets.has(s)) continue;
      let set = this.#feeds.get(s);
      if (!set) this.#feeds.set(s, (set = new Set()));
      for (const t of targets) set.add(t);
    }
  }
}

/** Statement nodes that write rows into their `relation`. */
const ROW_WRITES: ReadonlySet<string> = new Set(['InsertStmt', 'UpdateStmt', 'MergeStmt', 'CopyStmt']);
/** ALTER TABLE subcommands after which one relation's reads return another's rows. */
const LINKING_COMMANDS: ReadonlySet<string> = new Set(['AT_AddInherit', 'AT_AttachPartition']);
/** RenameStmt types that rename a relation (others rename a column, a constraint, …). */
const RELATION_RENAMES: ReadonlySet<string> = new Set(['OBJECT_TABLE', 'OBJECT_FOREIGN_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW']);

const relname = (v: unknown): string | undefined => (isObj(v) && typeof v['relname'] === 'string' ? v['relname'] : undefined);

/** What a statement text writes to, as far as taint goes. */
export interface WriteTargets {
  /** Relations tainted when the text reads a masked or tainted column anywhere. */
  fed: Set<string>;
  /** Relation names the text links (linkedTo): tainted all when one of them is. */
  linked: string[][];
  /** Relations tainted whatever the text reads (a trigger's table). */
  always: Set<string>;
  /** The text stores or removes rows that taint does not cover (a materialized view, a DELETE): its row count is still judged. */
  stores?: boolean;
}

/** Calls `visit` for every object node under `roots` (iteratively: deep trees must not exhaust the stack). */
function eachNode(roots: readonly unknown[], visit: (node: Obj) => void): void {
  const stack: unknown[] = [...roots];
  while (stack.length > 0) {
    const v = stack.pop();
    // Pushed one by one: a spread of a huge list (VALUES of many rows) would overflow the call.
    if (Array.isArray(v)) for (const x of v as unknown[]) stack.push(x);
    else if (isObj(v)) {
      visit(v);
      for (const x of Object.values(v)) stack.push(x);
    }
  }
}

/** Every relation name under `root` (RangeVar nodes, bare or wrapped). */
function relationsUnder(root: unknown): string[] {
  const out: string[] = [];
  eachNode([root], (v) => {
    const name = relname(v);
    if (name !== undefined) out.push(name);
  });
  return out;
}

/**
 * The relations DDL on `relation` links it to, so that taint on one reaches the others: the
 * new name of a RENAME, the parents of CREATE TABLE … INHERITS / PARTITION OF, the parent
 * of ALTER TABLE … INHERIT and the partition of ATTACH PARTITION. (SET SCHEMA keeps the name;
 * LIKE and REFERENCES share no rows.)
 */
function linkedTo(k: string, body: Obj): string[] {
  if (k === 'RenameStmt') return RELATION_RENAMES.has(String(body['renameType'])) && typeof body['newname'] === 'string' ? [body['newname']] : [];
  if (k === 'CreateStmt') return relationsUnder(body['inhRelations']);
  if (k !== 'AlterTableStmt' || !Array.isArray(body['cmds'])) return [];
  const out: string[] = [];
  for (const c of body['cmds'] as unknown[]) {
    const cmd = isObj(c) && isObj(c['AlterTableCmd']) ? c['AlterTableCmd'] : undefined;
    if (cmd && LINKING_COMMANDS.has(String(cmd['subtype']))) out.push(...relationsUnder(cmd['def']));
  }
  return out;
}

/** The write targets of parsed statements (anywhere: writable CTEs, rule actions, PREPARE, EXPLAIN). */
export function writeTargets(stmts: readonly unknown[]): WriteTargets {
  const out: WriteTargets = { fed: new Set(), linked: [], always: new Set() };
  eachNode(stmts, (v) => {
    for (const [k, body] of Object.entries(v)) {
      if (!isObj(body)) continue;
      const rel = relname(body['relation']);
      // COPY writes rows only FROM (a client's data); COPY … TO reads.
      if (ROW_WRITES.has(k) && rel !== undefined && (k !== 'CopyStmt' || body['is_from'] === true)) out.fed.add(rel);
      // SELECT INTO and CREATE TABLE AS (a materialized view is analysed by its definition).
      if (k === 'IntoClause' || (k === 'SelectStmt' && isObj(body['intoClause']))) {
        const into = k === 'IntoClause' ? body : (body['intoClause'] as Obj);
        const name = relname(into['rel']);
        if (name !== undefined) out.fed.add(name);
      }
      // A materialized view (analysed by its definition) and a DELETE (copies nothing) store
      // no masked value, but how many rows they leave is still judged.
      if ((k === 'CreateTableAsStmt' && body['objtype'] === 'OBJECT_MATVIEW') || k === 'DeleteStmt') out.stores = true;
      if (k === 'CreateTableAsStmt' && body['objtype'] !== 'OBJECT_MATVIEW' && isObj(body['into'])) {
        const name = relname(body['into']['rel']);
        if (name !== undefined) out.fed.add(name);
      }
      // A table's defaults and generated expressions, a column type's USING, rule actions' targets.
      if ((k === 'CreateStmt' || k === 'AlterTableStmt' || k === 'RuleStmt') && rel !== undefined) out.fed.add(rel);
      if (k === 'CreateTrigStmt' && rel !== undefined) out.always.add(rel);
      const names = rel === undefined ? [] : linkedTo(k, body);
      if (names.length > 0) out.linked.push([rel!, ...names]);
    }
  });
  return out;
}

/** Parsed statements of `sql`, or undefined when it does not parse (or the parser is not loaded). */
function parse(sql: string): unknown[] | undefined {
  const stmts = parseStatements(sql);
  return typeof stmts === 'string' ? undefined : stmts;
}

/** Distinct statement texts a session remembers as recorded. */
const RECORDED = 512;
/** Analyses of one text while the registry keeps changing, at most. */
const MAX_ROUNDS = 4;

/**
 * A session's recorder: `record(sql)` is undefined when nothing needs doing (the text writes
 * nothing, or was recorded under the registry's current version), else a promise (never
 * rejecting) that resolves once the text's targets are tainted as they must be. The flow
 * waits for it before it forwards the statement, then asks again: `'unsaved'` when the
 * taint could not be saved where it survives (the state dir, the shared store), and the flow
 * refuses the statement: a copy whose taint is only in this broker's memory would be read
 * unmasked after a restart or through another broker.
 *
 * `reads(sql)`: whether the text reads a masked or tainted column anywhere, counting the
 * relations it creates as known (statement-reads.ts with `writes`); anything but `none`
 * taints. Text that does not parse taints nothing here: the gate refuses it.
 */
export function writeRecorder(
  written: WrittenRelations,
  reads: (sql: string) => Promise<'none' | 'masked' | 'opaque'>,
  decides?: (sql: string) => Promise<boolean>,
): (sql: string) => Promise<void> | 'unsaved' | 'decided' | undefined {
  const recorded = new Map<string, number>();
  /**
   * Shapes whose number of rows written a masked column decides (`decides`): refused, since
   * the count would stay in the target (`count(*)`, the statistics views) for any later read.
   */
  const decided = new Set<string>();
  /** Shapes whose taint was not saved: the next judgement of the text refuses it (then it may try again). */
  const unsaved = new Set<string>();
  const once = async (t: WriteTargets, sources: string[], sql: string): Promise<void> => {
    written.add(t.always);
    if (t.fed.size > 0) {
      // The edges first: a taint that lands while the analysis runs still reaches the targets.
      written.feed(sources, t.fed);
      if ((await reads(sql).catch(() => 'opaque' as const)) !== 'none') written.add(t.fed);
    }
    // Links carry taint both ways, until nothing changes (a chain of renames in one text).
    for (let changed = true; changed; ) {
      changed = false;
      for (const names of t.linked) {
        if (names.some((n) => written.has(n)) && names.some((n) => !written.has(n))) {
          written.add(names);
          changed = true;
        }
      }
    }
  };
  /** `parsed`: the text's statements and targets when the caller has them already. */
  const run = async (sql: string, key: string, parsed?: { stmts: unknown[]; t: WriteTargets }): Promise<void> => {
    if (!parsed) {
      await loadSqlParser().catch(() => undefined);
      const stmts = parse(sql);
      if (stmts === undefined) return;
      parsed = { stmts, t: writeTargets(stmts) };
    }
    const { stmts, t } = parsed;
    if (decides && (t.fed.size > 0 || t.stores === true) && (await decides(sql).catch(() => true))) {
      if (decided.size >= RECORDED) decided.clear();
      decided.add(key);
      return; // refused: nothing runs, nothing to taint
    }
    const sources = relationsUnder(stmts);
    // Judged again while a taint (this text's own, or another session's) changed the registry.
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const version = written.version;
      await once(t, sources, sql);
      if (version === written.version) {
        if (recorded.size >= RECORDED) recorded.clear();
        // By shape: a number's value decides nothing here, so inlined values cost one analysis.
        recorded.set(key, version);
        await written.flush();
        return;
      }
    }
    // Never settled: fail closed.
    written.add([...t.fed, ...t.always, ...t.linked.flat()]);
    await written.flush();
  };
  // Shapes that write nothing: that never changes, so a repeated read costs one lookup, not a parse.
  const inert = new Set<string>();
  // The text that last waited for the list to catch up with other brokers: judged again
  // right after, it goes on (a store that stays behind would otherwise hold it forever).
  let caughtUp: string | undefined;
  return (sql) => {
    if (caughtUp === sql) caughtUp = undefined;
    else {
      const behind = written.fresh();
      if (behind) {
        caughtUp = sql;
        return behind;
      }
    }
    const key = sqlShape(sql) ?? sql;
    if (unsaved.delete(key)) return 'unsaved';
    if (decided.has(key)) return 'decided';
    if (inert.has(key) || recorded.get(key) === written.version) return undefined;
    const failed = (): void => {
      recorded.delete(key);
      unsaved.add(key);
    };
    // Parsed here when the parser is loaded (run loads it otherwise), and not again in run.
    const stmts = parse(sql);
    if (stmts === undefined) return run(sql, key).catch(failed);
    const t = writeTargets(stmts);
    if (t.fed.size === 0 && t.linked.length === 0 && t.always.size === 0 && t.stores !== true) {
      if (inert.size >= RECORDED) inert.clear();
      inert.add(key);
      return undefined;
    }
    return run(sql, key, { stmts, t }).catch(failed);
  };
}
