/**
 * The statement kinds the SQL classifier reports and rules name, the aliases a rule's `sql`
 * list may use, and how a parse-tree node maps to its kind. Free of the parser itself, so
 * config validation and the rule matcher can use it without loading WASM.
 */

export const STATEMENT_KINDS = [
  'select', 'insert', 'update', 'delete', 'merge', 'copy',
  'create', 'alter', 'drop', 'truncate', 'grant', 'revoke',
  'set', 'reset', 'do', 'call', 'explain', 'transaction',
  'listen', 'notify', 'unlisten', 'prepare', 'execute', 'deallocate',
  'lock', 'vacuum', 'analyze', 'show', 'discard', 'comment', 'refresh', 'other',
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/**
 * Names a rule may use for several kinds at once. `transaction` is also a kind itself
 * (BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION, …).
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
    if (a && a[0] === 'Integer') on = typeof a[1]['ival'] === 'number' && a[1]['ival'] !== 0;
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
      return { kind: reset ? 'reset' : 'set', detail: `${verb} ${what}`.trim() };
    }
    case 'TransactionStmt':
      return { kind: 'transaction', detail: TRANSACTION_DETAIL[str(body['kind']) ?? ''] ?? 'TRANSACTION' };
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
