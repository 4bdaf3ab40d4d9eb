/**
 * Which literals of a statement's text are tied to a masked column, found in the parse tree
 * (for the audit log: the literal `'123-45-6789'` in `WHERE ssn > '123-45-6789'` is the
 * value masking hides, however it is written).
 *
 * A literal is tied to a masked column when it shares a *scope* with one. Scopes are what a
 * value flows through to meet a column:
 * - each operand of AND / OR / NOT, each clause of a statement (so `ssn ~ '…' AND id = 7`
 *   masks the pattern and keeps the 7);
 * - each assignment (UPDATE / ON CONFLICT / MERGE `SET col = …`), each INSERT value by its
 *   column's position, in VALUES and in a SELECT source alike, each output column of a
 *   SELECT, CTE or subquery (labelled with its name);
 * - a subquery used as a value (`ssn = (SELECT '…')`, `ssn IN (SELECT …)`) joins the scope
 *   it is used in.
 * Names are followed: a scope that meets a masked column taints every other name in it,
 * read or labelled: what is assigned to it (`WITH x AS (SELECT '…' AS s) UPDATE users SET
 * ssn = x.s` masks the CTE's literal), what it is compared with (`JOIN (VALUES ('…')) v(s)
 * ON u.ssn = v.s`), what is computed from it (an output column's label); this runs to a
 * fixed point. Names are matched without their tables (the tree has no catalog): an
 * `orders.ssn` literal is masked like a `users.ssn` one, which only over-masks the log.
 *
 * Where positions cannot be known the whole source is masked: an INSERT without a column
 * list into a table the rules may touch, EXECUTE arguments (the prepared text is elsewhere),
 * and the arguments of a call (or CALL) of code the caller cannot vouch for (`trusted`: a
 * function that ships with PostgreSQL and runs no SQL text): a user function's body may
 * write its argument into a masked column (`SELECT set_ssn(1, '…')`) or compare it with
 * one, out of sight of the text. A code body given as a string (DO, CREATE FUNCTION … AS
 * '…') is reported as such: the caller masks the literals inside it.
 * Text that does not parse is masked whole wherever it names a masked column (the caller).
 */
import { parseStatements } from './statement-reads.js';
import { matchColumn, matchExpression, rulesMayTouchTable, type ColumnRule, type MaskingPlan } from './rules.js';

/** A literal's byte offset in the text, and the rule that masks it. */
export interface TiedLiteral {
  location: number;
  rule: ColumnRule;
  /**
   * A code body (DO, CREATE FUNCTION/PROCEDURE … AS): `location` is its string constant or,
   * for a function, the AS before it (PostgreSQL records no position for the string itself).
   */
  body?: true;
  /** A COPY's NULL string: `location` is its NULL keyword (the string follows, after an optional AS). */
  option?: true;
}

/**
 * Whether a called name (lower case, as written: `f` or `s.f`), or with `operator` an
 * operator's, is code known not to reach a masked column unseen; undefined means not known
 * (and so not trusted).
 */
export type TrustedCall = (name: string, operator?: boolean) => boolean | undefined;

/** Operator uses that call the operator's function with their operands. */
const OPERATOR_KINDS: ReadonlySet<string> = new Set(['AEXPR_OP', 'AEXPR_OP_ANY', 'AEXPR_OP_ALL']);

interface Scope {
  /** Byte offsets of the constants in it. */
  consts: number[];
  /** Numbers of the parameters (`$n`) in it. */
  params: number[];
  /** Column names it reads (lower case, without table). */
  reads: Set<string>;
  /** The column it assigns to or the output column it produces, when it has one. */
  label: string | undefined;
  /** Masked whatever it reads: positions unknown. */
  forced: ColumnRule | undefined;
}

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The one key of a libpg-query node wrapper (`{ SelectStmt: {…} }`) and its body. */
function unwrap(v: unknown): [string, Node] | undefined {
  if (!isNode(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1) return undefined;
  const body = v[keys[0]!];
  return isNode(body) ? [keys[0]!, body] : undefined;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The column name a ColumnRef ends in (undefined for `t.*`). */
function columnName(ref: Node): string | undefined {
  const fields = list(ref['fields']);
  const last = unwrap(fields[fields.length - 1]);
  return last?.[0] === 'String' ? str(last[1]['sval'])?.toLowerCase() : undefined;
}

class ScopeWalk {
  readonly scopes: Scope[] = [];
  readonly bodies: number[] = [];
  /** COPY NULL strings: the keyword's offset, and the scope of the outputs they are compared with. */
  readonly nullOptions: { location: number; scope: Scope }[] = [];

  constructor(
    readonly plan: MaskingPlan,
    readonly trusted?: TrustedCall,
  ) {}

  /** A call of `fn`'s arguments: untrusted code gets them in a scope masked whatever it reads. */
  call(fn: Node, scope: Scope): void {
    const name = list(fn['funcname'])
      .map((n) => str(unwrap(n)?.[1]['sval']))
      .join('.')
      .toLowerCase();
    const { args, ...rest } = fn;
    const vouched = this.trusted === undefined || this.trusted(name) === true;
    this.expr(args, vouched ? scope : this.open(undefined, this.anyRule() ?? scope.forced));
    this.expr(rest, scope);
  }

  open(label?: string, forced?: ColumnRule): Scope {
    const s: Scope = { consts: [], params: [], reads: new Set(), label: label?.toLowerCase(), forced };
    this.scopes.push(s);
    return s;
  }

  /** A top-level or nested statement: each clause is its own scope. */
  statement(kind: string, body: Node, forced?: ColumnRule): void {
    switch (kind) {
      case 'SelectStmt':
        this.select(body, undefined, forced);
        return;
      case 'InsertStmt':
        this.insert(body, forced);
        return;
      case 'UpdateStmt':
        this.with(body);
        this.assignments(body['targetList'], forced);
        for (const k of ['fromClause', 'whereClause', 'returningList']) this.expr(body[k], this.open(undefined, forced));
        return;
      case 'MergeStmt':
        this.with(body);
        for (const k of ['sourceRelation', 'joinCondition']) this.expr(body[k], this.open(undefined, forced));
        for (const w of list(body['mergeWhenClauses'])) {
          const clause = unwrap(w)?.[1];
          if (!clause) continue;
          this.expr(clause['condition'], this.open(undefined, forced));
          const targets = list(clause['targetList']);
          const values = list(clause['values']);
          if (values.length > 0) {
            // WHEN NOT MATCHED THEN INSERT (cols) VALUES (…): by position; no list → every column.
            const table = this.relation(body['relation']);
            values.forEach((v, i) => {
              const name = str(unwrap(targets[i])?.[1]['name']);
              const rule = name === undefined ? this.tableRule(table) : undefined;
              this.expr(v, this.open(name, rule ?? forced));
            });
          } else this.assignments(targets, forced);
        }
        return;
      case 'CallStmt':
        if (isNode(body['funccall'])) this.call(body['funccall'], this.open(undefined, forced));
        return;
      case 'CopyStmt': {
        // COPY … TO writes a field equal to its NULL string as the NULL marker: the string is
        // compared with every output (a guess at a value), so it meets what they read.
        const first = this.scopes.length;
        const q = unwrap(body['query']);
        if (q) this.statement(q[0], q[1], forced);
        const cols = list(body['attlist']).map((c) => str(unwrap(c)?.[1]['sval']));
        const whole = q === undefined && cols.length === 0 ? this.tableRule(this.relation(body['relation'])) : undefined;
        const outputs = this.open(undefined, whole ?? forced);
        for (const c of cols) if (c !== undefined) outputs.reads.add(c.toLowerCase());
        for (const sc of this.scopes.slice(first, -1)) {
          for (const r of sc.reads) outputs.reads.add(r);
          if (sc.label !== undefined) outputs.reads.add(sc.label);
        }
        if (q === undefined && isNode(body['relation'])) this.expr(body['whereClause'], this.open(undefined, forced));
        for (const o of list(body['options'])) {
          const d = unwrap(o)?.[1];
          if (d?.['defname'] === 'null' && typeof d['location'] === 'number') this.nullOptions.push({ location: d['location'], scope: outputs });
        }
        return;
      }
      case 'DoStmt':
      case 'CreateFunctionStmt':
        for (const o of list(body[kind === 'DoStmt' ? 'args' : 'options'])) {
          const d = unwrap(o)?.[1];
          if (d?.['defname'] === 'as' && typeof d['location'] === 'number') this.bodies.push(d['location']);
        }
        this.generic(kind, body, this.open(undefined, forced));
        return;
      case 'ExecuteStmt':
        // The prepared text is not here: which parameter meets which column is unknown.
        for (const p of list(body['params'])) this.expr(p, this.open(undefined, this.anyRule() ?? forced));
        return;
      default:
        // DDL, utility statements: a column definition or ALTER … column is labelled by it.
        this.generic(kind, body, this.open(undefined, forced));
    }
  }

  /** WITH: each CTE's output columns are labelled by their names. */
  with(body: Node): void {
    const w = isNode(body['withClause']) ? body['withClause'] : undefined;
    for (const c of list(w?.['ctes'])) {
      const cte = unwrap(c)?.[1];
      if (!cte) continue;
      const names = list(cte['aliascolnames']).map((n) => str(unwrap(n)?.[1]['sval']));
      const q = unwrap(cte['ctequery']);
      if (q?.[0] === 'SelectStmt') this.select(q[1], names);
      else if (q) this.statement(q[0], q[1]);
    }
  }

  /**
   * A SELECT. `labels` name its output columns by position (an INSERT's column list, a CTE's
   * alias list); `into` is the scope it feeds when used as a value (a sublink).
   */
  select(body: Node, labels?: (string | undefined)[], forced?: ColumnRule, into?: Scope): void {
    this.with(body);
    const larg = body['larg'];
    if (isNode(larg) || isNode(body['rarg'])) {
      for (const side of [larg, body['rarg']]) if (isNode(side)) this.select(side, labels, forced, into);
      for (const k of ['sortClause', 'limitCount', 'limitOffset']) this.expr(body[k], this.open(undefined, forced));
      return;
    }
    list(body['targetList']).forEach((t, i) => {
      const target = unwrap(t)?.[1];
      if (!target) return;
      const label = labels?.[i] ?? str(target['name']);
      this.expr(target['val'], into ?? this.open(label, forced));
    });
    for (const row of list(body['valuesLists'])) {
      list(unwrap(row)?.[1]['items']).forEach((v, i) => this.expr(v, into ?? this.open(labels?.[i], forced)));
    }
    for (const k of ['fromClause', 'whereClause', 'groupClause', 'havingClause', 'sortClause', 'limitCount', 'limitOffset', 'distinctClause', 'windowClause']) {
      this.expr(body[k], this.open(undefined, forced));
    }
  }

  insert(body: Node, forced?: ColumnRule): void {
    this.with(body);
    const table = this.relation(body['relation']);
    const cols = list(body['cols']).map((c) => str(unwrap(c)?.[1]['name']));
    // No column list: positions are the table's, unknown here.
    const rule = cols.length === 0 ? this.tableRule(table) : undefined;
    const source = unwrap(body['selectStmt']);
    if (source?.[0] === 'SelectStmt') this.select(source[1], cols, rule ?? forced);
    const conflict = isNode(body['onConflictClause']) ? body['onConflictClause'] : undefined;
    if (conflict) {
      this.assignments(conflict['targetList'], forced);
      this.expr(conflict['whereClause'], this.open(undefined, forced));
    }
    this.expr(body['returningList'], this.open(undefined, forced));
  }

  assignments(targets: unknown, forced?: ColumnRule): void {
    for (const t of list(targets)) {
      const target = unwrap(t)?.[1];
      if (target) this.expr(target['val'], this.open(str(target['name']), forced));
    }
  }

  /** Schema and table of a RangeVar. */
  relation(v: unknown): { schema: string | undefined; table: string | undefined } {
    const r = isNode(v) ? v : undefined;
    return { schema: str(r?.['schemaname']), table: str(r?.['relname']) };
  }

  /** The strictest rule that may touch a table's columns, when some may. */
  tableRule(t: { schema: string | undefined; table: string | undefined }): ColumnRule | undefined {
    if (!rulesMayTouchTable(this.plan, t.schema, t.table)) return undefined;
    return this.anyRule();
  }

  anyRule(): ColumnRule | undefined {
    let best: ColumnRule | undefined;
    for (const r of this.plan.columns) if (best === undefined || (this.plan.strictestColumnStyle !== undefined && r.style === this.plan.strictestColumnStyle)) best = r;
    return best;
  }

  /** Any expression (or list of them) inside `scope`. */
  expr(v: unknown, scope: Scope): void {
    if (Array.isArray(v)) {
      for (const x of v) this.expr(x, scope);
      return;
    }
    const n = unwrap(v);
    if (!n) {
      if (isNode(v)) for (const x of Object.values(v)) this.expr(x, scope);
      return;
    }
    const [kind, body] = n;
    switch (kind) {
      case 'A_Const':
        if (typeof body['location'] === 'number' && body['isnull'] !== true) scope.consts.push(body['location']);
        return;
      case 'ParamRef':
        if (typeof body['number'] === 'number') scope.params.push(body['number']);
        return;
      case 'ColumnRef': {
        const name = columnName(body);
        if (name !== undefined) scope.reads.add(name);
        return;
      }
      case 'FuncCall':
        this.call(body, scope);
        return;
      case 'A_Expr': {
        // An operator runs its function with the operands: one the catalog does not vouch for is a call of user code.
        const op = list(body['name'])
          .map((n) => str(unwrap(n)?.[1]['sval']))
          .join('.')
          .toLowerCase();
        if (this.trusted !== undefined && OPERATOR_KINDS.has(str(body['kind']) ?? '') && this.trusted(op, true) !== true) {
          const { lexpr, rexpr, ...rest } = body;
          const args = this.open(undefined, this.anyRule() ?? scope.forced);
          this.expr([lexpr, rexpr], args);
          this.expr(rest, scope);
          return;
        }
        this.generic(kind, body, scope);
        return;
      }
      case 'BoolExpr':
        for (const a of list(body['args'])) this.expr(a, this.open(undefined, scope.forced));
        return;
      case 'SubLink': {
        this.expr(body['testexpr'], scope);
        const sub = unwrap(body['subselect']);
        if (sub?.[0] === 'SelectStmt') this.select(sub[1], undefined, scope.forced, scope);
        return;
      }
      case 'RangeSubselect': {
        const sub = unwrap(body['subquery']);
        const alias = isNode(body['alias']) ? list(body['alias']['colnames']).map((c) => str(unwrap(c)?.[1]['sval'])) : undefined;
        if (sub?.[0] === 'SelectStmt') this.select(sub[1], alias, scope.forced);
        return;
      }
      case 'SelectStmt':
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        this.statement(kind, body, scope.forced);
        return;
      default:
        this.generic(kind, body, scope);
    }
  }

  /** A node with no rule of its own: a column definition or ALTER … column labels a new scope. */
  generic(kind: string, body: Node, scope: Scope): void {
    const column = kind === 'ColumnDef' ? str(body['colname']) : kind === 'AlterTableCmd' ? str(body['name']) : undefined;
    const inner = column !== undefined ? this.open(column, scope.forced) : scope;
    for (const x of Object.values(body)) this.expr(x, inner);
  }
}

/** The scopes of `sql` that meet a masked column, with the rule of each; undefined when the text does not parse. */
function analyse(sql: string, plan: MaskingPlan, trusted?: TrustedCall): { walk: ScopeWalk; verdict: Map<Scope, ColumnRule> } | undefined {
  const stmts = parseStatements(sql);
  if (typeof stmts === 'string') return undefined;
  const walk = new ScopeWalk(plan, trusted);
  for (const s of stmts) {
    const n = unwrap(s);
    if (n) walk.statement(n[0], n[1]);
  }
  // Names tainted by flowing into or out of a masked column, to a fixed point.
  const tainted = new Map<string, ColumnRule>();
  const ruleOf = (name: string | undefined): ColumnRule | undefined =>
    name === undefined || name === '' ? undefined : (tainted.get(name) ?? matchExpression(walk.plan, name) ?? matchColumn(walk.plan, { column: name }));
  const verdict = new Map<Scope, ColumnRule>();
  for (let changed = true, rounds = 0; changed && rounds < 64; rounds++) {
    changed = false;
    for (const s of walk.scopes) {
      let rule = s.forced ?? ruleOf(s.label);
      if (!rule) for (const r of s.reads) if ((rule = ruleOf(r))) break;
      if (!rule) continue;
      if (!verdict.has(s)) {
        verdict.set(s, rule);
        changed = true;
      }
      // What feeds, meets or is computed from a masked column is as secret as it.
      for (const name of s.label === undefined ? s.reads : [...s.reads, s.label]) {
        if (name !== '' && !tainted.has(name) && ruleOf(name) === undefined) {
          tainted.set(name, rule);
          changed = true;
        }
      }
    }
  }
  return { walk, verdict };
}

/**
 * Literals of `sql` tied to a masked column of `plan`, by byte offset; undefined when the
 * text does not parse (the caller then masks conservatively).
 */
export function tiedLiterals(sql: string, plan: MaskingPlan, trusted?: TrustedCall): TiedLiteral[] | undefined {
  const a = analyse(sql, plan, trusted);
  if (!a) return undefined;
  const out: TiedLiteral[] = [];
  for (const [s, rule] of a.verdict) for (const location of s.consts) out.push({ location, rule });
  for (const { location, scope } of a.walk.nullOptions) {
    const rule = a.verdict.get(scope);
    if (rule) out.push({ location, rule, option: true });
  }
  const any = a.walk.anyRule();
  if (any && trusted !== undefined) for (const location of a.walk.bodies) out.push({ location, rule: any, body: true });
  return out;
}

/**
 * The parameters (`$n`, by number) of `sql` tied to a masked column, as literals are: a
 * Bind value shown to a reviewer is then masked as the same literal in the text would be.
 * Undefined when the text does not parse.
 */
export function tiedParameters(sql: string, plan: MaskingPlan, trusted?: TrustedCall): Map<number, ColumnRule> | undefined {
  const a = analyse(sql, plan, trusted);
  if (!a) return undefined;
  const out = new Map<number, ColumnRule>();
  for (const [s, rule] of a.verdict) for (const n of s.params) if (!out.has(n)) out.set(n, rule);
  return out;
}
