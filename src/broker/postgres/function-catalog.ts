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
 * - Comparison is case-insensitive (the classifier lower-cases quoted names too).
 * - Operators (`=`, `public.===`) resolve to the function that implements them
 *   (pg_operator.oprcode), in every schema unless qualified.
 * - Aggregates report the most volatile of their support functions, so a user aggregate
 *   with a volatile transition function is volatile here.
 *
 * Literals are sent as E'' strings with `\` and `'` doubled: safe whatever
 * standard_conforming_strings is. Results are cached per catalog for `ttlMs` (30 s by
 * default); `invalidate()` drops the cache (the proxy calls it after its session ran DDL).
 */
import type { FunctionInfo } from '../policy/function-effects.js';
import type { CatalogRows } from './masking-catalog.js';

/** A catalog query runner (masking-catalog.ts's `rows`). */
export type CatalogRun = CatalogRows;

export type { FunctionCatalog } from '../policy/sql-gate-types.js';
import type { FunctionCatalog } from '../policy/sql-gate-types.js';

export interface FunctionCatalogOptions {
  /** How long a looked-up answer is reused. Default 30 000. */
  ttlMs?: number;
  /** For tests. */
  now?: () => number;
}

/** At most this many names per query; more are split into several. */
const BATCH = 200;

/** The columns every query returns, in order: key, oid, schema, name, volatility, kind, nargs. */
const VOLATILITY = `CASE WHEN p.prokind = 'a' AND EXISTS (
    SELECT 1 FROM pg_catalog.pg_aggregate a JOIN pg_catalog.pg_proc s ON s.oid IN (
      a.aggtransfn::oid, a.aggfinalfn::oid, a.aggcombinefn::oid, a.aggserialfn::oid, a.aggdeserialfn::oid,
      a.aggmtransfn::oid, a.aggminvtransfn::oid, a.aggmfinalfn::oid)
    WHERE a.aggfnoid = p.oid AND s.provolatile = 'v') THEN 'v' ELSE p.provolatile::text END`;

const INFO_COLUMNS = `p.oid::text, n.nspname::text, p.proname::text, ${VOLATILITY}, p.prokind::text, p.pronargs::text,
  (SELECT l.lanname::text FROM pg_catalog.pg_language l WHERE l.oid = p.prolang), p.prosrc,
  EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e')::text`;

/** An E'' literal: backslashes and quotes doubled, NUL (which no name contains) dropped. */
export function sqlLiteral(s: string): string {
  return `E'${s.replace(/\0/g, '').replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function textArray(values: readonly string[]): string {
  return `ARRAY[${values.map(sqlLiteral).join(', ')}]::text[]`;
}

function toInfo(row: readonly (string | null)[], offset: number): FunctionInfo | undefined {
  const [oid, schema, name, vol, kind, nargs, language, source, extension] = row.slice(offset, offset + 9);
  if (oid == null || schema == null || name == null || vol == null || kind == null || nargs == null) return undefined;
  if (vol !== 'i' && vol !== 's' && vol !== 'v') return undefined;
  if (kind !== 'f' && kind !== 'a' && kind !== 'w' && kind !== 'p') return undefined;
  const info: FunctionInfo = { oid: Number(oid), schema, name, volatility: vol, kind, nargs: Number(nargs) };
  if (language != null) info.language = language;
  if (source != null) info.source = source;
  info.extension = extension === 'true';
  return info;
}

function functionsQuery(names: readonly string[]): string {
  return `SELECT k.key, ${INFO_COLUMNS}
FROM unnest(${textArray(names)}) AS k(key)
JOIN pg_catalog.pg_proc p ON lower(p.proname) IN (k.key, regexp_replace(k.key, '^.*[.]', ''))
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE lower(p.proname) = k.key
  OR k.key = lower(n.nspname) || '.' || lower(p.proname)
  OR right(k.key, length(n.nspname) + length(p.proname) + 2) = '.' || lower(n.nspname) || '.' || lower(p.proname)
ORDER BY 1, 2`;
}

function operatorsQuery(ops: readonly string[]): string {
  return `SELECT k.key, ${INFO_COLUMNS}
FROM unnest(${textArray(ops)}) AS k(key)
JOIN pg_catalog.pg_operator o ON o.oprname = regexp_replace(k.key, '^.*[.]', '')
JOIN pg_catalog.pg_namespace opn ON opn.oid = o.oprnamespace
JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE position('.' in k.key) = 0 OR k.key = lower(opn.nspname) || '.' || o.oprname
ORDER BY 1, 2`;
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
        // Keys go to the server lower-cased; answers are filed back under the caller's spelling.
        const byKey = new Map<string, FunctionInfo[]>();
        for (const k of batch) byKey.set(k.toLowerCase(), []);
        const rows = await run(query([...byKey.keys()]));
        for (const row of rows) {
          const list = row[0] == null ? undefined : byKey.get(row[0]);
          const info = toInfo(row, 1);
          if (list && info && !list.some((x) => x.oid === info.oid)) list.push(info);
        }
        return new Map(batch.map((k) => [k, byKey.get(k.toLowerCase()) ?? []]));
      },
      () => [],
    );
  }

  return {
    byNames: (wanted) => lookUp(names, wanted, functionsQuery),
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
          // policy's expressions (as a SELECT of them); for `type:<name>` keys, a domain's CHECKs.
          const rows = await run(
            'SELECT c.relname::text, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c ' +
              `WHERE c.relkind IN ('v', 'm') AND c.relname = ANY(${names}) ` +
              "UNION ALL SELECT c.relname::text, 'SELECT ' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true') || ', ' || " +
              "coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), 'true') " +
              'FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid ' +
              `WHERE c.relrowsecurity AND c.relname = ANY(${names}) ` +
              // A domain over a domain checks its base's CHECKs too: follow typbasetype.
              "UNION ALL (WITH RECURSIVE d(name, oid) AS (SELECT t.typname::text, t.oid FROM pg_catalog.pg_type t " +
              `WHERE t.typtype = 'd' AND 'type:' || t.typname = ANY(${names}) ` +
              "UNION SELECT d.name, b.oid FROM d JOIN pg_catalog.pg_type t ON t.oid = d.oid JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype WHERE b.typtype = 'd') " +
              "SELECT 'type:' || d.name, 'SELECT ' || regexp_replace(pg_catalog.pg_get_constraintdef(k.oid), '^CHECK ', '') " +
              'FROM d JOIN pg_catalog.pg_constraint k ON k.contypid = d.oid)',
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
    invalidate(): void {
      names = new Map();
      ops = new Map();
      oids = new Map();
      views = new Map();
      schemas = new Map();
    },
  };
}
