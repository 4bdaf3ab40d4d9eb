/**
 * Which run-time settings a client may change as part of reading: drivers and tools set
 * some on every connection (psql, JDBC and pg_dump set application_name,
 * extra_float_digits, search_path, DateStyle, statement_timeout, …), and an allow for
 * `set`/`reset`/`show` should not have to mean "any setting" to let them.
 *
 * A setting is harmless when changing it cannot change data, privileges, the transaction's
 * read-only state, or how the server reads later SQL text differently from agentgate's
 * parser. Two listed settings are harmless only for some values (client_encoding UTF8,
 * standard_conforming_strings on); the classifier's `hazard` check refuses the others
 * whatever the policy says.
 *
 * Deliberately NOT harmless: role, session_authorization (privileges);
 * default_transaction_read_only, transaction_read_only (the read-only backstop, see
 * READ_ONLY_SETTINGS); session_replication_role (disables triggers and FK checks);
 * backslash_quote (changes how literals are read); lc_messages, log_*, trace_*,
 * debug_* other than debug_parallel_query (superuser-only or diagnostic); custom `x.y`
 * settings (extensions read them, e.g. row-level-security policies keyed on a setting);
 * and any name not listed.
 */

/** Exact names (lower case). */
export const HARMLESS_SETTINGS: readonly string[] = [
  // connection identity and timeouts
  'application_name', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'idle_session_timeout',
  'tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout',
  // how values are written and read back
  'extra_float_digits', 'datestyle', 'intervalstyle', 'timezone', 'client_encoding', 'standard_conforming_strings',
  'bytea_output', 'xmloption', 'xmlbinary', 'lc_monetary', 'lc_numeric', 'lc_time', 'quote_all_identifiers',
  'array_nulls', 'escape_string_warning', 'transform_null_equals', 'default_text_search_config', 'gin_fuzzy_search_limit',
  // name resolution (relation rules judge an unqualified name in every schema holding it: statement-expansion.ts)
  'search_path',
  // messages to this client
  'client_min_messages',
  // read behaviour: row_security = off makes a query that RLS would filter fail, never bypass
  'row_security', 'synchronize_seqscans',
  // narrows which relations a query may reach (pg_dump sets it): never widens access
  'restrict_nonsystem_relation_kind',
  // planner and executor knobs (enable_* and parallel_* by prefix, below)
  'work_mem', 'maintenance_work_mem', 'temp_buffers', 'hash_mem_multiplier',
  'jit', 'jit_above_cost', 'jit_inline_above_cost', 'jit_optimize_above_cost',
  'geqo', 'geqo_threshold', 'geqo_effort', 'geqo_pool_size', 'geqo_generations', 'geqo_selection_bias', 'geqo_seed',
  'random_page_cost', 'seq_page_cost', 'cpu_tuple_cost', 'cpu_index_tuple_cost', 'cpu_operator_cost',
  'effective_cache_size', 'effective_io_concurrency', 'from_collapse_limit', 'join_collapse_limit',
  'default_statistics_target', 'constraint_exclusion', 'cursor_tuple_fraction', 'plan_cache_mode',
  'max_parallel_workers_per_gather', 'min_parallel_table_scan_size', 'min_parallel_index_scan_size',
  'force_parallel_mode', 'debug_parallel_query',
  // isolation and deferrability (not read-only-ness)
  'transaction_isolation', 'default_transaction_isolation', 'transaction_deferrable', 'default_transaction_deferrable',
];

/** Prefixes of harmless planner settings: enable_seqscan, enable_hashjoin, …; parallel_setup_cost, … */
export const HARMLESS_SETTING_PREFIXES: readonly string[] = ['enable_', 'parallel_'];

/**
 * Settings that decide whether a transaction may write. Changing either (any value, RESET,
 * TO DEFAULT) is a read-write escape: the statement gets `readWrite: true`.
 */
export const READ_ONLY_SETTINGS: readonly string[] = ['default_transaction_read_only', 'transaction_read_only'];

const HARMLESS: ReadonlySet<string> = new Set(HARMLESS_SETTINGS);

/** `name` as the parser reports it (lower case unless quoted); custom `x.y` names never qualify. */
export function isHarmlessSetting(name: string): boolean {
  const n = name.toLowerCase();
  if (n.includes('.') || n.includes(' ')) return false;
  return HARMLESS.has(n) || HARMLESS_SETTING_PREFIXES.some((p) => n.startsWith(p) && n.length > p.length);
}

export function isReadOnlySetting(name: string): boolean {
  return READ_ONLY_SETTINGS.includes(name.toLowerCase());
}
