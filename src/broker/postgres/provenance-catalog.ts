/**
 * The live catalog as masking-by-provenance asks it (src/broker/masking/provenance.ts):
 * relations by name (with their columns, and a view's definition to analyse in turn) and
 * whether a function is built in. Answered by queries on a session's catalog connection
 * (masking-catalog.ts) and cached for the session: a relation's columns do not change
 * under a read, and a session that changes the schema gets a fresh cache (`invalidate`).
 *
 * An unqualified name is looked up in every schema, since the client's search_path is
 * not known here; the analysis takes the union of the candidates.
 */
import type { FunctionFacts, ProvenanceCatalog, RelationInfo } from '../masking/provenance.js';
import type { CatalogRows } from './masking-catalog.js';
import { sqlLiteral as lit } from './function-catalog.js';

/** Schemas whose functions ship with PostgreSQL. */
const BUILTIN_SCHEMAS = new Set(['pg_catalog', 'information_schema']);

/** `pg_temp` names the session's own temporary schema, which is pg_temp_N in the catalog. */
function schemaFilter(column: string, schema: string | undefined): string {
  if (schema === undefined) return '';
  if (schema === 'pg_temp') return ` AND ${column} LIKE 'pg\\_temp\\_%'`;
  return ` AND ${column} = ${lit(schema)}`;
}

export function createProvenanceCatalog(rows: CatalogRows): ProvenanceCatalog & { invalidate(): void } {
  let relations = new Map<string, Promise<RelationInfo[]>>();
  let functions = new Map<string, Promise<FunctionFacts[]>>();
  const clean = (s: string): boolean => !s.includes('\0');

  return {
    relations(schema, name) {
      const key = `${schema ?? ''}\u0001${name}`;
      let hit = relations.get(key);
      if (!hit) {
        if (!clean(name) || (schema !== undefined && !clean(schema))) return Promise.resolve([]);
        const sql =
          'SELECT n.nspname, c.relname, c.relkind, a.attname, ' +
          "CASE WHEN c.relkind = 'v' AND a.attnum = 1 THEN pg_catalog.pg_get_viewdef(c.oid) END " +
          'FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
          'LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ' +
          `WHERE c.relname = ${lit(name)}${schemaFilter('n.nspname', schema)} AND c.relkind IN ('r','p','v','m','f') ` +
          'ORDER BY c.oid, a.attnum';
        hit = rows(sql).then((rs) => {
          const byRel = new Map<string, RelationInfo>();
          for (const r of rs) {
            const id = `${r[0]}.${r[1]}`;
            let info = byRel.get(id);
            if (!info) {
              info = { schema: r[0] ?? '', name: r[1] ?? '', kind: r[2] === 'v' ? 'view' : 'table', columns: [] };
              byRel.set(id, info);
            }
            if (r[3] !== null && r[3] !== undefined) info.columns.push(r[3]);
            if (r[4]) info.viewSql = r[4];
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
        const sql =
          'SELECT n.nspname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace ' +
          `WHERE p.proname = ${lit(name)}${schemaFilter('n.nspname', schema)}`;
        hit = rows(sql).then((rs) => rs.map((r) => ({ builtin: BUILTIN_SCHEMAS.has(r[0] ?? '') })));
        hit.catch(() => functions.delete(key));
        functions.set(key, hit);
      }
      return hit;
    },
    invalidate() {
      relations = new Map();
      functions = new Map();
    },
  };
}
