/**
 * Which rule each column of a result gets (for the result masker, proxy-masking.ts): a
 * RowDescription, or the description of a COPY's query, resolved to a Shape from the
 * catalog (table OID and attribute number to schema.table.column), the statement's
 * provenance (what each output depends on) and the detector taint of what it computes.
 * mask-row-plan.ts turns a Shape, under the formats in effect, into a RowPlan.
 *
 * The resolver keeps the per-session caches: tables looked up, provenance by statement
 * text, and which columns hold secrets.
 */
import { decodeRowDescription, type FieldDescription } from './decode-backend.js';
import type { CatalogLookup, TableInfo } from './masking-catalog.js';
import type { ColumnScanner } from './column-scan.js';
import { sourceParts, type NamedQuery, type Provenance } from '../masking/provenance.js';
import { sqlShape } from '../policy/sql-shape.js';
import { looksLikeSecretName } from '../masking/detectors.js';
import { matchColumn, matchExpression, type MaskingPlan } from '../masking/rules.js';
import type { MaskRules, NoticeSink } from './mask-rules.js';
import type { WrittenRelations } from '../masking/written-relations.js';
import { knownBinary } from './binary-scan.js';
import { lookupWireTypes, type WireType } from './wire-types.js';

/** Distinct statement texts whose provenance a session keeps. */
const PROVENANCE_CACHE = 256;
/** Cursor and prepared statement names a session keeps the verdict of (the most recently declared). */
const NAMED_QUERIES = 1024;
/** Types a session keeps the binary form of (wire-types.ts). */
const WIRE_TYPES = 4096;
/** Distinct RowDescriptions a session keeps resolved, per provenance. */
const SHAPE_MEMO = 64;
const NO_OUTPUTS: ReadonlySet<number> = new Set();
/** The memo's owner for results resolved without provenance. */
const UNTRACED: object = {};

/** How the rows of a result whose count a masked column may decide go out: all of them, the first only, none. */
export type RowsMode = 0 | 1 | 2;
export const ROWS_SHOWN: RowsMode = 0;
export const FIRST_ROW_ONLY: RowsMode = 1;
export const ROWS_WITHHELD: RowsMode = 2;

/** A shape's RowsMode. */
export function rowsModeOf(shape: Shape): RowsMode {
  return shape.hideRows !== true ? ROWS_SHOWN : shape.firstRow === true ? FIRST_ROW_ONLY : ROWS_WITHHELD;
}

export interface FieldInfo {
  label: string;
  /** schema.table.column when resolved, else the label: for notices. */
  display: string;
  typeOid: number;
  /** A type read in binary format as a built-in one (wire-types.ts: citext, an enum, an array of them). */
  wire?: WireType;
  /** Index into the masker's rules; -1 = no column rule. */
  rule: number;
  secret: boolean;
  /** Relation names the value (or what decides it) comes from, for a later taint (written-relations.ts). */
  tables?: readonly string[];
}

/** A resolved RowDescription. */
export interface Shape {
  fields: FieldInfo[];
  /** Format codes as the RowDescription gave them. */
  formats: number[];
  /**
   * A result whose row count a masked column decides (`SELECT FROM users,
   * generate_series(1, ascii(email))`, `SELECT 1 FROM users, generate_series(0, 255) g
   * WHERE ascii(email) > g`, a FETCH from a cursor declared so): its outputs are masked
   * whole already, so the count is all its rows show; they are withheld, and the command
   * tag's count is sent as 0.
   */
  hideRows?: boolean;
  /**
   * With hideRows: the first row passes (its outputs are all masked whole), the rest are
   * withheld and the tag says 1 — whether there are rows at all is one bit, as a filter's is.
   * Without output columns, or for a cursor or prepared statement (`FETCH ABSOLUTE n` would
   * ask for any row), none passes.
   */
  firstRow?: boolean;
  /**
   * Some output is masked whole because it computes over a masked column (or cannot be
   * analysed): an expression that can raise (`1/(ascii(email) - g)`) would stop the result
   * at a row the value chose, so its rows are held until the statement (or the Execute)
   * completes, and an error drops them.
   */
  holdRows?: boolean;
  /** Relation names that decide how many rows the result has. */
  rowTables?: readonly string[];
  /** WrittenRelations.version the shape was resolved under. */
  written?: number;
}

/** The statement whose columns a RowDescription describes: its text and its index in a multi-statement Query. */
export interface StatementSource {
  sql: string;
  index: number;
}

/** What the COPY masker needs to learn a COPY's columns. */
export interface CopyShapes {
  /** Whether the catalog can describe a query (describeCopy works at all). */
  readonly canDescribe: boolean;
  /** The resolved columns of a COPY's query; rejects when they cannot be known. */
  describeCopy(query: string, dropGenerated: boolean, n: number): Promise<Shape>;
}

export class ShapeResolver implements CopyShapes {
  readonly #plan: MaskingPlan;
  readonly #catalog: CatalogLookup;
  readonly #rules: MaskRules;
  readonly #notices: NoticeSink;
  /** Output provenance of a statement text (one entry per statement it holds); undefined = not analysable here. */
  readonly #provenance: ((sql: string) => Promise<Provenance[]>) | undefined;
  readonly #provenanceCache = new Map<string, Provenance[]>();
  /** Reads a column's stored values for the detectors (column-scan.ts); absent = computed outputs are not checked so. */
  readonly #scanner: ColumnScanner | undefined;
  /** Columns (schema.table.column) whose stored values trip a detector, as far as scanned. */
  readonly #holdsSecrets = new Map<string, boolean>();
  readonly #tables = new Map<number, TableInfo>();
  /** Types binary-scan.ts does not list, as the catalog said they are sent (null: not read). */
  readonly #wires = new Map<number, WireType | null>();
  /**
   * Shapes resolved at once (everything they needed was cached), by the provenance they
   * were resolved with and the RowDescription's bytes: a session repeating a statement gets
   * the same result every time, so it is resolved once. Valid until invalidate(): tables
   * and secret scans are only ever added, so a shape resolved from them stays right.
   */
  #memo = new WeakMap<object, Map<string, Shape>>();
  /**
   * Cursors and prepared statements declared in this session (`cursor:c`, `prepared:q`),
   * as of the last DECLARE or PREPARE of the name that completed: whether a masked column
   * decides how many rows the query under the name returns. A name not here (declared by
   * code the analysis cannot see) counts as one whose count is withheld.
   */
  readonly #named = new Map<string, boolean>();
  /** Relations writes filled from masked columns: read like a masked column (written-relations.ts). */
  readonly #written: WrittenRelations | undefined;
  /** Moves on at each invalidate (a schema change): shapes resolved before are stale. */
  #epoch = 0;
  readonly #resolvedAt = new WeakMap<Shape, number>();
  #writtenVersion = 0;
  /** Shapes resolved before a taint, redone under the version they were redone at. */
  #retainted = new WeakMap<Shape, Shape>();

  constructor(
    plan: MaskingPlan,
    catalog: CatalogLookup,
    rules: MaskRules,
    notices: NoticeSink,
    provenance: ((sql: string) => Promise<Provenance[]>) | undefined,
    scanner: ColumnScanner | undefined,
    written?: WrittenRelations,
  ) {
    this.#written = written;
    this.#writtenVersion = written?.version ?? 0;
    this.#plan = plan;
    this.#catalog = catalog;
    this.#rules = rules;
    this.#notices = notices;
    this.#provenance = provenance;
    this.#scanner = scanner;
  }

  /** The session changed the schema: analyses made before may be wrong now. */
  invalidate(): void {
    this.#epoch++;
    this.expire();
  }

  /**
   * Resolves anew from here on (the cache's time is up): shapes described before stay
   * usable, as no schema change is known.
   */
  expire(): void {
    this.#provenanceCache.clear();
    this.#tables.clear();
    this.#memo = new WeakMap();
  }

  /** A relation became tainted: the shapes memoised before may show it. */
  #followTaint(): void {
    const v = this.#written?.version ?? 0;
    if (v === this.#writtenVersion) return;
    this.#writtenVersion = v;
    this.#memo = new WeakMap();
  }

  #tainted(table: string): boolean {
    return this.#written?.has(table) === true;
  }

  /**
   * `shape` as it must be read now: one a Describe resolved before a relation it reads was
   * tainted (Parse, Describe, then a write, then Execute — in this session or another) has
   * those outputs masked whole, and its rows withheld when such a relation decides them.
   */
  current(shape: Shape): Shape {
    const written = this.#written;
    if (!written || shape.written === undefined || shape.written === written.version) return shape;
    const done = this.#retainted.get(shape);
    if (done && done.written === written.version) return done;
    const { derived } = this.#rules;
    const fields = shape.fields.map((f) => (f.rule !== derived && f.tables?.some((t) => this.#tainted(t)) ? { ...f, rule: derived } : f));
    const rowsTainted = shape.rowTables?.some((t) => this.#tainted(t)) === true;
    const next: Shape = { ...shape, fields, written: written.version };
    if (rowsTainted) {
      next.hideRows = true;
      delete next.firstRow;
    } else if (fields.some((f, i) => f !== shape.fields[i])) next.holdRows = true;
    const at = this.#resolvedAt.get(shape);
    if (at !== undefined) this.#resolvedAt.set(next, at);
    this.#retainted.set(shape, next);
    return next;
  }

  /**
   * The shape of a RowDescription given as its message body. One seen before with the
   * same provenance is neither decoded nor resolved again. The Shape returned may be
   * shared: callers never change it.
   */
  shapeOf(body: Buffer, source: StatementSource | undefined): Shape | Promise<Shape> {
    this.#followTaint();
    const prov = this.#provenanceFor(source);
    // Rows of a named cursor or prepared statement follow its latest declaration: not memoised.
    if (prov instanceof Promise || prov?.uses) return this.#shapeWith(decodeRowDescription(body), prov);
    const owner: object = prov ?? UNTRACED;
    const key = body.toString('latin1');
    let memo = this.#memo.get(owner);
    const hit = memo?.get(key);
    if (hit) return hit;
    const shape = this.#shapeWith(decodeRowDescription(body), prov);
    if (!(shape instanceof Promise)) {
      if (!memo) this.#memo.set(owner, (memo = new Map()));
      if (memo.size >= SHAPE_MEMO) memo.clear();
      memo.set(key, shape);
    }
    return shape;
  }

  /**
   * A RowDescription's shape: at once when everything it needs is cached, else a promise
   * once table OIDs, provenance or detector taint are known.
   */
  #shapeWith(desc: readonly FieldDescription[], prov: Provenance | undefined | Promise<Provenance | undefined>): Shape | Promise<Shape> {
    // Stamped with the catalog it was resolved in (an answer that lands after an invalidate is already stale).
    const epoch = this.#epoch;
    const stamp = (shape: Shape): Shape => {
      this.#resolvedAt.set(shape, epoch);
      return shape;
    };
    const missing = this.#missingTables(desc);
    const types = this.#missingTypes(desc);
    if (missing.length === 0 && types.length === 0 && !(prov instanceof Promise)) {
      const tainted = this.#detectorTaint(prov, desc.length);
      if (!(tainted instanceof Promise)) return stamp(this.#resolve(desc, undefined, prov, tainted));
    }
    return (async () => {
      const [failed, p] = await Promise.all([missing.length > 0 ? this.#lookup(missing) : undefined, prov, this.#lookupTypes(types)]);
      return stamp(this.#resolve(desc, failed, p, await this.#detectorTaint(p, desc.length)));
    })();
  }

  /**
   * Whether `shape` was resolved before the schema last changed (invalidate): a statement
   * described then may now read a replaced view or another relation under the name, so its
   * rows are not read by what the Describe said.
   */
  stale(shape: Shape): boolean {
    return this.#resolvedAt.get(shape) !== this.#epoch;
  }

  /**
   * Whether a masked column decides how many rows `source` returns (Shape.hideRows), for
   * a result no RowDescription described (an Execute without Describe, MOVE): at once when
   * its analysis is known, else a promise (never rejecting).
   */
  rowsModeFor(source: StatementSource): RowsMode | Promise<RowsMode> {
    const prov = this.#provenanceFor(source);
    if (prov instanceof Promise) return prov.then((p) => this.#rowsMode(p, p?.ok ? p.columns.length : 0));
    return this.#rowsMode(prov, prov?.ok ? prov.columns.length : 0);
  }

  #rowsMode(prov: Provenance | undefined, columns: number): RowsMode {
    if (!this.#rowsHidden(prov)) return ROWS_SHOWN;
    return prov?.uses || columns === 0 ? ROWS_WITHHELD : FIRST_ROW_ONLY;
  }

  /**
   * A DECLARE … CURSOR or PREPARE completed: remember whether a masked column decides how
   * many rows its name returns (a declaration that cannot be analysed: it does).
   */
  declared(source: StatementSource): void | Promise<void> {
    const record = (p: Provenance | undefined): void => {
      if (!p?.declares) return;
      const key = namedKey(p.declares);
      this.#named.delete(key); // re-inserted last: the oldest names go first
      // Bounded: a name forgotten counts as one whose count is withheld (fail closed).
      if (this.#named.size >= NAMED_QUERIES) this.#named.delete(this.#named.keys().next().value as string);
      this.#named.set(key, !p.ok || this.#countMasked(p));
    };
    const prov = this.#provenanceFor(source);
    if (prov instanceof Promise) return prov.then(record);
    record(prov);
  }

  #rowsHidden(prov: Provenance | undefined): boolean {
    if (this.#plan.columns.length === 0 || !prov) return false;
    if (prov.uses) return this.#named.get(namedKey(prov.uses)) ?? true;
    return prov.ok && this.#countMasked(prov);
  }

  #countMasked(prov: Extract<Provenance, { ok: true }>): boolean {
    return prov.rowsOpaque === true || this.#ruleForSources(prov.rows) >= 0;
  }

  get canDescribe(): boolean {
    return this.#catalog.describe !== undefined;
  }

  /** `dropGenerated`: COPY of a whole table, which leaves generated columns out. */
  async describeCopy(query: string, dropGenerated: boolean, n: number): Promise<Shape> {
    const describe = this.#catalog.describe;
    if (describe === undefined) throw new Error('the catalog cannot describe a query');
    const desc = await describe(query);
    if (desc === undefined) throw new Error('the server could not describe the COPY');
    const missing = this.#missingTables(desc);
    const [failed, prov] = await Promise.all([
      missing.length > 0 ? this.#lookup(missing) : undefined,
      this.#provenanceFor({ sql: query, index: 0 }),
      this.#lookupTypes(this.#missingTypes(desc)),
    ]);
    const tainted = await this.#detectorTaint(prov, desc.length);
    if (!dropGenerated) {
      if (desc.length !== n) throw new Error('column count mismatch');
      return this.#resolve(desc, failed, prov, tainted);
    }
    // COPY table TO leaves generated columns out: the provenance of the columns it keeps
    // goes with them (a row-typed column's, an inheritance relative's).
    const kept: number[] = [];
    desc.forEach((d, i) => {
      if (!this.#tables.get(d.tableOid)?.generated?.has(d.columnAttr)) kept.push(i);
    });
    if (kept.length !== n) throw new Error('column count mismatch');
    const traced = prov?.ok && prov.columns.length === desc.length ? prov.columns : undefined;
    const keptProv: Provenance | undefined = prov?.ok && traced ? { ...prov, columns: kept.map((i) => traced[i]!) } : prov;
    const keptTaint = new Set<number>();
    kept.forEach((i, k) => {
      if (tainted.has(i)) keptTaint.add(k);
    });
    return this.#resolve(
      kept.map((i) => desc[i]!),
      failed,
      keptProv,
      keptTaint,
    );
  }

  /**
   * Outputs computed from a column whose stored values trip a detector (column-scan.ts):
   * the detectors would not recognise the value once transformed, so such an output is
   * masked whole. Only computed outputs of columns no rule masks already are checked, and
   * the conditions of any output (a direct one is shown as is, but what decides it is not).
   */
  #detectorTaint(prov: Provenance | undefined, n: number): ReadonlySet<number> | Promise<ReadonlySet<number>> {
    const scanner = this.#scanner;
    if (!scanner || this.#plan.detectors === 0 || !prov?.ok || prov.columns.length !== n) return NO_OUTPUTS;
    const wanted: [number, string[]][] = [];
    const unknown = new Set<string>();
    prov.columns.forEach((out, i) => {
      const conditions = [...(out.conditions ?? [])];
      if (out.opaque || this.#ruleForSources(out.sources) >= 0 || this.#ruleForSources(out.conditions) >= 0) return;
      const sources = out.direct ? conditions : [...out.sources, ...conditions];
      if (sources.length === 0) return;
      wanted.push([i, sources]);
      for (const src of sources) if (!this.#holdsSecrets.has(src)) unknown.add(src);
    });
    if (wanted.length === 0) return NO_OUTPUTS;
    const decide = (): ReadonlySet<number> => new Set(wanted.filter(([, sources]) => sources.some((src) => this.#holdsSecrets.get(src) !== false)).map(([i]) => i));
    if (unknown.size === 0) return decide();
    return Promise.all([...unknown].map(async (src) => this.#holdsSecrets.set(src, await scanner.holdsSecrets(src)))).then(decide);
  }

  /**
   * What the output columns of `source` depend on: at once when known, a promise (that never
   * rejects) when it must be analysed, undefined when the plan has no column rules (nothing
   * to trace) or the text is unknown.
   */
  #provenanceFor(source: StatementSource | undefined): Provenance | undefined | Promise<Provenance | undefined> {
    const traced = this.#plan.columns.length > 0 || (this.#plan.detectors !== 0 && this.#scanner !== undefined);
    if (!traced || !source) return undefined;
    const analyse = this.#provenance;
    if (!analyse) return undefined;
    const pick = (all: Provenance[]): Provenance => all[source.index] ?? { ok: false, reason: 'no such statement in the text' };
    // Keyed by shape (numbers replaced, sql-shape.ts): the analysis never reads a number's
    // value, so `… WHERE id = 1` and `… WHERE id = 2` trace the same, and a client that
    // inlines its values (pgbench -M simple, many ORMs) costs one analysis, not one each.
    const key = sqlShape(source.sql) ?? source.sql;
    const hit = this.#provenanceCache.get(key);
    if (hit) return pick(hit);
    return analyse(source.sql).then(
      (all) => {
        if (this.#provenanceCache.size >= PROVENANCE_CACHE) this.#provenanceCache.delete(this.#provenanceCache.keys().next().value as string);
        this.#provenanceCache.set(key, all);
        return pick(all);
      },
      (err: unknown) => ({ ok: false, reason: (err as Error).message }) as Provenance,
    );
  }

  /** Table OIDs of these fields that need a lookup. */
  #missingTables(desc: readonly FieldDescription[]): number[] {
    if (this.#plan.columns.length === 0) return [];
    const missing: number[] = [];
    for (const d of desc) if (d.tableOid !== 0 && !this.#tables.has(d.tableOid) && !missing.includes(d.tableOid)) missing.push(d.tableOid);
    return missing;
  }

  /** Type OIDs of these fields whose binary form binary-scan.ts does not know and the catalog was not asked about. */
  #missingTypes(desc: readonly FieldDescription[]): number[] {
    if (this.#catalog.rows === undefined) return [];
    const missing: number[] = [];
    for (const d of desc) if (!knownBinary(d.typeOid) && !this.#wires.has(d.typeOid) && !missing.includes(d.typeOid)) missing.push(d.typeOid);
    return missing;
  }

  /** Ask how these types are sent (never rejects: a failed lookup leaves them unread, NULL in binary format). */
  async #lookupTypes(oids: number[]): Promise<void> {
    const rows = this.#catalog.rows;
    if (oids.length === 0 || rows === undefined) return;
    try {
      const found = await lookupWireTypes(rows, oids);
      // Bounded: a type forgotten is asked about again.
      if (this.#wires.size + found.size > WIRE_TYPES) this.#wires.clear();
      for (const [oid, wire] of found) this.#wires.set(oid, wire);
    } catch {
      // Not remembered: a later result asks again; meanwhile the values stay unread.
    }
  }

  /** Look tables up; resolves to the OIDs that could not be resolved (never rejects). */
  async #lookup(oids: number[]): Promise<Set<number> | undefined> {
    let failed: Set<number> | undefined;
    try {
      const found = await this.#catalog(oids);
      for (const oid of oids) {
        const info = found.get(oid);
        if (info) this.#tables.set(oid, info);
        else (failed ??= new Set()).add(oid);
      }
    } catch (err) {
      failed = new Set(oids);
      this.#notices.notice(
        `lookup:${(err as Error).message}`,
        `agentgate: could not look up column names (${(err as Error).message}), so every column of the affected tables is masked`,
      );
    }
    return failed;
  }

  /**
   * Which rule each column gets. Two witnesses, and the stricter wins:
   * - the server's: RowDescription names the table column a plain reference comes from
   *   (through subqueries and CTEs; a view's own column for a view);
   * - the parse tree's (`prov`, provenance.ts): every table column an output depends on,
   *   through any expression, view, CTE or subquery. A plain reference keeps its rule's
   *   style; anything computed from a masked column, or whose conditions (a subquery's
   *   WHERE, an ordering, a row-linking predicate) name one, is masked whole (the derived
   *   rule), and so is an output that cannot be analysed (a user-defined function's, say).
   * When the analysis fails, a computed column (no table) or a view's column is masked
   * whole when the plan has column rules: what cannot be analysed does not pass unmasked.
   * (A masker built without an analyser — the proxy always gives one — matches such
   * columns by label only.)
   */
  #resolve(desc: readonly FieldDescription[], failed: Set<number> | undefined, prov: Provenance | undefined, tainted: ReadonlySet<number> = NO_OUTPUTS): Shape {
    const columns = this.#plan.columns.length > 0;
    const { unresolved, derived } = this.#rules;
    const traced = prov?.ok && prov.columns.length === desc.length ? prov.columns : undefined;
    const fields = desc.map((d, i): FieldInfo => {
      let display = d.name;
      let rule = -1;
      let column: string | undefined;
      const tables: string[] = [];
      if (columns) {
        let viaView = false;
        if (d.tableOid === 0) {
          const r = matchExpression(this.#plan, d.name);
          if (r) rule = this.#plan.columns.indexOf(r);
        } else {
          const info = failed?.has(d.tableOid) ? undefined : this.#tables.get(d.tableOid);
          if (info) {
            column = info.columns.get(d.columnAttr) ?? d.name;
            display = `${info.schema}.${info.table}.${column}`;
            const r = matchColumn(this.#plan, { schema: info.schema, table: info.table, column });
            if (r) rule = this.#plan.columns.indexOf(r);
            else if (this.#tainted(info.table)) rule = derived;
            tables.push(info.table);
            // A column whose value a rule on another name may cover: a view's, a materialized
            // view's, an inheritance relative's, a generated column's.
            viaView = info.kind === 'v' || info.kind === 'm' || info.inherits === true || info.generated?.has(d.columnAttr) === true;
          } else {
            rule = unresolved;
          }
        }
        const out = traced?.[i];
        if (out) {
          tables.push(...tablesOf(out.sources), ...tablesOf(out.conditions));
          if (out.opaque || this.#ruleForSources(out.conditions) >= 0) rule = derived;
          else {
            const r = this.#ruleForSources(out.sources);
            if (r >= 0 && !out.direct) rule = derived;
            else if (r >= 0 && (rule < 0 || rule === unresolved)) rule = r;
          }
        } else if (rule < 0 && (d.tableOid === 0 || viaView) && this.#provenance !== undefined) {
          // The analysis failed (or the text is not known): fail closed, and whole (a
          // partial mask of an unknown computation could still show part of a value).
          rule = derived;
        }
      }
      if (tainted.has(i)) rule = derived;
      const secret = looksLikeSecretName(d.name) || (column !== undefined && looksLikeSecretName(column));
      const wire = this.#wires.get(d.typeOid);
      return { label: d.name, display, typeOid: d.typeOid, ...(wire ? { wire } : {}), rule, secret, ...(tables.length > 0 ? { tables } : {}) };
    });
    const formats = desc.map((d) => d.format);
    const mode = this.#rowsMode(prov, desc.length);
    const tracked: Pick<Shape, 'rowTables' | 'written'> = this.#written ? { written: this.#written.version, ...(prov?.ok && prov.rows ? { rowTables: tablesOf(prov.rows) } : {}) } : {};
    if (mode !== ROWS_SHOWN) return { fields, formats, hideRows: true, ...(mode === FIRST_ROW_ONLY ? { firstRow: true } : {}), ...tracked };
    if (fields.some((f) => f.rule === derived)) return { fields, formats, holdRows: true, ...tracked };
    return { fields, formats, ...tracked };
  }

  /**
   * The first column rule matching any `schema.table.column` source (the derived rule for a
   * tainted relation's column); -1 when none.
   */
  #ruleForSources(sources: ReadonlySet<string> | undefined): number {
    for (const src of sources ?? []) {
      for (const ref of sourceParts(src)) {
        const r = matchColumn(this.#plan, ref);
        if (r) return this.#plan.columns.indexOf(r);
        if (this.#tainted(ref.table)) return this.#rules.derived;
      }
    }
    return -1;
  }
}

/** The relation names of `schema.table.column` sources. */
function tablesOf(sources: ReadonlySet<string> | undefined): string[] {
  const out: string[] = [];
  for (const src of sources ?? []) for (const ref of sourceParts(src)) out.push(ref.table);
  return out;
}

function namedKey(n: NamedQuery): string {
  return `${n.kind}:${n.name}`;
}
