/**
 * Function and operator lookups in pg_proc / pg_operator, for judging side effects
 * (policy/function-effects.ts). The caller supplies `run`: one simple-protocol query on a
 * catalog connection of its own, rows returned as text (null for SQL NULL).
 *
 * Names are looked up as the SQL classifier reports them (lower case, as written):
 * - `lower`: every function of that name in EVERY schema. The session's search_path is not
 *   known here and may differ from the catalog connection's, so all candidates count
 *   (conservative: an effectful look-alike anywhere makes the name effectful).
 * - `public.f`, `pg_catalog.nextval`: that schema; also a function whose own name contains
 *   the dot (a quoted `"a.b"`), and the last two parts of a database-qualified name.
 * - Comparison folds ASCII letters only, on both sides (foldIdentifier, and FOLD here in
 *   SQL): as PostgreSQL folds identifiers, whatever the database's locale (lower() would
 *   fold `É` in one locale and not another, and never the way JavaScript does).
 * - Operators (`=`, `public.===`) resolve to the function that implements them
 *   (pg_operator.oprcode) and those of their negator and commutator (the planner rewrites
 *   `NOT (a op b)` and commutes operands), in every schema unless qualified; a user
 *   operator also to the user support functions of every operator family it belongs to
 *   (`ORDER BY x USING op` sorts with its btree family's comparison function, a RANGE
 *   frame with an offset calls its `in_range`, a hash join its hash function, whatever
 *   class is the type's default). A built-in operator sorts with its built-in family
 *   (PostgreSQL takes the family with the lowest OID), whose user additions the type's
 *   default classes already bring (TypeFacts).
 * - Aggregates report the most volatile of their support functions, so a user aggregate
 *   with a volatile transition function is volatile here.
 *
 * Literals are sent as E'' strings with `\` and `'` doubled: safe whatever
 * standard_conforming_strings is. Results are cached per catalog for `ttlMs` (30 s by
 * default); `invalidate()` drops the cache (the proxy calls it after its session ran DDL).
 */
import type { FunctionInfo } from '../policy/function-effects.js';
import { foldIdentifier } from '../policy/sql-kinds.js';
import type { CatalogRows } from './masking-catalog.js';

/** A catalog query runner (masking-catalog.ts's `rows`). */
export type CatalogRun = CatalogRows;

export type { FunctionCatalog } from '../policy/sql-gate-types.js';
import type { FunctionCatalog, RelationFacts, RelationWriteFacts, TypeFacts, UserCast } from '../policy/sql-gate-types.js';

export interface FunctionCatalogOptions {
  /** How long a looked-up answer is reused. Default 30 000. */
  ttlMs?: number;
  /** For tests. */
  now?: () => number;
}

/** At most this many names per query; more are split into several. */
const BATCH = 200;

/** The first OID PostgreSQL gives a user object: below it, the built-in catalog. */
const FIRST_USER_OID = 16384;

/** The columns every query returns, in order: key, oid, schema, name, volatility, kind, nargs. */
const VOLATILITY = `CASE WHEN p.prokind = 'a' AND EXISTS (
    SELECT 1 FROM pg_catalog.pg_aggregate a JOIN pg_catalog.pg_proc s ON s.oid IN (
      a.aggtransfn::oid, a.aggfinalfn::oid, a.aggcombinefn::oid, a.aggserialfn::oid, a.aggdeserialfn::oid,
      a.aggmtransfn::oid, a.aggminvtransfn::oid, a.aggmfinalfn::oid)
    WHERE a.aggfnoid = p.oid AND s.provolatile = 'v') THEN 'v' ELSE p.provolatile::text END`;

/** Named, so no two columns share a name (a JSON row would lose one). */
const INFO_COLUMNS = `p.oid::text AS fn_oid, n.nspname::text AS fn_schema, p.proname::text AS fn_name, ${VOLATILITY} AS fn_volatility,
  p.prokind::text AS fn_kind, p.pronargs::text AS fn_nargs,
  (SELECT l.lanname::text FROM pg_catalog.pg_language l WHERE l.oid = p.prolang) AS fn_language, p.prosrc AS fn_source,
  EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e')::text AS fn_extension,
  pg_catalog.concat_ws(' ', p.prorettype::text, p.proargtypes::text, pg_catalog.array_to_string(p.proallargtypes, ' ')) AS fn_types,
  CASE WHEN p.oid >= ${FIRST_USER_OID} AND p.prolang = 12 THEN (SELECT max(b.provolatile::text) || ' ' || pg_catalog.string_agg(DISTINCT b.proname::text, ' ')
    FROM pg_catalog.pg_proc b WHERE b.oid < ${FIRST_USER_OID} AND b.prolang = 12 AND b.prosrc = p.prosrc)
    WHEN p.oid >= ${FIRST_USER_OID} AND p.prolang = 13 THEN (SELECT max(b.provolatile::text) || ' ' || pg_catalog.string_agg(DISTINCT b.proname::text, ' ')
    FROM pg_catalog.pg_proc b WHERE b.oid <> p.oid AND b.prolang = 13 AND b.probin = p.probin AND b.prosrc = p.prosrc) END AS fn_wraps,
  CASE WHEN p.oid >= ${FIRST_USER_OID} AND p.proargdefaults IS NOT NULL THEN pg_catalog.pg_get_expr(p.proargdefaults, 0) END AS fn_defaults,
  (SELECT pg_catalog.string_agg(pg_catalog.split_part(c, '=', 1), ' ') FROM pg_catalog.unnest(p.proconfig) AS c) AS fn_config`;

/** `expr` (a name) folded as foldIdentifier folds: ASCII letters only, whatever the database's locale. */
function fold(expr: string): string {
  return `pg_catalog.translate(${expr}::pg_catalog.text, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')`;
}

/** An E'' literal: backslashes and quotes doubled, NUL (which no name contains) dropped. */
export function sqlLiteral(s: string): string {
  return `E'${s.replace(/\0/g, '').replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function textArray(values: readonly string[]): string {
  return `ARRAY[${values.map(sqlLiteral).join(', ')}]::text[]`;
}

function toInfo(row: readonly (string | null)[], offset: number): FunctionInfo | undefined {
  const [oid, schema, name, vol, kind, nargs, language, source, extension, types, wrapped, defaults, config] = row.slice(offset, offset + 13);
  if (oid == null || schema == null || name == null || vol == null || kind == null || nargs == null) return undefined;
  if (vol !== 'i' && vol !== 's' && vol !== 'v') return undefined;
  if (kind !== 'f' && kind !== 'a' && kind !== 'w' && kind !== 'p') return undefined;
  const info: FunctionInfo = { oid: Number(oid), schema, name, volatility: vol, kind, nargs: Number(nargs) };
  if (language != null) info.language = language;
  if (source != null) info.source = source;
  info.extension = extension === 'true';
  // "<most volatile of the built-ins it runs> <their names…>"
  const [wrapVol, ...wrapNames] = (wrapped ?? '').split(' ');
  if (wrapVol === 'i' || wrapVol === 's' || wrapVol === 'v') {
    info.wraps = wrapVol;
    info.wrapsNames = wrapNames.filter((n) => n !== '');
  }
  if (defaults != null) info.defaults = defaults;
  if (config != null) info.config = config.split(' ').filter((n) => n !== '').map((n) => n.toLowerCase());
  if (types != null) info.types = types.split(' ').filter((t) => t !== '').map(Number);
  return info;
}

function functionsQuery(names: readonly string[]): string {
  return `SELECT k.key, ${INFO_COLUMNS}
FROM unnest(${textArray(names)}) AS k(key)
JOIN pg_catalog.pg_proc p ON ${fold('p.proname')} IN (k.key, regexp_replace(k.key, '^.*[.]', ''))
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE ${fold('p.proname')} = k.key
  OR k.key = ${fold('n.nspname')} || '.' || ${fold('p.proname')}
  OR right(k.key, length(n.nspname) + length(p.proname) + 2) = '.' || ${fold('n.nspname')} || '.' || ${fold('p.proname')}
ORDER BY 1, 2`;
}

function operatorsQuery(ops: readonly string[]): string {
  return `SELECT k.key, ${INFO_COLUMNS}, (opn.nspname = 'pg_catalog' AND fx.fn = o.oprcode)::text AS op_pinned
FROM unnest(${textArray(ops)}) AS k(key)
JOIN pg_catalog.pg_operator o ON o.oprname = regexp_replace(k.key, '^.*[.]', '')
JOIN pg_catalog.pg_namespace opn ON opn.oid = o.oprnamespace
CROSS JOIN LATERAL (
  SELECT o.oprcode::pg_catalog.oid
  UNION SELECT x.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator x WHERE x.oid IN (o.oprnegate, o.oprcom)
  UNION SELECT ap.amproc::pg_catalog.oid FROM pg_catalog.pg_amop ao JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = ao.amopfamily
    WHERE o.oid >= ${FIRST_USER_OID} AND ao.amopopr = o.oid AND ap.amproc >= ${FIRST_USER_OID}
) AS fx(fn)
JOIN pg_catalog.pg_proc p ON p.oid = fx.fn
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE position('.' in k.key) = 0 OR k.key = ${fold('opn.nspname')} || '.' || o.oprname
ORDER BY 1, 2`;
}

function oidArray(values: readonly number[]): string {
  return `ARRAY[${values.map((v) => String(Math.trunc(v))).join(', ')}]::pg_catalog.oid[]`;
}


function typesQuery(names: readonly string[]): string {
  return `SELECT k.key, t.oid::text
FROM unnest(${textArray(names)}) AS k(key)
JOIN pg_catalog.pg_type t ON ${fold('t.typname')} = regexp_replace(k.key, '^.*[.]', '')
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE position('.' in k.key) = 0 OR right(k.key, length(n.nspname) + length(t.typname) + 2) = '.' || ${fold('n.nspname')} || '.' || ${fold('t.typname')}
  OR k.key = ${fold('n.nspname')} || '.' || ${fold('t.typname')}`;
}

/**
 * The types a value of each root type is built from, recursively: array elements, a
 * domain's base and the types its CHECK names, a composite's (or table's) columns, a
 * range's subtype, a multirange's range.
 */
function closureQuery(roots: readonly number[]): string {
  return `WITH RECURSIVE c(root, t) AS (
  SELECT r, r FROM unnest(${oidArray(roots)}) AS r
  UNION
  SELECT c.root, x.t FROM c JOIN pg_catalog.pg_type ty ON ty.oid = c.t
  CROSS JOIN LATERAL (
    SELECT ty.typelem WHERE ty.typelem <> 0
    UNION ALL SELECT ty.typbasetype WHERE ty.typbasetype <> 0
    UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE ty.typrelid <> 0 AND a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT rg.rngsubtype FROM pg_catalog.pg_range rg WHERE rg.rngtypid = ty.oid
    UNION ALL SELECT rg.rngtypid FROM pg_catalog.pg_range rg WHERE rg.rngmultitypid = ty.oid
    UNION ALL SELECT d.refobjid FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_depend d
      ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = k.oid AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass
      WHERE k.contypid = ty.oid
  ) AS x(t)
) SELECT root::text, t::text FROM c`;
}

/** The user functions each type runs implicitly (see TypeFacts), then its user casts. */
function typeFactsQuery(types: readonly number[]): string {
  const opclass = (cond: string): string => `SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_opclass oc
        JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr WHERE ${cond}
      UNION ALL SELECT ap.amproc::pg_catalog.oid FROM pg_catalog.pg_opclass oc
        JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily WHERE ${cond}`;
  return `WITH k(t) AS (SELECT unnest(${oidArray(types)})),
f(t, fn) AS (
  SELECT k.t, x.fn FROM k JOIN pg_catalog.pg_type ty ON ty.oid = k.t
  CROSS JOIN LATERAL unnest(ARRAY[ty.typinput::pg_catalog.oid, ty.typoutput::pg_catalog.oid, ty.typreceive::pg_catalog.oid, ty.typsend::pg_catalog.oid,
    ty.typmodin::pg_catalog.oid, ty.typmodout::pg_catalog.oid, ty.typanalyze::pg_catalog.oid, ty.typsubscript::pg_catalog.oid]) AS x(fn)
  UNION ALL SELECT k.t, x.fn FROM k JOIN pg_catalog.pg_constraint c ON c.contypid = k.t
  CROSS JOIN LATERAL (
    SELECT d.refobjid FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = c.oid
      AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION ALL SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_operator o ON o.oid = d.refobjid
      WHERE d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
  ) AS x(fn)
  UNION ALL SELECT k.t, x.fn FROM k CROSS JOIN LATERAL (
    ${opclass("oc.opcintype = k.t AND oc.opcdefault AND oc.opcmethod IN (SELECT am.oid FROM pg_catalog.pg_am am WHERE am.amname IN ('btree', 'hash'))")}
  ) AS x(fn)
  UNION ALL SELECT k.t, x.fn FROM k JOIN pg_catalog.pg_range r ON r.rngtypid = k.t CROSS JOIN LATERAL (
    SELECT r.rngcanonical::pg_catalog.oid UNION ALL SELECT r.rngsubdiff::pg_catalog.oid
    UNION ALL ${opclass('oc.oid = r.rngsubopc')}
  ) AS x(fn)
)
SELECT f.t::text AS t, NULL AS source, NULL AS target, NULL AS context, ${INFO_COLUMNS}
FROM (SELECT DISTINCT t, fn FROM f WHERE fn >= ${FIRST_USER_OID}) f JOIN pg_catalog.pg_proc p ON p.oid = f.fn JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
UNION ALL
SELECT k.t::text, c.castsource::text, c.casttarget::text, c.castcontext::text, ${INFO_COLUMNS}
FROM k JOIN pg_catalog.pg_cast c ON (c.castsource = k.t OR c.casttarget = k.t) AND c.castfunc >= ${FIRST_USER_OID}
JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace`;
}

/** Row type, columns and inheritance descendants of each relation `schema.name`. */
function relationFactsQuery(rels: readonly string[]): string {
  return `WITH RECURSIVE r(key, oid, reltype) AS (
  SELECT k.key, c.oid, c.reltype FROM unnest(${textArray(rels)}) AS k(key)
  JOIN pg_catalog.pg_class c ON true JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname || '.' || c.relname = k.key
), d(key, oid) AS (
  SELECT r.key, i.inhrelid FROM r JOIN pg_catalog.pg_inherits i ON i.inhparent = r.oid
  UNION SELECT d.key, i.inhrelid FROM d JOIN pg_catalog.pg_inherits i ON i.inhparent = d.oid
)
SELECT r.key, 'row', r.reltype::text FROM r
UNION ALL SELECT r.key, 'col', a.attnum::text || ' ' || a.atttypid::text || ' ' || a.attname::text FROM r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT d.key, 'child', n.nspname::text || '.' || c.relname::text FROM d JOIN pg_catalog.pg_class c ON c.oid = d.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`;
}

/**
 * The end of a query whose CTE `dep(key, refclassid, refobjid)` lists what each key's objects
 * depend on: `f(key, fn)` — `also`'s rows, the functions depended on, and those of the
 * operators depended on (with their negators and commutators) — then each key's user
 * functions (OID ≥ 16384) with INFO_COLUMNS.
 */
function dependedFunctions(also = ''): string {
  return `f(key, fn) AS (
  ${also}SELECT key, refobjid FROM dep WHERE refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
  UNION ALL SELECT dep.key, x.fn FROM dep JOIN pg_catalog.pg_operator o ON o.oid = dep.refobjid
    CROSS JOIN LATERAL (SELECT o.oprcode::pg_catalog.oid UNION ALL SELECT y.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator y WHERE y.oid IN (o.oprnegate, o.oprcom)) AS x(fn)
    WHERE dep.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
)
SELECT f.key, ${INFO_COLUMNS}
FROM (SELECT DISTINCT key, fn FROM f WHERE fn >= ${FIRST_USER_OID}) f JOIN pg_catalog.pg_proc p ON p.oid = f.fn JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace`;
}

/** The CTE `r(key, oid)`: each relation `schema.name` in `rels` and its pg_class OID. */
function relationKeys(rels: readonly string[]): string {
  return `r(key, oid) AS (
  SELECT k.key, c.oid FROM unnest(${textArray(rels)}) AS k(key)
  JOIN pg_catalog.pg_class c ON true JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname || '.' || c.relname = k.key
)`;
}

/**
 * The user functions (OID ≥ 16384) planning or reading each relation `schema.name` may run
 * without a statement naming them: the expressions and predicates of its indexes, its CHECK
 * constraints (constraint exclusion), its partition key and its extended statistics (all
 * const-folded while planning), the operator classes of its indexes and partition key
 * (index scans and pruning call their support functions), the negators and commutators of
 * the operators those name, and a foreign table's wrapper handler (the wrapper runs
 * whatever it runs: another session, a program).
 */
function relationCodeQuery(rels: readonly string[]): string {
  const opclassCode = (opclass: string): string => `SELECT o.oprcode::pg_catalog.oid FROM pg_catalog.pg_opclass oc
        JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr WHERE oc.oid = ${opclass}
      UNION ALL SELECT ap.amproc::pg_catalog.oid FROM pg_catalog.pg_opclass oc
        JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily WHERE oc.oid = ${opclass}`;
  return `WITH ${relationKeys(rels)}, obj(key, classid, objid) AS (
  SELECT r.key, 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, r.oid FROM r
  UNION ALL SELECT r.key, 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, i.indexrelid FROM r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
  UNION ALL SELECT r.key, 'pg_catalog.pg_constraint'::pg_catalog.regclass::pg_catalog.oid, k.oid FROM r JOIN pg_catalog.pg_constraint k ON k.conrelid = r.oid AND k.contype = 'c'
  UNION ALL SELECT r.key, 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass::pg_catalog.oid, s.oid FROM r JOIN pg_catalog.pg_statistic_ext s ON s.stxrelid = r.oid
), dep(key, refclassid, refobjid) AS (
  SELECT obj.key, d.refclassid, d.refobjid FROM obj JOIN pg_catalog.pg_depend d ON d.classid = obj.classid AND d.objid = obj.objid
), opc(key, opclass) AS (
  SELECT key, refobjid FROM dep WHERE refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass
  UNION SELECT r.key, x.oc FROM r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid CROSS JOIN LATERAL unnest(i.indclass::pg_catalog.oid[]) AS x(oc)
  UNION SELECT r.key, x.oc FROM r JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = r.oid CROSS JOIN LATERAL unnest(pt.partclass::pg_catalog.oid[]) AS x(oc)
), f(key, fn) AS (
  SELECT key, refobjid FROM dep WHERE refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
  UNION ALL SELECT dep.key, x.fn FROM dep JOIN pg_catalog.pg_operator o ON o.oid = dep.refobjid
    CROSS JOIN LATERAL (SELECT o.oprcode::pg_catalog.oid UNION ALL SELECT y.oprcode::pg_catalog.oid FROM pg_catalog.pg_operator y WHERE y.oid IN (o.oprnegate, o.oprcom)) AS x(fn)
    WHERE dep.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
  UNION ALL SELECT opc.key, x.fn FROM opc CROSS JOIN LATERAL (${opclassCode('opc.opclass')}) AS x(fn)
  UNION ALL SELECT r.key, w.fdwhandler FROM r JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = r.oid
    JOIN pg_catalog.pg_foreign_server sv ON sv.oid = ft.ftserver JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = sv.srvfdw
)
SELECT f.key, ${INFO_COLUMNS}
FROM (SELECT DISTINCT key, fn FROM f WHERE fn >= ${FIRST_USER_OID}) f JOIN pg_catalog.pg_proc p ON p.oid = f.fn JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
UNION ALL
SELECT r.key, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM r JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = r.oid
  JOIN pg_catalog.pg_foreign_server sv ON sv.oid = ft.ftserver JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = sv.srvfdw
  WHERE w.fdwhandler < ${FIRST_USER_OID}`;
}

/**
 * The user functions (OID ≥ 16384) that planning a write to each relation `schema.name` may
 * run (RelationFacts.writeCode): what its column defaults and generated columns, the
 * defaults of its columns' domains (through domains over domains) and the actions of its
 * INSERT/UPDATE/DELETE rules call, directly or as an operator's function (with its negator
 * and commutator).
 */
export function relationWriteCodeQuery(rels: readonly string[]): string {
  return `WITH RECURSIVE ${relationKeys(rels)}, dom(key, t) AS (
  SELECT r.key, a.atttypid FROM r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION SELECT dom.key, ty.typbasetype FROM dom JOIN pg_catalog.pg_type ty ON ty.oid = dom.t WHERE ty.typbasetype <> 0
), obj(key, classid, objid) AS (
  SELECT r.key, 'pg_catalog.pg_attrdef'::pg_catalog.regclass::pg_catalog.oid, ad.oid FROM r JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = r.oid
  UNION ALL SELECT r.key, 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid, rw.oid FROM r JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = r.oid AND rw.ev_type <> '1'
  UNION ALL SELECT dom.key, 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, dom.t FROM dom JOIN pg_catalog.pg_type ty ON ty.oid = dom.t AND ty.typtype = 'd'
), dep(key, refclassid, refobjid) AS (
  SELECT obj.key, d.refclassid, d.refobjid FROM obj JOIN pg_catalog.pg_depend d ON d.classid = obj.classid AND d.objid = obj.objid
), ${dependedFunctions()}`;
}

/**
 * The other relations each relation's INSERT/UPDATE/DELETE rules' actions name (RelationFacts.ruleRelations):
 * planning a write to it plans those actions, and so writes to them.
 */
export function ruleRelationsQuery(rels: readonly string[]): string {
  return `SELECT DISTINCT k.key, rn.nspname::text || '.' || rc.relname::text
FROM unnest(${textArray(rels)}) AS k(key)
JOIN pg_catalog.pg_class c ON true JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = c.oid AND rw.ev_type <> '1'
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid
  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> c.oid
JOIN pg_catalog.pg_class rc ON rc.oid = d.refobjid JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
WHERE n.nspname || '.' || c.relname = k.key`;
}

/**
 * The user functions (OID ≥ 16384) that EXECUTING a write to each relation `schema.name`
 * runs besides what planning it runs (RelationFacts.runCode): every trigger's function and
 * what its WHEN condition calls (directly or as an operator's function, with its negator
 * and commutator), whatever the trigger's event, level, timing or enabled state
 * (session_replication_role decides which fire; ENABLE ALWAYS/REPLICA and a deferred
 * constraint trigger all count). The volatile column and domain defaults the write
 * executes come from relationWriteCodeQuery.
 */
export function relationRunCodeQuery(rels: readonly string[]): string {
  return `WITH ${relationKeys(rels)}, tg(key, oid, fn) AS (
  SELECT r.key, t.oid, t.tgfoid FROM r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid
), dep(key, refclassid, refobjid) AS (
  SELECT tg.key, d.refclassid, d.refobjid FROM tg JOIN pg_catalog.pg_depend d
    ON d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objid = tg.oid
), ${dependedFunctions('SELECT key, fn FROM tg UNION ALL ')}`;
}

/**
 * Other relations a write to each relation `schema.name` writes, as (key, how, relation):
 * `cascade` — a foreign key referencing it with an ON DELETE/UPDATE action that writes
 * (CASCADE, SET NULL, SET DEFAULT); `refers` — any foreign key referencing it (TRUNCATE …
 * CASCADE truncates those); `base` — every relation a view's definition names (an
 * auto-updatable view's write is a write to its base relation).
 */
export function relationAlsoWritesQuery(rels: readonly string[]): string {
  return `WITH ${relationKeys(rels)}, x(key, how, oid) AS (
  SELECT r.key, CASE WHEN k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd') THEN 'cascade' ELSE 'refers' END, k.conrelid
    FROM r JOIN pg_catalog.pg_constraint k ON k.contype = 'f' AND k.confrelid = r.oid
  UNION ALL SELECT r.key, 'base', d.refobjid FROM r JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = r.oid AND rw.ev_type = '1'
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid
      AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> r.oid
)
SELECT DISTINCT x.key, x.how, rn.nspname::text || '.' || rc.relname::text
FROM x JOIN pg_catalog.pg_class rc ON rc.oid = x.oid JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace`;
}

/**
 * The function of every event trigger a DDL statement may fire: any event but `login`
 * (PostgreSQL 17, fired at connection, not by a statement), whatever its enabled state
 * (origin, replica, always or disabled) and its WHEN TAG list.
 */
export function eventTriggerFunctionsQuery(): string {
  return `SELECT NULL, ${INFO_COLUMNS}
FROM pg_catalog.pg_event_trigger e JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE e.evtevent::text <> 'login'
ORDER BY 2`;
}

interface Cached<T> {
  at: number;
  value: T;
}

export function createFunctionCatalog(run: CatalogRun, opts: FunctionCatalogOptions = {}): FunctionCatalog {
  const ttl = opts.ttlMs ?? 30_000;
  const now = opts.now ?? Date.now;
  let names = new Map<string, Cached<FunctionInfo[]>>();
  let ops = new Map<string, Cached<FunctionInfo[]>>();
  let oids = new Map<number, Cached<FunctionInfo | undefined>>();
  let views = new Map<string, Cached<string[]>>();
  let schemas = new Map<string, Cached<string[]>>();
  let relFacts = new Map<string, Cached<RelationFacts | undefined>>();
  let writeFacts = new Map<string, Cached<RelationWriteFacts | undefined>>();
  let statRels = new Map<string, Cached<string[]>>();
  let eventFns = new Map<string, Cached<FunctionInfo[]>>();
  let typeNames = new Map<string, Cached<number[]>>();
  let closures = new Map<string, Cached<number[]>>();
  let facts = new Map<string, Cached<TypeFacts>>();

  function fresh<K, T>(cache: Map<K, Cached<T>>, key: K): Cached<T> | undefined {
    const hit = cache.get(key);
    if (hit && now() - hit.at < ttl) return hit;
    if (hit) cache.delete(key);
    return undefined;
  }

  /**
   * Each wanted key's answer: from `cache` while fresh, else fetched BATCH keys at a time
   * (`fetch` answers the keys of its batch; a key it leaves out gets `none()`) and cached.
   */
  async function cached<T>(cache: Map<string, Cached<T>>, wanted: readonly string[], fetch: (batch: string[]) => Promise<ReadonlyMap<string, T>>, none: () => T): Promise<Map<string, T>> {
    const out = new Map<string, T>();
    const missing: string[] = [];
    for (const key of new Set(wanted)) {
      const hit = fresh(cache, key);
      if (hit) out.set(key, hit.value);
      else missing.push(key);
    }
    for (let i = 0; i < missing.length; i += BATCH) {
      const batch = missing.slice(i, i + BATCH);
      const answers = await fetch(batch);
      const at = now();
      for (const key of batch) {
        const value = answers.get(key) ?? none();
        cache.set(key, { at, value });
        out.set(key, value);
      }
    }
    return out;
  }

  function lookUp(cache: Map<string, Cached<FunctionInfo[]>>, wanted: readonly string[], query: (keys: readonly string[]) => string): Promise<Map<string, FunctionInfo[]>> {
    return cached(
      cache,
      wanted,
      async (batch) => {
        // Keys go to the server folded; answers are filed back under the caller's spelling.
        const byKey = new Map<string, FunctionInfo[]>();
        for (const k of batch) byKey.set(foldIdentifier(k), []);
        const rows = await run(query([...byKey.keys()]));
        for (const row of rows) {
          const list = row[0] == null ? undefined : byKey.get(row[0]);
          const info = toInfo(row, 1);
          if (!list || !info) continue;
          // operatorsQuery's last column: the function of an operator in pg_catalog (FunctionInfo.pinnedOperator).
          const pinned = row[14] === 'true';
          const known = list.find((x) => x.oid === info.oid);
          if (known) {
            if (pinned) known.pinnedOperator = true;
            continue;
          }
          if (pinned) info.pinnedOperator = true;
          list.push(info);
        }
        return new Map(batch.map((k) => [k, byKey.get(foldIdentifier(k)) ?? []]));
      },
      () => [],
    );
  }

  return {
    byNames: (wanted) => lookUp(names, wanted, functionsQuery),
    knownByName: (name) => fresh(names, name)?.value,
    knownByOperator: (op) => fresh(ops, op)?.value,
    byOperators: (wanted) => lookUp(ops, wanted, operatorsQuery),
    async byOid(oid: number): Promise<FunctionInfo | undefined> {
      if (!Number.isSafeInteger(oid) || oid < 0 || oid > 0xffffffff) return undefined;
      const hit = fresh(oids, oid);
      if (hit) return hit.value;
      const rows = await run(`SELECT NULL, ${INFO_COLUMNS} FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = ${oid}::oid`);
      const info = rows[0] ? toInfo(rows[0], 1) : undefined;
      oids.set(oid, { at: now(), value: info });
      return info;
    },
    viewDefinitions: (relations) =>
      cached(
        views,
        relations,
        async (batch) => {
          const byName = new Map<string, string[]>();
          for (const r of batch) byName.set(r.slice(r.indexOf('.') + 1), []);
          const names = textArray([...byName.keys()]);
          // What runs when the relation is read: a view's definition, a row-level security
          // policy's expressions (as a SELECT of them).
          const rows = await run(
            'SELECT c.relname::text, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c ' +
              `WHERE c.relkind IN ('v', 'm') AND c.relname = ANY(${names}) ` +
              "UNION ALL SELECT c.relname::text, 'SELECT ' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true') || ', ' || " +
              "coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), 'true') " +
              'FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid ' +
              `WHERE c.relrowsecurity AND c.relname = ANY(${names})`,
          );
          for (const [name, def] of rows) if (name != null && def != null) byName.get(name)?.push(def);
          return new Map(batch.map((r) => [r, byName.get(r.slice(r.indexOf('.') + 1)) ?? []]));
        },
        () => [],
      ),
    relationSchemas: (relations) =>
      cached(
        schemas,
        relations,
        async (batch) => {
          const found = new Map<string, string[]>(batch.map((r) => [r, []]));
          // Temporary schemas are other sessions' (this one's temp relations are reported as
          // pg_temp by the classifier); pg_toast holds no relation a statement names.
          const rows = await run(
            'SELECT c.relname::text, n.nspname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
              `WHERE c.relname = ANY(${textArray(batch)}) AND n.nspname <> 'pg_toast' AND n.nspname !~ '^pg_(toast_)?temp_' ORDER BY 1, 2`,
          );
          for (const [name, schema] of rows) if (name != null && schema != null) found.get(name)?.push(schema);
          return found;
        },
        () => [],
      ),
    relationFacts: (relations) =>
      cached(
        relFacts,
        relations,
        async (batch) => {
          const found = new Map<string, RelationFacts | undefined>();
          const columns = new Map<string, [number, string, number][]>();
          for (const [key, what, value] of await run(relationFactsQuery(batch))) {
            if (key == null || value == null) continue;
            let f = found.get(key);
            if (!f) found.set(key, (f = { rowType: 0, columns: new Map(), descendants: [], code: [] }));
            if (what === 'row') f.rowType = Number(value);
            else if (what === 'child') f.descendants.push(value);
            else if (what === 'col') {
              const [num, type] = value.split(' ', 2);
              const list = columns.get(key) ?? [];
              list.push([Number(num), value.slice(`${num} ${type} `.length), Number(type)]);
              columns.set(key, list);
            }
          }
          for (const row of await run(relationCodeQuery(batch))) {
            const f = row[0] == null ? undefined : found.get(row[0]);
            if (!f) continue;
            const info = toInfo(row, 1);
            // A built-in wrapper handler (none ships with PostgreSQL) is still a foreign read.
            if (!info) f.foreign = true;
            else if (!f.code.some((x) => x.oid === info.oid)) f.code.push(info);
          }
          // In column order: an alias's column list renames them by position.
          for (const [key, list] of columns) {
            const f = found.get(key);
            if (f) for (const [, name, type] of list.sort((a, b) => a[0] - b[0])) f.columns.set(name, type);
          }
          return found;
        },
        () => undefined,
      ),
    relationWriteFacts: (relations) =>
      cached(
        writeFacts,
        relations,
        async (batch) => {
          // Empty when writing it runs nothing more (or it does not exist: relationFacts says which).
          const found = new Map<string, RelationWriteFacts>(batch.map((key) => [key, {}]));
          for (const row of await run(relationWriteCodeQuery(batch))) {
            const f = row[0] == null ? undefined : found.get(row[0]);
            const info = toInfo(row, 1);
            if (!f || !info) continue;
            // Planning runs no volatile function but a SQL one (it inlines it, then folds its
            // body); executing the write runs the rest.
            const list = info.volatility === 'v' && info.language !== 'sql' ? (f.runCode ??= []) : (f.writeCode ??= []);
            if (!list.some((x) => x.oid === info.oid)) list.push(info);
          }
          for (const row of await run(relationRunCodeQuery(batch))) {
            const f = row[0] == null ? undefined : found.get(row[0]);
            const info = toInfo(row, 1);
            if (!f || !info) continue;
            const list = (f.runCode ??= []);
            if (!list.some((x) => x.oid === info.oid)) list.push(info);
          }
          for (const [key, how, rel] of await run(relationAlsoWritesQuery(batch))) {
            const f = key == null ? undefined : found.get(key);
            if (!f || rel == null) continue;
            if (how === 'refers') (f.referencedBy ??= []).push(rel);
            else if (how === 'cascade' || how === 'base') (f.alsoWrites ??= []).push(rel);
          }
          for (const [key, rel] of await run(ruleRelationsQuery(batch))) {
            const f = key == null ? undefined : found.get(key);
            if (f && rel != null) (f.ruleRelations ??= []).push(rel);
          }
          return found;
        },
        () => undefined,
      ),
    async eventTriggerFunctions(): Promise<FunctionInfo[]> {
      const got = await cached(
        eventFns,
        ['*'],
        async () => {
          const list: FunctionInfo[] = [];
          for (const row of await run(eventTriggerFunctionsQuery())) {
            const info = toInfo(row, 1);
            // A row that does not read as a function is still code the trigger runs: unknown means no.
            if (!info) throw new Error('an event trigger function the catalog could not describe');
            if (!list.some((x) => x.oid === info.oid)) list.push(info);
          }
          return new Map([['*', list]]);
        },
        () => [],
      );
      return got.get('*') ?? [];
    },
    async statisticsRelations(): Promise<string[]> {
      const got = await cached(
        statRels,
        ['*'],
        async () => {
          const rows = await run(
            'SELECT DISTINCT n.nspname::text || \'.\' || c.relname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
              'WHERE c.oid IN (SELECT starelid FROM pg_catalog.pg_statistic UNION SELECT stxrelid FROM pg_catalog.pg_statistic_ext) ORDER BY 1',
          );
          return new Map([['*', rows.flatMap(([r]) => (r == null ? [] : [r]))]]);
        },
        () => [],
      );
      return got.get('*') ?? [];
    },
    async typesByName(wanted) {
      const got = await cached(
        typeNames,
        wanted.map(foldIdentifier),
        async (batch) => {
          const found = new Map<string, number[]>(batch.map((k) => [k, []]));
          for (const [key, oid] of await run(typesQuery(batch))) if (key != null && oid != null) found.get(key)?.push(Number(oid));
          return found;
        },
        () => [],
      );
      return new Map(wanted.map((n) => [n, got.get(foldIdentifier(n)) ?? []]));
    },
    async typeClosure(types) {
      const got = await cached(
        closures,
        types.map(String),
        async (batch) => {
          const found = new Map<string, number[]>(batch.map((k) => [k, []]));
          for (const [root, t] of await run(closureQuery(batch.map(Number)))) if (root != null && t != null) found.get(root)?.push(Number(t));
          return found;
        },
        () => [],
      );
      return new Map(types.map((t) => [t, got.get(String(t)) ?? []]));
    },
    async typeFacts(types) {
      const got = await cached(
        facts,
        types.map(String),
        async (batch) => {
          const found = new Map<string, TypeFacts>(batch.map((k) => [k, { functions: [], casts: [] }]));
          for (const row of await run(typeFactsQuery(batch.map(Number)))) {
            const [t, source, target, context] = row;
            const f = t == null ? undefined : found.get(t);
            const info = toInfo(row, 4);
            if (!f || !info) continue;
            if (source == null || target == null) {
              if (!f.functions.some((x) => x.oid === info.oid)) f.functions.push(info);
            } else if (context === 'e' || context === 'a' || context === 'i') {
              const cast: UserCast = { source: Number(source), target: Number(target), context, fn: info };
              f.casts.push(cast);
            }
          }
          return found;
        },
        () => ({ functions: [], casts: [] }),
      );
      return new Map(types.map((t) => [t, got.get(String(t)) ?? { functions: [], casts: [] }]));
    },
    invalidate(): void {
      relFacts = new Map();
      writeFacts = new Map();
      statRels = new Map();
      eventFns = new Map();
      typeNames = new Map();
      closures = new Map();
      facts = new Map();
      names = new Map();
      ops = new Map();
      oids = new Map();
      views = new Map();
      schemas = new Map();
    },
  };
}
