/**
 * For the masking of an ErrorResponse or NoticeResponse: whether the statement the server
 * is answering reads a masked column anywhere (masking/statement-reads.ts). The statement
 * is the pipeline tracker's head — the one record of what the server is answering, for a
 * simple Query, Parse/Bind/Describe/Execute (pipelined or not), a COPY or a FunctionCall.
 *
 * Verdicts are cached by statement text for the session (cleared when the schema
 * changes), so a repeated statement's errors are masked at once; the first error of a new
 * text waits for the analysis (the proxy holds later server messages behind it).
 */
import type { Outstanding } from './pipeline.js';
import type { ColumnScanner } from './column-scan.js';
import { sourceParts, statementProvenance, type ProvenanceCatalog } from '../masking/provenance.js';
import { matchColumn, type MaskingPlan } from '../masking/rules.js';
import { statementReads, type ReadVerdict } from '../masking/statement-reads.js';
import type { WrittenRelations } from '../masking/written-relations.js';

/** Distinct statement texts whose verdict a session keeps. */
const CACHE = 256;

export class ErrorReads {
  readonly #analyse: ((sql: string) => Promise<ReadVerdict>) | undefined;
  #cache = new Map<string, ReadVerdict | Promise<ReadVerdict>>();

  readonly #written: WrittenRelations | undefined;
  #version = 0;

  /**
   * `analyse` absent: no statement can be analysed, so every one counts as reading a masked
   * column. `written`: the relations writes tainted, which `analyse` counts as masked.
   */
  constructor(analyse: ((sql: string) => Promise<ReadVerdict>) | undefined, written?: WrittenRelations) {
    this.#analyse = analyse;
    this.#written = written;
    this.#version = written?.version ?? 0;
  }

  invalidate(): void {
    this.#cache = new Map();
  }

  /** The verdict for what the server answers when the tracker's head is `head`. */
  verdictFor(head: Outstanding | undefined): ReadVerdict | Promise<ReadVerdict> {
    if (this.#written && this.#version !== this.#written.version) {
      // A relation became tainted: verdicts given before may be too lenient.
      this.#version = this.#written.version;
      this.invalidate();
    }
    const sql = statementText(head);
    if (sql === null) return 'opaque';
    if (sql === undefined) return 'none';
    const analyse = this.#analyse;
    if (analyse === undefined) return 'opaque';
    const hit = this.#cache.get(sql);
    if (hit !== undefined) return hit;
    if (this.#cache.size >= CACHE) this.#cache.clear();
    const p = analyse(sql).catch((): ReadVerdict => 'opaque');
    this.#cache.set(sql, p);
    // p never rejects (caught above); the second handler only satisfies the linter.
    p.then(
      (v) => {
        if (this.#cache.get(sql) === p) this.#cache.set(sql, v);
      },
      () => undefined,
    );
    return p;
  }
}

/**
 * The session's analysis: a column is masked when a column rule matches it, or when the
 * plan has detectors and its stored values trip one (column-scan.ts: the row masker masks
 * whole what is computed from such a column, `lower(note)`, and errors quote computed values).
 */
export function sessionReads(
  plan: MaskingPlan,
  catalog: ProvenanceCatalog,
  scanner: ColumnScanner | undefined,
  written?: WrittenRelations,
  opts: { writes?: boolean } = {},
): (sql: string) => Promise<ReadVerdict> {
  return (sql) =>
    statementReads(
      sql,
      catalog,
      (source, rel, column) => {
        // A relation a write filled from a masked column (written-relations.ts) is masked whole.
        if (written?.has(rel.name) === true) return true;
        if (matchColumn(plan, { schema: rel.schema, table: rel.name, column }) !== undefined) return true;
        return plan.detectors !== 0 && scanner !== undefined ? scanner.holdsSecrets(source) : false;
      },
      opts,
    );
}

/**
 * The SQL text the server is running for `head`; null when it runs something no text
 * shows (a fast-path FunctionCall); undefined when nothing of the client's runs (Sync,
 * Close, the proxy's own messages, nothing outstanding: startup notices).
 */
function statementText(head: Outstanding | undefined): string | null | undefined {
  switch (head?.kind) {
    case 'query':
      return head.rec.sql;
    case 'execute':
    case 'bind':
      return head.portal.statement.sql;
    case 'parse':
      return head.statement.sql;
    case 'describe':
      return (head.statement ?? head.portal?.statement)?.sql;
    case 'function':
      return null;
    default:
      return undefined;
  }
}

/**
 * Whether a masked column — a rule's, one whose values trip a detector, a tainted
 * relation's — or something that cannot be analysed decides how many rows a write in `sql`
 * writes (Provenance.writeRows: `INSERT … SELECT 1 FROM users, generate_series(1,
 * ascii(ssn))`, `DELETE FROM t WHERE g < (SELECT ascii(ssn) …)`). Such a write is refused:
 * its tag can be masked, but the count stays in the table for `count(*)` and the statistics views.
 */
export function sessionWriteRows(plan: MaskingPlan, catalog: ProvenanceCatalog, scanner: ColumnScanner | undefined, written?: WrittenRelations): (sql: string) => Promise<boolean> {
  const masked = async (source: string): Promise<boolean> => {
    for (const part of sourceParts(source)) {
      if (written?.has(part.table) === true || matchColumn(plan, part) !== undefined) return true;
    }
    return plan.detectors !== 0 && scanner !== undefined ? scanner.holdsSecrets(source) : false;
  };
  return async (sql) => {
    for (const p of await statementProvenance(sql, catalog)) {
      if (!p.ok) continue; // a write the analysis cannot follow taints its targets (written-relations.ts)
      if (p.writeRowsOpaque === true) return true;
      for (const s of p.writeRows ?? []) if (await masked(s)) return true;
    }
    return false;
  };
}
