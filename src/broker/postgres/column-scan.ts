/**
 * Which table columns hold what the detectors look for. Detectors see values as they
 * leave; a computed output (`replace(card, '1', 'x')`, `lower(note)`) carries a value in a
 * shape no detector recognises. So before a computed output of a column passes, the
 * column's stored values are read once on the catalog connection (as the target's user,
 * read-only) and scanned: a column with a hit is treated like a masked column, and the
 * computed output is masked whole (mask-shape.ts, for the result masker of proxy-masking.ts).
 *
 * Bounded, and fail closed: a column with more than MAX_VALUES values or MAX_BYTES of
 * text is not read and counts as holding secrets; so does one that cannot be read. Only
 * tables and materialized views are read — a view's columns are traced to its tables by
 * the provenance analysis — and only types whose text can hold a secret. Reading must run
 * no user code on the broker's connection (a read is a read for the broker too): a foreign
 * table, a table with row-level security or with stored user code (index expressions,
 * CHECKs, operator classes: the RelationFacts the gate's function catalog keeps), and a
 * column whose type has user output code are not read and count as holding secrets.
 * Answers are shared by the target's sessions for CACHE_MS (values change; a column that
 * gains a secret is seen at the latest after that).
 */
import { scanSpans, SpanList } from '../masking/detectors.js';
import type { MaskingPlan } from '../masking/rules.js';

import type { CatalogRows } from './masking-catalog.js';
import { sqlLiteral as lit } from './function-catalog.js';
import type { FunctionCatalog } from '../policy/sql-gate-types.js';
import { sourceParts } from '../masking/provenance.js';

const MAX_VALUES = 10_000;
const MAX_BYTES = 16 * 1024 * 1024;
const CACHE_MS = 5 * 60_000;
/** Types whose text cannot hold a detector's match (bool, small ints, floats, dates, …; not int8/numeric, which hold card numbers). */
const NO_TEXT = new Set([16, 18, 21, 23, 26, 28, 29, 700, 701, 1082, 1083, 1114, 1184, 1186, 1266, 2950, 3220]);
const READABLE_KINDS = new Set(['r', 'p', 'm']);

const shared = new Map<string, { at: number; answer: Promise<boolean> }>();

function ident(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

export interface ColumnScanner {
  /** Whether any stored value of the column `schema.table.column` trips a detector (true when unknown). */
  holdsSecrets(source: string): Promise<boolean>;
}

/**
 * `rows` reads on the session's catalog connection; `relations` is the target's function
 * catalog (the gate's), which already knows each relation's stored code.
 */
export function createColumnScanner(
  target: string,
  rows: CatalogRows,
  plan: MaskingPlan,
  relations: Pick<FunctionCatalog, 'relationFacts'>,
  now: () => number = Date.now,
): ColumnScanner {
  const scan = async (source: string): Promise<boolean> => {
    if (source.includes('\0')) return true;
    for (const ref of sourceParts(source)) {
      // Whether reading the column would run user code: row-level security, a type's own
      // output (a user type, or one built of others), and below the relation's stored code.
      const meta = await rows(
        'SELECT c.relkind::text, a.atttypid::text, (c.relrowsecurity OR t.typrelid <> 0 OR t.typoutput::pg_catalog.oid >= 16384 ' +
          'OR EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.oid = t.typelem AND (e.typrelid <> 0 OR e.typoutput::pg_catalog.oid >= 16384)))::text ' +
          'FROM pg_catalog.pg_class c ' +
          'JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
          'JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ' +
          'JOIN pg_catalog.pg_type t ON t.oid = a.atttypid ' +
          `WHERE n.nspname = ${lit(ref.schema)} AND c.relname = ${lit(ref.table)} AND a.attname = ${lit(ref.column)}`,
      );
      const row = meta[0];
      if (!row) continue;
      // A foreign table is never read here: its wrapper runs what it runs (another session, a program).
      if (row[0] === 'f') return true;
      if (!READABLE_KINDS.has(row[0] ?? '')) return false;
      if (NO_TEXT.has(Number(row[1]))) return false;
      if (row[2] !== 'false') return true;
      const key = `${ref.schema}.${ref.table}`;
      const facts = (await relations.relationFacts([key])).get(key);
      if (!facts || facts.foreign || facts.code.length > 0) return true;
      const from = `${ident(ref.schema)}.${ident(ref.table)}`;
      const col = ident(ref.column);
      const [size] = await rows(
        `SELECT count(*) > ${MAX_VALUES} OR coalesce(sum(octet_length(v)), 0) > ${MAX_BYTES} ` +
          `FROM (SELECT ${col}::text AS v FROM ${from} WHERE ${col} IS NOT NULL LIMIT ${MAX_VALUES + 1}) x`,
      );
      if (size?.[0] !== 'f') return true;
      const values = await rows(`SELECT ${col}::text FROM ${from} WHERE ${col} IS NOT NULL`);
      const spans = new SpanList();
      for (const [v] of values) {
        if (v === null || v === undefined) continue;
        const buf = Buffer.from(v, 'utf8');
        spans.clear();
        scanSpans(buf, 0, buf.length, plan.detectors, false, spans);
        if (spans.length > 0) return true;
      }
      return false;
    }
    // Not a column the catalog knows: it cannot be vouched for.
    return true;
  };
  return {
    holdsSecrets(source) {
      const key = `${target}\0${plan.detectors}\0${source}`;
      const hit = shared.get(key);
      if (hit && now() - hit.at < CACHE_MS) return hit.answer;
      const answer = scan(source).catch(() => true);
      shared.set(key, { at: now(), answer });
      if (shared.size > 10_000) shared.delete(shared.keys().next().value as string);
      return answer;
    },
  };
}
