/**
 * SQL text → what each statement does, using PostgreSQL's own parser (libpg_query built
 * to WASM, npm `libpg-query`): no regexes, so comments, dollar quotes, E'' strings and
 * quoted identifiers are read exactly as the server reads them.
 *
 * `loadSqlParser()` must have resolved before `classifySql` runs (the broker awaits it at
 * start); after that classification is synchronous and cached by statement text.
 *
 * Choices worth knowing (rules in sql-rules.ts depend on them):
 * - Unqualified relations are reported in schema `public` (the session's search_path is not
 *   known at parse time) and listed in `unqualified`: the gate adds every other schema the
 *   live catalog holds a relation of that name in (statement-expansion.ts), so relation
 *   rules hold whatever search_path the session sets.
 * - `kinds` is the statement's own kind plus every data-modifying statement nested in it
 *   that runs with it (writable CTEs, INSERT … SELECT with a writable CTE, COPY (DELETE …)
 *   TO, function bodies written in SQL-standard `BEGIN ATOMIC`, rule actions), plus:
 *   `create` for SELECT … INTO; `lock` for SELECT … FOR UPDATE/SHARE (it takes row locks
 *   and needs UPDATE privilege, so an allow for `select` alone does not cover it);
 *   `update` for INSERT … ON CONFLICT DO UPDATE; the actions of MERGE (insert, update,
 *   delete); and for EXPLAIN ANALYZE X and PREPARE p AS X, the kinds of X (both run X, or
 *   will). Plain EXPLAIN X runs nothing: its kinds are ['explain'] and X's targets are
 *   reported as reads.
 * - `no_where`: UPDATE/DELETE with no WHERE clause at all. `WHERE true` counts as a WHERE:
 *   the flag catches the forgotten clause, not a deliberate full-table predicate.
 * - `dangerous_function` is set when any listed function is called anywhere in the
 *   statement, even under plain EXPLAIN (the planner may evaluate functions) and in
 *   DEFAULT expressions and function bodies that run later.
 * - DO blocks and function bodies written as strings (`AS $$ … $$`) are opaque: their kind
 *   (`do`, `create`) is all a rule sees. EXECUTE of a prepared statement is opaque too.
 * - An operation on a whole schema (DROP/CREATE/ALTER SCHEMA, GRANT … ON ALL TABLES IN
 *   SCHEMA) is reported as writing `<schema>.*`.
 * - Text containing a NUL byte is refused: the server would stop reading at the NUL.
 * - `functions` and `operators` are every call and operator written anywhere, even under
 *   plain EXPLAIN, in FROM (`generate_series(…)`), CALL, DEFAULT expressions and SQL-standard
 *   function bodies: the proxy resolves them in the catalog and rules judge their side
 *   effects (function-effects.ts). What runs without being written (views, policies, type
 *   code, SQL bodies) is resolved by the gate from `types`, `columns`, `wholeRows`, `star`
 *   and `only` (statement-expansion.ts); triggers and opaque bodies are not seen.
 * - SET / RESET of a harmless setting (settings.ts), RESET ALL and SET TRANSACTION without
 *   READ WRITE are kind `session`. set_config(name, …) leaves the kind alone (a SELECT stays
 *   `select`) and records the name in `settings` (`*` when not a constant). set_config of a
 *   harmless setting does not count toward `dangerous_function`.
 * - LOCK … IN ACCESS SHARE MODE is kind `select` (the lock any SELECT takes); other modes `lock`.
 * - `readWrite`: the statement could undo a read-only session (see undoesReadOnly in
 *   sql-kinds.ts, and set_config of default_transaction_read_only/transaction_read_only or
 *   of a name that is not a constant).
 */
import assert from 'node:assert';
import { createHash } from 'node:crypto';
import { SQL_FLAGS, type SqlFlag } from '../config/types.js';
import { Lru, type LruStats } from './lru.js';
import { arr, DML_KIND, explainAnalyzes, foldIdentifier, integerReadCount, integerValue, isObj, statementKind, str, undoesReadOnly, unwrap, type StatementKind } from './sql-kinds.js';
import { isHarmlessSetting, isReadOnlySetting } from './settings.js';
import type { FunctionInfo } from './function-effects.js';

export type { StatementKind } from './sql-kinds.js';

export interface ClassifiedStatement {
  /** The top-level kind: EXPLAIN ANALYZE DELETE is 'explain' (see `kinds`). */
  kind: StatementKind;
  /** Every kind this statement performs: its own first, then nested ones (see the file comment). */
  kinds: StatementKind[];
  /** Schema-qualified relations read; unqualified names are assumed to be in `public`. */
  reads: string[];
  /** Relations written: insert/update/delete/merge/truncate/copy-from targets, DDL targets, grants. */
  writes: string[];
  /**
   * Targets of an INSERT/UPDATE/DELETE/MERGE under plain EXPLAIN (also in `reads`): not
   * written, but planned, and planning a write runs what the rewriter adds (the target's
   * defaults, its rules' actions) as far as it folds it.
   */
  planned?: string[];
  /**
   * Sources of `LIKE x INCLUDING …` (also in `reads`): their defaults, CHECKs, index and
   * generated expressions become the new table's, whose stored code the catalog the gate
   * reads may never show (a temporary table): judged as code this statement attaches.
   */
  copies?: string[];
  /** Every function called anywhere, lower case, schema-qualified when written so. */
  functions: string[];
  /**
   * Every operator used anywhere, schema-qualified when written `OPERATOR(s.op)`: `=`, `||`,
   * `@>`, `~~` (LIKE), `>=` and `<=` for BETWEEN, `=` for a simple CASE and for JOIN … USING
   * or NATURAL (the parser writes those comparisons itself).
   */
  operators: string[];
  /** Settings changed through set_config(name, …), lower case; `*` when the name is not a constant. */
  settings: string[];
  /**
   * Names that may be function calls: `u.f` and `(u).f` call f(u) when u has no column f;
   * SQL/JSON syntax newer than the server (JSON_ARRAY(…)) is a call of a function of that
   * name to a server without it (see SYNTAX_CALLS). The gate treats one as a call when such
   * a function exists.
   */
  maybeCalls: string[];
  /**
   * Every type named anywhere, lower case, as written (`d`, `public.d`, `pg_catalog.int4`):
   * casts, typed literals (`d '1'`), column definition lists, XMLTABLE columns. A value
   * coerced to a type runs that type's code (a domain's CHECK, a cast function, input).
   */
  types: string[];
  /** Column names referenced (the last name of each column reference, and USING lists). */
  columns: string[];
  /** Names referenced alone (`u` in `f(u)`, `u::int`): a column, or a whole row of a relation aliased so. */
  wholeRows: string[];
  /** The statement references every column (`*`, `t.*`, NATURAL JOIN). */
  star?: true;
  /** Relations named only with ONLY (their inheritance children and partitions are not read or written). */
  only?: string[];
  /** Each relation's alias (or its own name when it has none), as [name, relation]: `u` in `users u` stands for a row of it. */
  aliases?: [string, string][];
  /** Relations whose alias renames columns by position (`t_sort s(x, y)`). */
  renames?: { relation: string; columns: string[] }[];
  /**
   * For operators whose every use has operands of a type known from the text, per use the
   * operand hints: `oid:23` (an integer constant), `oid:16` (a boolean), `type:<name>` (a
   * cast), `col:<name>` or `col:<alias>.<name>` (a column). The gate picks the candidate
   * PostgreSQL would (an exact match) instead of every candidate's types.
   */
  operands?: [string, string[][]][];
  /** The statement has derived tables (subqueries, CTEs, functions in FROM): a bare column name may name one of their columns. */
  derived?: true;
  flags: SqlFlag[];
  /** This statement's own text (a trimmed slice of the input). */
  text: string;
  /**
   * Relation names written without a schema (reported in `public` in reads and writes).
   * The server resolves them by the session's search_path, which can be changed and puts
   * pg_catalog and a schema named like the role first; the gate matches such a name as
   * every schema's relation of that name (statement-expansion.ts).
   */
  unqualified?: string[];
  /** e.g. 'SET ROLE', 'SET SESSION AUTHORIZATION', 'BEGIN', 'CREATE TABLE', 'EXPLAIN ANALYZE'. */
  detail?: string;
  /**
   * Set when the statement would make the server read later SQL differently from this
   * parser (client_encoding other than UTF8, standard_conforming_strings off). decideSql
   * denies such statements whatever the policy says.
   */
  hazard?: string;
  /** Present (true) when the statement could undo a read-only session; see decideSqlReadOnly. */
  readWrite?: true;
  /** What the statement does to the session's prepared statements and cursors (see NamespaceOp). */
  names?: NamespaceOp;
}

/**
 * A statement's effect on the names the protocol shares with SQL: PREPARE/EXECUTE/
 * DEALLOCATE name prepared statements that Bind can use and vice versa; DECLARE/CLOSE name
 * portals that Execute can run. `name` undefined means ALL.
 */
export type NamespaceOp =
  | { op: 'prepare'; name: string }
  | { op: 'execute'; name: string }
  | { op: 'deallocate'; name: string | undefined }
  /** `hold`: WITH HOLD, the cursor outlives its transaction. */
  | { op: 'declare'; name: string; hold?: true }
  /** FETCH or MOVE: runs the named portal (a cursor, or a portal a protocol Bind made). */
  | { op: 'fetch'; name: string }
  | { op: 'close'; name: string | undefined }
  /** DISCARD ALL: every prepared statement and cursor. */
  | { op: 'discard' };

export type SqlClassification =
  /** `fingerprint`: SHA-256 over the parse tree without positions (see fingerprintOf). */
  /**
   * `valueDependent`: the classification read a number's value (EXPLAIN (ANALYZE 0), SET
   * standard_conforming_strings = 0): another text that differs only in numbers may
   * classify differently, so it must not share this one's verdict (see sql-shape.ts).
   */
  | { ok: true; statements: ClassifiedStatement[]; fingerprint: string; valueDependent?: true }
  /** `position`: 0-based character offset the parser points at; `fingerprint`: SHA-256 of the raw text. */
  | { ok: false; error: string; position?: number; fingerprint: string };

export interface ClassifyOptions {
  /** Lower-case function names, bare (`pg_read_file`) or schema-qualified (`public.f`). */
  dangerousFunctions: ReadonlySet<string>;
}

// ---------------------------------------------------------------------------------------
// Loading the parser

interface PgQuery {
  loadModule(): Promise<void>;
  parseSync(sql: string): { stmts?: RawStmt[] };
}
interface RawStmt {
  stmt: unknown;
  stmt_location?: number;
  stmt_len?: number;
}

let parser: PgQuery | undefined;
let loading: Promise<void> | undefined;

/** The loaded parser (undefined until loadSqlParser() has resolved): for callers that must not await per statement. */
export function loadedSqlParser(): Pick<PgQuery, 'parseSync'> | undefined {
  return parser;
}

/** Loads and instantiates the WASM parser once; later calls share the same promise. */
export function loadSqlParser(): Promise<void> {
  loading ??= (async () => {
    const mod = (await import('libpg-query')) as unknown as PgQuery;
    await mod.loadModule();
    parser = mod;
  })().catch((e: unknown) => {
    loading = undefined; // let a later call retry
    throw e;
  });
  return loading;
}

// ---------------------------------------------------------------------------------------
// Cache

/** Texts longer than this are classified every time: a bulk statement is rarely repeated. */
const MAX_CACHED_TEXT = 256 * 1024;

interface CacheEntry {
  /** The classification without the set-dependent `dangerous_function` flag. */
  base: SqlClassification;
  forSet?: ReadonlySet<string>;
  result?: SqlClassification;
}

const cache = new Lru<string, CacheEntry>({ maxEntries: 2000, maxBytes: 16 * 1024 * 1024, sizeOf: entrySize });

function entrySize(key: string, e: CacheEntry): number {
  let n = 2 * key.length + 200;
  if (e.base.ok) {
    for (const s of e.base.statements) {
      n += 2 * s.text.length + 300;
      for (const list of [s.reads, s.writes, s.functions, s.operators, s.settings]) for (const x of list) n += 2 * x.length + 40;
    }
  } else n += 2 * e.base.error.length;
  return n;
}

export function sqlClassifyCacheStats(): LruStats {
  return cache.stats();
}

export function clearSqlClassifyCache(): void {
  cache.clear();
}

/**
 * Classifies every statement of `sql`. Cached by text: the same text with the same
 * `dangerousFunctions` set (by identity) returns the same object.
 */
export function classifySql(sql: string, opts: ClassifyOptions): SqlClassification {
  const set = opts.dangerousFunctions;
  const cacheable = sql.length <= MAX_CACHED_TEXT;
  let entry = cacheable ? cache.get(sql) : undefined;
  if (!entry) {
    entry = { base: classifyBase(sql) };
    if (cacheable) cache.set(sql, entry);
  }
  if (entry.forSet !== set || !entry.result) {
    entry.result = withDangerousFlags(entry.base, set);
    entry.forSet = set;
  }
  return entry.result;
}

/** Classification without the cache (for benchmarks and tests of the cache itself). */
export function classifySqlUncached(sql: string, opts: ClassifyOptions): SqlClassification {
  return withDangerousFlags(classifyBase(sql), opts.dangerousFunctions);
}

function withDangerousFlags(base: SqlClassification, set: ReadonlySet<string>): SqlClassification {
  if (!base.ok) return base;
  const match = dangerousMatcher(set);
  let changed = false;
  const statements = base.statements.map((s) => {
    const harmlessSettings = s.hazard === undefined && s.settings.every(isHarmlessSetting);
    if (!s.functions.some((f) => match(f) && !(harmlessSettings && isBuiltinSetConfig(f)))) return s;
    changed = true;
    return { ...s, flags: orderFlags([...s.flags, 'dangerous_function']) };
  });
  return changed ? freeze({ ...base, statements }) : base;
}

/** Results are shared through the cache: frozen, so a caller's mutation throws instead of leaking. */
function freeze(c: SqlClassification): SqlClassification {
  if (c.ok) {
    for (const s of c.statements) {
      for (const list of [s.kinds, s.reads, s.writes, s.functions, s.operators, s.settings, s.flags]) Object.freeze(list);
      Object.freeze(s);
    }
    Object.freeze(c.statements);
  }
  return Object.freeze(c);
}

/** set_config as the server resolves it by default (pg_catalog comes first unless search_path says otherwise). */
function isBuiltinSetConfig(fn: string): boolean {
  return fn === 'set_config' || fn === 'pg_catalog.set_config';
}

const matchers = new WeakMap<ReadonlySet<string>, (fn: string) => boolean>();

/**
 * A bare entry matches the function in any schema (`pg_read_file` matches
 * `pg_catalog.pg_read_file`); a qualified entry matches that exact name, and a bare call
 * of the same function name too, since search_path could resolve it there.
 */
function dangerousMatcher(set: ReadonlySet<string>): (fn: string) => boolean {
  let m = matchers.get(set);
  if (!m) {
    const bare = new Set<string>();
    const qualified = new Set<string>();
    const qualifiedLast = new Set<string>();
    for (const raw of set) {
      const e = foldIdentifier(raw);
      const dot = e.lastIndexOf('.');
      if (dot < 0) bare.add(e);
      else {
        qualified.add(e);
        qualifiedLast.add(e.slice(dot + 1));
      }
    }
    m = (fn) => {
      const dot = fn.lastIndexOf('.');
      if (dot < 0) return bare.has(fn) || qualifiedLast.has(fn);
      return qualified.has(fn) || bare.has(fn.slice(dot + 1));
    };
    matchers.set(set, m);
  }
  return m;
}

// ---------------------------------------------------------------------------------------
// Parse and walk

function classifyBase(sql: string): SqlClassification {
  return freeze(parseAndWalk(sql));
}

function parseAndWalk(sql: string): SqlClassification {
  assert(parser, 'loadSqlParser() must resolve before classifySql is called');
  if (sql.includes('\0')) {
    return { ok: false, error: 'statement text contains a NUL byte', position: sql.indexOf('\0'), fingerprint: sha256(sql) };
  }
  let raw: RawStmt[];
  if (sql.trim() === '') raw = []; // the parser refuses an empty string; nothing runs either way
  else {
    try {
      raw = parser.parseSync(sql).stmts ?? [];
    } catch (e) {
      if (e instanceof RangeError) return { ok: false, error: TOO_DEEP, fingerprint: sha256(sql) };
      const err = e as { message?: unknown; sqlDetails?: { cursorPosition?: unknown } };
      const out: SqlClassification = { ok: false, error: typeof err.message === 'string' ? err.message : String(e), fingerprint: sha256(sql) };
      const pos = err.sqlDetails?.cursorPosition;
      if (typeof pos === 'number' && pos >= 0) out.position = pos;
      return out;
    }
  }
  try {
    const texts = statementTexts(sql, raw);
    const multi = raw.length > 1;
    const reads = integerReadCount();
    const source: SourceText = { text: sql };
    const statements = raw.map((r, i) => classifyStatement(r.stmt, texts[i] ?? '', multi, source));
    const out: SqlClassification = { ok: true, statements, fingerprint: fingerprintOf(raw, statements) };
    if (integerReadCount() !== reads) out.valueDependent = true;
    return out;
  } catch (e) {
    // A tree deep enough to exhaust the stack: refuse rather than guess.
    if (e instanceof RangeError) return { ok: false, error: TOO_DEEP, fingerprint: sha256(sql) };
    throw e;
  }
}

const TOO_DEEP = 'statement nests too deeply to classify';

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

const LOCATION_KEYS = new Set(['location', 'stmt_location', 'stmt_len', 'name_location']);

/** A literal piece of output in the fingerprint serializer's work stack. */
class Tok {
  constructor(readonly s: string) {}
}
const COMMA = new Tok(',');
const CLOSE_ARRAY = new Tok(']');
const CLOSE_OBJECT = new Tok('}');

/**
 * SHA-256 over the tree without positions, so whitespace and comments do not change it and
 * constants do. The text hashed is `JSON.stringify` of the tree minus the location keys.
 *
 * Fast path: native JSON.stringify, then cut the keys out of the text. That is exact
 * because inside a JSON string every `"` is escaped, so `{"location":` or `,"location":`
 * can only be a key. Trees too deep for JSON.stringify take the explicit-stack path, which
 * produces the same text.
 */
/**
 * "The same statement" for an approval: the parse tree without positions (whitespace and
 * comments aside), plus what the text says that the tree does not. The gate's grammar is
 * newer than the server's: `json_object(1)` and `pg_catalog.json_object(1)` give one tree,
 * but PostgreSQL 15 runs a user's function for the first. So the names the statement may
 * call or use as types, as the gate judged them from the text, are part of it: an approval
 * of one text never lets the other run.
 */
function fingerprintOf(raw: RawStmt[], statements: readonly ClassifiedStatement[]): string {
  const tree = raw.map((r) => r.stmt);
  const judged = JSON.stringify(statements.map((s) => [[...s.maybeCalls].sort(), [...s.types].sort()]));
  let json: string;
  try {
    json = JSON.stringify(tree);
  } catch (e) {
    if (e instanceof RangeError) return sha256(`${serializeDeep(tree)}\n${judged}`);
    throw e;
  }
  return sha256(`${json.replace(FIRST_LOCATION_KEY, '{').replace(OTHER_LOCATION_KEY, '')}\n${judged}`);
}

const FIRST_LOCATION_KEY = /\{(?:"(?:location|stmt_location|stmt_len|name_location)":-?\d+,?)+/g;
const OTHER_LOCATION_KEY = /,"(?:location|stmt_location|stmt_len|name_location)":-?\d+/g;

function serializeDeep(tree: unknown): string {
  const out: string[] = [];
  const stack: unknown[] = [tree];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v instanceof Tok) out.push(v.s);
    else if (Array.isArray(v)) {
      out.push('[');
      stack.push(CLOSE_ARRAY);
      for (let i = v.length - 1; i >= 0; i--) {
        stack.push(v[i] === undefined ? null : v[i]);
        if (i > 0) stack.push(COMMA);
      }
    } else if (isObj(v)) {
      out.push('{');
      stack.push(CLOSE_OBJECT);
      const keys = Object.keys(v).filter((k) => !LOCATION_KEYS.has(k) && v[k] !== undefined);
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i]!;
        stack.push(v[k], new Tok(`${JSON.stringify(k)}:`));
        if (i > 0) stack.push(COMMA);
      }
    } else out.push(JSON.stringify(v) ?? 'null');
  }
  return out.join('');
}

/** stmt_location/stmt_len are UTF-8 byte offsets; a missing length means "to the end". */
function statementTexts(sql: string, raw: RawStmt[]): string[] {
  const ascii = Buffer.byteLength(sql) === sql.length;
  const buf = ascii ? undefined : Buffer.from(sql, 'utf8');
  const total = buf ? buf.length : sql.length;
  return raw.map((r) => {
    const start = r.stmt_location ?? 0;
    const end = r.stmt_len ? start + r.stmt_len : total;
    return (buf ? buf.subarray(start, end).toString('utf8') : sql.slice(start, end)).trim();
  });
}

type Obj = Record<string, unknown>;

/** The `sval` of each String node in a name list, e.g. funcname or a DROP object. */
function names(list: unknown): string[] {
  const out: string[] = [];
  for (const item of arr(list)) {
    const n = unwrap(item);
    if (n && n[0] === 'String') {
      const s = str(n[1]['sval']);
      if (s !== undefined) out.push(s);
    }
  }
  return out;
}

interface Acc {
  kinds: Set<StatementKind>;
  reads: Set<string>;
  writes: Set<string>;
  functions: Set<string>;
  operators: Set<string>;
  settings: Set<string>;
  maybeCalls: Set<string>;
  types: Set<string>;
  columns: Set<string>;
  wholeRows: Set<string>;
  star: boolean;
  /** Relations named with ONLY, and without it. */
  onlyRefs: Set<string>;
  inhRefs: Set<string>;
  aliases: Map<string, Set<string>>;
  renames: { relation: string; columns: string[] }[];
  /** Operator → the operand hints of each use; null once a use has operands of unknown type. */
  operands: Map<string, string[][] | null>;
  derived: boolean;
  readWrite: boolean;
  flags: Set<SqlFlag>;
  /** RangeVar bodies in a write position (targets of the statement that holds them). */
  writeTargets: Set<object>;
  /** RangeVar bodies of writes planned under plain EXPLAIN, and their names (see ClassifiedStatement.planned). */
  plannedTargets: Set<object>;
  planned: Set<string>;
  /** RangeVar bodies of LIKE sources whose code is copied, and their names (see ClassifiedStatement.copies). */
  copiedSources: Set<object>;
  copies: Set<string>;
  /** Relation names written without a schema (see ClassifiedStatement.unqualified). */
  unqualified: Set<string>;
  hazard?: string;
  /** Children scheduled by the node being visited, in source order. */
  pending: Work[];
  /** The whole text parsed, shared by its statements (node locations are UTF-8 byte offsets into it). */
  source: SourceText;
}

/** A text read at the parser's byte offsets; measured and (if not ASCII) encoded once, when first read. */
interface SourceText {
  text: string;
  ascii?: boolean;
  bytes?: Buffer;
}

/** `length` bytes of the text from byte `offset`, as latin1 (enough to compare ASCII names). */
function sourceAt(source: SourceText, offset: number, length: number): string {
  source.ascii ??= Buffer.byteLength(source.text) === source.text.length;
  if (source.ascii) return source.text.slice(offset, offset + length);
  source.bytes ??= Buffer.from(source.text, 'utf8');
  return source.bytes.subarray(offset, offset + length).toString('latin1');
}

type Work = [unknown, Ctx];

/** Statement kinds that change a catalog object (see classifyStatement's `?.*`). */
const UNPLACED_DDL_KINDS: ReadonlySet<StatementKind> = new Set<StatementKind>(['create', 'alter', 'drop', 'comment', 'grant', 'revoke']);

interface Ctx {
  /** False under plain EXPLAIN: nothing below runs, so it adds no kinds and no structural flags. */
  executing: boolean;
  /** CTE names visible here; an unqualified reference to one is not a relation. */
  ctes: ReadonlySet<string>;
  /**
   * Inside `SELECT … FROM pg_settings WHERE name = '<x>'` (how pg_dump sets a setting it may
   * not know exists): the setting a `set_config(name, …)` there changes.
   */
  settingsRow?: string;
}

function classifyStatement(stmt: unknown, text: string, multi: boolean, source: SourceText): ClassifiedStatement {
  const node = unwrap(stmt);
  const [type, body] = node ?? ['Unknown', {}];
  const { detail } = statementKind(type, body);
  let { kind } = statementKind(type, body);
  const acc: Acc = {
    kinds: new Set([kind]),
    reads: new Set(),
    writes: new Set(),
    functions: new Set(),
    operators: new Set(),
    settings: new Set(),
    maybeCalls: new Set(),
    types: new Set(),
    columns: new Set(),
    wholeRows: new Set(),
    star: false,
    onlyRefs: new Set(),
    inhRefs: new Set(),
    aliases: new Map(),
    renames: [],
    operands: new Map(),
    derived: false,
    readWrite: false,
    flags: new Set(),
    writeTargets: new Set(),
    plannedTargets: new Set(),
    planned: new Set(),
    copiedSources: new Set(),
    copies: new Set(),
    unqualified: new Set(),
    pending: [],
    source,
  };
  if (multi) acc.flags.add('multi_statement');
  walkTree(stmt, acc, { executing: true, ctes: new Set() });
  if (kind === 'session' && acc.hazard) {
    // client_encoding other than UTF8, standard_conforming_strings off: not harmless (and denied anyway).
    kind = 'set';
    acc.kinds.delete('session');
    acc.kinds = new Set(['set', ...acc.kinds]);
  }
  // DDL whose object this parser does not place in a schema (ALTER ROLE … SET, CREATE TYPE,
  // ALTER … OWNER, GRANT on a function…) changes something no relation glob names: `?.*`,
  // which only a rule allowing every schema covers (unknown means no).
  if (UNPLACED_DDL_KINDS.has(kind) && acc.writes.size === 0) acc.writes.add('?.*');
  const out: ClassifiedStatement = {
    kind,
    kinds: [...acc.kinds],
    reads: [...acc.reads],
    writes: [...acc.writes],
    functions: [...acc.functions],
    operators: [...acc.operators],
    settings: [...acc.settings],
    maybeCalls: [...acc.maybeCalls],
    types: [...acc.types],
    columns: [...acc.columns],
    wholeRows: [...acc.wholeRows],
    flags: orderFlags(acc.flags),
    text,
  };
  if (acc.star) out.star = true;
  const only = [...acc.onlyRefs].filter((r) => !acc.inhRefs.has(r));
  if (only.length > 0) out.only = only;
  if (acc.aliases.size > 0) out.aliases = [...acc.aliases].flatMap(([a, rels]) => [...rels].map((r): [string, string] => [a, r]));
  if (acc.renames.length > 0) out.renames = acc.renames;
  const operands = [...acc.operands].flatMap(([op, uses]): [string, string[][]][] => (uses && uses.every((u) => u.every((h) => h !== '?')) ? [[op, uses]] : []));
  if (operands.length > 0) out.operands = operands;
  if (acc.derived) out.derived = true;
  if (detail) out.detail = detail;
  if (acc.hazard) out.hazard = acc.hazard;
  if (acc.readWrite) out.readWrite = true;
  if (acc.unqualified.size > 0) out.unqualified = [...acc.unqualified];
  if (acc.planned.size > 0) out.planned = [...acc.planned];
  if (acc.copies.size > 0) out.copies = [...acc.copies];
  const names = namespaceOp(type, body);
  if (names) out.names = names;
  // PREPARE p AS X does what X does when executed, and nothing else: its kinds are X's.
  if (type === 'PrepareStmt' && out.kinds.length > 1) out.kinds = out.kinds.filter((k) => k !== 'prepare');
  return out;
}

function namespaceOp(type: string, body: Obj): NamespaceOp | undefined {
  const name = str(body['name']);
  switch (type) {
    case 'PrepareStmt':
      return name === undefined ? undefined : { op: 'prepare', name };
    case 'ExecuteStmt':
    case 'ExplainStmt':
    case 'CreateTableAsStmt': {
      const executed = executedName(type, body);
      return executed === undefined ? undefined : { op: 'execute', name: executed };
    }
    case 'DeallocateStmt':
      return { op: 'deallocate', name: body['isall'] === true ? undefined : name };
    case 'DeclareCursorStmt': {
      const portal = str(body['portalname']);
      if (portal === undefined) return undefined;
      // CURSOR_OPT_HOLD (0x20) in the parser's option bits: set by the WITH HOLD keywords.
      const options = body['options'];
      return typeof options === 'number' && (options & 0x20) !== 0 ? { op: 'declare', name: portal, hold: true } : { op: 'declare', name: portal };
    }
    case 'FetchStmt': {
      const portal = str(body['portalname']);
      return portal === undefined ? undefined : { op: 'fetch', name: portal };
    }
    case 'ClosePortalStmt':
      return { op: 'close', name: str(body['portalname']) };
    case 'DiscardStmt':
      return body['target'] === 'DISCARD_ALL' ? { op: 'discard' } : undefined;
    default:
      return undefined;
  }
}

/**
 * The prepared statement a statement runs: EXECUTE p, and the statements that run one inside
 * them, CREATE TABLE … AS EXECUTE p and EXPLAIN ANALYZE of either. The gate judges them as p
 * as well (sql-gate.ts, withExecuted).
 */
function executedName(type: string, body: Obj): string | undefined {
  if (type === 'ExecuteStmt') return str(body['name']);
  const query = unwrap(body['query']);
  if (!query) return undefined;
  if (type === 'CreateTableAsStmt') return query[0] === 'ExecuteStmt' ? str(query[1]['name']) : undefined;
  if (type === 'ExplainStmt' && explainAnalyzes(body['options'])) return executedName(query[0], query[1]);
  return undefined;
}

function orderFlags(flags: Iterable<SqlFlag>): SqlFlag[] {
  const set = new Set(flags);
  return SQL_FLAGS.filter((f) => set.has(f));
}

/**
 * Walks the tree with an explicit stack, in source order: ORM-built expressions can nest
 * thousands deep (`a + b + c …` is left-deep), more than recursion would survive.
 */
function walkTree(root: unknown, acc: Acc, ctx: Ctx): void {
  const stack: Work[] = [[root, ctx]];
  for (let item = stack.pop(); item; item = stack.pop()) {
    acc.pending.length = 0;
    step(item[0], acc, item[1]);
    for (let i = acc.pending.length - 1; i >= 0; i--) stack.push(acc.pending[i]!);
  }
}

function step(v: unknown, acc: Acc, ctx: Ctx): void {
  if (Array.isArray(v)) {
    for (const x of v) acc.pending.push([x, ctx]);
    return;
  }
  if (!isObj(v)) return;
  const node = unwrap(v);
  if (node) return visit(node[0], node[1], acc, ctx);
  // Some fields hold a RangeVar inline, without the wrapper (e.g. DeleteStmt.relation).
  if (typeof v['relname'] === 'string') return relation(v, acc, ctx);
  // Most fields hold a TypeName inline too (TypeCast.typeName, ColumnDef.typeName, …).
  if (Array.isArray(v['names']) && typeof v['typemod'] === 'number') typeName(v, acc);
  walkFields(v, acc, ctx);
}

function typeName(t: Obj, acc: Acc): void {
  const parts = names(t['names']).map(foldIdentifier);
  if (parts.length > 0) acc.types.add(parts.join('.'));
  // `json` reaches the tree as pg_catalog.json; PostgreSQL 15 looks the bare name up on search_path.
  const bare = grammarQualified(parts, t['location'], acc);
  if (bare !== undefined) acc.types.add(bare);
}

/** Schedules the fields of `o` (CTE bodies first, with their scopes). */
function walkFields(o: Obj, acc: Acc, ctx: Ctx): void {
  const wc = o['withClause'];
  const inner = isObj(wc) ? walkWith(wc, acc, ctx) : ctx;
  for (const k in o) if (k !== 'withClause') acc.pending.push([o[k], inner]);
}

/**
 * Each CTE body sees the CTEs before it (all of them under RECURSIVE); the statement that
 * owns the WITH sees all. `WITH users AS (SELECT * FROM users) …` therefore still reports
 * the real `public.users` read inside the CTE.
 */
function walkWith(wc: Obj, acc: Acc, ctx: Ctx): Ctx {
  const ctes: Obj[] = [];
  for (const c of arr(wc['ctes'])) {
    const n = unwrap(c);
    if (n && n[0] === 'CommonTableExpr') ctes.push(n[1]);
  }
  const all = new Set(ctx.ctes);
  if (ctes.length > 0) acc.derived = true;
  for (const c of ctes) {
    const name = str(c['ctename']);
    if (name !== undefined) all.add(name);
  }
  const recursive = wc['recursive'] === true;
  let seen = new Set(ctx.ctes);
  for (const c of ctes) {
    const query = unwrap(c['ctequery']);
    if (ctx.executing && query && DML_KIND[query[0]] !== undefined) acc.flags.add('writable_cte');
    walkFields(c, acc, { ...ctx, ctes: recursive ? all : seen });
    const name = str(c['ctename']);
    if (name !== undefined) seen = new Set(seen).add(name);
  }
  return { ...ctx, ctes: all };
}

function relation(rv: Obj, acc: Acc, ctx: Ctx): void {
  const rel = str(rv['relname']);
  if (rel === undefined) return;
  const schema = str(rv['schemaname']);
  const isWrite = acc.writeTargets.has(rv);
  if (schema === undefined && !isWrite && ctx.ctes.has(rel)) return;
  // Unqualified: assume public (search_path is unknown here); temp relations live in pg_temp.
  const temp = rv['relpersistence'] === 't';
  if (schema === undefined && !temp) acc.unqualified.add(rel);
  const name = `${schema ?? (temp ? 'pg_temp' : 'public')}.${rel}`;
  (isWrite ? acc.writes : acc.reads).add(name);
  if (acc.plannedTargets.has(rv)) acc.planned.add(name);
  if (acc.copiedSources.has(rv)) acc.copies.add(name);
  (rv['inh'] === true ? acc.inhRefs : acc.onlyRefs).add(name);
  const alias = isObj(rv['alias']) ? rv['alias'] : undefined;
  const as = (alias ? str(alias['aliasname']) : undefined) ?? rel;
  let rels = acc.aliases.get(as);
  if (!rels) acc.aliases.set(as, (rels = new Set()));
  rels.add(name);
  const colnames = alias ? names(alias['colnames']) : [];
  if (colnames.length > 0) acc.renames.push({ relation: name, columns: colnames });
}

/** Marks the RangeVar(s) in `v` (inline, wrapped, or a list) as write targets. */
function markWrite(v: unknown, acc: Acc, into: Set<object> = acc.writeTargets): void {
  if (Array.isArray(v)) {
    for (const x of v) markWrite(x, acc, into);
    return;
  }
  if (!isObj(v)) return;
  const n = unwrap(v);
  if (n) {
    if (n[0] === 'RangeVar') into.add(n[1]);
    return;
  }
  if (typeof v['relname'] === 'string') into.add(v);
}

/** A relation named by a list of identifiers (DROP TABLE s.t, COMMENT ON TABLE …). */
function namedRelation(parts: string[]): string | undefined {
  if (parts.length === 0) return undefined;
  const rel = parts[parts.length - 1]!;
  const schema = parts.length >= 2 ? parts[parts.length - 2]! : 'public';
  return `${schema}.${rel}`;
}

const MERGE_ACTION: Readonly<Record<string, StatementKind>> = { CMD_INSERT: 'insert', CMD_UPDATE: 'update', CMD_DELETE: 'delete' };

/** Object types whose DROP/COMMENT names a relation. */
const RELATION_OBJECTS = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_INDEX', 'OBJECT_SEQUENCE', 'OBJECT_FOREIGN_TABLE']);
/** Object types named as `table.name` (the relation they hang off is written). */
const ON_RELATION_OBJECTS = new Set(['OBJECT_TRIGGER', 'OBJECT_RULE', 'OBJECT_POLICY', 'OBJECT_COLUMN', 'OBJECT_TABCONSTRAINT']);

/** Statement kinds whose `relation`-like fields are the objects they change. */
const WRITING_KINDS = new Set<StatementKind>(['create', 'alter', 'drop', 'truncate', 'grant', 'revoke', 'comment', 'refresh', 'vacuum']);
const TARGET_FIELDS = ['relation', 'relations', 'view', 'sequence', 'table', 'objects'];

function visit(type: string, body: Obj, acc: Acc, ctx: Ctx): void {
  const syntaxCall = SYNTAX_CALLS.get(type);
  if (syntaxCall !== undefined) acc.maybeCalls.add(syntaxCall);
  switch (type) {
    case 'ColumnRef': {
      const fields = arr(body['fields']);
      const last = unwrap(fields[fields.length - 1]);
      if (last?.[0] === 'A_Star') acc.star = true;
      if (last?.[0] === 'String') {
        const name = str(last[1]['sval']);
        if (name !== undefined) {
          acc.columns.add(name);
          if (fields.length >= 2) acc.maybeCalls.add(foldIdentifier(name));
          else acc.wholeRows.add(name);
        }
      }
      return walkFields(body, acc, ctx);
    }
    case 'TypeName':
      typeName(body, acc);
      return walkFields(body, acc, ctx);
    case 'RangeSubselect':
    case 'RangeFunction':
    case 'RangeTableFunc':
      acc.derived = true;
      return walkFields(body, acc, ctx);
    case 'JoinExpr':
      // A join's alias may rename the columns of every relation in it, by position.
      if (body['isNatural'] === true || (isObj(body['alias']) && arr(body['alias']['colnames']).length > 0)) acc.star = true;
      for (const u of names(body['usingClause'])) acc.columns.add(u);
      // USING (k) and NATURAL compare the shared columns with `=`, looked up for their types.
      if (body['isNatural'] === true || arr(body['usingClause']).length > 0) addOperator(['='], acc);
      return walkFields(body, acc, ctx);
    case 'CaseExpr':
      // A simple CASE (`CASE x WHEN y …`) compares x = y, looked up for their types.
      if (body['arg'] !== undefined) addOperator(['='], acc);
      return walkFields(body, acc, ctx);
    case 'A_Indirection':
      for (const i of arr(body['indirection'])) {
        const n = unwrap(i);
        const name = n?.[0] === 'String' ? str(n[1]['sval']) : undefined;
        if (name !== undefined) acc.maybeCalls.add(foldIdentifier(name));
      }
      return walkFields(body, acc, ctx);
    case 'RangeVar':
      return relation(body, acc, ctx);
    case 'JsonFuncExpr': {
      const name = JSON_FUNC_OPS.get(str(body['op']) ?? '');
      if (name !== undefined) acc.maybeCalls.add(name);
      return walkFields(body, acc, ctx);
    }
    case 'FuncCall':
      functionCall(body, acc, ctx);
      grammarQualifiedCall(body, acc);
      return walkFields(body, acc, ctx);
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      // Under plain EXPLAIN the write is planned, not run: its target is reported as read
      // and as planned (planning adds its defaults and rules' actions, and folds them).
      if (!ctx.executing) markWrite(body['relation'], acc, acc.plannedTargets);
      if (ctx.executing) {
        acc.kinds.add(DML_KIND[type]!);
        markWrite(body['relation'], acc);
        if ((type === 'UpdateStmt' || type === 'DeleteStmt') && body['whereClause'] === undefined) acc.flags.add('no_where');
        if (type === 'InsertStmt' && isObj(body['onConflictClause']) && body['onConflictClause']['action'] === 'ONCONFLICT_UPDATE') acc.kinds.add('update');
        if (type === 'MergeStmt') {
          for (const w of arr(body['mergeWhenClauses'])) {
            const k = MERGE_ACTION[str(unwrap(w)?.[1]['commandType']) ?? ''];
            if (k) acc.kinds.add(k);
          }
        }
      }
      return walkFields(body, acc, ctx);
    case 'SelectStmt':
      if (ctx.executing) {
        const into = body['intoClause'];
        if (isObj(into)) {
          acc.kinds.add('create');
          markWrite(into['rel'], acc);
        }
        if (arr(body['lockingClause']).length > 0) acc.kinds.add('lock');
      }
      return walkFields(body, acc, { ...ctx, settingsRow: pgSettingsRow(body) });
    case 'ExplainStmt': {
      const query = unwrap(body['query']);
      if (ctx.executing && explainAnalyzes(body['options'])) {
        acc.flags.add('explain_analyze');
        if (query) acc.kinds.add(statementKind(query[0], query[1]).kind);
        return walkFields(body, acc, ctx);
      }
      return walkFields(body, acc, { ...ctx, executing: false });
    }
    case 'PrepareStmt': {
      const query = unwrap(body['query']);
      if (ctx.executing && query) acc.kinds.add(statementKind(query[0], query[1]).kind);
      return walkFields(body, acc, ctx);
    }
    case 'CopyStmt':
      if (ctx.executing) {
        if (body['is_from'] === true) markWrite(body['relation'], acc);
        if (body['is_program'] === true) acc.flags.add('copy_program');
        // A file name (not STDIN/STDOUT): the server reads or writes its own filesystem.
        else if (body['filename'] !== undefined) acc.flags.add('copy_file');
      }
      return walkFields(body, acc, ctx);
    case 'CallStmt': {
      const call = body['funccall'];
      if (isObj(call)) functionCall(call, acc, ctx);
      return walkFields(body, acc, ctx);
    }
    case 'VariableSetStmt':
      acc.hazard ??= settingHazard(str(body['name']), body);
      if (undoesReadOnly(type, body)) acc.readWrite = true;
      return walkFields(body, acc, ctx);
    case 'TransactionStmt':
      if (undoesReadOnly(type, body)) acc.readWrite = true;
      return walkFields(body, acc, ctx);
    case 'A_Expr':
      operatorUse(body, acc);
      return walkFields(body, acc, ctx);
    case 'SubLink': {
      const op = names(body['operName']);
      // `x IN (SELECT …)` is an ANY sublink written without an operator: it runs `=`.
      addOperator(op.length === 0 && body['subLinkType'] === 'ANY_SUBLINK' ? ['='] : op, acc);
      return walkFields(body, acc, ctx);
    }
    case 'SortBy':
      addOperator(names(body['useOp']), acc);
      return walkFields(body, acc, ctx);
    case 'TableLikeClause':
      // INCLUDING DEFAULTS, CONSTRAINTS, INDEXES, GENERATED… (any option) copies stored code.
      if (ctx.executing && typeof body['options'] === 'number' && body['options'] !== 0 && isObj(body['relation'])) acc.copiedSources.add(body['relation']);
      return walkFields(body, acc, ctx);
    case 'CreateTrigStmt':
      // The trigger's function runs on later writes of its table, which the gate may not see
      // in the catalog (a temporary table, a transaction not yet committed): judged here, as a call.
      if (ctx.executing) functionCall({ funcname: body['funcname'] }, acc, ctx);
      break;
    case 'CreateSchemaStmt':
      if (ctx.executing) placeSchemaElements(body);
      break;
    case 'VacuumStmt':
      if (ctx.executing && body['is_vacuumcmd'] === true) {
        for (const r of arr(body['rels'])) markWrite(unwrap(r)?.[1]['relation'], acc);
      }
      return walkFields(body, acc, ctx);
  }
  if (ctx.executing && type.endsWith('Stmt')) {
    const { kind } = statementKind(type, body);
    if (WRITING_KINDS.has(kind) || type === 'ClusterStmt' || type === 'ReindexStmt') {
      for (const f of TARGET_FIELDS) markWrite(body[f], acc);
      const into = body['into'];
      if (isObj(into)) markWrite(into['rel'], acc);
      const base = body['base']; // CREATE FOREIGN TABLE holds a CreateStmt
      if (isObj(base)) markWrite(base['relation'], acc);
      // INHERITS / PARTITION OF changes the parent: its reads see the child's rows, its writes route to it.
      if (type === 'CreateStmt') markWrite(body['inhRelations'], acc);
    }
    namedObjects(type, body, acc);
  }
  walkFields(body, acc, ctx);
}

/**
 * SQL/JSON syntax that agentgate's parser (PostgreSQL 18's grammar) reads as its own node,
 * by the keyword it starts with. PostgreSQL 15 has no such syntax (16 and 17 added it) and
 * reads the same text as a plain call of a function of that name, found on search_path: a
 * user's json_array(int) runs there. Each is judged as a possible call of that name (a
 * call when such a function exists: with none, a server without the syntax fails, and one
 * with it runs its built-in).
 */
const SYNTAX_CALLS: ReadonlyMap<string, string> = new Map([
  ['JsonArrayConstructor', 'json_array'],
  ['JsonArrayQueryConstructor', 'json_array'],
  ['JsonObjectConstructor', 'json_object'],
  ['JsonScalarExpr', 'json_scalar'],
  ['JsonSerializeExpr', 'json_serialize'],
  ['JsonParseExpr', 'json'],
  ['JsonArrayAgg', 'json_arrayagg'],
  ['JsonObjectAgg', 'json_objectagg'],
  ['JsonTable', 'json_table'],
  ['MergeSupportFunc', 'merge_action'],
]);

/** JsonFuncExpr.op → the keyword (JSON_VALUE(…), JSON_QUERY(…), JSON_EXISTS(…)). */
const JSON_FUNC_OPS: ReadonlyMap<string, string> = new Map([
  ['JSON_VALUE_OP', 'json_value'],
  ['JSON_QUERY_OP', 'json_query'],
  ['JSON_EXISTS_OP', 'json_exists'],
  ['JSON_TABLE_OP', 'json_table'],
]);

/**
 * Whether the name at `location` is written bare though the tree qualifies it with
 * pg_catalog: the grammar did that (PostgreSQL 16's legacy `json_object(args)` becomes
 * `pg_catalog.json_object`, the type `json` `pg_catalog.json`), and a server whose grammar
 * does not (PostgreSQL 15) resolves the bare name on search_path, so a user's function or
 * type of that name may be the one that runs. Told from a written `pg_catalog.x` by the
 * text at the node's location.
 */
function grammarQualified(parts: readonly string[], location: unknown, acc: Acc): string | undefined {
  if (parts.length !== 2 || parts[0] !== 'pg_catalog' || typeof location !== 'number' || location < 0) return undefined;
  const name = foldIdentifier(parts[1]!);
  const written = foldIdentifier(sourceAt(acc.source, location, name.length + 1));
  // The name itself at the location, not followed by more of an identifier: nothing qualified it in the text.
  return written.startsWith(name) && !/^[a-z0-9_$]$/.test(written.slice(name.length)) ? name : undefined;
}

/** A call the grammar qualified (see grammarQualified) may also be a call of its bare name. */
function grammarQualifiedCall(call: Obj, acc: Acc): void {
  if (call['funcformat'] !== 'COERCE_EXPLICIT_CALL') return;
  const bare = grammarQualified(names(call['funcname']), call['location'], acc);
  if (bare !== undefined) acc.maybeCalls.add(bare);
}

function functionCall(call: Obj, acc: Acc, ctx: Ctx): void {
  const parts = names(call['funcname']);
  if (parts.length === 0) return;
  const name = foldIdentifier(parts.join('.'));
  acc.functions.add(name);
  // set_config('client_encoding' | 'standard_conforming_strings', …) desyncs like SET does.
  if (foldIdentifier(parts[parts.length - 1]!) === 'set_config') {
    const args = arr(call['args']);
    const setting = constString(args[0]) ?? (ctx.settingsRow !== undefined && isColumn(args[0], 'name') ? ctx.settingsRow : undefined);
    if (setting !== undefined) acc.hazard ??= settingHazard(setting.toLowerCase(), { kind: 'VAR_SET_VALUE', args: [args[1]] });
    const recorded = setting === undefined ? '*' : setting.toLowerCase();
    acc.settings.add(recorded);
    if (recorded === '*' || isReadOnlySetting(recorded)) acc.readWrite = true;
    // A value computed by the query (a column, a subquery) would carry data into the
    // setting, which the server then reports to the client (ParameterStatus, SHOW): only
    // constants and client parameters keep a harmless setting harmless.
    const value = unwrap(args[1]);
    if (constString(args[1]) === undefined && value?.[0] !== 'ParamRef' && !(value?.[0] === 'TypeCast' && unwrap(value[1]['arg'])?.[0] === 'ParamRef')) {
      acc.settings.add(`${recorded} (computed value)`);
    }
  }
}

/** `SELECT … FROM pg_settings WHERE name = '<x>'`: x; else undefined. */
function pgSettingsRow(select: Obj): string | undefined {
  const from = arr(select['fromClause']);
  if (from.length !== 1) return undefined;
  const rv = unwrap(from[0]);
  if (!rv || rv[0] !== 'RangeVar' || str(rv[1]['relname']) !== 'pg_settings') return undefined;
  const schema = str(rv[1]['schemaname']);
  if (schema !== undefined && schema !== 'pg_catalog') return undefined;
  const where = unwrap(select['whereClause']);
  if (!where || where[0] !== 'A_Expr' || where[1]['kind'] !== 'AEXPR_OP' || names(where[1]['name']).join('.') !== '=') return undefined;
  const [l, r] = [where[1]['lexpr'], where[1]['rexpr']];
  if (isColumn(l, 'name')) return constString(r);
  if (isColumn(r, 'name')) return constString(l);
  return undefined;
}

/** A ColumnRef naming `column` alone. */
function isColumn(v: unknown, column: string): boolean {
  const n = unwrap(v);
  if (!n || n[0] !== 'ColumnRef') return false;
  const f = names(n[1]['fields']);
  return f.length === 1 && f[0] === column;
}

/** BETWEEN and its variants are written as a name but run the type's >= and <= operators. */
const BETWEEN_KINDS = new Set(['AEXPR_BETWEEN', 'AEXPR_NOT_BETWEEN', 'AEXPR_BETWEEN_SYM', 'AEXPR_NOT_BETWEEN_SYM']);

function operatorUse(body: Obj, acc: Acc): void {
  if (BETWEEN_KINDS.has(str(body['kind']) ?? '')) {
    addOperator(['>='], acc);
    addOperator(['<='], acc);
    return;
  }
  const plain = body['kind'] === 'AEXPR_OP';
  const operands = plain ? [body['lexpr'], body['rexpr']].filter((x) => x !== undefined).map(operandHint) : undefined;
  addOperator(names(body['name']), acc, operands);
}

/** A use of an operator; `operands` are its operands' type hints when it is a plain `a op b` / `op b`. */
function addOperator(parts: string[], acc: Acc, operands?: string[]): void {
  if (parts.length === 0) return;
  const op = foldIdentifier(parts.join('.'));
  acc.operators.add(op);
  const uses = acc.operands.get(op);
  if (uses === null) return;
  if (!operands) acc.operands.set(op, null);
  else acc.operands.set(op, [...(uses ?? []), operands]);
}

/** What the text says of an operand's type (see ClassifiedStatement.operands); `?` when nothing certain. */
function operandHint(v: unknown): string {
  const n = unwrap(v);
  if (!n) return '?';
  const [type, body] = n;
  if (type === 'A_Const') {
    if (isObj(body['ival'])) return 'oid:23';
    if (isObj(body['boolval'])) return 'oid:16';
    return '?';
  }
  if (type === 'TypeCast' && isObj(body['typeName'])) {
    const t = body['typeName'];
    if (arr(t['arrayBounds']).length > 0) return '?';
    const parts = names(t['names']).map(foldIdentifier);
    return parts.length > 0 ? `type:${parts.join('.')}` : '?';
  }
  if (type === 'ColumnRef') {
    const fields = arr(body['fields']).map((f) => unwrap(f));
    if (!fields.every((f) => f?.[0] === 'String')) return '?';
    const parts = fields.map((f) => str(f![1]['sval']) ?? '');
    if (parts.length === 1) return `col:${parts[0]}`;
    if (parts.length === 2) return `col:${parts[0]}.${parts[1]}`;
  }
  return '?';
}

/** The string value of an A_Const (or a cast of one), if it is a constant. */
function constString(v: unknown): string | undefined {
  const n = unwrap(v);
  if (!n) return undefined;
  if (n[0] === 'A_Const') {
    const s = n[1]['sval'];
    if (isObj(s)) return str(s['sval']);
    const i = integerValue(n[1]['ival']);
    if (i !== undefined) return String(i);
    const b = n[1]['boolval'];
    if (isObj(b)) return b['boolval'] === true ? 'true' : 'false';
    return undefined;
  }
  if (n[0] === 'TypeCast') return constString(n[1]['arg']);
  return undefined;
}

/**
 * Settings that change how the server tokenizes SQL. This parser reads text as UTF-8 with
 * standard_conforming_strings on; if the server read `\` or multibyte sequences otherwise,
 * text judged here as one harmless string could run as several statements there.
 */
function settingHazard(name: string | undefined, body: Obj): string | undefined {
  if (name !== 'client_encoding' && name !== 'standard_conforming_strings') return undefined;
  if (body['kind'] !== 'VAR_SET_VALUE') return undefined; // DEFAULT / RESET go back to the session's start value
  const values = arr(body['args']).map(constString);
  const value = values.length === 1 ? values[0] : undefined;
  if (name === 'client_encoding') {
    const norm = value?.toLowerCase().replace(/[-_]/g, '');
    if (norm === 'utf8' || norm === 'unicode') return undefined;
  } else if (value !== undefined && ['on', 'true', 'yes', '1', 't', 'y'].includes(value.toLowerCase())) {
    return undefined;
  }
  return `${name} = ${value ?? '?'} would make the server read SQL differently from agentgate's parser`;
}

/** Relations and schemas named by identifier lists rather than RangeVars. */
function namedObjects(type: string, body: Obj, acc: Acc): void {
  const schemaWrite = (s: string | undefined): void => {
    if (s !== undefined) acc.writes.add(`${s}.*`);
  };
  // A function's schema, as relation rules match it (`scratch.*`); unqualified, the first
  // schema of the session's search_path, not known here.
  const routineWrite = (parts: string[]): void => {
    if (parts.length > 0) acc.writes.add(`${parts.length > 1 ? parts[parts.length - 2]! : '?'}.${parts[parts.length - 1]!}`);
  };
  switch (type) {
    case 'DropStmt': {
      const objtype = str(body['removeType']) ?? '';
      for (const o of arr(body['objects'])) {
        const n = unwrap(o);
        if (!n) continue;
        if (objtype === 'OBJECT_SCHEMA' && n[0] === 'String') schemaWrite(str(n[1]['sval']));
        else if (n[0] === 'List') objectList(objtype, names(n[1]['items']), acc);
        else if (n[0] === 'ObjectWithArgs') routineWrite(names(n[1]['objname']));
      }
      return;
    }
    case 'CreateFunctionStmt':
      return routineWrite(names(body['funcname']));
    case 'AlterFunctionStmt':
      return routineWrite(isObj(body['func']) ? names(body['func']['objname']) : []);
    case 'CommentStmt': {
      const objtype = str(body['objtype']) ?? '';
      const n = unwrap(body['object']);
      if (!n) return;
      if (objtype === 'OBJECT_SCHEMA' && n[0] === 'String') schemaWrite(str(n[1]['sval']));
      else if (n[0] === 'List') objectList(objtype, names(n[1]['items']), acc);
      return;
    }
    case 'GrantStmt':
      if (body['targtype'] === 'ACL_TARGET_ALL_IN_SCHEMA' || body['objtype'] === 'OBJECT_SCHEMA') {
        for (const s of names(body['objects'])) schemaWrite(s);
      }
      return;
    case 'CreateSchemaStmt':
      return schemaWrite(createdSchema(body));
    case 'RenameStmt': {
      const renameType = str(body['renameType']) ?? '';
      if (renameType === 'OBJECT_SCHEMA') {
        schemaWrite(str(body['subname']));
        schemaWrite(str(body['newname']));
        return;
      }
      const rv = body['relation'];
      const newname = str(body['newname']);
      if (RELATION_OBJECTS.has(renameType) && isObj(rv) && newname !== undefined) {
        const schema = str(rv['schemaname']);
        acc.writes.add(`${schema ?? 'public'}.${newname}`);
        if (schema === undefined) acc.unqualified.add(newname);
      }
      return;
    }
    case 'AlterObjectSchemaStmt': {
      const rv = body['relation'];
      const to = str(body['newschema']);
      if (isObj(rv) && to !== undefined) acc.writes.add(`${to}.${str(rv['relname']) ?? ''}`);
      return;
    }
    case 'AlterTableStmt':
      // ATTACH/DETACH PARTITION names a second relation that changes too.
      for (const c of arr(body['cmds'])) {
        const def = unwrap(unwrap(c)?.[1]['def']);
        if (def && def[0] === 'PartitionCmd') markWrite(def[1]['name'], acc);
      }
      return;
  }
}

/**
 * The schema CREATE SCHEMA creates: its name, else the AUTHORIZATION role's; `?` when that is
 * CURRENT_USER or the like (not known here: no `schema.*` glob matches it).
 */
function createdSchema(body: Obj): string {
  const named = str(body['schemaname']);
  if (named !== undefined) return named;
  const role = isObj(body['authrole']) ? body['authrole'] : undefined;
  return (role && role['roletype'] === 'ROLESPEC_CSTRING' ? str(role['rolename']) : undefined) ?? '?';
}

/** The field of a CREATE SCHEMA element that names the object it creates. */
const SCHEMA_ELEMENT_TARGET: Readonly<Record<string, string>> = { CreateStmt: 'relation', ViewStmt: 'view', CreateSeqStmt: 'sequence' };

/**
 * CREATE SCHEMA s CREATE TABLE t …: the elements' objects are created in s whatever the
 * search_path (the server refuses another schema), so an unqualified one is qualified with s
 * before the walk reports it. Names the elements only reference are resolved as usual.
 */
function placeSchemaElements(body: Obj): void {
  const schema = createdSchema(body);
  for (const e of arr(body['schemaElts'])) {
    const n = unwrap(e);
    const field = n ? SCHEMA_ELEMENT_TARGET[n[0]] : undefined;
    const rv = field ? n![1][field] : undefined;
    if (isObj(rv) && str(rv['schemaname']) === undefined) rv['schemaname'] = schema;
  }
}

function objectList(objtype: string, parts: string[], acc: Acc): void {
  const relParts = RELATION_OBJECTS.has(objtype) ? parts : ON_RELATION_OBJECTS.has(objtype) ? parts.slice(0, -1) : [];
  const rel = namedRelation(relParts);
  if (rel === undefined) return;
  acc.writes.add(rel);
  if (relParts.length === 1) acc.unqualified.add(relParts[0]!);
}

// ---------------------------------------------------------------------------------------
// FunctionCall protocol messages

/**
 * A FunctionCall message (`F`) names its function by OID and carries no SQL: this turns
 * it into a synthetic one-statement classification the proxy can decide with decideSql
 * and the function's effects (judged under the name `schema.name`). A function is kind
 * `select`, a procedure `call`. Arguments are not inspected: a call of set_config records
 * setting `*` (so it counts as effectful and as a read-write escape). An unknown OID (or
 * none resolved) gives an unparsed classification with error `unknown function oid N`.
 * `opts.oid` names the OID in that error; `opts.dangerousFunctions` adds the
 * `dangerous_function` flag as classifySql would.
 */
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

export function classifyFunctionCall(
  info: FunctionInfo | undefined,
  argCount: number,
  opts: { oid?: number; dangerousFunctions?: ReadonlySet<string> } = {},
): SqlClassification {
  if (!info) {
    const error = `unknown function oid ${opts.oid ?? '?'}`;
    return freeze({ ok: false, error, fingerprint: sha256(`-- ${error}`) });
  }
  const name = foldIdentifier(`${info.schema}.${info.name}`);
  const text = `-- function call: ${name}(${argCount} args)`;
  const kind: StatementKind = info.kind === 'p' ? 'call' : 'select';
  const setConfig = foldIdentifier(info.name) === 'set_config';
  const s: ClassifiedStatement = {
    kind,
    kinds: [kind],
    reads: [],
    writes: [],
    functions: [name],
    operators: [],
    settings: setConfig ? ['*'] : [],
    maybeCalls: [],
    types: [],
    columns: [],
    wholeRows: [],
    flags: opts.dangerousFunctions && dangerousMatcher(opts.dangerousFunctions)(name) ? ['dangerous_function'] : [],
    text,
    detail: 'FUNCTION CALL',
  };
  if (setConfig) s.readWrite = true;
  return freeze({ ok: true, statements: [s], fingerprint: sha256(text) });
}
