/**
 * The statement kinds the SQL classifier reports and rules name, the aliases a rule's `sql`
 * list may use, and how a parse-tree node maps to its kind. Free of the parser itself, so
 * config validation and the rule matcher can use it without loading WASM.
 */
import { isHarmlessSetting, isReadOnlySetting } from './settings.js';

/**
 * `session`: SET / RESET / SET LOCAL of a harmless setting (settings.ts), RESET ALL, and
 * SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION without READ WRITE. Every
 * other SET and RESET keeps kind `set` / `reset`. A rule that lists `set`, `reset` or
 * `show` also covers `session` (expandSqlKinds), so a read-only policy that allows `show`
 * lets clients set application_name, extra_float_digits, search_path, … as they connect.
 */
export const STATEMENT_KINDS = [
  'select', 'insert', 'update', 'delete', 'merge', 'copy',
  'create', 'alter', 'drop', 'truncate', 'grant', 'revoke',
  'set', 'reset', 'do', 'call', 'explain', 'transaction',
  'listen', 'notify', 'unlisten', 'prepare', 'execute', 'deallocate',
  'lock', 'vacuum', 'analyze', 'show', 'discard', 'comment', 'refresh', 'session', 'other',
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/**
 * Names a rule may use for several kinds at once. `transaction` is also a kind itself
 * (BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, …). Two-phase commit
 * is not: PREPARE TRANSACTION leaves a transaction behind the session (its locks and
 * snapshot held until someone finishes it), and COMMIT / ROLLBACK PREPARED finish any
 * session's prepared transaction, writing or discarding its changes. PostgreSQL allows
 * all three in a read-only transaction, so they are kind `other` and count as undoing a
 * read-only session (undoesReadOnly).
 */
export const SQL_KIND_ALIASES: Readonly<Record<string, readonly StatementKind[]>> = {
  ddl: ['create', 'alter', 'drop', 'truncate', 'comment'],
  transaction: ['transaction'],
};

const KIND_SET: ReadonlySet<string> = new Set(STATEMENT_KINDS);

export function isStatementKind(name: string): name is StatementKind {
  return KIND_SET.has(name);
}

/** A rule's `sql` list (lower case) with aliases expanded. Unknown names match nothing. */
export function expandSqlKinds(names: readonly string[]): Set<StatementKind> {
  const out = new Set<StatementKind>();
  for (const name of names) {
    const alias = SQL_KIND_ALIASES[name];
    if (alias) for (const k of alias) out.add(k);
    else if (isStatementKind(name)) out.add(name);
    if (name === 'set' || name === 'reset' || name === 'show') out.add('session');
  }
  return out;
}

/** The names in a rule's `sql` list that are neither a kind nor an alias (for config validation). */
export function unknownSqlKinds(names: readonly string[]): string[] {
  return names.filter((n) => !isStatementKind(n) && SQL_KIND_ALIASES[n] === undefined);
}

// ---------------------------------------------------------------------------------------
// From parse-tree nodes (libpg_query JSON: `{ TypeName: body }`) to kinds and details

type Obj = Record<string, unknown>;

export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
export const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
export const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/**
 * A name folded as PostgreSQL folds identifiers: ASCII A–Z to a–z, nothing else (its parser
 * never folds a multibyte character, and a quoted name keeps every character). Names the
 * classifier reports, the catalog's keys and the policy's lists are compared folded this
 * way on both sides (function-catalog.ts folds pg_catalog's names with the same rule in
 * SQL): JavaScript's toLowerCase folds far more (KELVIN SIGN U+212A to `k`, `É` to `é`)
 * and pg_catalog.lower() folds by the database's locale, so either on one side only lets a
 * quoted `"pg_bac\u212Aend_pid"()` be judged as the built-in pg_backend_pid, or a domain
 * `"É…"` go unfound.
 */
export function foldIdentifier(name: string): string {
  let out: string | undefined;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      out ??= name.slice(0, i);
      out += String.fromCharCode(c + 32);
    } else if (out !== undefined) out += name[i];
  }
  return out ?? name;
}

/** `{ TypeName: body }` → [TypeName, body]; libpg_query wraps every generic Node this way. */
export function unwrap(v: unknown): [string, Obj] | undefined {
  if (!isObj(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1) return undefined;
  const k = keys[0]!;
  const c = k.charCodeAt(0);
  if (c < 65 || c > 90) return undefined;
  const body = v[k];
  return isObj(body) ? [k, body] : undefined;
}

/** The node types that modify data, with their kind. */
export const DML_KIND: Readonly<Record<string, StatementKind>> = {
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
};

/**
 * How many times a classification has read the value of an integer constant. A number's
 * value rarely matters (kinds, relations and functions never depend on it), so the gate
 * reuses a verdict across texts that differ only in numbers (sql-shape.ts). Where a value
 * does matter (`EXPLAIN (ANALYZE 0)`, `SET standard_conforming_strings = 0`) the verdict
 * must not be shared: every such read goes through integerValue(), and the classifier
 * compares this count before and after a text to mark it value-dependent. Classification
 * is synchronous, so the count belongs to the text being classified.
 */
let integerReads = 0;

export function integerReadCount(): number {
  return integerReads;
}

/** The value of an `Integer` node's body (`{ ival }`; the parser leaves out 0); undefined if it is not one. */
export function integerValue(body: unknown): number | undefined {
  if (!isObj(body)) return undefined;
  integerReads++;
  return typeof body['ival'] === 'number' ? body['ival'] : 0;
}

/** EXPLAIN ANALYZE / EXPLAIN (ANALYZE [on]) runs the statement; only an explicit false does not. */
export function explainAnalyzes(options: unknown): boolean {
  let on = false;
  for (const o of arr(options)) {
    const d = unwrap(o);
    if (!d || d[0] !== 'DefElem' || d[1]['defname'] !== 'analyze') continue;
    const arg = d[1]['arg'];
    if (arg === undefined) {
      on = true;
      continue;
    }
    const a = unwrap(arg);
    if (a && a[0] === 'Integer') on = integerValue(a[1]) !== 0;
    else if (a && a[0] === 'String') on = !FALSE_WORDS.has((str(a[1]['sval']) ?? '').toLowerCase());
    else on = true; // anything the server might read as true
  }
  return on;
}

/** What PostgreSQL's parse_bool reads as false (it accepts unique prefixes). */
const FALSE_WORDS = new Set(['false', 'fals', 'fal', 'fa', 'f', 'off', 'of', 'no', 'n', '0']);

const DIRECT_KIND: Readonly<Record<string, StatementKind>> = {
  SelectStmt: 'select',
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
  CopyStmt: 'copy',
  TruncateStmt: 'truncate',
  DoStmt: 'do',
  CallStmt: 'call',
  ExplainStmt: 'explain',
  TransactionStmt: 'transaction',
  ListenStmt: 'listen',
  NotifyStmt: 'notify',
  UnlistenStmt: 'unlisten',
  PrepareStmt: 'prepare',
  ExecuteStmt: 'execute',
  DeallocateStmt: 'deallocate',
  LockStmt: 'lock',
  VariableShowStmt: 'show',
  DiscardStmt: 'discard',
  CommentStmt: 'comment',
  RefreshMatViewStmt: 'refresh',
  ViewStmt: 'create',
  IndexStmt: 'create',
  RuleStmt: 'create',
  CompositeTypeStmt: 'create',
  DefineStmt: 'create',
  ImportForeignSchemaStmt: 'create',
  RenameStmt: 'alter',
  SecLabelStmt: 'alter',
  ReassignOwnedStmt: 'alter',
  DropStmt: 'drop',
  // SET CONSTRAINTS changes when checks run in this transaction: a setting.
  ConstraintsSetStmt: 'set',
  // Cursors are how clients (psql's FETCH_COUNT) read a SELECT in pieces.
  DeclareCursorStmt: 'select',
  FetchStmt: 'select',
  ClosePortalStmt: 'select',
};

const DETAIL: Readonly<Record<string, string>> = {
  CreatedbStmt: 'CREATE DATABASE',
  DropdbStmt: 'DROP DATABASE',
  AlterDatabaseStmt: 'ALTER DATABASE',
  AlterDatabaseSetStmt: 'ALTER DATABASE SET',
  ViewStmt: 'CREATE VIEW',
  IndexStmt: 'CREATE INDEX',
  RuleStmt: 'CREATE RULE',
  CompositeTypeStmt: 'CREATE TYPE',
  DefineStmt: 'CREATE',
  CheckPointStmt: 'CHECKPOINT',
  LoadStmt: 'LOAD',
  VariableShowStmt: 'SHOW',
  DoStmt: 'DO',
  CallStmt: 'CALL',
  DeclareCursorStmt: 'DECLARE CURSOR',
  FetchStmt: 'FETCH',
  ClosePortalStmt: 'CLOSE',
  ConstraintsSetStmt: 'SET CONSTRAINTS',
  RenameStmt: 'ALTER … RENAME',
  AlterObjectSchemaStmt: 'ALTER … SET SCHEMA',
  AlterOwnerStmt: 'ALTER … OWNER TO',
  CreateTrigStmt: 'CREATE TRIGGER',
  CreateEventTrigStmt: 'CREATE EVENT TRIGGER',
  CreateSeqStmt: 'CREATE SEQUENCE',
  CreatePLangStmt: 'CREATE LANGUAGE',
  CreateFdwStmt: 'CREATE FOREIGN DATA WRAPPER',
  CreateForeignServerStmt: 'CREATE SERVER',
  CreateForeignTableStmt: 'CREATE FOREIGN TABLE',
  CreateStatsStmt: 'CREATE STATISTICS',
  SecLabelStmt: 'SECURITY LABEL',
};

const TRANSACTION_DETAIL: Readonly<Record<string, string>> = {
  TRANS_STMT_BEGIN: 'BEGIN',
  TRANS_STMT_START: 'START TRANSACTION',
  TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK',
  TRANS_STMT_SAVEPOINT: 'SAVEPOINT',
  TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK TO SAVEPOINT',
  TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED',
  TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
};

/** The DefElem options of SET TRANSACTION / BEGIN / START TRANSACTION. */
function transactionOptions(list: unknown): { name: string; arg: unknown }[] {
  const out: { name: string; arg: unknown }[] = [];
  for (const o of arr(list)) {
    const d = unwrap(o);
    if (d && d[0] === 'DefElem') out.push({ name: str(d[1]['defname']) ?? '', arg: d[1]['arg'] });
  }
  return out;
}

/** `transaction_read_only` given as false (READ WRITE): the parser writes it as integer 0. */
function isReadWriteOption(o: { name: string; arg: unknown }): boolean {
  if (o.name !== 'transaction_read_only') return false;
  const c = unwrap(o.arg);
  if (!c || c[0] !== 'A_Const') return true; // not a constant: assume the worst
  const i = integerValue(c[1]['ival']);
  return i === undefined || i === 0;
}

/** A VariableSetStmt that changes only a harmless setting (kind `session`). */
function settingIsHarmless(body: Obj): boolean {
  const kind = body['kind'];
  if (kind === 'VAR_RESET_ALL') return true; // back to the session's start values; role and read-only state are not reset
  const name = str(body['name']) ?? '';
  if (kind === 'VAR_SET_MULTI') {
    if (name !== 'TRANSACTION' && name !== 'SESSION CHARACTERISTICS') return false; // e.g. TRANSACTION SNAPSHOT
    const opts = transactionOptions(body['args']);
    return opts.every((o) => ['transaction_isolation', 'transaction_read_only', 'transaction_deferrable'].includes(o.name)) && !opts.some(isReadWriteOption);
  }
  return isHarmlessSetting(name);
}

/**
 * Statements that can undo a read-only session (`default_transaction_read_only = on`, which
 * the broker sets when the policy grants no write): SET / RESET [LOCAL] of either read-only
 * setting (any value, DEFAULT, FROM CURRENT), SET [SESSION CHARACTERISTICS AS] TRANSACTION
 * READ WRITE, BEGIN / START TRANSACTION … READ WRITE, and two-phase commit (PostgreSQL runs
 * COMMIT PREPARED of another session's writes in a read-only one). set_config of those settings is
 * found by the classifier (it sees the call's arguments). RESET ALL is not one: it returns
 * to the startup value, which the broker set.
 */
export function undoesReadOnly(type: string, body: Obj): boolean {
  if (type === 'VariableSetStmt') {
    if (body['kind'] === 'VAR_SET_MULTI') return transactionOptions(body['args']).some(isReadWriteOption);
    const name = str(body['name']);
    return name !== undefined && isReadOnlySetting(name);
  }
  if (type === 'TransactionStmt') {
    const k = body['kind'];
    if (isTwoPhase(k)) return true;
    return (k === 'TRANS_STMT_BEGIN' || k === 'TRANS_STMT_START') && transactionOptions(body['options']).some(isReadWriteOption);
  }
  return false;
}

/** PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED (see SQL_KIND_ALIASES). */
function isTwoPhase(kind: unknown): boolean {
  return kind === 'TRANS_STMT_PREPARE' || kind === 'TRANS_STMT_COMMIT_PREPARED' || kind === 'TRANS_STMT_ROLLBACK_PREPARED';
}

/** `CreateFunctionStmt` → `CREATE FUNCTION`. */
function words(type: string): string {
  return type
    .replace(/Stmt$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toUpperCase();
}

/** `OBJECT_FOREIGN_TABLE` → `FOREIGN TABLE`. */
function objectWords(objtype: unknown): string {
  return (str(objtype) ?? '').replace(/^OBJECT_/, '').replace(/_/g, ' ');
}

export function statementKind(type: string, body: Obj): { kind: StatementKind; detail?: string } {
  switch (type) {
    case 'VariableSetStmt': {
      const reset = body['kind'] === 'VAR_RESET' || body['kind'] === 'VAR_RESET_ALL';
      const verb = reset ? 'RESET' : body['is_local'] === true ? 'SET LOCAL' : 'SET';
      const name = str(body['name']);
      const what = body['kind'] === 'VAR_RESET_ALL' ? 'ALL' : name === 'role' ? 'ROLE' : name === 'session_authorization' ? 'SESSION AUTHORIZATION' : (name ?? '');
      return { kind: settingIsHarmless(body) ? 'session' : reset ? 'reset' : 'set', detail: `${verb} ${what}`.trim() };
    }
    case 'LockStmt':
      // ACCESS SHARE (mode 1) is the lock every SELECT takes: pg_dump locks each table so.
      return body['mode'] === 1 ? { kind: 'select', detail: 'LOCK' } : { kind: 'lock', detail: 'LOCK' };
    case 'TransactionStmt':
      return { kind: isTwoPhase(body['kind']) ? 'other' : 'transaction', detail: TRANSACTION_DETAIL[str(body['kind']) ?? ''] ?? 'TRANSACTION' };
    case 'GrantStmt':
      return body['is_grant'] === true ? { kind: 'grant', detail: 'GRANT' } : { kind: 'revoke', detail: 'REVOKE' };
    case 'GrantRoleStmt':
      return body['is_grant'] === true ? { kind: 'grant', detail: 'GRANT ROLE' } : { kind: 'revoke', detail: 'REVOKE ROLE' };
    case 'VacuumStmt':
      return body['is_vacuumcmd'] === true ? { kind: 'vacuum', detail: 'VACUUM' } : { kind: 'analyze', detail: 'ANALYZE' };
    case 'ExplainStmt':
      return { kind: 'explain', detail: explainAnalyzes(body['options']) ? 'EXPLAIN ANALYZE' : 'EXPLAIN' };
    case 'CopyStmt': {
      const dir = body['is_from'] === true ? 'FROM' : 'TO';
      const where = body['is_program'] === true ? 'PROGRAM' : body['filename'] !== undefined ? 'FILE' : body['is_from'] === true ? 'STDIN' : 'STDOUT';
      return { kind: 'copy', detail: `COPY ${dir} ${where}` };
    }
    case 'SelectStmt':
      return isObj(body['intoClause']) ? { kind: 'select', detail: 'SELECT INTO' } : { kind: 'select' };
    case 'DropStmt':
      return { kind: 'drop', detail: `DROP ${objectWords(body['removeType'])}` };
    case 'CreateStmt':
      return { kind: 'create', detail: 'CREATE TABLE' };
    case 'CreateTableAsStmt':
      return { kind: 'create', detail: body['objtype'] === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS' };
    case 'AlterTableStmt':
      return { kind: 'alter', detail: `ALTER ${objectWords(body['objtype']) || 'TABLE'}` };
    case 'CommentStmt':
      return { kind: 'comment', detail: `COMMENT ON ${objectWords(body['objtype'])}` };
  }
  const direct = DIRECT_KIND[type];
  if (direct && DML_KIND[type] !== undefined) return { kind: direct };
  const detail = DETAIL[type] ?? words(type);
  if (direct) return { kind: direct, detail };
  if (type.startsWith('Create')) return { kind: 'create', detail };
  if (type.startsWith('Alter')) return { kind: 'alter', detail };
  if (type.startsWith('Drop')) return { kind: 'drop', detail };
  return { kind: 'other', detail };
}
