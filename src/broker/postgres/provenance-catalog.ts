/**
 * The live catalog as masking-by-provenance asks it (src/broker/masking/provenance.ts):
 * relations by name (with their columns, a view's or materialized view's definition to
 * analyse in turn, each column's inheritance relatives, a generated column's inputs and
 * the columns a row-typed column holds)
 * and whether a function is built in. Answered by queries on a session's catalog connection
 * (masking-catalog.ts) and cached for the session: a relation's columns do not change
 * under a read, and a session that changes the schema gets a fresh cache (`invalidate`).
 *
 * An unqualified name is looked up in every schema, since the client's search_path is
 * not known here; the analysis takes the union of the candidates.
 */
import { OPERATOR_NAME, type FunctionFacts, type ProvenanceCatalog, type RelationInfo, type TypeRef } from '../masking/provenance.js';
import type { CatalogRows } from './masking-catalog.js';
import { sqlLiteral as lit } from './function-catalog.js';

/** Schemas whose functions ship with PostgreSQL. */
const BUILTIN_SCHEMAS = new Set(['pg_catalog', 'information_schema']);

/** PostgreSQL's FirstNormalObjectId: objects created after initdb have OIDs from here on. */
const FIRST_NORMAL_OID = 16384;
/** Row types followed inside row types, arrays, domains and ranges, at most. */
const ROW_TYPE_DEPTH = 8;

/** `pg_temp` names the session's own temporary schema, which is pg_temp_N in the catalog. */
function schemaFilter(column: string, schema: string | undefined): string {
  if (schema === undefined) return '';
  if (schema === 'pg_temp') return ` AND ${column} LIKE 'pg\\_temp\\_%'`;
  return ` AND ${column} = ${lit(schema)}`;
}

/** A JSON array column as a list ([] for NULL). */
function jsonList(text: string | null | undefined): unknown[] {
  if (!text) return [];
  const v: unknown = JSON.parse(text);
  return Array.isArray(v) ? v : [];
}

export function createProvenanceCatalog(rows: CatalogRows): ProvenanceCatalog & { invalidate(): void } {
  let relations = new Map<string, Promise<RelationInfo[]>>();
  let functions = new Map<string, Promise<FunctionFacts[]>>();
  let casts: Promise<readonly TypeRef[]> | undefined;
  const clean = (s: string): boolean => !s.includes('\0');

  return {
    relations(schema, name) {
      const key = `${schema ?? ''}\u0001${name}`;
      let hit = relations.get(key);
      if (!hit) {
        if (!clean(name) || (schema !== undefined && !clean(schema))) return Promise.resolve([]);
        const sql =
          'SELECT n.nspname, c.relname, c.relkind, a.attname, ' +
          "CASE WHEN c.relkind IN ('v','m') AND a.attnum = 1 THEN pg_catalog.pg_get_viewdef(c.oid) END, " +
          // The same column in every inheritance ancestor and descendant.
          'CASE WHEN a.attnum IS NOT NULL AND tree.oids IS NOT NULL THEN pg_catalog.array_to_json(ARRAY(' +
          'SELECT pg_catalog.json_build_array(tn.nspname, tc.relname, ta.attname) FROM pg_catalog.pg_attribute ta ' +
          'JOIN pg_catalog.pg_class tc ON tc.oid = ta.attrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace ' +
          'WHERE ta.attrelid = ANY(tree.oids) AND ta.attname = a.attname AND NOT ta.attisdropped ORDER BY ta.attrelid))::text END, ' +
          // A generated column's dependencies on the other columns of its row.
          'CASE WHEN a.attnum IS NOT NULL THEN (SELECT pg_catalog.array_to_json(pg_catalog.array_agg(da.attname ORDER BY da.attnum))::text ' +
          'FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute da ON da.attrelid = d.refobjid AND da.attnum = d.refobjsubid ' +
          // (PostgreSQL records them from the column, or from its pg_attrdef entry.)
          "WHERE (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.objsubid = a.attnum " +
          "OR d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN " +
          '(SELECT ad.oid FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid = c.oid AND ad.adnum = a.attnum)) ' +
          "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = c.oid AND d.refobjsubid > 0 AND d.refobjsubid <> a.attnum) END, " +
          // A column of a row type (through domains, arrays, ranges, nested row types) holds
          // values of that type's relation's columns: a stored `users` row holds an email.
          'CASE WHEN a.attnum IS NOT NULL THEN (WITH RECURSIVE walk(t, d) AS (SELECT a.atttypid, 0 UNION ' +
          'SELECT n.next, w.d + 1 FROM walk w JOIN pg_catalog.pg_type ty ON ty.oid = w.t, LATERAL (' +
          "SELECT ty.typbasetype WHERE ty.typtype = 'd' UNION ALL SELECT ty.typelem WHERE ty.typelem <> 0 " +
          'UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = ty.oid ' +
          'UNION ALL SELECT ra.atttypid FROM pg_catalog.pg_attribute ra WHERE ty.typrelid <> 0 AND ra.attrelid = ty.typrelid AND ra.attnum > 0 AND NOT ra.attisdropped' +
          `) n(next) WHERE w.d < ${ROW_TYPE_DEPTH}) ` +
          'SELECT pg_catalog.array_to_json(pg_catalog.array_agg(DISTINCT pg_catalog.json_build_array(rn.nspname, rc.relname, ra.attname)::text))::text ' +
          'FROM walk w JOIN pg_catalog.pg_type ty ON ty.oid = w.t JOIN pg_catalog.pg_class rc ON rc.oid = ty.typrelid ' +
          'JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace ' +
          'JOIN pg_catalog.pg_attribute ra ON ra.attrelid = rc.oid AND ra.attnum > 0 AND NOT ra.attisdropped) END ' +
          'FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
          'LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ' +
          'LEFT JOIN LATERAL (WITH RECURSIVE up(oid) AS (SELECT c.oid UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.oid), ' +
          'down(oid) AS (SELECT c.oid UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN down ON i.inhparent = down.oid) ' +
          'SELECT NULLIF(ARRAY(SELECT oid FROM up WHERE oid <> c.oid UNION SELECT oid FROM down WHERE oid <> c.oid), ' +
          "'{}'::pg_catalog.oid[]) AS oids) tree ON true " +
          `WHERE c.relname = ${lit(name)}${schemaFilter('n.nspname', schema)} AND c.relkind IN ('r','p','v','m','f') ` +
          'ORDER BY c.oid, a.attnum';
        hit = rows(sql).then((rs) => {
          const byRel = new Map<string, RelationInfo>();
          for (const r of rs) {
            const id = `${r[0]}.${r[1]}`;
            let info = byRel.get(id);
            if (!info) {
              info = { schema: r[0] ?? '', name: r[1] ?? '', kind: r[2] === 'v' || r[2] === 'm' ? 'view' : 'table', columns: [] };
              byRel.set(id, info);
            }
            const column = r[3];
            if (column === null || column === undefined) continue;
            info.columns.push(column);
            if (r[4]) info.viewSql = r[4];
            const same = jsonList(r[5]).map((t) => (Array.isArray(t) && t.length === 3 ? { schema: String(t[0]), table: String(t[1]), column: String(t[2]) } : undefined));
            if (same.length > 0) info.sameAs = { ...info.sameAs, [column]: same.filter((x) => x !== undefined) };
            const from = jsonList(r[6]);
            const rel = info;
            const held = jsonList(r[7]).map((t) => {
              const v: unknown = typeof t === 'string' ? JSON.parse(t) : undefined;
              return Array.isArray(v) && v.length === 3 ? { schema: String(v[0]), table: String(v[1]), column: String(v[2]) } : undefined;
            });
            const inputs = [...from.map((c) => ({ schema: rel.schema, table: rel.name, column: String(c) })), ...held.filter((x) => x !== undefined)];
            if (inputs.length > 0) info.derivedFrom = { ...info.derivedFrom, [column]: inputs };
          }
          return [...byRel.values()];
        });
        // A failed lookup is not cached: the next statement asks again (and fails closed meanwhile).
        hit.catch(() => relations.delete(key));
        relations.set(key, hit);
      }
      return hit;
    },
    functions(schema, name) {
      const key = `${schema ?? ''}\u0001${name}`;
      let hit = functions.get(key);
      if (!hit) {
        if (!clean(name) || (schema !== undefined && !clean(schema))) return Promise.resolve([]);
        // Built in: in a built-in schema and created with the cluster (an administrator may
        // add functions to pg_catalog; what they add gets an OID from FirstNormalObjectId on).
        let sql =
          `SELECT n.nspname, p.oid < ${FIRST_NORMAL_OID}, p.proretset FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace ` +
          `WHERE p.proname = ${lit(name)}${schemaFilter('n.nspname', schema)}`;
        // An operator's name: every operator of that name (and the function it calls).
        if (OPERATOR_NAME.test(name)) {
          sql +=
            ` UNION ALL SELECT n.nspname, o.oid < ${FIRST_NORMAL_OID} AND o.oprcode::pg_catalog.oid < ${FIRST_NORMAL_OID}, false ` +
            'FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace ' +
            `WHERE o.oprname = ${lit(name)}${schemaFilter('n.nspname', schema)}`;
        }
        hit = rows(sql).then((rs) => rs.map((r) => ({ builtin: BUILTIN_SCHEMAS.has(r[0] ?? '') && r[1] === 't', retset: r[2] === 't' })));
        hit.catch(() => functions.delete(key));
        functions.set(key, hit);
      }
      return hit;
    },
    castTargets() {
      if (!casts) {
        // Targets of casts whose function was not created with the cluster, and the domains
        // over them (a cast to a domain runs the cast to its base type).
        const sql =
          'WITH RECURSIVE t(oid) AS (SELECT c.casttarget FROM pg_catalog.pg_cast c ' +
          `WHERE c.castfunc::pg_catalog.oid >= ${FIRST_NORMAL_OID} ` +
          'UNION SELECT d.oid FROM pg_catalog.pg_type d JOIN t ON d.typbasetype = t.oid) ' +
          'SELECT n.nspname, ty.typname FROM t JOIN pg_catalog.pg_type ty ON ty.oid = t.oid ' +
          'JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace';
        const hit = rows(sql).then((rs) => rs.map((r) => ({ schema: r[0] ?? '', name: r[1] ?? '' })));
        hit.catch(() => {
          if (casts === hit) casts = undefined;
        });
        casts = hit;
      }
      return casts;
    },
    invalidate() {
      relations = new Map();
      functions = new Map();
      casts = undefined;
    },
  };
}
