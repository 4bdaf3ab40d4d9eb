/**
 * Writes an audit export (format in src/shared/audit-export.ts) to a sink, streaming: events
 * come from the store a page at a time and each page is written, waiting for the sink to
 * drain, before the next is read — memory stays flat whatever the size of the log.
 *
 * Selection. `since`/`until` pick a contiguous slice of the chain — from the first event at
 * or after `since` up to (not including) the first event at or after `until` — so a time
 * window verifies link by link like a full export. `target`/`session` filters select single
 * events and leave gaps; such an export is marked `filtered`. Nothing past the head at the
 * start of the export is included, so an export of a busy log still ends.
 */
import { GENESIS_PREV, canonicalJson, hashedText, sha256Hex, type AuditRecord } from '../../shared/audit-hash.js';
import {
  CSV_COLUMNS,
  EXPORT_END_TYPE,
  EXPORT_HEADER_TYPE,
  controlLine,
  csvRow,
  eventLine,
  newSelectionDigest,
  type ExportEnd,
  type ExportFormat,
  type ExportHeader,
  type ExportQuery,
} from '../../shared/audit-export.js';
import { CHECKPOINT_PAYLOAD_TYPE, statementBytes, type AuditCheckpoint } from '../../shared/receipt.js';
import type { ReceiptSigner } from '../receipts/types.js';
import { signEnvelope } from '../receipts/signer.js';
import { normalizeAuditQuery, type AuditQuery, type AuditStore, type ExportPage, type RawAuditRow } from './store.js';
import { toOcsf } from '../../shared/ocsf.js';

export interface ExportRequest {
  format: ExportFormat;
  since?: string | Date;
  until?: string | Date;
  target?: string;
  session?: string;
  afterSeq?: number;
}

/** Where export bytes go: an HTTP response, a file stream. */
export interface ExportSink {
  /** Returns false when the sink wants the writer to wait for drain(). */
  write(chunk: string): boolean;
  /** Resolves when the sink can take more; rejects if it closed meanwhile. */
  drain(): Promise<void>;
}

export interface ExportDeps {
  store: AuditStore;
  signer: ReceiptSigner;
  brokerUrl: string;
  jwksUri: string;
  now?: () => Date;
}

export interface ExportSummary {
  count: number;
  first: { seq: number; prev: string } | null;
  last: { seq: number; hash: string } | null;
  untilSeq: number;
}

/** Events per page for formats rendered here (csv, ocsf): small, like the store's jsonl pages. */
const PAGE = 100;

export async function writeExport(deps: ExportDeps, req: ExportRequest, sink: ExportSink, signal?: AbortSignal): Promise<ExportSummary> {
  const nq = normalizeAuditQuery({
    afterSeq: req.afterSeq,
    since: req.since,
    until: req.until,
    ...(req.target !== undefined ? { target: req.target } : {}),
    ...(req.session !== undefined ? { session: req.session } : {}),
  });
  const { store } = deps;
  const now = deps.now ?? (() => new Date());
  // A store several brokers write: the head is whatever any of them wrote last.
  const untilSeq = store.refreshHead ? (await store.refreshHead()).seq : store.head().seq;
  const filtered = nq.target !== undefined || nq.session !== undefined;

  let afterSeq = nq.afterSeq;
  let throughSeq = untilSeq;
  if (!filtered) {
    // A time window is a contiguous slice: from the first event at or after `since` to
    // just before the first event at or after `until`.
    if (nq.since !== undefined) {
      const first = await firstSeqFrom(store, afterSeq, nq.since);
      afterSeq = first === undefined ? untilSeq : Math.max(afterSeq, first - 1);
    }
    if (nq.until !== undefined) {
      const stop = await firstSeqFrom(store, afterSeq, nq.until);
      if (stop !== undefined) throughSeq = Math.min(throughSeq, stop - 1);
    }
  }
  const q: AuditQuery = filtered ? { afterSeq, since: nq.since, until: nq.until, target: nq.target, session: nq.session } : { afterSeq };
  const it = pagesOf(store, q, throughSeq, req.format)[Symbol.asyncIterator]();

  const write = async (chunk: string): Promise<void> => {
    if (signal?.aborted) throw signal.reason ?? new Error('export aborted');
    if (!sink.write(chunk)) await sink.drain();
  };

  try {
    let next = await it.next();
    const firstPage = next.done ? undefined : next.value;
    const firstRecord = firstPage ? await recordAt(store, firstPage.firstSeq) : undefined;
    const query: ExportQuery = { after_seq: nq.afterSeq, until_seq: untilSeq };
    if (nq.since !== undefined) query.since = nq.since;
    if (nq.until !== undefined) query.until = nq.until;
    if (nq.target !== undefined) query.target = nq.target;
    if (nq.session !== undefined) query.session = nq.session;
    const checkpoint = firstRecord && firstRecord.seq > 1 ? store.checkpointAt?.(firstRecord.seq - 1) : undefined;
    const header: ExportHeader = {
      type: EXPORT_HEADER_TYPE,
      version: 1,
      format: req.format,
      created_at: now().toISOString(),
      broker: { url: deps.brokerUrl, jwks_uri: deps.jwksUri },
      query,
      filtered,
      anchor: {
        prev: firstRecord ? firstRecord.prev : null,
        first_seq: firstRecord ? firstRecord.seq : null,
        checkpoint: checkpoint && checkpoint.hash === firstRecord?.prev ? checkpoint.envelope : null,
      },
    };
    await write(control(req.format, header) + (req.format === 'csv' ? CSV_COLUMNS.join(',') + '\n' : ''));

    const digest = newSelectionDigest();
    let count = 0;
    let last: { seq: number; hash: string } | undefined;
    while (!next.done) {
      const page = next.value;
      digest.update(page.hashes, 'latin1');
      count += page.count;
      last = { seq: page.lastSeq, hash: page.hashes.slice(-64) };
      await write(page.lines);
      next = await it.next();
    }

    const lastTime = last ? (await recordAt(store, last.seq))?.time : undefined;
    const cp: AuditCheckpoint = {
      type: 'agentgate.audit.checkpoint',
      version: 1,
      reason: 'export',
      seq: last?.seq ?? 0,
      hash: last?.hash ?? GENESIS_PREV,
      time: lastTime ?? now().toISOString(),
      created_at: now().toISOString(),
      export: { count, events_sha256: digest.digest('hex'), header_sha256: sha256Hex(canonicalJson(header)) },
    };
    const end: ExportEnd = {
      type: EXPORT_END_TYPE,
      count,
      last: last ?? null,
      checkpoint: await signEnvelope(deps.signer, CHECKPOINT_PAYLOAD_TYPE, statementBytes(cp)),
    };
    await write(control(req.format, end));
    return { count, first: firstRecord ? { seq: firstRecord.seq, prev: firstRecord.prev } : null, last: last ?? null, untilSeq };
  } finally {
    await it.return?.();
  }
}

async function firstSeqFrom(store: AuditStore, afterSeq: number, since: string): Promise<number | undefined> {
  for await (const r of store.read({ afterSeq, since, limit: 1 })) return r.seq;
  return undefined;
}

async function recordAt(store: AuditStore, seq: number): Promise<AuditRecord | undefined> {
  for await (const r of store.read({ afterSeq: seq - 1, limit: 1 })) return r.seq === seq ? r : undefined;
  return undefined;
}

function control(format: ExportFormat, record: ExportHeader | ExportEnd): string {
  return (format === 'csv' ? '# ' : '') + controlLine(record) + '\n';
}

function render(format: ExportFormat, row: RawAuditRow): string {
  const line = eventLine(row.event, row.hash);
  if (format === 'jsonl') return line + '\n';
  const record = JSON.parse(line) as AuditRecord;
  if (format === 'csv') return csvRow(record) + '\n';
  return JSON.stringify(toOcsf(record, line)) + '\n';
}

/**
 * Pages to write. jsonl from a store that builds pages itself (SQLite) never puts event
 * text on the JavaScript heap; other formats parse and render each stored row.
 */
async function* pagesOf(store: AuditStore, q: AuditQuery, throughSeq: number, format: ExportFormat): AsyncIterable<ExportPage> {
  const clean = Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)) as AuditQuery;
  if (format === 'jsonl' && store.readExportPages) {
    yield* store.readExportPages({ ...clean, throughSeq });
    return;
  }
  let text = '';
  let hashes = '';
  let count = 0;
  let firstSeq = 0;
  let lastSeq = 0;
  const flush = (): ExportPage => {
    const page = { count, firstSeq, lastSeq, hashes, lines: text };
    text = '';
    hashes = '';
    count = 0;
    return page;
  };
  const rows: AsyncIterable<RawAuditRow> = store.readRaw ? store.readRaw(clean) : rawFromRecords(store, clean);
  for await (const r of rows) {
    if (r.seq > throughSeq) break;
    if (count === 0) firstSeq = r.seq;
    text += render(format, r);
    hashes += r.hash;
    lastSeq = r.seq;
    if (++count >= PAGE) yield flush();
  }
  if (count > 0) yield flush();
}

async function* rawFromRecords(store: AuditStore, q: AuditQuery): AsyncIterable<RawAuditRow> {
  for await (const r of store.read(q)) {
    yield { seq: r.seq, time: r.time, session: r.session, target: r.target, type: r.type, event: hashedText(r), prev: r.prev, hash: r.hash };
  }
}
