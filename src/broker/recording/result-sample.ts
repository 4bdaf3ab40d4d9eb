/**
 * `recording: { results: N }` on a Postgres target: the first N rows of each statement's
 * result, exactly as the client received them (after masking), kept for the statement's
 * `query` audit event so the sample is in the hash chain and shows in the timeline.
 *
 * Text-format values are kept as the client decoded them (UTF-8), binary-format values as
 * `\x` + hex (bytea's text form); each value is cut at MAX_SAMPLE_VALUE_CHARS with `…`.
 * Only the first result of a statement is sampled (a simple Query with several statements
 * keeps the first result's rows; later results only set `truncated`). Once N rows are held
 * a row costs one comparison; with N = 0 no sampler exists at all.
 */
import { decodeRowDescription, dataRowValues } from '../postgres/decode-backend.js';
import { ValueCursor } from '../postgres/body-reader.js';
import { MAX_RESULT_SAMPLE_ROWS } from '../config/schema.js';
/** A sampled value longer than this is cut (and ends with `…`). */
export const MAX_SAMPLE_VALUE_CHARS = 256;

export interface ResultSample {
  columns: string[];
  /** null for SQL NULL. */
  rows: (string | null)[][];
  /** More rows (or another result) followed than the sample holds. */
  truncated: boolean;
}

export class ResultSampler {
  readonly #limit: number;
  #columns: string[] = [];
  #formats: number[] = [];
  #rows: (string | null)[][] = [];
  #truncated = false;
  /** A result's rows have been sampled since the last take(): a new RowDescription is a second result. */
  #sampledResult = false;
  /** A second result began: its rows are not sampled. */
  #done = false;
  readonly #cursor = new ValueCursor();

  constructor(limit: number) {
    this.#limit = Math.min(Math.max(0, Math.floor(limit)), MAX_RESULT_SAMPLE_ROWS);
  }

  /** A RowDescription (its body): the column names and formats of the rows that follow. */
  description(body: Buffer): void {
    if (this.#sampledResult) {
      this.#done = true;
      return;
    }
    const fields = decodeRowDescription(body);
    this.#columns = fields.map((f) => f.name);
    this.#formats = fields.map((f) => f.format);
  }

  /**
   * A DataRow frame as sent to the client. `resultFormats` are the Bind's (none = all text,
   * one = all, else per column) when the rows answer an Execute, whose RowDescription may
   * have come from a Describe of the statement (all text) rather than of the portal.
   */
  row(frame: Buffer, resultFormats?: readonly number[]): void {
    if (this.#done || this.#rows.length >= this.#limit) {
      this.#truncated = true;
      return;
    }
    this.#sampledResult = true;
    const c = dataRowValues(frame.subarray(5), this.#cursor);
    const out: (string | null)[] = [];
    while (c.next()) {
      if (c.length < 0) {
        out.push(null);
        continue;
      }
      const binary = (resultFormats ? (resultFormats.length === 1 ? resultFormats[0] : resultFormats[c.index]) : this.#formats[c.index]) === 1;
      out.push(binary ? hexValue(c.body, c.offset, c.length) : textValue(c.body, c.offset, c.length));
    }
    this.#rows.push(out);
  }

  /** The statement ended: its sample (undefined when it returned no rows), and a fresh start. */
  take(): ResultSample | undefined {
    const sample = this.#rows.length > 0 || this.#truncated ? { columns: this.#columns, rows: this.#rows, truncated: this.#truncated } : undefined;
    this.#rows = [];
    this.#truncated = false;
    this.#sampledResult = false;
    this.#done = false;
    return sample;
  }
}

function textValue(b: Buffer, offset: number, length: number): string {
  // At most 4 bytes per character: never decode more than the cap can hold.
  const read = Math.min(length, MAX_SAMPLE_VALUE_CHARS * 4);
  const s = b.toString('utf8', offset, offset + read);
  return s.length > MAX_SAMPLE_VALUE_CHARS || read < length ? `${s.slice(0, MAX_SAMPLE_VALUE_CHARS)}…` : s;
}

function hexValue(b: Buffer, offset: number, length: number): string {
  const bytes = Math.min(length, (MAX_SAMPLE_VALUE_CHARS - 2) >> 1);
  const s = `\\x${b.toString('hex', offset, offset + bytes)}`;
  return bytes < length ? `${s}…` : s;
}
