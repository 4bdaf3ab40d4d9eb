/**
 * The compact text form of a result that an agent (or the person reading its transcript)
 * reads: an aligned table, cells cut at a width, NULL spelled out, and a last line saying
 * how many rows there were and whether some were left out.
 */
import { MAX_RESULT_CHARS, type SqlResult } from './sql.js';

const MAX_CELL = 80;

export function sqlText(r: SqlResult, maxRows: number): string {
  const cut = r.rows.length < maxRows ? `they fill the ${MAX_RESULT_CHARS / 1024 / 1024} MiB of text one call returns` : `max_rows is ${maxRows}`;
  const tail = `(${r.command || 'done'}${r.truncated ? `; showing the first ${r.rows.length} of ${r.row_count} rows — ${cut}` : ''})`;
  if (r.columns.length === 0) return tail;
  const cell = (v: string | null): string => {
    if (v === null) return 'NULL';
    const flat = v.replace(/\r?\n/g, '\\n').replace(/\t/g, ' ');
    return flat.length > MAX_CELL ? `${flat.slice(0, MAX_CELL - 1)}…` : flat;
  };
  const head = r.columns.map((c) => c.name);
  const body = r.rows.map((row) => row.map(cell));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('-+-'), ...body.map(line), tail].join('\n');
}
