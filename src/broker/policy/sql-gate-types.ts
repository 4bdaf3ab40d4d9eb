/**
 * What the SQL gate (sql-gate.ts) and the Postgres proxy agree on, owned by policy: the
 * verdict about one statement, the gate the session asks, what a statement does to the
 * session's prepared names, and the catalog port the gate looks functions up in.
 */
import type { PolicyDecision } from './decision.js';
import type { NamespaceOp } from './sql-classify.js';
import type { FunctionInfo } from './function-effects.js';

/**
 * What one statement of a simple Query does to the names the tracker follows (PREPARE,
 * DEALLOCATE, DECLARE, CLOSE, DISCARD ALL), with the statement's text: a statement made
 * by PREPARE is recorded with the PREPARE text, which the gate judges as what it runs.
 */
export type NamespaceChange = { op: NamespaceOp; text: string } | undefined;

/** The policy decision about one statement, with what approvals and the audit log need. */
export interface GateVerdict extends PolicyDecision {
  /** Identifies "the same statement" for time-boxed approvals. */
  fingerprint: string;
  /** What reviewers and the audit log see about the statement (kinds, relations, flags). */
  classification: Record<string, unknown>;
  /** Per statement: what it does to prepared statements and cursors (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD ALL). */
  changes?: NamespaceChange[];
  /** The statement changes the schema: what was resolved in the catalog may be stale after it. */
  ddl?: boolean;
  /** The statement may change session state later statements depend on (SET, RESET, SET ROLE, DISCARD, set_config): approvals bind to it. */
  sessionState?: true;
  /** Why an approval could not cover what this statement runs (COPY FROM STDIN: its rows arrive after the approval, unseen). */
  unshowable?: string;
  /**
   * Set on a deny or review verdict when the statement runs code the policy does not allow
   * (a call with side effects) or code the gate could not resolve (it does not parse): the
   * server may run such code while it parses and plans, before Execute, so a protocol Parse
   * of it is refused rather than forwarded to be judged at Execute.
   */
  runsCode?: true;
  /**
   * Set on a verdict that lets code run whose effects the gate did not analyse (an effectful
   * function the policy names, a procedure, a DO block): it may change the session's settings
   * for good (set_config(…, false) in a body), so what follows waits until the server has
   * answered it and reported what changed.
   */
  opaque?: true;
}

/**
 * The per-statement judge a session asks. Judging is synchronous once what it needs from
 * the live catalog (functions, by name or OID) is known: `prepare…` returns a promise when
 * a lookup must happen first (it never rejects: a failed lookup leaves the name unknown,
 * and unknown means no), undefined when `judge…` can answer now.
 */
export interface StatementGate {
  /**
   * The prepared statements the text EXECUTEs, by name. The caller resolves each to the
   * text it runs (as the pipeline tracker has it) and passes them to prepare and judge; a
   * name it cannot resolve is passed as undefined, and the statement is denied.
   */
  executes(sql: string): string[];
  /** The portals the text FETCHes from or MOVEs in, by name (resolved the same way, to the text the portal runs). */
  fetches(sql: string): string[];
  prepare(sql: string, prepared?: ReadonlyMap<string, string | undefined>, portals?: ReadonlyMap<string, string | undefined>, paramTypes?: readonly number[]): Promise<void> | undefined;
  /**
   * `paramTypes`: the parameter type OIDs a Parse message declared (0 = unspecified): Bind
   * runs their input functions (a domain's CHECK), so they count as the statement's types.
   */
  judge(sql: string, prepared?: ReadonlyMap<string, string | undefined>, portals?: ReadonlyMap<string, string | undefined>, paramTypes?: readonly number[]): GateVerdict;
  prepareFunctionCall(oid: number): Promise<void> | undefined;
  /** A FunctionCall message, resolved by OID; `label` names it for the audit log. */
  judgeFunctionCall(oid: number, args: number): GateVerdict & { label: string; builtin: boolean };
  /** The session changed the schema: forget what was resolved. */
  invalidate(): void;
}

/** The live catalog the gate resolves functions and views in (postgres/function-catalog.ts implements it). */
export interface FunctionCatalog {
  /** Every candidate for each name (an empty list: the catalog knows no such function). */
  byNames(names: readonly string[]): Promise<Map<string, FunctionInfo[]>>;
  /** What byNames answered for a name and still holds fresh, without asking (undefined: not known now). */
  knownByName?(name: string): FunctionInfo[] | undefined;
  /** The same for an operator name (its implementing functions), as byOperators answered it. */
  knownByOperator?(op: string): FunctionInfo[] | undefined;
  /** Every implementing function for each operator name (an empty list: no such operator). */
  byOperators(ops: readonly string[]): Promise<Map<string, FunctionInfo[]>>;
  byOid(oid: number): Promise<FunctionInfo | undefined>;
  /**
   * The definitions of the views (and materialized views) a relation name as the classifier
   * reports it (`schema.name`) may be: every schema's relation of that name, since an
   * unqualified name was reported in `public` and the session's search_path is unknown.
   * An empty list: not a view anywhere.
   */
  viewDefinitions(relations: readonly string[]): Promise<Map<string, string[]>>;
  /**
   * For each relation name (without schema), the schemas holding a relation of that name
   * (an empty list: none). Other sessions' temporary schemas and TOAST are left out.
   */
  relationSchemas(names: readonly string[]): Promise<Map<string, string[]>>;
  /** For each relation `schema.name` (exact): its row type, column types and inheritance descendants (absent: no such relation). */
  relationFacts(relations: readonly string[]): Promise<Map<string, RelationFacts | undefined>>;
  /**
   * For each relation `schema.name` (exact): what writing it plans, runs and writes besides
   * (absent: no such relation). Asked only for write and EXPLAIN targets, so reads and the
   * masker's column scan do not pay for it.
   */
  relationWriteFacts(relations: readonly string[]): Promise<Map<string, RelationWriteFacts | undefined>>;
  /**
   * The functions of every event trigger a DDL statement may fire (pg_event_trigger, events
   * ddl_command_start, ddl_command_end, sql_drop and table_rewrite), whatever its enabled
   * state (session_replication_role picks which fire) and WHEN TAG filter. Asked only for
   * statements of a kind that fires event triggers.
   */
  eventTriggerFunctions(): Promise<FunctionInfo[]>;
  /** Every relation whose values the statistics views (pg_stats, pg_stats_ext, …) show, as `schema.name`. */
  statisticsRelations(): Promise<string[]>;
  /** For each type name as written (`d`, `public.d`, lower case): the pg_type OIDs it may be, in every schema. */
  typesByName(names: readonly string[]): Promise<Map<string, number[]>>;
  /** For each type OID: itself and every type a value of it contains or is built on (elements, bases, members, subtypes), recursively. */
  typeClosure(types: readonly number[]): Promise<Map<number, number[]>>;
  /** For each type OID: the user functions it runs implicitly, and the user casts from or to it. */
  typeFacts(types: readonly number[]): Promise<Map<number, TypeFacts>>;
  invalidate(): void;
}

/** A relation as the code reading it sees it. */
export interface RelationFacts {
  rowType: number;
  /** Column name → type OID, in column order. */
  columns: Map<string, number>;
  /** Inheritance children and partitions at any depth, as `schema.name`: a read of the relation (without ONLY) reads them. */
  descendants: string[];
  /**
   * User functions planning or reading it may run unnamed: index expressions, predicates and
   * operator classes, CHECKs, partition key, extended statistics, a foreign table's handler.
   */
  code: FunctionInfo[];
  /** A foreign table whose wrapper's handler is built in (its reads run what it runs). */
  foreign?: boolean;
}

/** What writing a relation plans, runs and writes besides its own rows. */
export interface RelationWriteFacts {
  /**
   * User functions that planning a write to it may run: its column defaults and generated
   * columns, its columns' domains' defaults, its INSERT/UPDATE/DELETE rules' actions (the
   * rewriter adds them, the planner folds what it can). Volatile ones in a language other
   * than SQL are left out: planning never runs them, only executing the write does.
   */
  writeCode?: FunctionInfo[];
  /** Relations its INSERT/UPDATE/DELETE rules' actions name (`schema.name`): a write to it plans writes to them. */
  ruleRelations?: string[];
  /**
   * User functions that executing a write to it runs beyond planning: its triggers'
   * functions and WHEN conditions (any event, level, timing or enabled state), and the
   * volatile non-SQL functions its defaults call.
   */
  runCode?: FunctionInfo[];
  /**
   * Relations a write to it writes too (`schema.name`): referencing tables whose foreign key
   * has a writing ON DELETE/UPDATE action, and a view's base relations.
   */
  alsoWrites?: string[];
  /** The other relations with a foreign key referencing it (TRUNCATE … CASCADE truncates them, with alsoWrites). */
  referencedBy?: string[];
}

/**
 * User code (pg_proc OID ≥ 16384) a type runs without a statement naming it: input and
 * output, a domain's CHECK, the default btree and hash operator classes (ORDER BY,
 * DISTINCT, GROUP BY, joins, greatest…), a range's canonical, subdiff and subtype class.
 */
export interface TypeFacts {
  functions: FunctionInfo[];
  /** CREATE CAST … WITH FUNCTION rows whose source or target is this type. */
  casts: UserCast[];
}

export interface UserCast {
  source: number;
  target: number;
  /** e = explicit only, a = assignment, i = implicit. */
  context: 'e' | 'a' | 'i';
  fn: FunctionInfo;
}
