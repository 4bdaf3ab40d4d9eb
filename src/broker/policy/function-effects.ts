/**
 * Which called functions (and operators, through the function that implements them) have
 * side effects: what separates `select lower(name)` from `select f_del()`, `nextval(…)`,
 * `pg_notify(…)` or `pg_stat_reset()` under an allow for `select`.
 *
 * The judgement starts from the catalog's volatility (pg_proc.provolatile): PostgreSQL
 * requires a function with side effects to be volatile, so an immutable or stable
 * function is taken as effect-free, a volatile one as effectful. Two lists correct that:
 * - HARMLESS_VOLATILE: built-ins that are volatile only because their result changes from
 *   call to call (random, clock_timestamp, sizes and WAL positions), not because they
 *   change anything another statement could see. Only their pg_catalog candidates count:
 *   a user's own `public.random()` is judged by its volatility like any other function.
 *   Extension functions (uuid-ossp's uuid_generate_v4, …) are not listed, since they can
 *   be installed in any schema: a rule allows them with `functions: [uuid_generate_v4]`.
 * - EFFECTFUL_NONVOLATILE: stable or immutable built-ins that run SQL text, read
 *   relations named in their arguments out of sight of relation rules (table_to_xml,
 *   schema_to_xml, …), run the code stored with an object given by OID
 *   (satisfies_hash_partition, fmgr_sql_validator) or assign a transaction ID
 *   (txid_current); matched in every schema. The volatile ones of the same families are listed too, for the
 *   record: their volatility alone would already make them effectful.
 * - Procedures (prokind `p`) are always effectful: CALL may commit, write, anything.
 * - pg_catalog.set_config is judged by the setting it changes (settings.ts), which the
 *   classifier sees in the call; here it is neither effectful nor unknown.
 *
 * Volatilities were checked against PostgreSQL 15's pg_proc.
 */

/** A pg_proc row as the catalog reports it. */
export interface FunctionInfo {
  oid: number;
  schema: string;
  name: string;
  /** i = immutable, s = stable, v = volatile (for aggregates: the most volatile support function). */
  volatility: 'i' | 's' | 'v';
  /** f = function, a = aggregate, w = window, p = procedure. */
  kind: 'f' | 'a' | 'w' | 'p';
  nargs: number;
  /** pg_language name (sql, plpgsql, c, internal, …). */
  language?: string;
  /** pg_proc.prosrc: the body of a SQL function. */
  source?: string;
  /** Installed by an extension (a C one's declared volatility is trusted like a built-in's). */
  extension?: boolean;
  /**
   * pg_type OIDs of the result, then each argument in order (then every argument with OUT
   * ones, when it has some): coercions to them run the types' own code (a domain's CHECK, a cast).
   */
  types?: number[];
  /**
   * A user's LANGUAGE internal function runs a built-in C function by name: the volatility
   * of the built-ins of that name (absent: it names none). A user's C function runs a symbol
   * of a library: the volatility of the other functions running the same symbol (absent: none).
   */
  wraps?: 'i' | 's' | 'v';
  /**
   * The names of those built-ins: the wrapper runs their C code, so it does what they do
   * (an alias of table_to_xml reads the relation it is given, whatever it is called).
   */
  wrapsNames?: string[];
  /** A user function's argument defaults, as SQL (`f_reset(), 2`): a call that omits those arguments evaluates them. */
  defaults?: string;
  /** The settings of its SET clause (pg_proc.proconfig names, lower case): its body runs under them. */
  config?: string[];
  /**
   * Looked up by operator: it is the function of an operator of that name in pg_catalog,
   * which every search_path sees (one in another schema is seen only when the session's
   * search_path, which the session sets, holds that schema).
   */
  pinnedOperator?: true;
}

/**
 * Marks the name under which a statement's implicit calls are listed (`public.f[implicit]`,
 * statement-expansion.ts): code a type runs, which the text does not name. Rules match such
 * a call by the function's own name.
 */
export const IMPLICIT_CALL = '[implicit]';

/** A call's name as written or, for an implicit call, as the function's own. */
export function calledName(name: string): string {
  return name.endsWith(IMPLICIT_CALL) ? name.slice(0, -IMPLICIT_CALL.length) : name;
}

/** What decideSql needs to know about the functions and operators of a classification. */
export interface FunctionEffects {
  /** Names (as the classifier reports them) with a side effect. */
  effectful: ReadonlySet<string>;
  /** Names the catalog does not know in any schema. */
  unknown: ReadonlySet<string>;
  /**
   * Effectful names with a user function among their candidates: code whose effects the gate
   * did not analyse (it may change the session's settings for good), where a built-in's are known.
   */
  userCode?: ReadonlySet<string>;
}

/** Volatile pg_catalog functions without side effects visible to other statements or sessions. */
export const HARMLESS_VOLATILE: readonly string[] = [
  // random values and wall-clock time (not setseed: it keeps its argument in session state
  // that a later random() gives back, a channel out of masking)
  'random', 'random_normal', 'gen_random_uuid', 'clock_timestamp', 'timeofday',
  // waiting (dangerous_functions can still flag pg_sleep where holding a backend matters)
  'pg_sleep', 'pg_sleep_for', 'pg_sleep_until',
  // this session's sequence values (nextval and setval change them: not listed)
  'currval', 'lastval',
  // this session's own state and text
  'current_query', 'pg_stat_clear_snapshot', 'pg_jit_available', 'pg_notification_queue_usage',
  // sizes
  'pg_relation_size', 'pg_table_size', 'pg_indexes_size', 'pg_total_relation_size', 'pg_database_size', 'pg_tablespace_size',
  // recovery and WAL positions
  'pg_is_in_recovery', 'pg_is_wal_replay_paused', 'pg_get_wal_replay_pause_state', 'pg_current_wal_lsn',
  'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn', 'pg_last_wal_receive_lsn', 'pg_last_wal_replay_lsn',
  'pg_last_xact_replay_timestamp', 'pg_current_logfile',
  // transaction and lock status
  'pg_last_committed_xact', 'pg_xact_commit_timestamp', 'pg_xact_commit_timestamp_origin', 'pg_xact_status', 'txid_status',
  'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids', 'pg_lock_status', 'pg_prepared_xact',
  // catalog and partition inspection
  'pg_partition_tree', 'pg_partition_ancestors', 'pg_sequence_last_value', 'pg_collation_actual_version',
  'pg_database_collation_actual_version', 'pg_stat_have_stats',
  'pg_stat_get_xact_blocks_fetched', 'pg_stat_get_xact_blocks_hit', 'pg_stat_get_xact_function_calls',
  'pg_stat_get_xact_function_self_time', 'pg_stat_get_xact_function_total_time', 'pg_stat_get_xact_numscans',
  'pg_stat_get_xact_tuples_deleted', 'pg_stat_get_xact_tuples_fetched', 'pg_stat_get_xact_tuples_hot_updated',
  'pg_stat_get_xact_tuples_inserted', 'pg_stat_get_xact_tuples_returned', 'pg_stat_get_xact_tuples_updated',
];

/** Non-volatile built-ins (and their volatile siblings) that run SQL, read relations named by text, run an object's code by OID, or assign an xid. */
export const EFFECTFUL_NONVOLATILE: readonly string[] = [
  // run a query given as text (volatile)
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'cursor_to_xml', 'cursor_to_xmlschema',
  // read a table, a schema or the whole database named in the arguments (stable)
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
  'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
  'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
  // run a query given as text (ts_stat volatile; ts_rewrite's query form volatile, its other form immutable)
  'ts_stat', 'ts_rewrite',
  // tablefunc (an extension, so in any schema): crosstab runs its source and category
  // queries, connectby pastes its relation and field names into the query it runs (stable)
  'crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby',
  // xml2 (an extension): xpath_table pastes its relation, key and condition into a query (stable)
  'xpath_table',
  // read text as a type given by OID, running that type's input (a domain's CHECK, a
  // range's comparison) out of sight of the types a statement names (stable)
  'domain_in', 'array_in', 'record_in', 'range_in', 'multirange_in',
  // run the code stored with an object given by OID (which the query may compute, so no
  // name in the text reaches the analysis). Every callable non-volatile built-in with an
  // OID-typed argument was checked: satisfies_hash_partition hashes with the partition key's
  // operator class (a user hash function), fmgr_sql_validator parse-analyses a SQL body
  // (reading its literals runs their types' input: a domain's CHECK), fmgr_c_validator
  // loads the function's shared library (its initialisation runs) (immutable, stable)
  'satisfies_hash_partition', 'fmgr_sql_validator', 'fmgr_c_validator',
  // assign this transaction an ID even in a read-only session: a commit record in the WAL
  // and one of the cluster's shared transaction IDs used up (stable)
  'txid_current', 'pg_current_xact_id',
];

/** The first OID PostgreSQL gives a user object: below it, what initdb made. */
const FIRST_USER_OID = 16384;

const HARMLESS: ReadonlySet<string> = new Set(HARMLESS_VOLATILE);
const EFFECTFUL: ReadonlySet<string> = new Set(EFFECTFUL_NONVOLATILE);

/** Whether one candidate has a side effect. */
export function isEffectful(f: FunctionInfo): boolean {
  const name = f.name.toLowerCase();
  // By OID too: a superuser's own function created in pg_catalog is no built-in.
  const builtin = f.schema === 'pg_catalog' && f.oid < FIRST_USER_OID;
  if (f.kind === 'p') return true;
  if (EFFECTFUL.has(name)) return true; // in any schema: a look-alike is no better
  if (f.wrapsNames?.some((n) => EFFECTFUL.has(n.toLowerCase()))) return true; // an alias under another name
  if (builtin && name === 'set_config') return false; // judged by its setting (ClassifiedStatement.settings)
  if (f.volatility !== 'v') return false;
  return !(builtin && HARMLESS.has(name));
}

/**
 * Judges each name by all its candidates (every overload in every schema the name could
 * resolve to): effectful when any candidate is, unknown when there is none.
 */
export function judgeFunctionEffects(fns: readonly { name: string; infos: readonly FunctionInfo[] }[]): { effectful: string[]; unknown: string[]; userCode: string[] } {
  const effectful: string[] = [];
  const unknown: string[] = [];
  const userCode: string[] = [];
  for (const { name, infos } of fns) {
    if (infos.length === 0) unknown.push(name);
    else if (infos.some(isEffectful)) {
      effectful.push(name);
      if (infos.some((f) => f.oid >= FIRST_USER_OID && isEffectful(f))) userCode.push(name);
    }
  }
  return { effectful, unknown, userCode };
}

/** judgeFunctionEffects' lists as the sets decideSql takes. */
export function toFunctionEffects(j: { effectful: readonly string[]; unknown: readonly string[]; userCode?: readonly string[] }): FunctionEffects {
  return { effectful: new Set(j.effectful), unknown: new Set(j.unknown), userCode: new Set(j.userCode ?? []) };
}
