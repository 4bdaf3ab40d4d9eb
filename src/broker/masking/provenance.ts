/**
 * Masking by provenance: for each OUTPUT column of a statement, the set of table columns its
 * value depends on, read from PostgreSQL's own parse tree (libpg_query, see sql-classify.ts).
 *
 * Why: RowDescription names a column's origin only for plain column references, so
 * `reverse(email)`, `split_part(email,'@',1)`, `email::bytea` or `string_agg(email, ',')`
 * would reach the client unmasked. This module is pure analysis: the catalog is asked
 * through `ProvenanceCatalog` (deduplicated per call) and the proxy decides what to mask.
 *
 * Rules (the tests in test/masking/provenance.test.ts pin them):
 * - Outputs: SELECT (VALUES, TABLE, DISTINCT, GROUP BY, windows), set operations (per position
 *   union; direct only if every branch is), INSERT/UPDATE/DELETE/MERGE … RETURNING, DECLARE
 *   CURSOR (its query), COPY … TO (the copied columns, for the COPY masker), EXPLAIN (one
 *   column, no sources: plans hold no row values), SHOW (no sources). SELECT INTO, CREATE
 *   TABLE AS and every other statement that returns no rows: `columns: []`. EXECUTE, FETCH
 *   and CALL return rows this text does not describe: ok:false.
 * - Every column reference in an output expression contributes, through any function,
 *   operator, CASE arm or condition, cast, constructor, aggregate argument and FILTER,
 *   window argument, WITHIN GROUP ordering (its result is one of the ordered values),
 *   `IS [NOT] NULL` of anything but a plain reference, and scalar/ARRAY/IN/EXISTS sublink.
 *   Not contributing: arguments of NON_REVEALING_FUNCTIONS (plain ones only), `IS [NOT]
 *   NULL` of a plain reference, GROUPING().
 * - `conditions`: columns that decide a value without being it, which mask the output whole
 *   even when it is direct: everything referenced anywhere inside a subquery used as a value
 *   (WHERE, JOIN ON, GROUP BY, HAVING, ORDER BY, LIMIT/OFFSET, WINDOW, FROM functions and
 *   subqueries, the WITH queries it uses, nested subqueries); an aggregate's ORDER BY; a
 *   window's PARTITION BY, ORDER BY and frame offsets; and for every output of a query level
 *   its LIMIT/OFFSET and its row-linking conditions: the WHERE/JOIN ON/HAVING units
 *   (AND-conjuncts; the disjuncts of an OR and the argument of a NOT) that compute over a
 *   column — anything but a plain column, constant or parameter compared by `=`, `<>`, IN or
 *   IS [NOT] DISTINCT FROM; a subquery when its outputs or own conditions do — and
 *   reference two or more columns (`ascii(substr(u.email, 1, 1)) = g` keeps the rows
 *   whose clean g is the code); ORDER BY items that link the same way. Not counted: the
 *   top level's other ORDER BY items and GROUP BY, filters on
 *   one column (`WHERE ssn LIKE '1%'`, `lower(email) = lower($1)`), equality of plain
 *   columns (`u.email = o.email`), and view definitions' own filters: inference a bit at a
 *   time through them is a documented limit of column masking.
 * - Names are judged by what they refer to, not by how they are written: a derived table's,
 *   CTE's, view's or FROM function's column that is not a table column's value unchanged
 *   (or has conditions) is a computation — for the exemptions above (`length(k)`, `k IS
 *   NULL`), for the row-linking test (`d.k = g`, JOIN USING/NATURAL on it), and a column
 *   computed over two or more columns (`linked`: `ascii(email) = g AS hit`) links on its own
 *   (`WHERE d.hit`). Fields of a whole row (`(d).f`) count as columns of their own.
 * - Row counts: the arguments of a FROM function and of a select-list set-returning
 *   function, a FROM subquery's or CTE's own taint, the branches of INTERSECT/EXCEPT with a
 *   computed branch, and GROUP BY items computed over a column when the GROUP BY names two
 *   or more columns condition every output of the level (count(*) included). A top-level
 *   SELECT's own taint is `rows` (as is the query of a DECLARE or PREPARE, with the name in
 *   `declares`; FETCH, MOVE and EXECUTE name theirs in `uses`): every output is conditioned
 *   on it, so its row count is all it shows beyond masks (the proxy withholds the rows and
 *   the command tag's count when a masked column decides it).
 * - EXPLAIN ANALYZE runs its statement and reports actual row counts: its one column is
 *   conditioned on everything the statement's outputs and `rows` depend on.
 * - `direct`: the value is a source column's value unchanged — a plain reference, optionally
 *   COLLATEd or cast to text/varchar/bpchar/name without a length (a length truncates or
 *   pads), or such a reference passed through subqueries, CTEs, views, USING merges and set
 *   operations whose every branch is direct. Anything else is derived: a style that keeps
 *   part of a value (last 4 digits) must not be applied to `reverse(x)`.
 * - Fail closed (`opaque`): a function the catalog does not know, one that is not builtin
 *   (pg_catalog/information_schema) — any overload in any schema being user-defined is
 *   enough — and builtins that run SQL text or read data by name (OPAQUE_BUILTINS). A
 *   function in FROM that is opaque makes all its columns opaque; a view without its
 *   definition has opaque columns. Operators are assumed to compute from their operands,
 *   except an explicitly schema-qualified OPERATOR(s.op) outside pg_catalog and an operator
 *   name that some operator not created with the cluster has (opaque: it may call a user
 *   function that reads any table; the catalog's `functions` answers for operator names).
 * - Stored derivations: a materialized view is analysed from its definition as a view is;
 *   a table column carries its inheritance relatives' columns, a generated column its
 *   expression's inputs, a row-typed column its type's relation's columns (RelationInfo).
 * - A view's columns carry the view's own column ('s.v.c', so rules written against a view
 *   apply, as they do for RowDescription today) plus the sources of its definition.
 * - Unqualified relation names: the session's search_path is unknown, so every candidate
 *   the catalog returns is unioned; none at all is ok:false. `*` over candidates whose column
 *   lists differ, or over a FROM function whose result shape is not known (no column
 *   definition list, not a known set-returning builtin), is ok:false: a guessed column count
 *   would shift every later column's sources onto the wrong position.
 * - A FROM function whose columns are not known exactly — unnest (an array of rows expands
 *   to their columns), an expression such as CAST(… AS users), a function of unknown shape —
 *   is open: for every unqualified name its whole row (its arguments' flow) is a candidate
 *   besides the exact matches of that level and of outer levels, and so for any `alias.col`
 *   it does not list. `*` over unnest keeps one column per array: the server's longer
 *   RowDescription then fails the count check, and computed columns are masked whole.
 * - RETURNING shows the row as written: a column's sources are the target column plus what
 *   the statement assigns to it (INSERT values/SELECT, UPDATE SET, ON CONFLICT, MERGE
 *   actions). Triggers, rules and column defaults that copy data are not seen (limit).
 * - WITH RECURSIVE: the recursive term is re-analysed with the CTE's current columns until
 *   nothing changes (bounded; if it does not settle, every column gets the union, derived).
 * - Depth: expressions are walked with an explicit stack; query nesting (subqueries, CTEs,
 *   views) is bounded by MAX_DEPTH → ok:false, so deep trees cannot exhaust the JS stack.
 * - Never throws for valid SQL: what cannot be analysed is `{ ok: false, reason }`.
 */
import { loadSqlParser, loadedSqlParser } from '../policy/sql-classify.js';
import { arr, isObj, str, unwrap } from '../policy/sql-kinds.js';

// ---------------------------------------------------------------------------------------
// Public API

export interface RelationInfo {
  schema: string;
  name: string;
  /**
   * 'view' covers relkinds v and m: a materialized view stores what its defining query
   * computes, so its columns carry that query's provenance as a view's do. 'table' covers
   * r, p and f.
   */
  kind: 'table' | 'view' | 'other';
  /** Attribute names in attnum order, dropped columns removed. */
  columns: string[];
  /** For views and materialized views: pg_get_viewdef text, analysed recursively. */
  viewSql?: string;
  /**
   * Per column, other table columns that hold the same value: the column of that name in
   * every inheritance ancestor and descendant (a partition's rows are its parent's rows,
   * a parent's rows include its children's).
   */
  sameAs?: Readonly<Record<string, readonly ColumnName[]>>;
  /**
   * Per column, the columns its value is computed from or holds besides its own: a
   * generated column's inputs; for a column of a row type (or an array, domain or range
   * of one), the columns of that type's relation.
   */
  derivedFrom?: Readonly<Record<string, readonly ColumnName[]>>;
}

/** A table column, by schema, relation and column name. */
export interface ColumnName {
  schema: string;
  table: string;
  column: string;
}

/**
 * The columns whose values a relation's column `c` holds or is computed from, beside its
 * own: inheritance relatives (`sameAs`) and, for a generated column, the columns of its
 * expression and their relatives, for a row-typed column its type's columns. `derived`
 * when there are such inputs: the value is not one table column's, unchanged.
 */
export function relatedColumns(r: RelationInfo, c: string): { related: ColumnName[]; derived: boolean } {
  const from = Object.hasOwn(r.derivedFrom ?? {}, c) ? r.derivedFrom![c]! : undefined;
  const related: ColumnName[] = [...(Object.hasOwn(r.sameAs ?? {}, c) ? r.sameAs![c]! : [])];
  for (const f of from ?? []) {
    related.push(f);
    if (f.schema === r.schema && f.table === r.name && Object.hasOwn(r.sameAs ?? {}, f.column)) related.push(...r.sameAs![f.column]!);
  }
  return { related, derived: from !== undefined };
}

/** builtin = lives in pg_catalog or information_schema. */
export interface FunctionFacts {
  builtin: boolean;
  /** pg_proc.proretset: the function returns a set (in a select list, it repeats the row). */
  retset: boolean;
}

export interface ProvenanceCatalog {
  /** Qualified: that relation (0 or 1 result). Unqualified: every relation of that name in any schema (the session's search_path is unknown, so callers take the union). */
  relations(schema: string | undefined, name: string): Promise<RelationInfo[]>;
  /** Facts about a function name as written (schema may be undefined); [] if no such function. */
  functions(schema: string | undefined, name: string): Promise<FunctionFacts[]>;
  /**
   * The types a cast whose function does not ship with PostgreSQL converts to (CREATE CAST
   * … WITH FUNCTION), and the domains over them: `x::t` to one of them may run that
   * function, which may read any table.
   */
  castTargets(): Promise<readonly TypeRef[]>;
}

/** A type by schema and pg_type name. */
export interface TypeRef {
  schema: string;
  name: string;
}

export interface OutputColumn {
  /** The output label as PostgreSQL would name it — best effort. */
  name: string;
  /** 'schema.table.column' of every table column the value depends on. */
  sources: ReadonlySet<string>;
  /** The value IS a source column's value, unchanged. */
  direct: boolean;
  /** Depends on something that cannot be analysed; the proxy masks it whole when the plan has column rules. */
  opaque: boolean;
  /**
   * Table columns that decide the value without being passed through it (a subquery's
   * WHERE or LIMIT, an aggregate's or a window's ordering, a row-linking condition): the
   * output is masked whole when one of them is masked, even when it is `direct`.
   */
  conditions?: ReadonlySet<string>;
}

export type Provenance =
  | {
      ok: true;
      columns: OutputColumn[];
      /**
       * Table columns that decide how many rows a top-level SELECT returns (its outputs'
       * common conditions); with `rowsOpaque`, something that cannot be analysed does. A
       * statement with no output columns has nothing else to mask: its row count (the
       * command tag, the empty rows) is withheld when one of them is masked.
       */
      rows?: ReadonlySet<string>;
      rowsOpaque?: boolean;
      /**
       * Table columns that decide how many rows the statement WRITES (an INSERT's source
       * query, UPDATE/DELETE … WHERE, MERGE's conditions, CREATE TABLE AS / SELECT INTO,
       * a writable CTE): the count would stay in the table (`count(*)`, the statistics views)
       * whatever the tag says; with `writeRowsOpaque`, something that cannot be analysed does.
       */
      writeRows?: ReadonlySet<string>;
      writeRowsOpaque?: boolean;
      /** The statement names a cursor or prepared statement for later (DECLARE, PREPARE): `rows` are its rows. */
      declares?: NamedQuery;
      /** The statement returns what a cursor or prepared statement named earlier returns (FETCH, MOVE, EXECUTE). */
      uses?: NamedQuery;
    }
  | { ok: false; reason: string; declares?: NamedQuery; uses?: NamedQuery };

/**
 * A query kept under a name by one statement and run by another: a cursor (DECLARE …
 * CURSOR FOR; FETCH, MOVE) or a prepared statement (PREPARE; EXECUTE). The rows a later
 * statement returns under the name are the named query's, so what decides their count is too.
 */
export interface NamedQuery {
  kind: 'cursor' | 'prepared';
  name: string;
}

/** Functions whose result never reveals their argument's value: the analysis drops sources flowing only through them. */
/**
 * A source (`schema.table.column`) as parts. Identifiers may hold dots, so a name with
 * more than two is offered split at either end (callers try each).
 */
export function sourceParts(source: string): { schema: string; table: string; column: string }[] {
  const first = source.indexOf('.');
  const last = source.lastIndexOf('.');
  if (first < 0 || last === first) return [];
  const column = source.slice(last + 1);
  const out = [{ schema: source.slice(0, first), table: source.slice(first + 1, last), column }];
  const second = source.indexOf('.', first + 1);
  if (second !== last) out.push({ schema: source.slice(0, second), table: source.slice(second + 1, last), column });
  return out;
}

/** System columns every table has (not in the catalog's attnum > 0 list): row bookkeeping, no user data. */
const SYSTEM_COLUMNS: ReadonlySet<string> = new Set(['tableoid', 'ctid', 'xmin', 'xmax', 'cmin', 'cmax']);

export const NON_REVEALING_FUNCTIONS: ReadonlySet<string> = new Set([
  'count', 'length', 'char_length', 'character_length', 'octet_length', 'bit_length',
  'pg_column_size', 'pg_typeof', 'num_nulls', 'num_nonnulls',
  'cardinality', 'array_length', 'array_ndims', 'json_array_length', 'jsonb_array_length',
]);

/** Builtins that execute SQL text or read data by name: their result cannot be traced to columns. */
/** Statements whose plan computes their target's defaults and rule actions (see explain). */
const WRITE_STATEMENTS: ReadonlySet<string> = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

/** Whether a statement is, or holds (a writable CTE), a write. */
function containsWrite(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const n = stack.pop();
    if (Array.isArray(n)) stack.push(...n);
    else if (isObj(n)) {
      for (const [k, x] of Object.entries(n)) {
        if (WRITE_STATEMENTS.has(k)) return true;
        if (k !== 'location' && typeof x === 'object' && x !== null) stack.push(x);
      }
    }
  }
  return false;
}

/** The name valueNames gives an untraced output (not a column name: it has a space). */
const OPAQUE_VALUE = 'untraced value';

export const OPAQUE_BUILTINS: ReadonlySet<string> = new Set([
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
  'cursor_to_xml', 'cursor_to_xmlschema',
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
  'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
  'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
  'ts_stat', 'ts_rewrite',
  'lo_get', 'loread',
  'pg_read_file', 'pg_read_binary_file',
  'dblink', 'dblink_exec', 'dblink_fetch', 'dblink_get_result', 'dblink_send_query', 'dblink_open',
  // Another session's statement text (every session agentgate opens shares the target's role).
  'pg_stat_get_backend_activity',
]);

/** `stmt` is one element of parseSync(sql).stmts[i].stmt. Statements that return no rows → { ok: true, columns: [] }. */
export function outputProvenance(stmt: unknown, catalog: ProvenanceCatalog): Promise<Provenance> {
  return analyse(stmt, new CatalogMemo(catalog));
}

/** Convenience: parse `sql` (one or more statements) and analyse each; parse errors → ok:false. */
export async function statementProvenance(sql: string, catalog: ProvenanceCatalog): Promise<Provenance[]> {
  if (sql.trim() === '') return [];
  let stmts: { stmt?: unknown }[];
  try {
    stmts = (await parser()).parseSync(sql).stmts ?? [];
  } catch (e) {
    return [{ ok: false, reason: `parse error: ${errText(e)}` }];
  }
  const memo = new CatalogMemo(catalog); // one lookup per name across all statements
  const out: Provenance[] = [];
  for (const s of stmts) out.push(await analyse(s.stmt, memo));
  return out;
}

// ---------------------------------------------------------------------------------------
// Parser and catalog access

interface PgParse {
  parseSync(sql: string): { stmts?: { stmt?: unknown }[] };
}

/**
 * The WASM parser sql-classify.ts loads. Once loaded it is taken synchronously: a dynamic
 * import per statement cost the broker more than the parse itself.
 */
async function parser(): Promise<PgParse> {
  const loaded = loadedSqlParser();
  if (loaded) return loaded;
  await loadSqlParser();
  return loadedSqlParser() as PgParse;
}

const key = (schema: string | undefined, name: string): string => `${schema ?? ''}\u0000${name}`;

/** Deduplicates catalog calls: one promise per (schema, name), resolved values readable synchronously. */
class CatalogMemo {
  readonly rels = new Map<string, RelationInfo[]>();
  readonly fns = new Map<string, FunctionFacts[]>();
  casts: readonly TypeRef[] | undefined;
  private readonly pending = new Map<string, Promise<void>>();
  constructor(private readonly catalog: ProvenanceCatalog) {}

  fetchCasts(): Promise<void> {
    let p = this.pending.get('c');
    if (!p) {
      p = this.catalog.castTargets().then((r) => void (this.casts = Array.isArray(r) ? r : []));
      this.pending.set('c', p);
    }
    return p;
  }

  fetchRelation(schema: string | undefined, name: string): Promise<void> {
    const k = 'r' + key(schema, name);
    let p = this.pending.get(k);
    if (!p) {
      p = this.catalog.relations(schema, name).then((r) => void this.rels.set(key(schema, name), Array.isArray(r) ? r : []));
      this.pending.set(k, p);
    }
    return p;
  }

  fetchFunction(schema: string | undefined, name: string): Promise<void> {
    const k = 'f' + key(schema, name);
    let p = this.pending.get(k);
    if (!p) {
      p = this.catalog.functions(schema, name).then((r) => void this.fns.set(key(schema, name), Array.isArray(r) ? r : []));
      this.pending.set(k, p);
    }
    return p;
  }
}

/** Thrown by the synchronous analysis when a catalog answer is not in yet; the driver fetches and reruns. */
class Miss {
  constructor(readonly what: 'relation' | 'function', readonly schema: string | undefined, readonly name: string) {}
}

/** Thrown for anything that cannot be analysed; becomes { ok: false, reason }. */
class Unanalysable {
  constructor(readonly reason: string) {}
}

function fail(reason: string): never {
  throw new Unanalysable(reason);
}

function errText(e: unknown): string {
  return isObj(e) && typeof e['message'] === 'string' ? e['message'] : String(e);
}

const MAX_DEPTH = 64;
const MAX_ROUNDS = 64;
const MAX_RECURSIVE_PASSES = 16;

async function analyse(stmt: unknown, memo: CatalogMemo): Promise<Provenance> {
  try {
    const p = await parser();
    await Promise.all([prefetch([stmt], memo, p), memo.fetchCasts()]);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const a = new Analysis(memo, p);
      try {
        const cols = a.statement(stmt);
        const rows = a.rows;
        const named = { ...(a.declares ? { declares: a.declares } : {}), ...(a.uses ? { uses: a.uses } : {}) };
        const w = asConditions(a.writeRows);
        const writes = hasFlow(a.writeRows) ? { writeRows: w.conditions ?? new Set<string>(), writeRowsOpaque: w.opaque } : {};
        if (rows && hasFlow(rows)) {
          const c = asConditions(rows);
          return { ok: true, columns: cols.map(publicColumn), rows: c.conditions ?? new Set<string>(), rowsOpaque: c.opaque, ...named, ...writes };
        }
        return { ok: true, columns: cols.map(publicColumn), ...named, ...writes };
      } catch (e) {
        if (e instanceof Unanalysable && (a.uses || a.declares)) {
          return { ok: false, reason: e.reason, ...(a.declares ? { declares: a.declares } : {}), ...(a.uses ? { uses: a.uses } : {}) };
        }
        if (!(e instanceof Miss)) throw e;
        if (e.what === 'relation') await memo.fetchRelation(e.schema, e.name);
        else await memo.fetchFunction(e.schema, e.name);
        const rels = memo.rels.get(key(e.schema, e.name));
        if (e.what === 'relation' && rels) await prefetchViews(rels, memo, p);
      }
    }
    return { ok: false, reason: 'too many catalog lookups' };
  } catch (e) {
    if (e instanceof Unanalysable) return { ok: false, reason: e.reason };
    if (e instanceof RangeError) return { ok: false, reason: 'statement nests too deeply to analyse' };
    return { ok: false, reason: `analysis failed: ${errText(e)}` };
  }
}

function publicColumn(c: Col): OutputColumn {
  return Object.freeze({ name: c.name, sources: c.sources, direct: c.direct, opaque: c.opaque, conditions: c.conditions ?? new Set<string>() });
}

// ---------------------------------------------------------------------------------------
// Prefetch: the relations and functions a statement names (in every clause: predicates and
// orderings are analysed too), fetched in parallel up front so the analysis rarely has to
// stop for a lookup.

const PREFETCH_SKIP = new Set(['location']);

async function prefetch(trees: unknown[], memo: CatalogMemo, p: PgParse): Promise<void> {
  const rels = new Map<string, [string | undefined, string]>();
  const fns = new Map<string, [string | undefined, string]>();
  const cteNames = new Set<string>();
  const stack: unknown[] = [...trees];
  let visited = 0;
  while (stack.length > 0) {
    const v = stack.pop();
    if (++visited > 200_000) break; // only an optimisation: the analysis fetches what is missing
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x === 'object' && x !== null) stack.push(x);
      continue;
    }
    if (!isObj(v)) continue;
    const relname = str(v['relname']);
    if (relname !== undefined && ('inh' in v || 'relpersistence' in v)) {
      const schema = str(v['schemaname']);
      rels.set(key(schema, relname), [schema, relname]);
    }
    const cte = str(v['ctename']);
    if (cte !== undefined) cteNames.add(cte);
    const fc = v['FuncCall'];
    if (isObj(fc)) {
      const n = funcName(fc);
      if (n) fns.set(key(n.schema, n.name), [n.schema, n.name]);
    }
    const ae = v['A_Expr'];
    if (isObj(ae)) {
      const n = operatorName(ae);
      if (n && (n.schema === undefined || n.schema === 'pg_catalog')) fns.set(key(n.schema, n.name), [n.schema, n.name]);
    }
    for (const [k, x] of Object.entries(v)) if (!PREFETCH_SKIP.has(k) && typeof x === 'object' && x !== null) stack.push(x);
  }
  const jobs: Promise<void>[] = [];
  for (const [k, [s, n]] of rels) if (!(s === undefined && cteNames.has(n)) && !memo.rels.has(k)) jobs.push(memo.fetchRelation(s, n));
  for (const [k, [s, n]] of fns) if (!memo.fns.has(k)) jobs.push(memo.fetchFunction(s, n));
  await Promise.all(jobs);
  const found: RelationInfo[] = [];
  for (const k of rels.keys()) for (const r of memo.rels.get(k) ?? []) found.push(r);
  await prefetchViews(found, memo, p);
}

const viewsSeen = new WeakMap<CatalogMemo, Set<string>>();

/** Fetches what the definitions of newly seen views name (each view once per call). */
async function prefetchViews(rels: RelationInfo[], memo: CatalogMemo, p: PgParse): Promise<void> {
  let seen = viewsSeen.get(memo);
  if (!seen) viewsSeen.set(memo, (seen = new Set()));
  const trees: unknown[] = [];
  for (const r of rels) {
    if (r.kind !== 'view' || typeof r.viewSql !== 'string') continue;
    const k = `${r.schema}.${r.name}`;
    if (seen.has(k) || seen.size > 256) continue;
    seen.add(k);
    try {
      for (const s of p.parseSync(r.viewSql).stmts ?? []) trees.push(s.stmt);
    } catch {
      // reported by the analysis when the view is used
    }
  }
  if (trees.length > 0) await prefetch(trees, memo, p);
}

// ---------------------------------------------------------------------------------------
// Model

interface Col {
  name: string;
  sources: ReadonlySet<string>;
  direct: boolean;
  opaque: boolean;
  /** See OutputColumn.conditions; absent = none. */
  conditions?: ReadonlySet<string>;
  /** Computed over two or more columns (`code = g`, a window ordered by a distance): a filter on it alone links them. */
  linked?: boolean;
}

/** A value's provenance without a name. */
interface Flow {
  sources: Set<string>;
  direct: boolean;
  opaque: boolean;
  conditions?: Set<string>;
  /** See Col.linked: some column it references is. */
  linked?: boolean;
}

/** A FROM item as the select list sees it. */
interface Item {
  columns: Col[];
  /** False when the column list is unknown (a FROM function of unknown result shape): `*` over it fails. */
  shapeKnown: boolean;
  /**
   * The item may have columns `columns` does not list (a FROM function whose result may be
   * a composite row, expanded by PostgreSQL into that row's columns): any name may be one
   * of them, with the whole row's flow.
   */
  open: boolean;
  /** Sources of the whole row (all columns, plus a function item's arguments). */
  whole: Flow;
  /** What the item's text references beyond its columns (a subquery's clauses, a join's ON, function arguments). */
  inner?: Flow;
  /** Conditions of its JOIN … ON that every output of the query level depends on (see conditionFlows). */
  taint?: Flow;
}

/** One query level analysed: its outputs, what its clauses reference, what its outputs took from them. */
interface Level {
  cols: Col[];
  /** Everything its clauses and FROM items reference besides the outputs' own flows. */
  refs: Flow;
  /** The part of `refs` every output depends on (row-linking conditions, LIMIT/OFFSET). */
  taint: Flow;
}

/** A name by which an item can be qualified (`u.email`, `public.users.email`). */
interface Named {
  refname: string;
  /** Schemas the unaliased relation may live in (for `s.t.c`); empty when aliased or not a relation. */
  schemas: string[];
  item: Item;
}

interface Scope {
  named: Named[];
  /** Items for unqualified names and `*`, in FROM order (a join is one item). */
  items: Item[];
  parent: Scope | undefined;
  /** The level's WINDOW clause by name (`over w`). */
  windows?: ReadonlyMap<string, Obj>;
}

interface CteDef {
  name: string;
  body: Obj;
  /** The CTEs visible inside this one's query. */
  env: CteEnv | undefined;
  scope: Scope | undefined;
  recursive: boolean;
  state: 'pending' | 'analysing' | 'done';
  /** While a recursive CTE is being iterated: its current approximation. */
  current?: Col[];
  columns?: Col[];
  /** Everything its query references (outputs and clauses), once analysed. */
  all?: Flow;
  /** What decides its rows (its level's taint), once analysed. */
  taint?: Flow;
}

interface CteEnv {
  def: CteDef;
  parent: CteEnv | undefined;
}

type Obj = Record<string, unknown>;

const emptyFlow = (): Flow => ({ sources: new Set(), direct: false, opaque: false });

type FlowLike = { sources: ReadonlySet<string>; opaque: boolean; conditions?: ReadonlySet<string>; linked?: boolean };

function addFlow(into: Flow, f: FlowLike | undefined): void {
  if (!f) return;
  for (const s of f.sources) into.sources.add(s);
  if (f.opaque) into.opaque = true;
  if (f.linked === true) into.linked = true;
  if (f.conditions && f.conditions.size > 0) {
    into.conditions ??= new Set();
    for (const s of f.conditions) into.conditions.add(s);
  }
}

/** Whether a flow carries anything (a source, a condition, something opaque). */
function hasFlow(f: FlowLike): boolean {
  return f.opaque || f.sources.size > 0 || (f.conditions?.size ?? 0) > 0;
}

/** Everything `f` depends on, as conditions: it decides a value without being it. */
function asConditions(f: FlowLike): Flow {
  const out: Flow = { sources: new Set(), direct: false, opaque: f.opaque };
  if (f.sources.size > 0 || (f.conditions?.size ?? 0) > 0) out.conditions = new Set([...f.sources, ...(f.conditions ?? [])]);
  return out;
}

/** `c` with `t` added to its conditions (a direct column stays direct: its style yields only to a masked condition). */
function withConditions(c: Col, t: FlowLike): Col {
  if (!hasFlow(t)) return c;
  const f = colFlow(c);
  addFlow(f, asConditions(t));
  return { ...c, opaque: f.opaque, conditions: f.conditions };
}

function colFlow(c: FlowLike & { direct: boolean }): Flow {
  const f: Flow = { sources: new Set(c.sources), direct: c.direct, opaque: c.opaque };
  if (c.conditions && c.conditions.size > 0) f.conditions = new Set(c.conditions);
  if (c.linked === true) f.linked = true;
  return f;
}

function unionFlows(...flows: (FlowLike | undefined)[]): Flow {
  const f = emptyFlow();
  for (const x of flows) addFlow(f, x);
  return f;
}

function wholeOf(columns: readonly Col[], extra?: Flow): Flow {
  const w = emptyFlow();
  for (const c of columns) addFlow(w, c);
  addFlow(w, extra);
  return w;
}

function makeItem(columns: Col[], shapeKnown = true, extra?: Flow, open = !shapeKnown): Item {
  return { columns, shapeKnown, open, whole: wholeOf(columns, extra) };
}

/** `{ T: body }` or a bare body in a typed field (libpg_query does not wrap those). */
function nodeOf(v: unknown, bareType: string): [string, Obj] | undefined {
  const u = unwrap(v);
  if (u) return u;
  return isObj(v) ? [bareType, v] : undefined;
}

function strings(list: unknown): string[] {
  const out: string[] = [];
  for (const x of arr(list)) {
    const u = unwrap(x);
    if (u && u[0] === 'String') out.push(str(u[1]['sval']) ?? '');
  }
  return out;
}

/** An operator's name (`=`, `@@@`): spelled with operator characters only. */
export const OPERATOR_NAME = /^[~!@#%^&|`?+\-*/<>=]+$/;

/**
 * The operator an A_Expr applies, when it names one (not BETWEEN and the like): the
 * catalog's `functions` answers for operator names too, and one that is not built in
 * runs code that may read any table (masked whole, as a user function's result is).
 */
export function operatorName(e: Obj): { schema: string | undefined; name: string } | undefined {
  const names = strings(e['name']);
  const name = names[names.length - 1];
  if (name === undefined || !OPERATOR_NAME.test(name)) return undefined;
  return { schema: names.length > 1 ? names[names.length - 2] : undefined, name };
}

/**
 * Columns of builtin set-returning functions that show text no analysis traces: session
 * settings' values (pg_settings is defined over pg_show_all_settings(), pg_stat_activity
 * over pg_stat_get_activity()), for the reason untracedSetting gives, and statement text:
 * the query another session runs or last ran (every session agentgate opens for a target
 * shares one role, and PostgreSQL shows a role all its sessions' text, a person's
 * `UPDATE users SET ssn = '…'` included), and this session's prepared statements and
 * cursors. Which row shows what is decided by other columns, so every value of these
 * columns is opaque.
 */
const UNTRACED_FUNCTION_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  pg_show_all_settings: ['setting', 'reset_val', 'boot_val'],
  pg_stat_get_activity: ['application_name', 'query'],
  pg_prepared_statement: ['statement'],
  pg_cursor: ['statement'],
};

/**
 * Settings whose value may be text no analysis traces: a function an administrator wrote
 * may have run `set_config('application_name', <a masked value>, false)` earlier in the
 * session (or stashed it in a custom `x.y` setting), and SHOW or current_setting() reads it
 * back in a later statement that names no masked column. Their values count as opaque
 * (masked whole under column rules): application_name, every custom (dotted) setting,
 * SHOW ALL, and a name that is not a constant (undefined). Settings that take values
 * from a fixed set, or that must name existing objects, are not among them (limit:
 * search_path takes any list of names).
 */
function untracedSetting(name: string | undefined): boolean {
  if (name === undefined) return true;
  const n = name.toLowerCase();
  return n === 'all' || n === 'application_name' || n.includes('.');
}

/** The text of a string constant (`'x'`, or `'x'::text`), if the node is one. */
function constantText(node: unknown): string | undefined {
  let u = unwrap(node);
  while (u?.[0] === 'TypeCast') u = unwrap(u[1]['arg']);
  if (u?.[0] !== 'A_Const') return undefined;
  const v = u[1]['sval'];
  return isObj(v) ? str(v['sval']) : undefined;
}

function funcName(fc: Obj): { schema: string | undefined; name: string } | undefined {
  const names = strings(fc['funcname']);
  const name = names[names.length - 1];
  if (name === undefined) return undefined;
  return { schema: names.length > 1 ? names[names.length - 2] : undefined, name };
}

/** Applies an alias's column list: the first k columns get the new names (an open item may have more columns than listed). */
function renamed(columns: readonly Col[], alias: unknown, open = false): Col[] {
  const names = isObj(alias) ? strings(alias['colnames']) : [];
  if (names.length > columns.length && !open) fail('more column aliases than columns');
  return columns.map((c, i) => (i < names.length ? { ...c, name: names[i]! } : c));
}

const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name']);

/** Known result columns of builtin set-returning functions used in FROM (scalar ones: one column). */
const SRF_COLUMNS: Readonly<Record<string, readonly string[] | 'scalar'>> = {
  generate_series: 'scalar', generate_subscripts: 'scalar', unnest: 'scalar',
  regexp_split_to_table: 'scalar', string_to_table: 'scalar', regexp_matches: 'scalar',
  json_array_elements: 'scalar', jsonb_array_elements: 'scalar',
  json_array_elements_text: 'scalar', jsonb_array_elements_text: 'scalar',
  json_object_keys: 'scalar', jsonb_object_keys: 'scalar',
  jsonb_path_query: 'scalar', jsonb_path_query_tz: 'scalar',
  json_each: ['key', 'value'], jsonb_each: ['key', 'value'],
  json_each_text: ['key', 'value'], jsonb_each_text: ['key', 'value'],
};

// ---------------------------------------------------------------------------------------
// Analysis (synchronous; throws Miss when a catalog answer is needed)

class Analysis {
  private depth = 0;
  private readonly views = new Map<string, Col[]>();
  /** What decides a view's rows (its definition's level taint), by 'schema.name', when anything does. */
  private readonly viewTaints = new Map<string, Flow>();
  private readonly sublinks = new WeakMap<Obj, Map<Scope, Level>>();
  private readonly viewsInProgress = new Set<string>();
  /** The FuncCall a FROM item is analysing (its columns are judged one by one there, not as one value). */
  private fromCall: unknown;
  /** What decides how many rows the top-level SELECT (or the query a DECLARE or PREPARE names) returns (its level's taint). */
  rows: Flow | undefined;
  /** What decides how many rows any write in the statement writes (see Provenance.writeRows). */
  readonly writeRows: Flow = emptyFlow();
  /** While a rule's actions are analysed: NEW and OLD, its relation's row (see statement). */
  private ruleScope: Scope | undefined;
  /** See Provenance.declares and Provenance.uses. */
  declares: NamedQuery | undefined;
  uses: NamedQuery | undefined;
  /**
   * Set once the analysis meets user code (a function, operator or cast whose output it
   * cannot trace) anywhere it walks, views' definitions and filters included (see explain).
   */
  private untraced = false;

  constructor(
    private readonly memo: CatalogMemo,
    private readonly p: PgParse,
  ) {}

  statement(stmt: unknown): Col[] {
    const u = unwrap(stmt);
    if (!u) fail('not a statement node');
    const [type, body] = u;
    switch (type) {
      case 'SelectStmt': {
        const level = this.select(body, this.ruleScope, undefined);
        this.rows = level.taint;
        if (!isObj(body['intoClause'])) return level.cols;
        // SELECT INTO returns no rows; it writes them.
        addFlow(this.writeRows, level.taint);
        return [];
      }
      case 'RuleStmt': {
        // A rule's actions run at every later write to its relation (DO ALSO / INSTEAD INSERT
        // INTO log SELECT … generate_series(1, ascii(ssn))): what decides how many rows they
        // write is judged now, when the rule is made; NEW and OLD are the relation's row.
        // Actions that cannot be analysed count as deciding (fail closed).
        const rel = nodeOf(body['relation'], 'RangeVar');
        if (!rel) return fail('CREATE RULE without a relation');
        const { item } = this.rangeVar(rel[1], undefined);
        this.ruleScope = {
          named: [
            { refname: 'new', schemas: [], item },
            { refname: 'old', schemas: [], item },
          ],
          items: [],
          parent: undefined,
        };
        try {
          for (const action of arr(body['actions'])) {
            try {
              this.statement(action);
            } catch (e) {
              if (!(e instanceof Unanalysable)) throw e;
              this.writeRows.opaque = true;
            }
          }
        } finally {
          this.ruleScope = undefined;
          this.rows = undefined;
          this.declares = undefined;
          this.uses = undefined;
        }
        return []; // CREATE RULE returns no rows
      }
      case 'CreateTableAsStmt': {
        // CREATE TABLE AS and CREATE MATERIALIZED VIEW: no rows, a tag counting the rows written.
        if (unwrap(body['query'])?.[0] === 'SelectStmt') {
          this.rows = this.level(body['query'], undefined, undefined).taint;
          addFlow(this.writeRows, this.rows);
        }
        return [];
      }
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt': {
        const level = this.dml(type, body);
        this.rows = level.taint;
        return level.cols;
      }
      case 'DeclareCursorStmt': {
        this.declares = { kind: 'cursor', name: str(body['portalname']) ?? '' };
        const q = unwrap(body['query']);
        // The cursor's rows are its query's: what decides how many there are is `rows`.
        if (q?.[0] === 'SelectStmt') return this.statement(body['query']);
        return this.query(body['query'], undefined, undefined);
      }
      case 'PrepareStmt': {
        this.declares = { kind: 'prepared', name: str(body['name']) ?? '' };
        this.statement(body['query']);
        return []; // PREPARE itself returns no rows
      }
      case 'ExplainStmt':
        return [this.explain(body)];
      case 'VariableShowStmt': {
        const name = str(body['name']) ?? '';
        const names = name === 'all' ? ['name', 'setting', 'description'] : [name];
        const opaque = untracedSetting(name);
        return names.map((n) => ({ name: n, sources: new Set<string>(), direct: false, opaque }));
      }
      case 'CopyStmt':
        return this.copy(body);
      case 'ExecuteStmt':
        this.uses = { kind: 'prepared', name: str(body['name']) ?? '' };
        return fail('EXECUTE of a prepared statement: its text is not here');
      case 'CallStmt':
        return fail('CALL returns what the procedure chooses');
      case 'FetchStmt':
        this.uses = { kind: 'cursor', name: str(body['portalname']) ?? '' };
        if (body['ismove'] === true) return [];
        return fail('FETCH returns a cursor declared by an earlier statement');
      default:
        return []; // CREATE TABLE AS, SET, BEGIN, DDL …: no rows
    }
  }

  /**
   * EXPLAIN's one column. With ANALYZE the statement runs and the plan reports how many
   * rows each node produced and removed (`actual rows=113` for a FROM function sized by a
   * value): the plan then depends on everything the explained statement's outputs and row
   * count depend on, as conditions. Without ANALYZE it shows the statement's text and the
   * planner's estimates only — and the constants it computed: an immutable function of
   * constants is evaluated when planning and shown as its result, so an administrator's
   * function declared IMMUTABLE that reads users.ssn shows the value (`Filter: (ssn =
   * '955-…'::text)` for a view filtering on it, `Output: '955-…'::text` for a call). A
   * builtin computes from its arguments only; a plan over user code (in the text or in a
   * view it reads), or over a statement not analysed here (EXPLAIN EXECUTE), is masked whole,
   * with or without ANALYZE. So is the plan of a write: it computes its target's defaults
   * and rule actions (`Output: 1, '955-…'::text` for a default calling such a function),
   * which the text does not show.
   */
  private explain(body: Obj): Col {
    const plan: Col = { name: 'QUERY PLAN', sources: new Set(), direct: false, opaque: false };
    const analyze = arr(body['options']).some((o) => {
      const d = unwrap(o);
      return d?.[0] === 'DefElem' && str(d[1]['defname']) === 'analyze';
    });
    const write = containsWrite(body['query']);
    if (!analyze) return { ...plan, opaque: write || this.runsUserCode(body['query']) };
    const rows = this.rows;
    this.rows = undefined;
    const untraced = this.untraced;
    this.untraced = false;
    const cols = this.statement(body['query']);
    const inner = this.rows as Flow | undefined;
    this.rows = rows;
    const userCode = this.untraced || this.callsOpaque(body['query']);
    this.untraced ||= untraced;
    const conditions = new Set<string>();
    let opaque = (inner?.opaque ?? false) || write || userCode;
    for (const f of [...cols, ...(inner ? [inner] : [])]) {
      for (const s of f.sources) conditions.add(s);
      for (const s of f.conditions ?? []) conditions.add(s);
      opaque ||= f.opaque;
    }
    return { ...plan, opaque, ...(conditions.size > 0 ? { conditions } : {}) };
  }

  /** Whether a statement's analysis meets user code anywhere, or fails (see explain). */
  private runsUserCode(query: unknown): boolean {
    const saved = { rows: this.rows, uses: this.uses, declares: this.declares, untraced: this.untraced };
    this.untraced = false;
    try {
      this.statement(query);
      return this.untraced || this.callsOpaque(query);
    } catch (e) {
      if (e instanceof Unanalysable) return true;
      throw e;
    } finally {
      this.rows = saved.rows;
      this.uses = saved.uses;
      this.declares = saved.declares;
      this.untraced ||= saved.untraced;
    }
  }

  private copy(body: Obj): Col[] {
    if (body['is_from'] === true) return [];
    if (body['query'] !== undefined) return this.query(body['query'], undefined, undefined);
    const rel = nodeOf(body['relation'], 'RangeVar');
    if (!rel) return fail('COPY without a relation or query');
    const { item } = this.fromItem(['RangeVar', rel[1]], emptyScope(undefined), undefined, undefined);
    const attlist = strings(body['attlist']);
    if (attlist.length === 0) return this.star(item);
    return attlist.map((a) => {
      const c = item.columns.find((x) => x.name === a);
      return c ?? fail(`unknown column ${a}`);
    });
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) fail('statement nests too deeply to analyse');
  }

  /** A query node (wrapped): SELECT or a data-modifying statement with RETURNING. */
  query(v: unknown, outer: Scope | undefined, env: CteEnv | undefined): Col[] {
    return this.level(v, outer, env).cols;
  }

  /** A query node as one level: outputs, and what its clauses reference. */
  private level(v: unknown, outer: Scope | undefined, env: CteEnv | undefined): Level {
    const u = nodeOf(v, 'SelectStmt');
    if (!u) return fail('missing query');
    const [type, body] = u;
    if (type === 'SelectStmt') return this.select(body, outer, env);
    // A data-modifying statement cannot sit inside an expression: its outputs are all there is.
    if (type === 'InsertStmt' || type === 'UpdateStmt' || type === 'DeleteStmt' || type === 'MergeStmt') return this.dml(type, body, env);
    return fail(`cannot analyse a ${type} as a query`);
  }

  /**
   * A subquery used as an expression, analysed once per scope: the classification of
   * conditions and the expression walk both ask for it, and nested subqueries must not
   * multiply the work.
   */
  private sublinkLevel(b: Obj, scope: Scope, env: CteEnv | undefined): Level {
    let byScope = this.sublinks.get(b);
    if (!byScope) this.sublinks.set(b, (byScope = new Map()));
    let l = byScope.get(scope);
    if (!l) byScope.set(scope, (l = this.level(b['subselect'], scope, env)));
    return l;
  }

  // -- SELECT and set operations -------------------------------------------------------

  select(body: Obj, outer: Scope | undefined, env: CteEnv | undefined): Level {
    this.enter();
    try {
      const e = this.withClause(body['withClause'], outer, env);
      const level = (str(body['op']) ?? 'SETOP_NONE') === 'SETOP_NONE' ? this.simpleSelect(body, outer, e) : this.setOperation(body, outer, e);
      // The WITH queries this level defines and uses are inside it too.
      for (let d = e; d && d !== env; d = d.parent) addFlow(level.refs, d.def.all);
      return level;
    } finally {
      this.depth--;
    }
  }

  private setOperation(body: Obj, outer: Scope | undefined, env: CteEnv | undefined): Level {
    // Flatten the set-operation tree with an explicit stack: long UNION chains nest deeply.
    // A branch with its own WITH, ORDER BY or LIMIT is a level of its own.
    const leaves: Level[] = [];
    const stack: Obj[] = [body];
    let first = true;
    let matching = false;
    while (stack.length > 0) {
      const n = stack.pop()!;
      const op = str(n['op']) ?? 'SETOP_NONE';
      if (op === 'SETOP_INTERSECT' || op === 'SETOP_EXCEPT') matching = true;
      const own = !first && (isObj(n['withClause']) || (op !== 'SETOP_NONE' && hasRowClauses(n)));
      if (own) leaves.push(this.select(n, outer, env));
      else if (op === 'SETOP_NONE') leaves.push(this.simpleSelect(n, outer, env));
      else {
        const l = n['larg'];
        const r = n['rarg'];
        if (!isObj(l) || !isObj(r)) fail('set operation without both branches');
        stack.push(unwrap(r)?.[1] ?? r, unwrap(l)?.[1] ?? l); // left popped first: names come from it
      }
      first = false;
    }
    const cols = combineBranches(leaves.map((l) => l.cols));
    const inner = emptyFlow();
    for (const l of leaves) addFlow(inner, l.refs);
    // ORDER BY and LIMIT of the whole set operation (names and positions of its outputs only).
    const level = this.finishLevel(body, emptyScope(outer), env, cols, inner);
    for (const l of leaves) addFlow(level.taint, l.taint);
    // INTERSECT/EXCEPT keep a row (and ALL, how many times) by matching it with the other
    // branches: a computed branch (`select g intersect select ascii(email)`) decides the rows.
    if (matching && leaves.some((l) => l.cols.some(computedCol))) {
      const t = asConditions(wholeOf(leaves.flatMap((l) => l.cols)));
      addFlow(level.taint, t);
      addFlow(level.refs, t);
      level.cols = level.cols.map((c) => withConditions(c, t));
    }
    return level;
  }

  private simpleSelect(body: Obj, outer: Scope | undefined, env: CteEnv | undefined): Level {
    const values = arr(body['valuesLists']);
    if (values.length > 0) {
      const scope = emptyScope(outer);
      const rows = values.map((row) => {
        const items = unwrap(row)?.[0] === 'List' ? arr(unwrap(row)![1]['items']) : arr(row);
        return items.map((x, i) => ({ name: `column${i + 1}`, ...this.expr(x, scope, env) }));
      });
      return this.finishLevel(body, scope, env, combineBranches(rows));
    }
    const scope = this.fromClause(arr(body['fromClause']), outer, env);
    scope.windows = namedWindows(body['windowClause']);
    const cols = this.targetList(arr(body['targetList']), scope, env);
    // ORDER BY, GROUP BY and DISTINCT ON items are evaluated per row too (an item not in the
    // select list becomes a hidden output): a set-returning function there repeats the row,
    // or makes as many groups as the values it returns.
    const perRow = [body['targetList'], body['sortClause'], body['groupClause'], body['distinctClause']].flatMap(arr);
    return this.finishLevel(body, scope, env, cols, undefined, this.selectListRows(perRow, scope, env));
  }

  /**
   * A set-returning function in the select list, ORDER BY, GROUP BY or DISTINCT ON (`generate_series(1, ascii(email))`,
   * `pg_options_to_table(…)`) repeats the row as many times as its arguments say: their
   * flows decide every output. Which names return sets is the catalog's answer (any
   * overload, built in or not); a name it does not know counts as one.
   */
  private selectListRows(list: unknown[], scope: Scope, env: CteEnv | undefined): Flow {
    const out = emptyFlow();
    const stack: unknown[] = [...list];
    while (stack.length > 0) {
      const n = stack.pop();
      if (Array.isArray(n)) {
        stack.push(...n);
        continue;
      }
      if (!isObj(n) || isObj(n['SubLink'])) continue;
      const fc = n['FuncCall'];
      if (isObj(fc)) {
        const fn = funcName(fc);
        if (fn && this.mayReturnSet(fn.schema, fn.name)) addFlow(out, asConditions(this.expr(fc['args'], scope, env)));
      }
      for (const [k, x] of Object.entries(n)) if (k !== 'location' && typeof x === 'object' && x !== null) stack.push(x);
    }
    return out;
  }

  /**
   * The clauses of a query level around its outputs `cols`. Row-linking conditions of
   * WHERE, HAVING and JOIN … ON (conditionFlows), row-linking ORDER BY items and
   * LIMIT/OFFSET decide which rows the outputs show, or in which order, so every output
   * takes them as conditions. GROUP BY, DISTINCT ON, WINDOW and the rest of the predicates
   * and orderings only go into `refs`: they count where the level is a subquery used as a
   * value (the top level's one-column orderings and filters are the documented limit).
   */
  private finishLevel(body: Obj, scope: Scope, env: CteEnv | undefined, cols: Col[], inner?: Flow, rows?: Flow): Level {
    const taint = emptyFlow();
    const refs = emptyFlow();
    addFlow(refs, inner);
    addFlow(taint, rows);
    for (const it of scope.items) {
      addFlow(taint, it.taint);
      addFlow(refs, it.inner);
    }
    for (const clause of [body['whereClause'], body['havingClause']]) {
      const c = this.conditionFlows(clause, scope, env);
      addFlow(taint, c.taint);
      addFlow(refs, c.refs);
    }
    addFlow(taint, this.expr([body['limitCount'], body['limitOffset']], scope, env));
    // An ORDER BY that links a computed value to another column (`abs(g - ascii(email))`) puts the code first.
    for (const s of arr(body['sortClause'])) {
      const item = unwrap(s)?.[1]['node'];
      if (this.linksValues(item, scope, env)) addFlow(taint, this.expr(item, scope, env));
    }
    // GROUP BY i, ascii(email) >= g: the groups (and so every output, count(*) included) link
    // the computed value to the other columns, as a row-linking condition would.
    const groups = groupItems(body['groupClause']);
    const groupNames = new Set<string>();
    for (const g of groups) for (const n of this.valueNames(g)) groupNames.add(n);
    if (groupNames.size >= 2) {
      for (const g of groups) {
        const u = unwrap(g);
        const byOutput = u?.[0] === 'A_Const' || (u?.[0] === 'ColumnRef' && arr(u[1]['fields']).length === 1 && cols.some((c) => c.name === strings(u[1]['fields'])[0]) && !this.columnCandidates(strings(u[1]['fields']), scope).exact);
        if (byOutput || !this.computes(g, scope, env)) continue;
        addFlow(taint, this.expr(g, scope, env));
      }
    }
    addFlow(refs, this.outputClauses([body['sortClause'], body['groupClause'], body['distinctClause']], scope, env, cols));
    addFlow(refs, this.expr(body['windowClause'], scope, env));
    addFlow(refs, taint);
    return { cols: cols.map((c) => withConditions(c, taint)), refs, taint };
  }

  /** ORDER BY, GROUP BY, DISTINCT ON items: an output's name or position, or an expression over the input. */
  private outputClauses(lists: unknown[], scope: Scope, env: CteEnv | undefined, cols: Col[]): Flow {
    const out = emptyFlow();
    const stack: unknown[] = [...lists];
    while (stack.length > 0) {
      const n = stack.pop();
      if (Array.isArray(n)) {
        stack.push(...n);
        continue;
      }
      const u = unwrap(n);
      if (!u) continue;
      if (u[0] === 'SortBy') stack.push(u[1]['node']);
      else if (u[0] === 'GroupingSet') stack.push(u[1]['content']);
      else addFlow(out, this.outputOrInput(u, scope, env, cols));
    }
    return out;
  }

  private outputOrInput([type, b]: [string, Obj], scope: Scope, env: CteEnv | undefined, cols: Col[]): Flow {
    // A position: every output, so that no number decides provenance (the result masker
    // caches an analysis by the statement's shape, numbers replaced).
    if (type === 'A_Const') return wholeOf(cols);
    const names = type === 'ColumnRef' ? strings(b['fields']) : [];
    const byName = names.length === 1 && arr(b['fields']).length === 1 ? cols.filter((c) => c.name === names[0]) : [];
    if (byName.length === 0) return this.expr({ [type]: b }, scope, env);
    // An output name; an input column of that name may be meant instead (GROUP BY prefers it).
    const f = mergeAll(byName.map(colFlow));
    const input = this.columnCandidates(names, scope);
    if (input.exact) for (const x of input.flows) addFlow(f, x);
    return f;
  }

  private targetList(list: unknown[], scope: Scope, env: CteEnv | undefined): Col[] {
    const out: Col[] = [];
    for (const t of list) {
      const rt = unwrap(t);
      if (!rt || rt[0] !== 'ResTarget') fail('unexpected select-list entry');
      const val = rt[1]['val'];
      const alias = str(rt[1]['name']);
      const expanded = this.starTarget(val, scope);
      if (expanded) {
        out.push(...expanded);
        continue;
      }
      const f = this.expr(val, scope, env);
      if (this.valueNames(val).size >= 2 && this.computes(val, scope, env)) f.linked = true;
      out.push({ name: alias ?? figureName(val), ...f });
    }
    return out;
  }

  /** `*`, `t.*`, `(t).*` in a select list: one output per column. undefined if not a star. */
  private starTarget(val: unknown, scope: Scope): Col[] | undefined {
    const u = unwrap(val);
    if (!u) return undefined;
    if (u[0] === 'ColumnRef') {
      const fields = arr(u[1]['fields']);
      if (unwrap(fields[fields.length - 1])?.[0] !== 'A_Star') return undefined;
      const qual = strings(fields.slice(0, -1));
      if (qual.length === 0) {
        if (scope.items.length === 0) fail('SELECT * with no FROM items');
        return scope.items.flatMap((it) => this.star(it));
      }
      const n = this.findNamed(qual, scope);
      if (!n) fail(`unknown relation ${qual.join('.')}`);
      return this.star(n.item);
    }
    if (u[0] === 'A_Indirection') {
      const ind = arr(u[1]['indirection']);
      if (unwrap(ind[ind.length - 1])?.[0] !== 'A_Star') return undefined;
      const arg = unwrap(u[1]['arg']);
      if (ind.length === 1 && arg?.[0] === 'ColumnRef') {
        const names = strings(arg[1]['fields']);
        if (names.length === arr(arg[1]['fields']).length) {
          const n = this.columnCandidates(names, scope).exact ? undefined : this.findNamed(names, scope);
          if (n) return this.star(n.item);
        }
      }
      return fail('cannot expand (expression).*: the composite type is not known');
    }
    return undefined;
  }

  private star(item: Item): Col[] {
    if (!item.shapeKnown) fail('cannot expand * over a relation or function whose columns are not known');
    return item.columns.map((c) => ({ ...c }));
  }

  // -- WITH ------------------------------------------------------------------------------

  private withClause(w: unknown, outer: Scope | undefined, env: CteEnv | undefined): CteEnv | undefined {
    if (!isObj(w)) return env;
    const recursive = w['recursive'] === true;
    const defs: CteDef[] = [];
    let e = env;
    for (const c of arr(w['ctes'])) {
      const u = unwrap(c);
      if (!u || u[0] !== 'CommonTableExpr') continue;
      const def: CteDef = { name: str(u[1]['ctename']) ?? '', body: u[1], env: e, scope: outer, recursive, state: 'pending' };
      defs.push(def);
      e = { def, parent: e };
    }
    // In WITH RECURSIVE every CTE sees the whole list; otherwise only the ones before it.
    if (recursive) for (const d of defs) d.env = e;
    return e;
  }

  private cteColumns(def: CteDef): Col[] {
    if (def.state === 'done') return def.columns!;
    if (def.state === 'analysing') {
      if (def.current) return def.current;
      return fail(`WITH query ${def.name} refers to itself outside a recursive UNION`);
    }
    def.state = 'analysing';
    const q = nodeOf(def.body['ctequery'], 'SelectStmt');
    const aliases = { colnames: def.body['aliascolnames'] };
    let cols: Col[];
    let refs: Flow;
    let taint = emptyFlow();
    if (def.recursive && q && q[0] === 'SelectStmt' && (str(q[1]['op']) ?? 'SETOP_NONE') === 'SETOP_UNION' && isObj(q[1]['larg'])) {
      const larg = q[1]['larg'];
      let current = renamed(this.select(unwrap(larg)?.[1] ?? larg, def.scope, def.env).cols, aliases);
      let settled = false;
      refs = emptyFlow();
      for (let pass = 0; pass < MAX_RECURSIVE_PASSES && !settled; pass++) {
        def.current = current;
        const l = this.select(q[1], def.scope, def.env);
        refs = l.refs;
        taint = l.taint;
        const next = combineBranches([current, renamed(l.cols, aliases)]);
        settled = sameColumns(current, next);
        current = next;
      }
      if (!settled) {
        const all = wholeOf(current);
        current = current.map((c) => ({ name: c.name, ...all, direct: false }));
      }
      cols = current;
    } else {
      const l = this.level(def.body['ctequery'], def.scope, def.env);
      cols = renamed(l.cols, aliases);
      refs = l.refs;
      taint = l.taint;
    }
    cols = [...cols, ...searchCycleColumns(def.body, cols)];
    def.current = undefined;
    def.columns = cols;
    def.all = wholeOf(cols, refs);
    def.taint = taint;
    def.state = 'done';
    return cols;
  }

  // -- FROM --------------------------------------------------------------------------------

  private fromClause(from: unknown[], outer: Scope | undefined, env: CteEnv | undefined): Scope {
    const scope = emptyScope(outer);
    for (const f of from) {
      const u = unwrap(f);
      if (!u) fail('unexpected FROM entry');
      const r = this.fromItem(u, scope, outer, env);
      scope.items.push(r.item);
      scope.named.push(...r.named);
    }
    return scope;
  }

  /**
   * One FROM item. `lateral` is the scope a LATERAL item (and any function) may see: the
   * items before it plus the outer queries; `outer` is what a plain subquery may see.
   */
  private fromItem([type, b]: [string, Obj], lateral: Scope, outer: Scope | undefined, env: CteEnv | undefined): { item: Item; named: Named[] } {
    switch (type) {
      case 'RangeVar':
        return this.rangeVar(b, env);
      case 'RangeSubselect': {
        const l = this.level(b['subquery'], b['lateral'] === true ? lateral : outer, env);
        const item = makeItem(renamed(l.cols, b['alias']));
        item.inner = wholeOf(l.cols, l.refs);
        // What decides its rows (a linking WHERE, an SRF sized by a value) decides the outer level's (count(*)).
        if (hasFlow(l.taint)) item.taint = copyFlow(l.taint);
        const alias = isObj(b['alias']) ? str(b['alias']['aliasname']) : undefined;
        return { item, named: alias === undefined ? [] : [{ refname: alias, schemas: [], item }] };
      }
      case 'RangeFunction':
        return this.rangeFunction(b, lateral, env);
      case 'JoinExpr':
        return this.join(b, lateral, outer, env);
      case 'RangeTableSample': {
        const rel = unwrap(b['relation']);
        if (!rel) return fail('TABLESAMPLE without a relation');
        const r = this.fromItem(rel, lateral, outer, env);
        r.item.inner = this.expr([b['args'], b['repeatable']], lateral, env); // the sample size decides the rows
        return r;
      }
      case 'RangeTableFunc': {
        // XMLTABLE: every column depends on the document and path expressions.
        const flow = this.expr([b['docexpr'], b['rowexpr'], b['namespaces'], ...arr(b['columns']).map((c) => unwrap(c)?.[1]?.['colexpr'])], lateral, env);
        const names = arr(b['columns']).map((c) => str(unwrap(c)?.[1]?.['colname']) ?? '?column?');
        return this.functionItem(names, { ...flow, direct: false }, b['alias'], 'xmltable');
      }
      case 'JsonTable': {
        const flow = this.expr([isObj(b['context_item']) ? b['context_item']['raw_expr'] : undefined, b['passing']], lateral, env);
        return this.functionItem(jsonTableColumns(b['columns']), { ...flow, direct: false }, b['alias'], 'json_table');
      }
      default:
        return fail(`cannot analyse FROM item ${type}`);
    }
  }

  private functionItem(names: string[], flow: Flow, alias: unknown, defaultName: string): { item: Item; named: Named[] } {
    const cols = renamed(names.map((n) => ({ name: n, ...flow, direct: false })), alias);
    const item = makeItem(cols, true, flow);
    item.inner = flow;
    const a = (isObj(alias) ? str(alias['aliasname']) : undefined) ?? defaultName;
    return { item, named: [{ refname: a, schemas: [], item }] };
  }

  private rangeVar(b: Obj, env: CteEnv | undefined): { item: Item; named: Named[] } {
    const name = str(b['relname']) ?? '';
    const schema = str(b['schemaname']);
    const aliasName = isObj(b['alias']) ? str(b['alias']['aliasname']) : undefined;
    if (schema === undefined) {
      for (let e = env; e; e = e.parent) {
        if (e.def.name !== name) continue;
        const item = makeItem(renamed(this.cteColumns(e.def), b['alias']));
        if (e.def.taint && hasFlow(e.def.taint)) item.taint = copyFlow(e.def.taint);
        return { item, named: [{ refname: aliasName ?? name, schemas: [], item }] };
      }
    }
    const cands = this.relations(schema, name);
    if (cands.length === 0) fail(`unknown relation ${schema === undefined ? name : `${schema}.${name}`}`);
    const lists = cands.map((r) => this.relationColumns(r));
    let columns: Col[];
    let shapeKnown = true;
    if (lists.length === 1) columns = lists[0]!;
    else {
      // Several schemas hold that name: union by column name (the session picks one of them).
      const first = lists[0]!.map((c) => c.name).join('\u0000');
      shapeKnown = lists.every((l) => l.map((c) => c.name).join('\u0000') === first);
      const byName = new Map<string, Col>();
      for (const l of lists) {
        for (const c of l) {
          const prev = byName.get(c.name);
          byName.set(c.name, prev ? mergeCols(prev, c) : c);
        }
      }
      columns = [...byName.values()];
    }
    const item = makeItem(renamed(columns, b['alias']), shapeKnown);
    // A view's own row-deciding conditions (a linking WHERE, a FROM function sized by a
    // value) decide the reader's rows, as a derived table's do: `count(*) FROM v` counts them.
    const taints = cands.map((r) => this.viewTaints.get(`${r.schema}.${r.name}`)).filter((t): t is Flow => t !== undefined);
    if (taints.length > 0) item.taint = unionFlows(...taints);
    return { item, named: [{ refname: aliasName ?? name, schemas: aliasName === undefined ? cands.map((c) => c.schema) : [], item }] };
  }

  private relationColumns(r: RelationInfo): Col[] {
    const own = (c: string): string => `${r.schema}.${r.name}.${c}`;
    if (r.kind !== 'view') {
      return r.columns.map((c) => {
        const { related, derived } = relatedColumns(r, c);
        return { name: c, sources: new Set([own(c), ...related.map((x) => `${x.schema}.${x.table}.${x.column}`)]), direct: !derived, opaque: false };
      });
    }
    const vk = `${r.schema}.${r.name}`;
    const cached = this.views.get(vk);
    if (cached) return cached;
    let cols: Col[];
    if (typeof r.viewSql !== 'string') {
      cols = r.columns.map((c) => ({ name: c, sources: new Set([own(c)]), direct: false, opaque: true }));
    } else {
      if (this.viewsInProgress.has(vk)) fail(`view ${vk} refers to itself`);
      this.viewsInProgress.add(vk);
      this.enter();
      try {
        let stmts: { stmt?: unknown }[];
        try {
          stmts = this.p.parseSync(r.viewSql).stmts ?? [];
        } catch (e) {
          return fail(`cannot parse the definition of view ${vk}: ${errText(e)}`);
        }
        const q = stmts.length === 1 ? unwrap(stmts[0]!.stmt) : undefined;
        if (!q || q[0] !== 'SelectStmt') fail(`the definition of view ${vk} is not one SELECT`);
        const level = this.select(q[1], undefined, undefined);
        const inner = level.cols;
        if (hasFlow(level.taint)) this.viewTaints.set(vk, copyFlow(level.taint));
        if (inner.length !== r.columns.length) fail(`view ${vk} has ${r.columns.length} columns, its definition ${inner.length}`);
        cols = inner.map((c, i) => {
          const name = r.columns[i]!;
          return { ...c, name, sources: new Set([own(name), ...c.sources]) };
        });
      } finally {
        this.depth--;
        this.viewsInProgress.delete(vk);
      }
    }
    this.views.set(vk, cols);
    return cols;
  }

  private rangeFunction(b: Obj, lateral: Scope, env: CteEnv | undefined): { item: Item; named: Named[] } {
    const fns = arr(b['functions']);
    const alias = b['alias'];
    const aliasName = isObj(alias) ? str(alias['aliasname']) : undefined;
    const all = emptyFlow();
    const cols: Col[] = [];
    let shapeKnown = true;
    let open = false;
    let scalarName: string | undefined;
    /** Column names that show settings' values, of the functions listed (applied after the alias renames). */
    const untracedNames = new Set<string>();
    for (const f of fns) {
      const pair = unwrap(f)?.[0] === 'List' ? arr(unwrap(f)![1]['items']) : arr(f);
      const call = pair[0];
      const coldef = arr(pair[1]).length > 0 ? arr(pair[1]) : fns.length === 1 ? arr(b['coldeflist']) : [];
      const outer = this.fromCall;
      this.fromCall = unwrap(call)?.[1];
      let flow: Flow;
      try {
        flow = this.expr(call, lateral, env);
      } finally {
        this.fromCall = outer;
      }
      addFlow(all, flow);
      const fc = unwrap(call);
      const fname = fc?.[0] === 'FuncCall' ? funcName(fc[1]) : undefined;
      let names: string[] | undefined;
      if (coldef.length > 0) names = coldef.map((c) => str(unwrap(c)?.[1]?.['colname']) ?? '?column?');
      else if (fname && !flow.opaque && this.allBuiltin(fname.schema, fname.name)) {
        const known = SRF_COLUMNS[fname.name];
        if (known === 'scalar') {
          const nargs = fname.name === 'unnest' ? Math.max(1, arr(fc![1]['args']).length) : 1;
          names = Array.from({ length: nargs }, () => fname.name);
          if (fns.length === 1 && nargs === 1) scalarName = fname.name;
          // An array of rows (`unnest(array(select u from users u))`) expands to their columns.
          if (fname.name === 'unnest') open = true;
        } else if (known) names = [...known];
      } else if (fc && fc[0] !== 'FuncCall') {
        names = [figureName(call)]; // e.g. FROM CAST(x AS int)
        if (fns.length === 1) scalarName = names[0];
        open = true; // FROM CAST((select u …) AS users): a composite expands to its columns
      }
      if (!names) {
        shapeKnown = false;
        names = [fname?.name ?? '?column?'];
      }
      const untraced = fname && this.allBuiltin(fname.schema, fname.name) ? UNTRACED_FUNCTION_COLUMNS[fname.name] : undefined;
      if (untraced) for (const n of untraced) untracedNames.add(n);
      for (const n of names) cols.push({ name: n, sources: flow.sources, direct: false, opaque: flow.opaque });
    }
    if (b['ordinality'] === true) cols.push({ name: 'ordinality', sources: new Set(), direct: false, opaque: false });
    // A single scalar function takes the table alias as its column name unless a column alias is given.
    if (scalarName !== undefined && aliasName !== undefined && cols[0]) cols[0] = { ...cols[0], name: aliasName };
    open ||= !shapeKnown;
    let named = renamed(cols, alias, open);
    // With the function's own column names, or the alias's (pg_settings: `pg_show_all_settings() a(name, setting, …)`).
    if (untracedNames.size > 0) {
      const aliasNames = isObj(alias) ? strings(alias['colnames']) : [];
      // An alias list over a shape not known here renames columns at positions not known
      // either (`pg_stat_get_activity(NULL) a(d, p, u, app, st, q)`): any may be untraced.
      const renaming = !shapeKnown && aliasNames.length > 0;
      named = named.map((c) => (renaming || untracedNames.has(c.name) ? { ...c, opaque: true } : c));
      // A shape not known here (no SRF_COLUMNS entry): the untraced columns by their own
      // names, and the alias's names beyond the first, which a reference would otherwise
      // resolve to the whole row's flow. Listed opaque, they make the whole row opaque too.
      const listed = new Set(named.map((c) => c.name));
      for (const n of [...untracedNames, ...aliasNames]) {
        if ((renaming || untracedNames.has(n)) && !listed.has(n)) {
          named.push({ name: n, sources: all.sources, direct: false, opaque: true });
          listed.add(n);
        }
      }
    }
    const item = makeItem(named, shapeKnown, all, open);
    item.inner = all;
    // A set-returning function's arguments decide how many rows it gives (generate_series(1,
    // ascii(email))): every output of the level, count(*) included, depends on them.
    if (hasFlow(all)) item.taint = asConditions(all);
    // Without an alias a single function is referred to by its name (`generate_series.*`).
    const fc0 = fns.length === 1 ? unwrap((unwrap(fns[0])?.[0] === 'List' ? arr(unwrap(fns[0])![1]['items']) : arr(fns[0]))[0]) : undefined;
    const refname = aliasName ?? (fc0?.[0] === 'FuncCall' ? funcName(fc0[1])?.name : undefined);
    return { item, named: refname === undefined ? [] : [{ refname, schemas: [], item }] };
  }

  private join(b: Obj, lateral: Scope, outer: Scope | undefined, env: CteEnv | undefined): { item: Item; named: Named[] } {
    const lu = unwrap(b['larg']);
    const ru = unwrap(b['rarg']);
    if (!lu || !ru) return fail('JOIN without both sides');
    const left = this.fromItem(lu, lateral, outer, env);
    // The right side may refer (LATERAL) to the left side.
    const inner: Scope = { named: [...lateral.named, ...left.named], items: [...lateral.items, left.item], parent: lateral.parent };
    const right = this.fromItem(ru, inner, outer, env);
    let using = strings(b['usingClause']);
    if (b['isNatural'] === true) {
      if (left.item.open || right.item.open) fail('NATURAL JOIN over columns that are not known');
      const rn = new Set(right.item.columns.map((c) => c.name));
      using = left.item.columns.map((c) => c.name).filter((n) => rn.has(n));
    }
    const pick = (it: Item, n: string): Col => {
      const c = it.columns.find((x) => x.name === n);
      if (c) return c;
      if (it.open) return { name: n, ...copyFlow(it.whole), direct: false };
      return fail(`JOIN USING column ${n} is not on both sides`);
    };
    const merged: Col[] = using.map((n) => mergeCols(pick(left.item, n), pick(right.item, n)));
    // USING (g) is `l.g = r.g`: when a side is computed (`ascii(email) as g`), the rows kept link it to the other.
    const usingTaint = emptyFlow();
    for (const n of using) {
      const l = pick(left.item, n);
      const r = pick(right.item, n);
      if (computedCol(l) || computedCol(r)) addFlow(usingTaint, unionFlows(l, r));
    }
    const usingSet = new Set(using);
    const rest = (it: Item): Col[] => {
      const done = new Set<string>();
      return it.columns.filter((c) => {
        if (!usingSet.has(c.name) || done.has(c.name)) return true;
        done.add(c.name);
        return false;
      });
    };
    const columns = [...merged, ...rest(left.item), ...rest(right.item)];
    const open = left.item.open || right.item.open;
    const item = makeItem(columns, left.item.shapeKnown && right.item.shapeKnown, unionFlows(left.item.whole, right.item.whole), open);
    // ON sees the two sides (and outer queries), not earlier FROM items.
    const sides: Scope = { named: [...left.named, ...right.named], items: [left.item, right.item], parent: lateral.parent };
    const on = this.conditionFlows(b['quals'], sides, env);
    item.taint = unionFlows(on.taint, usingTaint, left.item.taint, right.item.taint);
    item.inner = unionFlows(on.refs, left.item.inner, right.item.inner);
    const alias = isObj(b['alias']) ? str(b['alias']['aliasname']) : undefined;
    if (alias !== undefined) {
      // An alias on a join hides the names inside it.
      const aliased = { ...makeItem(renamed(columns, b['alias'], open), item.shapeKnown, item.whole, open), taint: item.taint, inner: item.inner };
      return { item: aliased, named: [{ refname: alias, schemas: [], item: aliased }] };
    }
    const named = [...left.named, ...right.named];
    const ua = isObj(b['join_using_alias']) ? str(b['join_using_alias']['aliasname']) : undefined;
    if (ua !== undefined) named.push({ refname: ua, schemas: [], item: makeItem(merged) });
    return { item, named };
  }

  // -- INSERT / UPDATE / DELETE / MERGE … RETURNING ---------------------------------------

  /**
   * A data-modifying statement: its RETURNING outputs, and what decides how many rows it
   * writes (and so returns, and counts in its tag): the rows its source query gives
   * (`INSERT … SELECT … generate_series(1, ascii(ssn))`), UPDATE/DELETE … WHERE and
   * FROM/USING joins, MERGE's join and WHEN conditions.
   */
  private dml(type: string, body: Obj, outerEnv?: CteEnv): Level {
    const rc = body['returningClause'];
    const returning = isObj(rc) ? arr(rc['exprs']) : arr(body['returningList']);
    this.enter();
    try {
      const env = this.withClause(body['withClause'], undefined, outerEnv);
      const relBody = nodeOf(body['relation'], 'RangeVar');
      if (!relBody) return fail(`${type} without a target relation`);
      const target = this.rangeVar(relBody[1], env);
      const refname = target.named[0]!.refname;
      const base = target.item.columns;
      const others = emptyScope(this.ruleScope);
      const extra = type === 'UpdateStmt' ? arr(body['fromClause']) : type === 'DeleteStmt' ? arr(body['usingClause']) : type === 'MergeStmt' ? [body['sourceRelation']] : [];
      for (const f of extra) {
        const u = unwrap(f);
        if (!u) continue;
        const r = this.fromItem(u, others, undefined, env);
        others.items.push(r.item);
        others.named.push(...r.named);
      }
      // What the statement writes into each target column.
      const assigned = new Map<string, Flow>();
      const assign = (col: string, f: Flow): void => {
        const prev = assigned.get(col);
        assigned.set(col, prev ? { ...mergeFlows(prev, f), direct: prev.direct && f.direct } : f);
      };
      const withTarget = (it: Item, more: Named[] = []): Scope => ({
        named: [{ refname, schemas: target.named[0]!.schemas, item: it }, ...more, ...others.named],
        items: [it, ...others.items],
        parent: this.ruleScope,
      });
      const oldScope = withTarget(target.item);
      const setList = (list: unknown[], scope: Scope): void => {
        for (const t of list) {
          const rt = unwrap(t);
          if (!rt || rt[0] !== 'ResTarget') continue;
          const name = str(rt[1]['name']) ?? '';
          const val = unwrap(rt[1]['val']);
          if (val?.[0] === 'MultiAssignRef') assign(name, { ...this.expr(val[1]['source'], scope, env), direct: false });
          else {
            const f = this.expr(rt[1]['val'], scope, env);
            assign(name, arr(rt[1]['indirection']).length > 0 ? { ...f, direct: false } : f);
          }
        }
      };
      const insertList = (cols: unknown[], values: Flow[]): void => {
        const names = cols.length > 0 ? cols.map((c) => str(unwrap(c)?.[1]?.['name']) ?? '') : base.map((c) => c.name);
        values.forEach((v, i) => {
          const n = names[i];
          if (n === undefined) fail('INSERT has more expressions than target columns');
          const indirect = arr(unwrap(cols[i])?.[1]?.['indirection']).length > 0;
          assign(n, indirect ? { ...v, direct: false } : v);
        });
      };
      /** What decides the rows written beyond WHERE and the joins (an INSERT's source query, MERGE's conditions). */
      const decides = emptyFlow();
      if (type === 'InsertStmt') {
        if (body['selectStmt'] !== undefined) {
          const source = this.level(body['selectStmt'], this.ruleScope, env);
          addFlow(decides, source.taint);
          insertList(arr(body['cols']), source.cols.map(colFlow));
        }
        const oc = body['onConflictClause'];
        if (isObj(oc) && arr(oc['targetList']).length > 0) {
          const excluded = makeItem(base.map((c) => withAssigned(c, assigned.get(c.name))));
          setList(arr(oc['targetList']), withTarget(target.item, [{ refname: 'excluded', schemas: [], item: excluded }]));
        }
      } else if (type === 'UpdateStmt') {
        setList(arr(body['targetList']), oldScope);
      } else if (type === 'MergeStmt') {
        // Which target rows match, and which action each takes, is what MERGE counts.
        addFlow(decides, asConditions(this.expr(body['joinCondition'], oldScope, env)));
        for (const w of arr(body['mergeWhenClauses'])) {
          const u = unwrap(w);
          if (!u) continue;
          addFlow(decides, asConditions(this.expr(u[1]['condition'], oldScope, env)));
          const cmd = str(u[1]['commandType']);
          if (cmd === 'CMD_UPDATE') setList(arr(u[1]['targetList']), oldScope);
          else if (cmd === 'CMD_INSERT') insertList(arr(u[1]['targetList']), arr(u[1]['values']).map((v) => this.expr(v, oldScope, env)));
        }
      }
      const newItem = makeItem(base.map((c) => withAssigned(c, assigned.get(c.name))));
      // PG 18: RETURNING old.*, new.* (and WITH (OLD AS o, NEW AS n)).
      let oldName = 'old';
      let newName = 'new';
      if (isObj(rc)) {
        for (const o of arr(rc['options'])) {
          const ro = unwrap(o);
          if (!ro) continue;
          const v = str(ro[1]['value']);
          if (v === undefined) continue;
          if (ro[1]['option'] === 'RETURNING_OPTION_OLD') oldName = v;
          else newName = v;
        }
      }
      const after = type === 'DeleteStmt' ? target.item : newItem;
      const scope = withTarget(after, [
        { refname: oldName, schemas: [], item: target.item },
        { refname: newName, schemas: [], item: newItem },
      ]);
      // The rows written (and so returned) are the ones UPDATE/DELETE … WHERE and FROM/USING joins keep.
      const where = this.conditionFlows(body['whereClause'], oldScope, env);
      const taint = unionFlows(where.taint, decides, ...others.items.map((it) => it.taint));
      addFlow(this.writeRows, taint);
      const cols = returning.length === 0 ? [] : this.targetList(returning, scope, env).map((c) => withConditions(c, taint));
      return { cols, refs: emptyFlow(), taint };
    } finally {
      this.depth--;
    }
  }

  // -- Names ---------------------------------------------------------------------------------

  private relations(schema: string | undefined, name: string): RelationInfo[] {
    const r = this.memo.rels.get(key(schema, name));
    if (r === undefined) throw new Miss('relation', schema, name);
    return r;
  }

  private functions(schema: string | undefined, name: string): FunctionFacts[] {
    const r = this.memo.fns.get(key(schema, name));
    if (r === undefined) throw new Miss('function', schema, name);
    return r;
  }

  private mayReturnSet(schema: string | undefined, name: string): boolean {
    const facts = this.functions(schema, name);
    return facts.length === 0 || facts.some((f) => f.retset);
  }

  private allBuiltin(schema: string | undefined, name: string): boolean {
    const facts = this.functions(schema, name);
    return facts.length > 0 && facts.every((f) => f.builtin === true);
  }

  /** The innermost named item a qualifier (`t`, `s.t`, `db.s.t`) refers to. */
  private findNamed(qual: string[], scope: Scope | undefined): Named | undefined {
    const q = qual.length > 2 ? qual.slice(-2) : qual;
    for (let s = scope; s; s = s.parent) {
      for (const n of s.named) {
        if (n.refname !== q[q.length - 1]) continue;
        if (q.length === 2 && !n.schemas.includes(q[0]!)) continue;
        return n;
      }
    }
    return undefined;
  }

  /**
   * Columns an unqualified name may be, from the innermost level that has it. An open item
   * (a FROM function that may return a composite row) may have any name: its whole row is
   * a candidate at every level, and the search goes on outward, since PostgreSQL may find
   * the name there instead. `exact`: some item lists the name.
   */
  private columnCandidates(name: string[], scope: Scope | undefined): { flows: Flow[]; exact: boolean } {
    const flows: Flow[] = [];
    if (name.length !== 1) return { flows, exact: false };
    for (let s = scope; s; s = s.parent) {
      let exact = false;
      for (const it of s.items) {
        const cols = it.columns.filter((c) => c.name === name[0]);
        for (const c of cols) flows.push(colFlow(c));
        if (cols.length > 0) exact = true;
        else if (it.open) flows.push({ ...copyFlow(it.whole), direct: false });
      }
      if (exact) return { flows, exact };
    }
    return { flows, exact: false };
  }

  /**
   * Arguments that are references to plain table columns (or whole rows of only such
   * columns) or constants, as written or cast (`casts`): nothing computed. A name is judged
   * by what it refers to: a derived table's, CTE's or view's column computed from a value
   * (`repeat('x', ascii(email)) k`) is a computation, and so is one with conditions.
   */
  private plainArguments(args: unknown, scope: Scope, casts = true): boolean {
    for (const a of arr(args)) {
      let n = unwrap(a);
      while (casts && n && n[0] === 'TypeCast' && !this.castOpaque(n[1])) n = unwrap(n[1]['arg']);
      if (n?.[0] === 'A_Const' && casts) continue;
      if (n?.[0] !== 'ColumnRef' || !this.plainReference(n[1], scope)) return false;
    }
    return true;
  }

  /** A reference whose value is a table column's unchanged (or a whole row of such columns), with no conditions. */
  private plainReference(ref: Obj, scope: Scope): boolean {
    const plain = (f: FlowLike & { direct: boolean }): boolean => (f.direct || f.sources.size === 0) && !f.opaque && (f.conditions?.size ?? 0) === 0;
    const fields = arr(ref['fields']);
    const isStar = unwrap(fields[fields.length - 1])?.[0] === 'A_Star';
    const names = strings(isStar ? fields.slice(0, -1) : fields);
    // A whole row (`u`, `u.*`): plain when every column of it is.
    const whole = isStar ? names.length > 0 : names.length === 1 && !this.columnCandidates(names, scope).exact;
    if (whole) {
      if (names.length === 0) return false;
      const n = this.findNamed(names, scope);
      if (!n) return false;
      return !n.item.open && n.item.columns.every(plain) && !hasFlow(n.item.taint ?? emptyFlow());
    }
    if (isStar) return false;
    return plain(this.columnRef(ref, scope));
  }

  /** A ColumnRef's flow: a column, a whole row (`u`, `u.*`), or a composite field (`c.f`). */
  private columnRef(b: Obj, scope: Scope): Flow {
    const fields = arr(b['fields']);
    const isStar = unwrap(fields[fields.length - 1])?.[0] === 'A_Star';
    const names = strings(isStar ? fields.slice(0, -1) : fields);
    if (isStar) {
      if (names.length === 0) {
        const w = emptyFlow();
        for (const it of scope.items) addFlow(w, it.whole);
        return w;
      }
      const n = this.findNamed(names, scope);
      if (!n) return fail(`unknown relation ${names.join('.')}`);
      return { ...copyFlow(n.item.whole), direct: false };
    }
    if (names.length === 1) {
      const c = this.columnCandidates(names, scope);
      if (c.exact) return mergeAll(c.flows);
      const n = this.findNamed(names, scope); // a bare relation name: the whole row
      if (n) return mergeAll([...c.flows, { ...copyFlow(n.item.whole), direct: false }]);
      if (c.flows.length > 0) return mergeAll(c.flows);
      if (SYSTEM_COLUMNS.has(names[0]!) && scope.items.length > 0) return emptyFlow();
      return fail(`unknown column ${names[0]}`);
    }
    // t.c, s.t.c, db.s.t.c — or col.field / t.col.field (composite field selection).
    for (let split = names.length - 1; split >= 1; split--) {
      const n = this.findNamed(names.slice(0, split), scope);
      if (!n) continue;
      const col = names[split]!;
      const cols = n.item.columns.filter((c) => c.name === col);
      let f: Flow;
      if (cols.length > 0) f = mergeAll(cols.map(colFlow));
      else if (n.item.open) f = { ...copyFlow(n.item.whole), direct: false };
      else continue;
      return split === names.length - 1 ? f : { ...f, direct: false };
    }
    const c = this.columnCandidates([names[0]!], scope);
    if (c.flows.length > 0) return { ...mergeAll(c.flows), direct: false };
    // t.tableoid, t.ctid, …: row bookkeeping, no user data.
    if (names.length === 2 && SYSTEM_COLUMNS.has(names[1]!) && this.findNamed([names[0]!], scope)) return emptyFlow();
    return fail(`unknown column ${names.join('.')}`);
  }

  // -- Expressions -------------------------------------------------------------------------

  /** The flow of an expression. `direct` only for a (text-cast) plain reference or a scalar subquery of one. */
  expr(root: unknown, scope: Scope, env: CteEnv | undefined): Flow {
    // Direct: strip COLLATE and casts to a text type without a length, then a plain reference.
    let v = root;
    for (let i = 0; i < 10_000; i++) {
      const u = unwrap(v);
      if (u?.[0] === 'CollateClause') v = u[1]['arg'];
      else if (u?.[0] === 'TypeCast' && textCast(u[1]['typeName']) && !this.castOpaque(u[1])) v = u[1]['arg'];
      else break;
    }
    const u = unwrap(v);
    if (u?.[0] === 'ColumnRef') return this.columnRef(u[1], scope);
    if (u?.[0] === 'A_Indirection') {
      // (u).email, where u is a relation (not a column): that column, unchanged.
      const ind = arr(u[1]['indirection']);
      const arg = unwrap(u[1]['arg']);
      const field = ind.length === 1 && unwrap(ind[0])?.[0] === 'String' ? strings(ind)[0] : undefined;
      if (field !== undefined && arg?.[0] === 'ColumnRef') {
        const names = strings(arg[1]['fields']);
        // Only when no item may have a column of that name (an open one may): else the general walk below.
        if (names.length === 1 && arr(arg[1]['fields']).length === 1 && this.columnCandidates(names, scope).flows.length === 0) {
          const n = this.findNamed(names, scope);
          const cols = n?.item.columns.filter((c) => c.name === field) ?? [];
          if (cols.length > 0) return mergeAll(cols.map(colFlow));
        }
      }
    }
    if (u?.[0] === 'SubLink' && u[1]['subLinkType'] === 'EXPR_SUBLINK' && u[1]['testexpr'] === undefined) {
      const l = this.sublinkLevel(u[1], scope, env);
      const f = wholeOf(l.cols, asConditions(l.refs));
      return { ...f, direct: l.cols.length === 1 && l.cols[0]!.direct };
    }
    return this.walk(root, scope, env);
  }

  /**
   * Every column an expression depends on. Each node is walked as a value (`cond` false:
   * into `sources`) or as something that only decides the value (`cond`: into `conditions`
   * — an aggregate's ORDER BY, a window's PARTITION BY/ORDER BY/frame, a subquery's clauses).
   */
  private walk(root: unknown, scope: Scope, env: CteEnv | undefined): Flow {
    const out = emptyFlow();
    const add = (f: FlowLike, cond: boolean): void => addFlow(out, cond ? asConditions(f) : f);
    const stack: [unknown, boolean][] = [[root, false]];
    const push = (cond: boolean, ...nodes: unknown[]): void => {
      for (const x of nodes) if (typeof x === 'object' && x !== null) stack.push([x, cond]);
    };
    while (stack.length > 0) {
      const [n, cond] = stack.pop()!;
      if (Array.isArray(n)) {
        push(cond, ...n);
        continue;
      }
      const w = unwrap(n);
      if (!w) {
        if (isObj(n)) for (const [k, x] of Object.entries(n)) if (k !== 'typeName') push(cond, x);
        continue;
      }
      const [t, b] = w;
      switch (t) {
        case 'ColumnRef':
          add(this.columnRef(b, scope), cond);
          break;
        case 'FuncCall': {
          const fn = funcName(b);
          const facts = fn ? this.functions(fn.schema, fn.name) : [];
          const builtin = facts.length > 0 && facts.every((f) => f.builtin === true);
          if (this.callOpaque(b)) out.opaque = true;
          // count(email), length(email) reveal nothing of the value; length(repeat('x',
          // ascii(email))) would reveal it a character at a time, so only plain arguments pass.
          if (!(builtin && NON_REVEALING_FUNCTIONS.has(fn!.name) && this.plainArguments(b['args'], scope))) push(cond, b['args']);
          push(cond, b['agg_filter']);
          // WITHIN GROUP returns one of the ordered values; a plain aggregate's ORDER BY picks
          // which value comes first, a window's PARTITION/ORDER BY which rows a result covers.
          push(cond || b['agg_within_group'] !== true, b['agg_order']);
          push(true, ...windowParts(b['over'], scope.windows));
          break;
        }
        case 'NullTest':
          // IS NULL of a plain reference tells only whether it is set; of anything computed, a bit of the value.
          if (!this.plainArguments([b['arg']], scope, false)) push(cond, b['arg']);
          break;
        case 'GroupingFunc':
        case 'A_Const':
        case 'ParamRef':
        case 'SQLValueFunction':
        case 'MergeSupportFunc':
        case 'SetToDefault':
          break;
        case 'SubLink': {
          // Its value depends on every column referenced anywhere inside; EXISTS's only decides.
          const l = this.sublinkLevel(b, scope, env);
          add(wholeOf(l.cols), cond || b['subLinkType'] === 'EXISTS_SUBLINK');
          add(l.refs, true);
          push(cond, b['testexpr']);
          break;
        }
        case 'A_Expr': {
          if (this.operatorOpaque(b)) out.opaque = true;
          push(cond, b['lexpr'], b['rexpr']);
          break;
        }
        case 'TypeCast':
          if (this.castOpaque(b)) out.opaque = true;
          push(cond, b['arg']);
          break;
        default:
          for (const [k, x] of Object.entries(b)) if (k !== 'typeName') push(cond, x);
      }
    }
    return out;
  }

  /**
   * A call whose output the analysis cannot trace: a function that does not ship with
   * PostgreSQL (or is unknown), a builtin that runs SQL text or reads data by name, a
   * function with untraced columns used as a value (`(pg_stat_get_activity(NULL)).query`; in
   * FROM they are judged column by column), current_setting of an untraced setting.
   */
  private callOpaque(b: Obj): boolean {
    const opaque = this.callOpaqueOf(b);
    if (opaque) this.untraced = true;
    return opaque;
  }

  private callOpaqueOf(b: Obj): boolean {
    const fn = funcName(b);
    const facts = fn ? this.functions(fn.schema, fn.name) : [];
    const builtin = facts.length > 0 && facts.every((f) => f.builtin === true);
    if (!builtin || OPAQUE_BUILTINS.has(fn!.name)) return true;
    if (UNTRACED_FUNCTION_COLUMNS[fn!.name] !== undefined && b !== this.fromCall) return true;
    return fn!.name === 'current_setting' && untracedSetting(constantText(arr(b['args'])[0]));
  }

  /**
   * An operator that may run code that does not ship with PostgreSQL: explicitly qualified
   * outside pg_catalog, or of a name some such function implements (an administrator's
   * `@@@` over a function that reads a table).
   */
  private operatorOpaque(b: Obj): boolean {
    const op = strings(b['name']);
    const n = operatorName(b);
    const opaque = (op.length > 1 && op[0] !== 'pg_catalog') || (n !== undefined && this.functions(n.schema, n.name).some((f) => !f.builtin));
    if (opaque) this.untraced = true;
    return opaque;
  }

  /**
   * A cast to a type some cast function that does not ship with PostgreSQL converts to
   * (`g::probe`, `g::probe[]`): that function may run and return anything it reads. The
   * source's type is not known here, so any cast to such a target counts, except of a
   * string literal: PostgreSQL reads one with the type's input function, never a cast
   * (`'plain'::citext`, whose extension casts from bpchar, boolean and inet).
   */
  private castOpaque(b: Obj): boolean {
    const arg = unwrap(b['arg']);
    if (arg?.[0] === 'A_Const' && arg[1]['sval'] !== undefined) return false;
    const names = isObj(b['typeName']) ? strings(b['typeName']['names']) : [];
    const name = names[names.length - 1];
    const schema = names.length > 1 ? names[names.length - 2] : undefined;
    if (this.memo.casts === undefined) fail('user casts not looked up');
    const opaque = name !== undefined && this.memo.casts.some((t) => t.name === name && (schema === undefined || t.schema === schema));
    if (opaque) this.untraced = true;
    return opaque;
  }

  /**
   * The values a unit combines, for the row-linking tests: its column names, and one more
   * when it calls something whose output the analysis cannot trace (a user function that
   * reads users.ssn, an untraced setting). Such an output is a value of its own, so
   * `ascii(substr(get_ssn(), 1, 1)) = g` links it to g as `ascii(substr(ssn, 1, 1)) = g`
   * does; counted by column names alone it looked like a filter on g.
   */
  private valueNames(unit: unknown): Set<string> {
    const names = new Set<string>();
    collectColumnNames(unit, names);
    if (this.callsOpaque(unit)) names.add(OPAQUE_VALUE);
    return names;
  }

  /** Whether a tree (subqueries included) calls a function or operator whose output is untraced. */
  private callsOpaque(root: unknown): boolean {
    const stack: unknown[] = [root];
    while (stack.length > 0) {
      const n = stack.pop();
      if (Array.isArray(n)) {
        stack.push(...n);
        continue;
      }
      if (!isObj(n)) continue;
      const fc = n['FuncCall'];
      const ex = n['A_Expr'];
      const tc = n['TypeCast'];
      if (isObj(fc) && this.callOpaque(fc)) return true;
      if (isObj(ex) && this.operatorOpaque(ex)) return true;
      if (isObj(tc) && this.castOpaque(tc)) return true;
      for (const [k, x] of Object.entries(n)) if (k !== 'location' && typeof x === 'object' && x !== null) stack.push(x);
    }
    return false;
  }

  // -- Conditions ----------------------------------------------------------------------------

  /**
   * WHERE, HAVING or JOIN … ON: what it references (`refs`), and the part every output of
   * the level depends on (`taint`). A condition that computes over a column and relates it
   * to another column (`ascii(substr(u.email, 1, 1)) = g`) makes the outputs show the
   * computed value: such a unit's columns are the outputs' conditions. A comparison of
   * plain values (`email = $1`, `u.email = o.email`) or a computation over one column
   * alone (`lower(email) = lower('x')`, `email like 'q%'`) is not such a unit: that a row is
   * there reveals a bit at a time at most (the documented limit).
   */
  private conditionFlows(cond: unknown, scope: Scope, env: CteEnv | undefined): { taint: Flow; refs: Flow } {
    const taint = emptyFlow();
    const refs = emptyFlow();
    for (const unit of conditionUnits(cond)) {
      const f = this.expr(unit, scope, env);
      addFlow(refs, f);
      if (this.linksValues(unit, scope, env)) addFlow(taint, f);
    }
    return { taint, refs };
  }

  /** A unit that (a) computes over a column and (b) references more than one column. */
  private linksValues(unit: unknown, scope: Scope, env: CteEnv | undefined): boolean {
    const names = this.valueNames(unit);
    if (names.size < 2 && !(names.size === 1 && this.refersToLinked(unit, scope, env))) return false;
    const operands = equalityOperands(unit);
    if (operands) return operands.some((p) => this.computes(p, scope, env));
    // Anything but an (in)equality of plain values computes over its columns; EXISTS when its subquery does.
    const u = unwrap(unit);
    return u?.[0] !== 'SubLink' || this.computes(unit, scope, env);
  }

  /** Whether a unit over one name refers to a column computed over several (`WHERE d.hit`, hit = `ascii(email) = g`). */
  private refersToLinked(unit: unknown, scope: Scope, env: CteEnv | undefined): boolean {
    try {
      return this.expr(unit, scope, env).linked === true;
    } catch (e) {
      if (e instanceof Unanalysable) return false; // an output name (ORDER BY e): judged as the level's outputs are
      throw e;
    }
  }

  /** Whether an operand computes over a column (a plain column, constant or parameter does not). */
  private computes(operand: unknown, scope: Scope, env: CteEnv | undefined): boolean {
    let v = operand;
    for (let u = unwrap(v); (u?.[0] === 'TypeCast' && !this.castOpaque(u[1])) || u?.[0] === 'CollateClause'; u = unwrap(v)) v = u[1]['arg'];
    const u = unwrap(v);
    if (!u || u[0] === 'A_Const' || u[0] === 'ParamRef') return false;
    // A name computes when what it refers to does: a derived, CTE or FROM-function column computed from a value.
    if (u[0] === 'ColumnRef') return !this.plainReference(u[1], scope);
    if (u[0] !== 'SubLink') return this.valueNames(v).size > 0;
    // A subquery computes when its outputs do, or when its own conditions or LIMIT decide them
    // (EXISTS: only the latter).
    const l = this.sublinkLevel(u[1], scope, env);
    if (hasFlow(l.taint)) return true;
    if (u[1]['subLinkType'] === 'EXISTS_SUBLINK') return false;
    return l.cols.some((c) => (c.conditions?.size ?? 0) > 0 || (!c.direct && (c.sources.size > 0 || c.opaque)));
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

function emptyScope(parent: Scope | undefined): Scope {
  return { named: [], items: [], parent };
}

/** The expressions of a GROUP BY (through GROUPING SETS, ROLLUP, CUBE). */
function groupItems(list: unknown): unknown[] {
  const out: unknown[] = [];
  const stack: unknown[] = [...arr(list)];
  while (stack.length > 0) {
    const n = stack.pop();
    const u = unwrap(n);
    if (u?.[0] === 'GroupingSet') stack.push(...arr(u[1]['content']));
    else if (u?.[0] === 'List') stack.push(...arr(u[1]['items']));
    else if (u) out.push(n);
  }
  return out;
}

/** A set-operation branch with ORDER BY, LIMIT or OFFSET of its own. */
function hasRowClauses(n: Obj): boolean {
  return arr(n['sortClause']).length > 0 || n['limitCount'] !== undefined || n['limitOffset'] !== undefined;
}

/** A level's WINDOW clause by name. */
function namedWindows(list: unknown): Map<string, Obj> | undefined {
  const byName = new Map<string, Obj>();
  for (const w of arr(list)) {
    const d = nodeOf(w, 'WindowDef');
    const name = d ? str(d[1]['name']) : undefined;
    if (name !== undefined) byName.set(name, d![1]);
  }
  return byName.size > 0 ? byName : undefined;
}

/** PARTITION BY, ORDER BY and frame offsets of an OVER clause, through the named windows it builds on. */
function windowParts(over: unknown, windows: ReadonlyMap<string, Obj> | undefined): unknown[] {
  const parts: unknown[] = [];
  let w = isObj(over) ? over : undefined;
  let ref = w ? (str(w['refname']) ?? str(w['name'])) : undefined;
  // A window may name an earlier one; the bound keeps a (rejected) cycle from looping.
  for (let hops = 0; w && hops <= (windows?.size ?? 0); hops++) {
    parts.push(w['partitionClause'], w['orderClause'], w['startOffset'], w['endOffset']);
    w = ref !== undefined ? windows?.get(ref) : undefined;
    ref = w ? str(w['refname']) : undefined;
  }
  return parts;
}

/**
 * The units of a WHERE/ON/HAVING condition: its top-level AND-conjuncts. An OR's
 * disjuncts and a NOT's argument are units too, but an AND under them is not split: in
 * `(g = 65 AND email LIKE 'A%') OR …` it is the AND that links g to the value.
 */
function conditionUnits(cond: unknown): unknown[] {
  const out: unknown[] = [];
  const stack: [unknown, boolean][] = [[cond, true]];
  while (stack.length > 0) {
    const [n, top] = stack.pop()!;
    const u = unwrap(n);
    if (!u) continue;
    const op = u[0] === 'BoolExpr' ? str(u[1]['boolop']) : undefined;
    if ((op === 'AND_EXPR' && top) || op === 'OR_EXPR' || op === 'NOT_EXPR') {
      for (const a of arr(u[1]['args'])) stack.push([a, op === 'AND_EXPR']);
    } else out.push(n);
  }
  return out;
}

const EQUALITY_OPERATORS: ReadonlySet<string> = new Set(['=', '<>', '!=']);

/** The compared operands when a unit is an (in)equality (`=`, `<>`, IN, IS [NOT] DISTINCT FROM, = ANY); else undefined. */
function equalityOperands(unit: unknown): unknown[] | undefined {
  const u = unwrap(unit);
  if (!u) return undefined;
  const [t, b] = u;
  if (t === 'SubLink') {
    const kind = str(b['subLinkType']);
    const op = strings(b['operName']).at(-1) ?? '=';
    return (kind === 'ANY_SUBLINK' || kind === 'ALL_SUBLINK') && EQUALITY_OPERATORS.has(op) ? [b['testexpr'], unit] : undefined;
  }
  if (t !== 'A_Expr') return undefined;
  const kind = str(b['kind']);
  const eq = EQUALITY_OPERATORS.has(strings(b['name']).at(-1) ?? '');
  const list = (v: unknown): unknown[] => {
    const l = unwrap(v);
    if (l?.[0] === 'List') return arr(l[1]['items']);
    if (l?.[0] === 'A_ArrayExpr') return arr(l[1]['elements']);
    return Array.isArray(v) ? v : [v];
  };
  if ((kind === 'AEXPR_OP' && eq) || kind === 'AEXPR_DISTINCT' || kind === 'AEXPR_NOT_DISTINCT') return [b['lexpr'], b['rexpr']];
  if (kind === 'AEXPR_IN' || ((kind === 'AEXPR_OP_ANY' || kind === 'AEXPR_OP_ALL') && eq)) return [b['lexpr'], ...list(b['rexpr'])];
  return undefined;
}

/** The column references under a node (subqueries included), as written. */
function collectColumnNames(root: unknown, names: Set<string>): void {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const n = stack.pop();
    if (Array.isArray(n)) stack.push(...n);
    else if (isObj(n)) {
      const ref = n['ColumnRef'];
      const ind = n['A_Indirection'];
      if (isObj(ref)) names.add(arr(ref['fields']).map((f) => strings([f])[0] ?? '*').join('.'));
      else if (isObj(ind) && unwrap(ind['arg'])?.[0] === 'ColumnRef' && strings(ind['indirection']).length > 0) {
        // (d).email, (d).g: a field of a whole row is a column of its own.
        const base = arr(unwrap(ind['arg'])![1]['fields']).map((f) => strings([f])[0] ?? '*').join('.');
        names.add(`${base}.${strings(ind['indirection']).join('.')}`);
        stack.push(ind['indirection']);
      } else for (const [k, x] of Object.entries(n)) if (k !== 'location' && typeof x === 'object' && x !== null) stack.push(x);
    }
  }
}

/** A column whose value is computed from data (not a table column's value unchanged, or decided by conditions). */
function computedCol(c: FlowLike & { direct: boolean }): boolean {
  return c.opaque || (c.conditions?.size ?? 0) > 0 || (!c.direct && c.sources.size > 0);
}

function copyFlow(f: Flow): Flow {
  return colFlow(f);
}

function mergeFlows(a: FlowLike, b: FlowLike): Flow {
  const f = emptyFlow();
  addFlow(f, a);
  addFlow(f, b);
  return f;
}

function mergeAll(list: Flow[]): Flow {
  const f = emptyFlow();
  f.direct = list.length > 0;
  for (const x of list) {
    addFlow(f, x);
    if (!x.direct) f.direct = false;
  }
  return f;
}

function mergeCols(a: Col, b: Col): Col {
  return { name: a.name, ...mergeFlows(a, b), direct: a.direct && b.direct };
}

function withAssigned(c: Col, f: Flow | undefined): Col {
  if (!f) return c;
  return { name: c.name, ...mergeFlows(c, f), direct: c.direct && f.direct };
}

/** Per-position union of set-operation branches (or VALUES rows); names from the first. */
function combineBranches(branches: Col[][]): Col[] {
  const first = branches[0];
  if (!first) return [];
  for (const b of branches) if (b.length !== first.length) fail('set operation branches have different column counts');
  return first.map((c, i) => {
    const f = emptyFlow();
    let direct = true;
    for (const b of branches) {
      addFlow(f, b[i]!);
      if (!b[i]!.direct) direct = false;
    }
    return { name: c.name, sources: f.sources, direct, opaque: f.opaque, conditions: f.conditions, linked: f.linked };
  });
}

function sameSet(a: ReadonlySet<string> | undefined, b: ReadonlySet<string> | undefined): boolean {
  if ((a?.size ?? 0) !== (b?.size ?? 0)) return false;
  for (const s of a ?? []) if (!b!.has(s)) return false;
  return true;
}

function sameColumns(a: Col[], b: Col[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((c, i) => {
    const d = b[i]!;
    return c.direct === d.direct && c.opaque === d.opaque && sameSet(c.sources, d.sources) && sameSet(c.conditions, d.conditions);
  });
}

/**
 * SEARCH … SET seq and CYCLE … SET mark USING path add columns computed from the listed
 * ones: the path holds their values, the mark and the sequence tell them apart.
 */
function searchCycleColumns(cte: Obj, cols: Col[]): Col[] {
  const out: Col[] = [];
  const of = (name: string, names: string[]): Col => ({ name, ...wholeOf(cols.filter((c) => names.includes(c.name))), direct: false });
  const s = cte['search_clause'];
  if (isObj(s)) out.push(of(str(s['search_seq_column']) ?? 'search', strings(s['search_col_list'])));
  const c = cte['cycle_clause'];
  if (isObj(c)) {
    const listed = strings(c['cycle_col_list']);
    out.push(of(str(c['cycle_mark_column']) ?? 'is_cycle', listed), of(str(c['cycle_path_column']) ?? 'path', listed));
  }
  return out;
}

function jsonTableColumns(list: unknown): string[] {
  const out: string[] = [];
  const stack: unknown[] = [...arr(list)].reverse();
  while (stack.length > 0) {
    const u = unwrap(stack.pop());
    if (!u) continue;
    if (u[1]['coltype'] === 'JTC_NESTED') stack.push(...[...arr(u[1]['columns'])].reverse());
    else out.push(str(u[1]['name']) ?? '?column?');
  }
  return out;
}

/** A cast that keeps the value's text: to text/varchar/bpchar/name, no length, not an array. */
function textCast(typeName: unknown): boolean {
  if (!isObj(typeName)) return false;
  const names = strings(typeName['names']);
  const last = names[names.length - 1];
  if (last === undefined || !TEXT_TYPES.has(last)) return false;
  if (names.length > 1 && names[names.length - 2] !== 'pg_catalog') return false;
  return arr(typeName['typmods']).length === 0 && arr(typeName['arrayBounds']).length === 0;
}

const XML_NAMES: Readonly<Record<string, string>> = {
  IS_XMLCONCAT: 'xmlconcat', IS_XMLELEMENT: 'xmlelement', IS_XMLFOREST: 'xmlforest', IS_XMLPARSE: 'xmlparse',
  IS_XMLPI: 'xmlpi', IS_XMLROOT: 'xmlroot', IS_XMLSERIALIZE: 'xmlserialize', IS_DOCUMENT: '?column?',
};
const JSON_FUNC_NAMES: Readonly<Record<string, string>> = {
  JSON_EXISTS_OP: 'json_exists', JSON_QUERY_OP: 'json_query', JSON_VALUE_OP: 'json_value', JSON_TABLE_OP: 'json_table',
};
const FIXED_NAMES: Readonly<Record<string, string>> = {
  GroupingFunc: 'grouping', A_ArrayExpr: 'array', RowExpr: 'row', CoalesceExpr: 'coalesce', XmlSerialize: 'xmlserialize',
  MergeSupportFunc: 'merge_action', JsonObjectConstructor: 'json_object', JsonArrayConstructor: 'json_array',
  JsonArrayQueryConstructor: 'json_array', JsonObjectAgg: 'json_objectagg', JsonArrayAgg: 'json_arrayagg',
  JsonParseExpr: 'json', JsonScalarExpr: 'json_scalar', JsonSerializeExpr: 'json_serialize',
};

/** PostgreSQL's FigureColname, best effort: strong names win over a cast's type name, which wins over weak ones. */
function figureName(v: unknown, depth = 0): string {
  const r = figure(v, depth);
  return r?.name ?? '?column?';
}

function figure(v: unknown, depth: number): { name: string; strong: boolean } | undefined {
  let castName: string | undefined;
  let node = v;
  for (let i = 0; i < 10_000 && depth < 50; i++) {
    const u = unwrap(node);
    if (!u) break;
    const [t, b] = u;
    let res: { name: string; strong: boolean } | undefined;
    switch (t) {
      case 'ColumnRef': {
        const names = strings(b['fields']);
        if (names.length === arr(b['fields']).length && names.length > 0) res = { name: names[names.length - 1]!, strong: true };
        break;
      }
      case 'A_Indirection': {
        const ind = strings(b['indirection']);
        if (ind.length > 0 && unwrap(arr(b['indirection']).at(-1))?.[0] === 'String') res = { name: ind[ind.length - 1]!, strong: true };
        else {
          node = b['arg'];
          continue;
        }
        break;
      }
      case 'FuncCall': {
        const fn = funcName(b);
        if (fn) res = { name: fn.name, strong: true };
        break;
      }
      case 'A_Expr':
        if (b['kind'] === 'AEXPR_NULLIF') res = { name: 'nullif', strong: true };
        break;
      case 'TypeCast': {
        const names = isObj(b['typeName']) ? strings(b['typeName']['names']) : [];
        castName ??= names[names.length - 1];
        node = b['arg'];
        continue;
      }
      case 'CollateClause':
        node = b['arg'];
        continue;
      case 'SubLink': {
        const k = b['subLinkType'];
        if (k === 'EXISTS_SUBLINK') res = { name: 'exists', strong: true };
        else if (k === 'ARRAY_SUBLINK') res = { name: 'array', strong: true };
        else if (k === 'EXPR_SUBLINK' || k === 'MULTIEXPR_SUBLINK') {
          const q = unwrap(b['subselect']);
          const first = q ? unwrap(arr(q[1]['targetList'])[0]) : undefined;
          if (first) {
            const alias = str(first[1]['name']);
            res = alias !== undefined ? { name: alias, strong: true } : figure(first[1]['val'], depth + 1);
          }
        }
        break;
      }
      case 'CaseExpr': {
        const d = figure(b['defresult'], depth + 1);
        res = d?.strong ? d : { name: 'case', strong: false };
        break;
      }
      case 'MinMaxExpr':
        res = { name: b['op'] === 'IS_GREATEST' ? 'greatest' : 'least', strong: true };
        break;
      case 'SQLValueFunction':
        res = { name: (str(b['op']) ?? '').replace(/^SVFOP_/, '').replace(/_N$/, '').toLowerCase(), strong: true };
        break;
      case 'XmlExpr': {
        const n = XML_NAMES[str(b['op']) ?? ''];
        if (n && n !== '?column?') res = { name: n, strong: true };
        break;
      }
      case 'JsonFuncExpr': {
        const n = JSON_FUNC_NAMES[str(b['op']) ?? ''];
        if (n) res = { name: n, strong: true };
        break;
      }
      default: {
        const n = FIXED_NAMES[t];
        if (n) res = { name: n, strong: true };
      }
    }
    if (res?.strong) return res;
    if (castName !== undefined) return { name: castName, strong: false };
    return res;
  }
  return castName !== undefined ? { name: castName, strong: false } : undefined;
}
