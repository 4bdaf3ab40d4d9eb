/**
 * The audit export file format, and its offline verifier (`agentgate audit verify`).
 * Shared: the broker writes exports, the CLI checks them; nothing here imports broker code.
 *
 * An export is one or more segments (a resumed export appends a second one), each:
 *   header  {"type":"agentgate.audit.export","version":1,"anchor":{"prev","first_seq","checkpoint"},"query":{…},…}
 *   events  one per line
 *   end     {"type":"agentgate.audit.export.end","count","last":{"seq","hash"},"checkpoint":<signed>}
 * Per format:
 *   jsonl  header, events and end are JSON lines; an event line is the stored record
 *          (its hashed canonical JSON with `"hash"` appended as the last member).
 *   csv    header and end are comment lines `# {json}`; then a column line, then one row per
 *          event (RFC 4180; nested fields as JSON text; an unquoted empty cell is null).
 *   ocsf   header and end are JSON lines without `class_uid`; each event is an OCSF event
 *          whose `raw_data` holds the jsonl event line — that is what is verified.
 *
 * What verification proves:
 * - every event's hash matches its content (a flipped byte anywhere is caught);
 * - in an unfiltered export, every event links to the one before (seq + 1, prev = hash),
 *   so a deleted, inserted or reordered event is caught, and the first links to the anchor;
 * - the anchor is genesis (seq 1), or a retention checkpoint signed by the broker, or else
 *   an unverified hash that an earlier export's last event must match;
 * - the end record says how many events there were and which came last: a cut-off file is
 *   caught; with `--key` its signature (over the count, the last event and a digest of all
 *   event hashes) proves the broker produced exactly this selection, filtered or not.
 */
import { createHash, hash as oneShotHash, type Hash } from 'node:crypto';
import { GENESIS_PREV, canonicalJson, eventHash, sha256Hex, type AuditRecord } from './audit-hash.js';
import { toOcsf } from './ocsf.js';
import { ReceiptVerifyError, peekCheckpoint, verifyCheckpoint, type AuditCheckpoint, type DsseEnvelope } from './receipt.js';

export const EXPORT_HEADER_TYPE = 'agentgate.audit.export';
export const EXPORT_END_TYPE = 'agentgate.audit.export.end';
export const EXPORT_FORMATS = ['jsonl', 'csv', 'ocsf'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export const CSV_COLUMNS = ['seq', 'time', 'session', 'target', 'type', 'actor', 'decision', 'outcome', 'detail', 'prev', 'hash'] as const;

export interface ExportQuery {
  since?: string;
  until?: string;
  target?: string;
  session?: string;
  /** Events after this seq. */
  after_seq: number;
  /** The chain's head when the export began: nothing later is included. */
  until_seq: number;
}

export interface ExportHeader {
  type: typeof EXPORT_HEADER_TYPE;
  version: 1;
  format: ExportFormat;
  created_at: string;
  broker: { url: string; jwks_uri: string };
  query: ExportQuery;
  /** True when target/session filters leave events out: links across those gaps cannot be checked. */
  filtered: boolean;
  anchor: {
    /** `prev` of the first event: the hash of the event just before the export. */
    prev: string | null;
    first_seq: number | null;
    /** The retention checkpoint at first_seq - 1, when the export starts where pruning cut. */
    checkpoint: DsseEnvelope | null;
  };
}

export interface ExportEnd {
  type: typeof EXPORT_END_TYPE;
  count: number;
  last: { seq: number; hash: string } | null;
  /** Signed AuditCheckpoint (reason `export`) over `last`, `count` and the digest of every event hash. */
  checkpoint: DsseEnvelope | null;
}

/** The event line of the jsonl format (and OCSF raw_data): stored text + hash, no re-encoding. */
export function eventLine(event: string, hash: string): string {
  return `${event.slice(0, -1)},"hash":"${hash}"}`;
}

/** Running digest of a selection: SHA-256 over the concatenated event hashes, in order. */
export function newSelectionDigest(): Hash {
  return createHash('sha256');
}

// ---- CSV --------------------------------------------------------------------------------

/** An RFC 4180 cell; null is an unquoted empty cell, the empty string a quoted one. */
export function csvCell(v: string | number | null): string {
  if (v === null) return '';
  const s = typeof v === 'number' ? String(v) : v;
  if (s === '' || /[",\r\n]/.test(s)) return `"${s.replace(/"/g, '""')}"`;
  return s;
}

export function csvRow(r: AuditRecord): string {
  return [
    csvCell(r.seq),
    csvCell(r.time),
    csvCell(r.session),
    csvCell(r.target),
    csvCell(r.type),
    csvCell(JSON.stringify(r.actor)),
    csvCell(JSON.stringify(r.decision)),
    csvCell(JSON.stringify(r.outcome)),
    csvCell(JSON.stringify(r.detail)),
    csvCell(r.prev),
    csvCell(r.hash),
  ].join(',');
}

interface CsvField {
  value: string;
  quoted: boolean;
}

/** Parses one complete CSV record (quotes balanced); undefined if malformed. */
function parseCsvRecord(text: string): CsvField[] | undefined {
  const out: CsvField[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q < 0) return undefined;
        value += text.slice(i, q);
        if (text[q + 1] === '"') {
          value += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      out.push({ value, quoted: true });
    } else {
      const c = text.indexOf(',', i);
      const end = c < 0 ? text.length : c;
      const value = text.slice(i, end);
      if (value.includes('"')) return undefined;
      out.push({ value, quoted: false });
      i = end;
    }
    if (i === text.length) return out;
    if (text[i] !== ',') return undefined;
    i++;
  }
}

function recordFromCsv(fields: CsvField[]): AuditRecord | string {
  if (fields.length !== CSV_COLUMNS.length) return `has ${fields.length} cells, expected ${CSV_COLUMNS.length}`;
  const f = (i: number): CsvField => fields[i] as CsvField;
  const nullable = (c: CsvField): string | null => (c.value === '' && !c.quoted ? null : c.value);
  const json = (c: CsvField, name: string): unknown => {
    try {
      if (c.value === '' && !c.quoted) return null;
      const v = parseJson(c.value);
      if (v === undefined) throw new Error('not JSON');
      return v;
    } catch {
      throw new Error(`${name} is not JSON`);
    }
  };
  if (!/^\d+$/.test(f(0).value)) return 'seq is not a number';
  try {
    return {
      seq: Number(f(0).value),
      time: f(1).value,
      session: nullable(f(2)),
      target: nullable(f(3)),
      type: f(4).value,
      actor: json(f(5), 'actor') as AuditRecord['actor'],
      decision: json(f(6), 'decision') as AuditRecord['decision'],
      outcome: json(f(7), 'outcome') as AuditRecord['outcome'],
      detail: json(f(8), 'detail') as AuditRecord['detail'],
      prev: f(9).value,
      hash: f(10).value,
    };
  } catch (e) {
    return (e as Error).message;
  }
}

// ---- verification -----------------------------------------------------------------------

export type ExportProblem =
  | 'not an export'
  | 'malformed line'
  | 'truncated line'
  | 'truncated export'
  | 'hash mismatch'
  | 'prev mismatch'
  | 'missing event'
  | 'out of order'
  | 'bad anchor'
  | 'end mismatch'
  | 'bad signature';

export type AnchorKind = 'genesis' | 'checkpoint' | 'unverified' | 'empty';

export interface ExportVerifyOk {
  ok: true;
  format: ExportFormat;
  /** Events checked. */
  count: number;
  /** Headers seen (a resumed export has more than one). */
  segments: number;
  first: { seq: number; prev: string } | null;
  last: { seq: number; hash: string } | null;
  anchor: AnchorKind;
  /** The anchor's retention checkpoint signature was checked against the key set. */
  anchorSigned: boolean;
  /** Every segment's end record signature was checked against the key set. */
  endSigned: boolean;
  filtered: boolean;
  /** Places where a filtered export skips events. */
  gaps: number;
  /** What was not (or could not be) checked, for the human. */
  notes: string[];
}

export interface ExportVerifyFailure {
  ok: false;
  problem: ExportProblem;
  /** 1-based line of the file where it was found. */
  line: number;
  seq: number | null;
  message: string;
  /** Events that checked out before it. */
  count: number;
}

export type ExportVerifyResult = ExportVerifyOk | ExportVerifyFailure;

export interface ExportVerifyOptions {
  /** The broker's JWKS: checks the signed checkpoints (anchor and end). Without it they are only parsed. */
  jwks?: unknown;
  /** Sees every event that verified, in order. */
  onRecord?: (record: AuditRecord) => void;
}

class Failed extends Error {
  constructor(
    readonly problem: ExportProblem,
    readonly seq: number | null,
    message: string,
  ) {
    super(message);
  }
}

const HEX64 = /^[0-9a-f]{64}$/;
const HASH_SUFFIX = ',"hash":"';
const HASH_SUFFIX_LEN = HASH_SUFFIX.length + 64 + 2;

interface Segment {
  header: ExportHeader;
  /** SHA-256 of the header's canonical JSON, which the signed end record must name. */
  headerSha256: string;
  count: number;
  last: { seq: number; hash: string } | null;
  digest: Hash;
  ended: boolean;
}

/** Checks an export line by line, holding only the previous event's seq and hash. */
export class ExportVerifier {
  readonly #opts: ExportVerifyOptions;
  #format: ExportFormat | undefined;
  #seg: Segment | undefined;
  #segments = 0;
  #count = 0;
  #first: { seq: number; prev: string } | null = null;
  #last: { seq: number; hash: string } | null = null;
  #anchor: AnchorKind = 'empty';
  #anchorSigned = false;
  #filtered = false;
  #gaps = 0;
  #csvColumnsSeen = false;
  #csvPending = '';
  #csvPendingLine = 0;
  #failure: ExportVerifyFailure | undefined;
  #line = 0;
  #notes = new Set<string>();

  constructor(opts: ExportVerifyOptions = {}) {
    this.#opts = opts;
  }

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Feeds one line (without its newline). `terminated` is false for a last line with no newline. */
  line(text: string, terminated = true): boolean {
    if (this.#failure) return false;
    this.#line++;
    try {
      this.#onLine(text.endsWith('\r') ? text.slice(0, -1) : text, terminated);
      return true;
    } catch (e) {
      if (!(e instanceof Failed)) throw e;
      this.#failure = { ok: false, problem: e.problem, line: this.#line, seq: e.seq, message: e.message, count: this.#count };
      return false;
    }
  }

  result(): ExportVerifyResult {
    if (this.#failure) return this.#failure;
    try {
      if (this.#csvPending !== '') throw new Failed('truncated line', null, `line ${this.#csvPendingLine} opens a quoted CSV cell that never closes: the file was cut off`);
      if (!this.#seg) throw new Failed('not an export', null, 'no export header: this is not an agentgate audit export, or its beginning was cut off');
      if (!this.#seg.ended) {
        const at = this.#last ? `after seq ${this.#last.seq}` : 'before its first event';
        throw new Failed('truncated export', this.#last?.seq ?? null, `the export ends ${at} without its end record (${this.#count} events read): it was cut short; resume it with --after-seq ${this.#last?.seq ?? this.#seg.header.query.after_seq}`);
      }
    } catch (e) {
      if (!(e instanceof Failed)) throw e;
      this.#failure = { ok: false, problem: e.problem, line: this.#line, seq: e.seq, message: e.message, count: this.#count };
      return this.#failure;
    }
    const notes = [...this.#notes];
    if (this.#opts.jwks === undefined) notes.push('signatures not checked: pass --key with the broker\'s JWKS to check the anchor and end records');
    return {
      ok: true,
      format: this.#format ?? 'jsonl',
      count: this.#count,
      segments: this.#segments,
      first: this.#first,
      last: this.#last,
      anchor: this.#anchor,
      anchorSigned: this.#anchorSigned,
      // With keys every end record was checked (an unsigned one fails).
      endSigned: this.#opts.jwks !== undefined,
      filtered: this.#filtered,
      gaps: this.#gaps,
      notes,
    };
  }

  #onLine(text: string, terminated: boolean): void {
    if (this.#format === 'csv' && this.#csvPending !== '') {
      this.#csvPending += '\n' + text;
      if (countQuotes(this.#csvPending) % 2 === 0) {
        const rec = this.#csvPending;
        this.#csvPending = '';
        this.#csvRecord(rec, terminated);
      }
      return;
    }
    if (text === '') return;
    if (this.#format === undefined) {
      // The first line decides the format: a CSV export starts with a comment line.
      const obj = text.startsWith('# ') ? parseJson(text.slice(2)) : parseJson(text);
      const h = obj as Partial<ExportHeader> | undefined;
      if (h?.type !== EXPORT_HEADER_TYPE) {
        if (!terminated) throw new Failed('truncated line', null, 'the file ends inside its first line');
        throw new Failed('not an export', null, 'the first line is not an agentgate export header');
      }
      if (!EXPORT_FORMATS.includes(h.format as ExportFormat)) throw new Failed('not an export', null, `unknown export format ${JSON.stringify(h.format)}`);
      this.#format = h.format as ExportFormat;
    }
    if (this.#format === 'csv') {
      if (text.startsWith('#')) {
        const obj = parseJson(text.replace(/^#\s?/, ''));
        if (obj === undefined) throw this.#unparsable(terminated, 'a comment line is not a JSON control record');
        this.#control(obj, terminated);
        return;
      }
      if (!this.#seg) throw new Failed('not an export', null, 'CSV rows before the export header');
      if (text === CSV_COLUMNS.join(',')) {
        this.#csvColumnsSeen = true;
        return;
      }
      if (!this.#csvColumnsSeen) throw new Failed('malformed line', null, `expected the column line ${CSV_COLUMNS.join(',')}`);
      if (countQuotes(text) % 2 === 1) {
        this.#csvPending = text;
        this.#csvPendingLine = this.#line;
        return;
      }
      this.#csvRecord(text, terminated);
      return;
    }
    const obj = parseJson(text);
    if (obj === undefined || obj === null || typeof obj !== 'object') throw this.#unparsable(terminated, 'not a JSON object, or one that names a member twice');
    const o = obj as Record<string, unknown>;
    if ((o['type'] === EXPORT_HEADER_TYPE || o['type'] === EXPORT_END_TYPE) && o['hash'] === undefined && o['class_uid'] === undefined) {
      this.#control(o, terminated);
      return;
    }
    if (this.#format === 'ocsf') {
      const raw = o['raw_data'];
      if (typeof raw !== 'string') throw new Failed('malformed line', seqOf(o['metadata']), 'an OCSF event without raw_data (the agentgate record it was mapped from)');
      const rec = parseJson(raw);
      if (rec === undefined || rec === null || typeof rec !== 'object') throw new Failed('malformed line', seqOf(o['metadata']), 'raw_data is not a JSON record');
      const mapped = seqOf(o['metadata']);
      this.#record(rec as AuditRecord, raw);
      if (mapped !== (rec as AuditRecord).seq) {
        throw new Failed('hash mismatch', (rec as AuditRecord).seq, `seq ${(rec as AuditRecord).seq}: the OCSF metadata.sequence says ${String(mapped)}: the mapped fields were altered`);
      }
      // A SIEM reads the mapped fields, not raw_data: they must be exactly what raw_data maps
      // to, or an edited actor, action or statement would pass as verified.
      if (!sameOcsf(o, rec as AuditRecord, raw)) {
        throw new Failed('hash mismatch', (rec as AuditRecord).seq, `seq ${(rec as AuditRecord).seq}: the OCSF fields are not what its raw_data maps to: the mapped fields were altered`);
      }
      return;
    }
    this.#record(o as unknown as AuditRecord, text);
  }

  #unparsable(terminated: boolean, why: string): Failed {
    const after = this.#last ? ` (after seq ${this.#last.seq})` : '';
    if (!terminated) return new Failed('truncated line', this.#last ? this.#last.seq + 1 : null, `the last line${after} is cut off mid-record: the file was truncated`);
    return new Failed('malformed line', null, `line ${this.#line}${after}: ${why}`);
  }

  #csvRecord(text: string, terminated: boolean): void {
    const fields = parseCsvRecord(text);
    if (!fields) throw this.#unparsable(terminated, 'not a valid CSV row');
    const rec = recordFromCsv(fields);
    if (typeof rec === 'string') {
      const seq = /^\d+/.exec(text)?.[0];
      if (!terminated) throw this.#unparsable(false, rec);
      throw new Failed('malformed line', seq ? Number(seq) : null, `line ${this.#line}${seq ? ` (seq ${seq})` : ''}: ${rec}`);
    }
    this.#record(rec, undefined);
  }

  #control(obj: unknown, terminated: boolean): void {
    const o = obj as Record<string, unknown>;
    if (o['type'] === EXPORT_HEADER_TYPE) this.#header(o as unknown as ExportHeader);
    else if (o['type'] === EXPORT_END_TYPE) this.#end(o as unknown as ExportEnd);
    else if (!terminated) throw this.#unparsable(false, '');
    else throw new Failed('malformed line', null, `line ${this.#line}: unknown control record ${JSON.stringify(o['type'])}`);
  }

  #header(h: ExportHeader): void {
    const p = h.anchor as Partial<ExportHeader['anchor']> | undefined;
    if (!p || (p.prev !== null && (typeof p.prev !== 'string' || !HEX64.test(p.prev))) || (p.first_seq !== null && !Number.isSafeInteger(p.first_seq))) {
      throw new Failed('bad anchor', null, `line ${this.#line}: the export header's anchor is malformed`);
    }
    const a = h.anchor;
    if (h.format !== this.#format) throw new Failed('malformed line', null, `line ${this.#line}: a ${String(h.format)} segment inside a ${this.#format} export`);
    const afterSeq = (h.query as Partial<ExportQuery> | undefined)?.after_seq;
    if (!Number.isSafeInteger(afterSeq) || (afterSeq as number) < 0) throw new Failed('bad anchor', null, `line ${this.#line}: the export header's query.after_seq is missing or malformed`);
    let headerSha256: string;
    try {
      headerSha256 = sha256Hex(canonicalJson(h));
    } catch (e) {
      throw new Failed('malformed line', null, `line ${this.#line}: the export header has no canonical form (${(e as Error).message})`);
    }
    const prevSeg = this.#seg;
    this.#segments++;
    if (h.filtered) this.#filtered = true;
    this.#seg = { header: h, headerSha256, count: 0, last: null, digest: newSelectionDigest(), ended: false };
    this.#csvColumnsSeen = false;
    if (prevSeg) {
      // A resumed export: the new segment must pick up exactly where the last one stopped.
      if (a.first_seq !== null && this.#last && !h.filtered && (a.first_seq !== this.#last.seq + 1 || a.prev !== this.#last.hash)) {
        throw new Failed('bad anchor', a.first_seq ?? null, `segment ${this.#segments} starts at seq ${a.first_seq} (prev ${a.prev}), but the previous segment ended at seq ${this.#last.seq} (hash ${this.#last.hash})`);
      }
      if (a.first_seq !== null && this.#last && a.first_seq <= this.#last.seq) {
        throw new Failed('out of order', a.first_seq ?? null, `segment ${this.#segments} starts at seq ${a.first_seq}, before the end of the previous one (seq ${this.#last.seq})`);
      }
      // Resuming continues after the last event in the file (agentgate audit export
      // --after-seq N); the header's after_seq is signed (header_sha256), so a segment
      // cannot be dropped from between two others, filtered or not.
      if (this.#last && afterSeq !== this.#last.seq) {
        throw new Failed('bad anchor', a.first_seq ?? null, `segment ${this.#segments} continues after seq ${String(afterSeq)}, but the events before it end at seq ${this.#last.seq}: a segment was removed or the segments reordered`);
      }
      if (this.#opts.jwks !== undefined && !prevSeg.ended && (prevSeg.header.filtered || h.filtered || a.first_seq === null)) {
        // An interrupted segment has no signed end record; its events are proven only by the
        // next segment's first event linking to them by hash, which a filtered (or empty) next
        // segment does not do.
        throw new Failed('bad signature', this.#last?.seq ?? null, `segment ${this.#segments - 1} was interrupted, so no signature covers its events, and segment ${this.#segments} does not link to them by hash (filtered or empty)`);
      }
      if (!prevSeg.ended) this.#notes.add(`segment ${this.#segments - 1} was interrupted and resumed by segment ${this.#segments}`);
      return;
    }
    if (a.first_seq === null || a.prev === null) {
      this.#anchor = 'empty';
      return;
    }
    if (a.first_seq === 1) {
      if (a.prev !== GENESIS_PREV) throw new Failed('bad anchor', 1, `the export starts at seq 1, whose prev must be ${GENESIS_PREV}; the anchor says ${a.prev}`);
      this.#anchor = 'genesis';
      return;
    }
    if (a.checkpoint) {
      let cp: AuditCheckpoint;
      try {
        if (this.#opts.jwks !== undefined) {
          cp = verifyCheckpoint(a.checkpoint, this.#opts.jwks).checkpoint;
          this.#anchorSigned = true;
        } else {
          cp = peekCheckpoint(a.checkpoint);
        }
      } catch (e) {
        if (e instanceof ReceiptVerifyError) throw new Failed(e.problem === 'bad signature' || e.problem === 'unknown key' ? 'bad signature' : 'bad anchor', a.first_seq, `the anchor's retention checkpoint: ${e.message}`);
        throw e;
      }
      if (cp.seq !== a.first_seq - 1 || cp.hash !== a.prev) {
        throw new Failed('bad anchor', a.first_seq, `the anchor (seq ${a.first_seq - 1}, ${a.prev}) does not match its retention checkpoint (seq ${cp.seq}, ${cp.hash})`);
      }
      this.#anchor = 'checkpoint';
      return;
    }
    this.#anchor = 'unverified';
    this.#notes.add(`the export starts at seq ${a.first_seq} after ${a.prev}: check that hash against the last event of the export before it (or a receipt's head)`);
  }

  #record(r: AuditRecord, line: string | undefined): void {
    const seg = this.#seg;
    if (!seg) throw new Failed('not an export', null, 'an event before the export header');
    if (seg.ended) throw new Failed('malformed line', null, `line ${this.#line}: an event after the export's end record`);
    const seq = typeof r?.seq === 'number' && Number.isSafeInteger(r.seq) && r.seq > 0 ? r.seq : null;
    if (seq === null) throw new Failed('malformed line', null, `line ${this.#line}: an event without a valid seq`);
    if (typeof r.hash !== 'string' || !HEX64.test(r.hash)) throw new Failed('malformed line', seq, `seq ${seq}: hash is not 64 hex digits`);
    if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) throw new Failed('malformed line', seq, `seq ${seq}: prev is not 64 hex digits`);

    // Fast path: the line is the stored text plus "hash" — hash that text directly.
    let ok = false;
    if (line !== undefined && line.length > HASH_SUFFIX_LEN && line.startsWith(HASH_SUFFIX, line.length - HASH_SUFFIX_LEN) && line.endsWith('"}')) {
      // One-shot hash: no Hash object (and its native context) per line.
      ok = oneShotHash('sha256', line.slice(0, line.length - HASH_SUFFIX_LEN) + '}', 'hex') === r.hash;
    }
    if (!ok) {
      let actual: string;
      try {
        actual = eventHash(r);
      } catch (e) {
        throw new Failed('malformed line', seq, `seq ${seq}: ${(e as Error).message}`);
      }
      if (actual !== r.hash) throw new Failed('hash mismatch', seq, `seq ${seq}: its content hashes to ${actual}, but the record says ${r.hash}: the event was altered`);
    }

    const a = seg.header.anchor;
    if (seg.count === 0) {
      if (a.first_seq === null) throw new Failed('bad anchor', seq, `the header says the export is empty, but seq ${seq} follows it`);
      if (seq < a.first_seq) throw new Failed('out of order', seq, `seq ${seq} comes before the export's first event, seq ${a.first_seq}: the events were reordered`);
      if (seq > a.first_seq) {
        if (!seg.header.filtered) throw new Failed('missing event', a.first_seq, `seq ${a.first_seq} is missing: the export starts there, but its first event is seq ${seq} (deleted or moved)`);
      } else if (r.prev !== a.prev) {
        throw new Failed('bad anchor', seq, `seq ${seq}: prev is ${r.prev}, but the export's anchor is ${a.prev}`);
      }
    } else {
      const last = seg.last as { seq: number; hash: string };
      if (seq <= last.seq) throw new Failed('out of order', seq, `seq ${seq} appears after seq ${last.seq}: the events were reordered or duplicated`);
      if (seq > last.seq + 1) {
        if (!seg.header.filtered) {
          throw new Failed('missing event', last.seq + 1, `seq ${last.seq + 1} is missing: seq ${seq} follows seq ${last.seq} (an event was deleted, or the events reordered)`);
        }
        this.#gaps++;
        this.#notes.add('filtered export: links across the events it leaves out cannot be checked; the signed end record covers exactly the events selected');
      } else if (r.prev !== last.hash) {
        throw new Failed('prev mismatch', seq, `seq ${seq}: prev is ${r.prev}, but seq ${last.seq} hashes to ${last.hash}: an event was replaced or the chain spliced`);
      }
    }
    seg.count++;
    seg.last = { seq, hash: r.hash };
    seg.digest.update(r.hash, 'latin1');
    this.#count++;
    this.#first ??= { seq, prev: r.prev };
    this.#last = { seq, hash: r.hash };
    this.#opts.onRecord?.(r);
  }

  #end(e: ExportEnd): void {
    const seg = this.#seg;
    if (!seg) throw new Failed('not an export', null, 'an end record before the export header');
    if (seg.ended) throw new Failed('malformed line', null, `line ${this.#line}: a second end record`);
    if (e.count !== seg.count) {
      throw new Failed(e.count > seg.count ? 'missing event' : 'end mismatch', seg.last?.seq ?? null, `the end record counts ${e.count} events, but the segment holds ${seg.count}`);
    }
    const last = e.last ?? null;
    if ((last === null) !== (seg.last === null) || (last && seg.last && (last.seq !== seg.last.seq || last.hash !== seg.last.hash))) {
      throw new Failed('end mismatch', seg.last?.seq ?? null, `the end record names seq ${last?.seq ?? 'none'} as the last event, but the segment ends with seq ${seg.last?.seq ?? 'none'}`);
    }
    const digest = seg.digest.digest('hex');
    if (this.#opts.jwks !== undefined) {
      if (!e.checkpoint) {
        // The broker signs every end record; with its keys at hand, an unsigned one is a
        // rewrite (a forged chain, a cut-off tail with a new end record), not a lesser proof.
        throw new Failed('bad signature', seg.last?.seq ?? null, `segment ${this.#segments}'s end record is not signed: the broker signs every export, so this one was rewritten`);
      }
      let cp: AuditCheckpoint;
      try {
        cp = verifyCheckpoint(e.checkpoint, this.#opts.jwks).checkpoint;
      } catch (err) {
        if (err instanceof ReceiptVerifyError) throw new Failed('bad signature', seg.last?.seq ?? null, `the end record's signature: ${err.message}`);
        throw err;
      }
      const x = cp.export;
      if (cp.reason !== 'export' || !x || x.count !== seg.count || x.events_sha256 !== digest || (seg.last && (cp.seq !== seg.last.seq || cp.hash !== seg.last.hash))) {
        throw new Failed('bad signature', seg.last?.seq ?? null, 'the signed end record does not match the events in the export: events were added, removed, reordered or altered');
      }
      if (x.header_sha256 !== seg.headerSha256) {
        throw new Failed(
          'bad signature',
          seg.last?.seq ?? null,
          x.header_sha256 === undefined
            ? `segment ${this.#segments}'s signed end record does not cover its header (an export from an older broker): its anchor and selection cannot be trusted; export again`
            : `segment ${this.#segments}'s header (anchor, selection, filtered) is not the one the broker signed: it was altered`,
        );
      }
    }
    seg.ended = true;
  }
}

/**
 * The OCSF line equals the mapping of its verified record. Only the product version is
 * taken from the line (exports made by another agentgate version say which one made them);
 * every other member must be what this mapping gives.
 */
function sameOcsf(line: Record<string, unknown>, record: AuditRecord, raw: string): boolean {
  const expected = toOcsf(record, raw);
  const version = (line['metadata'] as { product?: { version?: unknown } } | null | undefined)?.product?.version;
  const meta = expected['metadata'] as { product: { version: unknown } };
  meta.product = { ...meta.product, version };
  try {
    return canonicalJson(line) === canonicalJson(expected);
  } catch {
    return false;
  }
}

function countQuotes(s: string): number {
  let n = 0;
  for (let i = s.indexOf('"'); i >= 0; i = s.indexOf('"', i + 1)) n++;
  return n;
}

/**
 * JSON.parse, but text with a member name twice in one object is no JSON this verifier
 * accepts (undefined): JSON.parse keeps the last value and other readers may keep the first,
 * so such a line verifies as one record and reads as another (a SIEM, jq, a script).
 */
function parseJson(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
  return hasDuplicateMember(text) ? undefined : value;
}

/**
 * Whether valid JSON text repeats a member name within one object. One pass: a stack of
 * the member names seen per open object (null for arrays); a string right after `{` or a
 * `,` inside an object is a member name, decoded before comparing (`"a"` and `"\u0061"`).
 */
function hasDuplicateMember(text: string): boolean {
  const stack: (Set<string> | null)[] = [];
  let expectName = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const names = stack[stack.length - 1];
      if (expectName && names) {
        const name = JSON.parse(text.slice(i, j + 1)) as string;
        if (names.has(name)) return true;
        names.add(name);
      }
      expectName = false;
      i = j;
    } else if (ch === 0x7b /* { */) {
      stack.push(new Set());
      expectName = true;
    } else if (ch === 0x5b /* [ */) {
      stack.push(null);
      expectName = false;
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) {
      stack.pop();
      expectName = false;
    } else if (ch === 0x2c /* , */) {
      expectName = stack[stack.length - 1] != null;
    }
  }
  return false;
}

function seqOf(metadata: unknown): number | null {
  const s = (metadata as { sequence?: unknown } | null)?.sequence;
  return typeof s === 'number' ? s : null;
}

/** Splits a text stream into lines and verifies them. */
export async function verifyExport(chunks: AsyncIterable<string | Buffer> | Iterable<string | Buffer>, opts: ExportVerifyOptions = {}): Promise<ExportVerifyResult> {
  const v = new ExportVerifier(opts);
  let rest = '';
  const decoder = new TextDecoder('utf-8', { fatal: false });
  outer: for await (const chunk of chunks) {
    const text = rest + (typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
    let start = 0;
    for (let nl = text.indexOf('\n', start); nl >= 0; nl = text.indexOf('\n', start)) {
      if (!v.line(text.slice(start, nl))) break outer;
      start = nl + 1;
    }
    rest = text.slice(start);
  }
  if (!v.failed) {
    rest += decoder.decode();
    if (rest !== '') v.line(rest, false);
  }
  return v.result();
}

/** Canonical JSON of a header or end record (one line). */
export function controlLine(record: ExportHeader | ExportEnd): string {
  return canonicalJson(record);
}
