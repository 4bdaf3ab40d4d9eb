/**
 * Whether a statement's evaluation may read a masked column ANYWHERE — output list, WHERE,
 * function arguments, subqueries, CTEs, the definitions of views it reads — for the
 * masking of server errors and notices (notice-fields.ts): the server quotes values it
 * computed (`schema "qxzjv" does not exist` for `split_part(email,'@',1)::regclass`), in
 * forms no detector recognises, and the output provenance (provenance.ts) only follows
 * what reaches a result column.
 *
 * The answer over-approximates, and fails closed:
 * - `masked`: a relation the statement (or a view it reads, recursively) names has a
 *   masked column (the caller's predicate: a column rule, or detector taint) that the text
 *   names in a column reference — directly or through a column alias list (`users AS
 *   u(a, b, e)`, `(users JOIN cards USING (id)) AS j(i, n, e)`: the alias at position k is
 *   the k-th column; a list over something whose columns are not known here counts as
 *   naming every column) —, or that a `*`, a whole-row reference (`u`, `t.text`,
 *   `row_to_json(users)`), a COPY without a column list or a data-changing statement
 *   (a `Failing row contains (…)` detail shows the whole row) reaches.
 * - `opaque`: cannot be analysed — a parse error, EXECUTE, FETCH, DO, a function that is
 *   not builtin or not known, a builtin that runs SQL text or reads data by name
 *   (OPAQUE_BUILTINS), views nested deeper than MAX_VIEW_DEPTH, a relation the catalog
 *   does not know (a session's temporary table; a misspelt name's error has its quoted
 *   name masked too, the price of failing closed). Treated as `masked`, and
 *   user code may also have filled the name fields.
 * - `none`: otherwise.
 *
 * With `writes` (written-relations.ts asks what a write stores, not what its errors show):
 * a data-changing statement does not reach every column by itself, and a relation the
 * statement creates is not looked for in the catalog.
 */
import { loadSqlParser, loadedSqlParser } from '../policy/sql-classify.js';
import { unwrap } from '../policy/sql-kinds.js';
import { OPAQUE_BUILTINS, operatorName, relatedColumns, type ProvenanceCatalog, type RelationInfo } from './provenance.js';

export type ReadVerdict = 'none' | 'masked' | 'opaque';

/** Whether `schema.table.column` of `rel` is masked for the session (a rule, or detector taint). */
export type MaskedColumn = (source: string, rel: RelationInfo, column: string) => boolean | Promise<boolean>;

/** View definitions followed inside views, at most. */
const MAX_VIEW_DEPTH = 8;
/** Joins followed inside a renamed join, at most. */
const MAX_JOIN_DEPTH = 64;
/** Statements whose reads the text does not show. */
const OPAQUE_STATEMENTS: ReadonlySet<string> = new Set(['ExecuteStmt', 'FetchStmt', 'DoStmt']);
/** Statements that write rows: their errors may show a whole stored row. */
const WRITE_STATEMENTS: ReadonlySet<string> = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const sval = (v: unknown): string | undefined => {
  if (!isObj(v) || !isObj(v['String'])) return undefined;
  const s = v['String']['sval'];
  return typeof s === 'string' ? s : undefined;
};

/** What the text of a statement (and of the views it reads) refers to. */
class Refs {
  /** `created`: made by the statement (CREATE TABLE, CREATE TABLE AS, SELECT INTO): not in the catalog yet. */
  readonly relations: { schema: string | undefined; name: string; created: boolean }[] = [];
  /** RangeVars the statement creates (only looked for with `writes`). */
  readonly #created = new WeakSet<object>();
  /** Asked about what a write stores (written-relations.ts), not about what its errors may show. */
  readonly #writes: boolean;

  constructor(writes: boolean) {
    this.#writes = writes;
  }

  /** Relation names and aliases: a one-name column reference to one is a whole row. */
  readonly rowNames = new Set<string>();
  /** Column references, as their name parts. */
  readonly columnRefs: string[][] = [];
  readonly functions: { schema: string | undefined; name: string }[] = [];
  /** Operators applied: one that does not ship with PostgreSQL runs code the text does not show. */
  readonly operators: { schema: string | undefined; name: string }[] = [];
  /** WITH query names: a relation reference to one is not looked up in the catalog. */
  readonly cteNames = new Set<string>();
  /** Tables and joins renamed by a column alias list, with the list. */
  readonly aliasLists: { node: [string, Obj]; names: string[] }[] = [];
  /** A `*`, a COPY of a whole table, or a write: every column of every relation. */
  everyColumn = false;
  opaque: string | undefined;

  /** Collect from one parse tree (iteratively: deep trees must not exhaust the stack). */
  collect(root: unknown): void {
    const stack: unknown[] = [root];
    while (stack.length > 0) {
      const v = stack.pop();
      if (Array.isArray(v)) {
        for (const x of v) stack.push(x);
        continue;
      }
      if (!isObj(v)) continue;
      // RangeVar, wrapped or bare (a COPY's or an UPDATE's `relation`).
      if (typeof v['relname'] === 'string') {
        const schema = typeof v['schemaname'] === 'string' ? v['schemaname'] : undefined;
        this.relations.push({ schema, name: v['relname'], created: this.#created.has(v) });
        this.rowNames.add(v['relname']);
      }
      if (isObj(v['alias']) && typeof v['alias']['aliasname'] === 'string') this.rowNames.add(v['alias']['aliasname']);
      for (const [k, body] of Object.entries(v)) {
        if ((k === 'RangeVar' || k === 'JoinExpr') && isObj(body) && isObj(body['alias'])) this.#aliasList([k, body], body['alias']['colnames']);
        if (OPAQUE_STATEMENTS.has(k)) this.opaque ??= k;
        if (WRITE_STATEMENTS.has(k) && !this.#writes) this.everyColumn = true;
        if (this.#writes && isObj(body)) this.#creates(k, body);
        if (k === 'CopyStmt' && isObj(body) && body['relation'] !== undefined && !Array.isArray(body['attlist'])) this.everyColumn = true;
        if (k === 'ColumnRef' && isObj(body)) this.#columnRef(body);
        if (k === 'FuncCall' && isObj(body)) this.#funcCall(body);
        if (k === 'A_Expr' && isObj(body)) {
          const op = operatorName(body);
          if (op) this.operators.push(op);
        }
        if (k === 'CommonTableExpr' && isObj(body) && typeof body['ctename'] === 'string') this.cteNames.add(body['ctename']);
        if (k === 'attlist' && Array.isArray(body)) {
          for (const a of body) {
            const s = sval(a);
            if (s !== undefined) this.columnRefs.push([s]);
          }
        }
        stack.push(body);
      }
    }
  }

  /** The relation a CREATE TABLE, CREATE TABLE AS or SELECT INTO makes. */
  #creates(k: string, body: Obj): void {
    // CREATE TABLE AS's `into`, SELECT INTO's `intoClause` (IntoClause nodes, unwrapped).
    const rel = k === 'CreateStmt' ? body['relation'] : k === 'into' || k === 'intoClause' ? body['rel'] : undefined;
    if (isObj(rel)) this.#created.add(rel);
  }

  #aliasList(node: [string, Obj], colnames: unknown): void {
    const names = (Array.isArray(colnames) ? colnames : []).map(sval).filter((n) => n !== undefined);
    if (names.length > 0) this.aliasLists.push({ node, names });
  }

  #columnRef(body: Obj): void {
    const fields = Array.isArray(body['fields']) ? body['fields'] : [];
    const parts: string[] = [];
    for (const f of fields) {
      const s = sval(f);
      if (s === undefined) {
        this.everyColumn = true; // A_Star
        return;
      }
      parts.push(s);
    }
    this.columnRefs.push(parts);
  }

  #funcCall(body: Obj): void {
    const names = (Array.isArray(body['funcname']) ? body['funcname'] : []).map(sval);
    if (names.length === 0 || names.some((n) => n === undefined)) {
      this.opaque ??= 'function name';
      return;
    }
    const name = names[names.length - 1]!;
    this.functions.push({ schema: names.length > 1 ? names[names.length - 2] : undefined, name });
  }
}

/** The parsed statements of `sql`, or why there are none (the parser not loaded, a parse error). */
export function parseStatements(sql: string): unknown[] | string {
  const p = loadedSqlParser();
  if (!p) return 'parser not loaded';
  try {
    return (p.parseSync(sql).stmts ?? []).map((s) => s.stmt);
  } catch (e) {
    return `parse error: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** The verdict for `sql` (one or more statements). Never rejects: a catalog failure is `opaque`. */
export async function statementReads(sql: string, catalog: ProvenanceCatalog, masked: MaskedColumn, opts: { writes?: boolean } = {}): Promise<ReadVerdict> {
  try {
    return await analyse(sql, catalog, masked, opts.writes === true);
  } catch {
    return 'opaque';
  }
}

/** A FROM item's column: its name there, and the table column names it may be. */
interface Slot {
  name: string;
  under: string[];
}

/**
 * Adds to `named` the table columns that the names of column alias lists stand for (the
 * alias at position k is the item's k-th column). False when a list that the text uses
 * renames something whose columns are not known here: the caller then counts every column.
 */
async function unaliased(refs: Refs, catalog: ProvenanceCatalog, named: Set<string>): Promise<boolean> {
  for (const { node, names } of refs.aliasLists) {
    if (!names.some((n) => named.has(n))) continue;
    const slots = await baseSlots(node, catalog, refs.cteNames, 0);
    if (!slots) return false;
    names.forEach((n, k) => {
      if (named.has(n)) for (const c of slots[k]?.under ?? []) named.add(c);
    });
  }
  return true;
}

/** A FROM item's columns under its own alias list; undefined when not known. */
async function slotsOf(node: [string, Obj] | undefined, catalog: ProvenanceCatalog, cteNames: ReadonlySet<string>, depth: number): Promise<Slot[] | undefined> {
  if (!node || depth > MAX_JOIN_DEPTH) return undefined;
  const base = await baseSlots(node, catalog, cteNames, depth);
  const alias = node[1]['alias'];
  const names = isObj(alias) && Array.isArray(alias['colnames']) ? alias['colnames'].map(sval) : [];
  return base?.map((s, k) => ({ name: names[k] ?? s.name, under: s.under }));
}

/** A table's columns (every candidate schema's, position by position) or a join's (USING columns first), before renaming. */
async function baseSlots([type, b]: [string, Obj], catalog: ProvenanceCatalog, cteNames: ReadonlySet<string>, depth: number): Promise<Slot[] | undefined> {
  if (type === 'RangeTableSample') return slotsOf(unwrap(b['relation']), catalog, cteNames, depth + 1);
  if (type === 'RangeVar') {
    const name = typeof b['relname'] === 'string' ? b['relname'] : '';
    const schema = typeof b['schemaname'] === 'string' ? b['schemaname'] : undefined;
    if (schema === undefined && cteNames.has(name)) return undefined;
    const rels = await catalog.relations(schema, name);
    const first = rels[0];
    if (!first || rels.some((r) => r.columns.length !== first.columns.length)) return undefined;
    return first.columns.map((c, k) => ({ name: c, under: rels.map((r) => r.columns[k]!) }));
  }
  if (type !== 'JoinExpr') return undefined;
  const left = await slotsOf(unwrap(b['larg']), catalog, cteNames, depth + 1);
  const right = await slotsOf(unwrap(b['rarg']), catalog, cteNames, depth + 1);
  if (!left || !right) return undefined;
  let using = (Array.isArray(b['usingClause']) ? b['usingClause'] : []).map(sval).filter((n) => n !== undefined);
  if (b['isNatural'] === true) using = left.map((s) => s.name).filter((n) => right.some((s) => s.name === n));
  const under = (side: Slot[], n: string): string[] => side.filter((s) => s.name === n).flatMap((s) => s.under);
  const merged = using.map((n) => ({ name: n, under: [...under(left, n), ...under(right, n)] }));
  const rest = (side: Slot[]): Slot[] => side.filter((s) => !using.includes(s.name));
  return [...merged, ...rest(left), ...rest(right)];
}

async function analyse(sql: string, catalog: ProvenanceCatalog, masked: MaskedColumn, writes: boolean): Promise<ReadVerdict> {
  if (sql.trim() === '') return 'none';
  await loadSqlParser();
  const refs = new Refs(writes);
  const stmts = parseStatements(sql);
  if (typeof stmts === 'string') return 'opaque';
  refs.collect(stmts);

  // Relations, following view definitions (their own references join the statement's).
  const read: RelationInfo[] = [];
  const seen = new Set<string>();
  for (let depth = 0, from = 0; from < refs.relations.length; depth++) {
    if (depth > MAX_VIEW_DEPTH) return 'opaque';
    const batch = refs.relations.slice(from);
    from = refs.relations.length;
    const found = await Promise.all(batch.map((r) => catalog.relations(r.schema, r.name)));
    // A name the catalog does not know and no WITH defines: a relation of the session's
    // own (a temporary table the catalog connection cannot see) is not vouched for.
    if (found.some((f, k) => f.length === 0 && !batch[k]!.created && !(batch[k]!.schema === undefined && refs.cteNames.has(batch[k]!.name)))) return 'opaque';
    for (const rel of found.flat()) {
      const id = `${rel.schema}\0${rel.name}`;
      if (seen.has(id)) continue;
      seen.add(id);
      read.push(rel);
      if (rel.kind === 'view') {
        if (rel.viewSql === undefined) return 'opaque';
        const inner = parseStatements(rel.viewSql);
        if (typeof inner === 'string') return 'opaque';
        refs.collect(inner);
      }
    }
  }
  if (refs.opaque !== undefined) return 'opaque';

  const facts = await Promise.all(refs.functions.map((f) => catalog.functions(f.schema, f.name)));
  for (let k = 0; k < facts.length; k++) {
    const f = facts[k]!;
    if (f.length === 0 || f.some((x) => !x.builtin) || OPAQUE_BUILTINS.has(refs.functions[k]!.name)) return 'opaque';
  }
  const ops = await Promise.all(refs.operators.map((o) => catalog.functions(o.schema, o.name)));
  if (ops.some((f) => f.some((x) => !x.builtin))) return 'opaque';

  // Which column names the text reaches; a reference that is not a column is a whole row.
  const columnNames = new Set([...read.flatMap((r) => r.columns), ...refs.aliasLists.flatMap((a) => a.names)]);
  const named = new Set<string>();
  let everyColumn = refs.everyColumn;
  for (const parts of refs.columnRefs) {
    for (const p of parts) named.add(p);
    const last = parts[parts.length - 1]!;
    if (!columnNames.has(last) && (parts.length > 1 || refs.rowNames.has(last))) everyColumn = true;
  }
  if (!everyColumn) everyColumn = !(await unaliased(refs, catalog, named));
  for (const rel of read) {
    for (const c of rel.columns) {
      if (!everyColumn && !named.has(c)) continue;
      if (await masked(`${rel.schema}.${rel.name}.${c}`, rel, c)) return 'masked';
      // The same value under an inheritance relative's name, or a generated column's inputs.
      for (const x of relatedColumns(rel, c).related) {
        const other: RelationInfo = { schema: x.schema, name: x.table, kind: 'table', columns: [x.column] };
        if (await masked(`${x.schema}.${x.table}.${x.column}`, other, x.column)) return 'masked';
      }
    }
  }
  return 'none';
}
