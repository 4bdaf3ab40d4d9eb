/**
 * `agentgate audit export` and `audit verify`, the services behind the commands.
 *
 * Export streams the broker's response straight to the file (or stdout) with backpressure;
 * memory stays flat. Resume: when --out exists, --after-seq N must be the last complete
 * event in it; a cut-off last line is trimmed and a new segment is appended, which
 * `audit verify` checks continues exactly where the file stopped.
 */
import { createReadStream, writeSync } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import { AgentgateError, UsageError } from '../errors.js';
import {
  EXPORT_END_TYPE,
  EXPORT_HEADER_TYPE,
  verifyExport,
  type ExportFormat,
  type ExportHeader,
  type ExportVerifyOptions,
  type ExportVerifyResult,
} from '../shared/audit-export.js';
import { apiError, transportError } from './broker-http.js';
import { TerminalLines } from '../shared/display-text.js';
import { openBrokerSession, type BrokerSessionFlags } from './broker-session.js';

export interface ExportSelection {
  since?: string;
  until?: string;
  target?: string;
  session?: string;
  afterSeq?: number;
  format: ExportFormat;
}

export interface ExportProgress {
  /** Seq of the last event written so far (null before the first). */
  seq: number | null;
  /** Where this export's events start and stop (from its header). */
  fromSeq: number | null;
  untilSeq: number | null;
  bytes: number;
}

export interface ExportResult {
  out: string | null;
  format: ExportFormat;
  /** Events in this run (the end record's count). */
  events: number;
  first_seq: number | null;
  last_seq: number | null;
  bytes: number;
  /** True when a new segment was appended to an existing file. */
  resumed: boolean;
}

export interface ExportCallOptions {
  flags: BrokerSessionFlags;
  selection: ExportSelection;
  /** File to write; undefined = `stdout`. */
  out?: string;
  stdout?: Writable;
  onProgress?: (p: ExportProgress) => void;
  env?: NodeJS.ProcessEnv;
}

export async function exportAudit(opts: ExportCallOptions): Promise<ExportResult> {
  const sel = opts.selection;
  let fh: FileHandle | undefined;
  let resumed = false;
  if (opts.out !== undefined) {
    const existing = await stat(opts.out).catch(() => undefined);
    if (existing) {
      const tail = await scanTail(opts.out, sel.format);
      if (sel.afterSeq === undefined) {
        throw new UsageError(`${opts.out} already exists`, {
          hint: tail.lastSeq === null
            ? 'choose another --out, or delete the file'
            : tail.complete
              ? `it is a complete export up to seq ${tail.lastSeq}; to add what came after, run the same command with --after-seq ${tail.lastSeq} (or choose another --out)`
              : `it was cut off after seq ${tail.lastSeq}; to resume, run the same command with --after-seq ${tail.lastSeq}`,
        });
      }
      if (tail.format !== undefined && tail.format !== sel.format) {
        throw new UsageError(`${opts.out} holds a ${tail.format} export; cannot append ${sel.format}`, { hint: `use --format ${tail.format}, or another --out` });
      }
      if (tail.lastSeq !== sel.afterSeq) {
        throw new UsageError(`--after-seq ${sel.afterSeq} does not continue ${opts.out}, whose last complete event is ${tail.lastSeq === null ? 'none' : `seq ${tail.lastSeq}`}`, {
          hint: tail.lastSeq === null ? 'choose another --out' : `use --after-seq ${tail.lastSeq}`,
        });
      }
      fh = await open(opts.out, 'r+');
      await fh.truncate(tail.keepBytes);
      await fh.close();
      fh = await open(opts.out, 'a', 0o600);
      resumed = true;
    } else {
      fh = await open(opts.out, 'wx', 0o600);
    }
  }

  const session = await openBrokerSession(opts.flags, opts.env);
  try {
    const t = await session.token();
    const q = new URLSearchParams({ format: sel.format });
    if (sel.since !== undefined) q.set('since', sel.since);
    if (sel.until !== undefined) q.set('until', sel.until);
    if (sel.target !== undefined) q.set('target', sel.target);
    if (sel.session !== undefined) q.set('session', sel.session);
    if (sel.afterSeq !== undefined) q.set('after_seq', String(sel.afterSeq));
    const url = `${session.url}/v1/audit/export?${q.toString()}`;
    let res: Dispatcher.ResponseData;
    try {
      // No body timeout: a large export may pause while the disk catches up.
      res = await request(url, { dispatcher: session.dispatcher, headers: { authorization: `Bearer ${t.token}` }, bodyTimeout: 0 });
    } catch (err) {
      throw transportError(err, url);
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      throw apiError(res.statusCode, json, { brokerUrl: session.url, discovery: session.discovery, source: session.tokenContext(t).source });
    }
    return await copyExport(res.body, fh, opts, resumed);
  } finally {
    await fh?.close().catch(() => undefined);
    await session.close();
  }
}

/**
 * Copies the body to the file or stdout. Only a few lines are decoded on the way: the
 * first (the header) and each chunk's last complete line (progress, and the end record).
 */
async function copyExport(body: AsyncIterable<Buffer>, fh: FileHandle | undefined, opts: ExportCallOptions, resumed: boolean): Promise<ExportResult> {
  const format = opts.selection.format;
  const stdout = opts.stdout ?? process.stdout;
  // On a terminal the export is read, not kept: agent text in it (statements, reasons,
  // names) is shown escaped there. A file or a pipe gets the exact bytes.
  const shown = !fh && (stdout as NodeJS.WriteStream).isTTY === true ? new TerminalLines(format !== 'csv') : undefined;
  const toStdout = async (data: Uint8Array | string): Promise<void> => {
    if (data.length > 0 && !stdout.write(data)) await new Promise<void>((r) => stdout.once('drain', () => r()));
  };
  let bytes = 0;
  /** Bytes after the last newline seen (a line still arriving). */
  let carry: Buffer = Buffer.alloc(0);
  let headerBytes: Buffer | undefined = Buffer.alloc(0);
  let header: ExportHeader | undefined;
  let endLine: string | undefined;
  let lastSeq: number | null = null;
  let lastReport = 0;
  const incomplete = (why: string, cause?: unknown): AgentgateError =>
    new AgentgateError('AG_EXPORT_INCOMPLETE', `the export stopped ${why} (last event seq ${lastSeq ?? 'none'}, ${bytes} bytes)`, 1, {
      hint: opts.out ? `resume it: run the same command with --after-seq ${lastSeq ?? opts.selection.afterSeq ?? 0}` : 'run the export again (with --out FILE it can be resumed)',
      cause,
    });
  try {
    for await (const chunk of body) {
      bytes += chunk.length;
      // Synchronous: the chunk dies here instead of surviving an await, which keeps V8's young
      // generation (and so the CLI's RSS) small; the page cache makes the write itself quick.
      if (fh) for (let off = 0; off < chunk.length; ) off += writeSync(fh.fd, chunk, off);
      else if (shown) await toStdout(shown.write(chunk));
      else if (!stdout.write(chunk)) await new Promise<void>((r) => stdout.once('drain', () => r()));

      if (headerBytes) {
        const nl = chunk.indexOf(10);
        if (nl < 0) headerBytes = Buffer.concat([headerBytes, chunk]);
        else {
          header = parseControl(Buffer.concat([headerBytes, chunk.subarray(0, nl)]).toString('utf8'), format) as ExportHeader | undefined;
          headerBytes = undefined;
        }
      }
      const nl = chunk.lastIndexOf(10);
      if (nl < 0) {
        carry = Buffer.concat([carry, chunk]);
        continue;
      }
      const prevNl = nl > 0 ? chunk.lastIndexOf(10, nl - 1) : -1;
      const line = (prevNl >= 0 ? chunk.subarray(prevNl + 1, nl) : Buffer.concat([carry, chunk.subarray(0, nl)])).toString('utf8');
      // A copy: a view would keep the whole chunk alive.
      carry = Buffer.from(chunk.subarray(nl + 1));
      const ctl = parseControl(line, format);
      if (ctl?.type === EXPORT_END_TYPE) endLine = line;
      else {
        endLine = undefined;
        const s = seqOfLine(line, format);
        if (s !== null) lastSeq = s;
      }
      const now = Date.now();
      if (opts.onProgress && now - lastReport > 100) {
        lastReport = now;
        opts.onProgress({ seq: lastSeq, fromSeq: header?.anchor?.first_seq ?? null, untilSeq: header?.query?.until_seq ?? null, bytes });
      }
    }
  } catch (err) {
    if (fh) await fh.sync().catch(() => undefined);
    throw incomplete(`when the connection broke: ${(err as Error).message}`, err);
  }
  if (fh) await fh.sync();
  if (shown) await toStdout(shown.end());
  const end = endLine !== undefined && carry.length === 0 ? (parseControl(endLine, format) as { count?: number; last?: { seq: number } | null } | undefined) : undefined;
  if (!end || header?.type !== EXPORT_HEADER_TYPE) throw incomplete('before its end record');
  opts.onProgress?.({ seq: end.last?.seq ?? lastSeq, fromSeq: header.anchor.first_seq, untilSeq: header.query.until_seq, bytes });
  return {
    out: opts.out ?? null,
    format,
    events: end.count ?? 0,
    first_seq: header.anchor.first_seq,
    last_seq: end.last?.seq ?? null,
    bytes,
    resumed,
  };
}

function parseControl(line: string, format: ExportFormat): { type?: string } & Record<string, unknown> | undefined {
  const text = format === 'csv' ? (line.startsWith('# ') ? line.slice(2) : undefined) : line;
  // Cheap test first: this runs on a line of every chunk.
  if (text === undefined || !text.startsWith('{"') || !text.includes(EXPORT_HEADER_TYPE)) return undefined;
  try {
    const o = JSON.parse(text) as { type?: string; hash?: unknown; class_uid?: unknown };
    return (o.type === EXPORT_HEADER_TYPE || o.type === EXPORT_END_TYPE) && o.hash === undefined && o.class_uid === undefined ? (o as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The seq of an event line, or null if it is not one. */
function seqOfLine(line: string, format: ExportFormat): number | null {
  if (format === 'csv') {
    const m = /^(\d+),/.exec(line);
    return m ? Number(m[1]) : null;
  }
  try {
    const o = JSON.parse(line) as { seq?: unknown; hash?: unknown; metadata?: { sequence?: unknown } };
    if (format === 'ocsf') return typeof o.metadata?.sequence === 'number' ? o.metadata.sequence : null;
    return typeof o.seq === 'number' && typeof o.hash === 'string' ? o.seq : null;
  } catch {
    return null;
  }
}

interface Tail {
  /** The last complete event's seq. */
  lastSeq: number | null;
  /** The file's last complete line is an end record. */
  complete: boolean;
  /** Bytes to keep: up to and including the last newline (a cut-off line goes). */
  keepBytes: number;
  format: ExportFormat | undefined;
}

/** Reads an export's end backwards (growing the window) to find its last complete event. */
export async function scanTail(path: string, format: ExportFormat): Promise<Tail> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const headBuf = Buffer.alloc(Math.min(size, 64 * 1024));
    await fh.read(headBuf, 0, headBuf.length, 0);
    const firstLine = headBuf.toString('utf8').split('\n', 1)[0] ?? '';
    const h = (parseControl(firstLine, 'csv') ?? parseControl(firstLine, 'jsonl')) as Partial<ExportHeader> | undefined;
    const fileFormat = h?.type === EXPORT_HEADER_TYPE ? h.format : undefined;
    const fmt = fileFormat ?? format;
    for (let window = 1 << 20; ; window *= 4) {
      const start = Math.max(0, size - window);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      const text = buf.toString('utf8');
      const lastNl = text.lastIndexOf('\n');
      const keepBytes = lastNl < 0 ? start : start + Buffer.byteLength(text.slice(0, lastNl + 1));
      const lines = text.slice(0, lastNl + 1).split('\n');
      lines.pop();
      if (start > 0) lines.shift(); // may be a fragment
      let complete = false;
      for (let i = lines.length - 1; i >= 0; i--) {
        const line = lines[i] as string;
        const ctl = parseControl(line, fmt);
        if (ctl?.type === EXPORT_END_TYPE) {
          if (i === lines.length - 1) complete = true;
          const last = (ctl as { last?: { seq?: unknown } | null }).last;
          if (last && typeof last.seq === 'number') return { lastSeq: last.seq, complete, keepBytes, format: fileFormat };
          continue;
        }
        const s = seqOfLine(line, fmt);
        if (s !== null) return { lastSeq: s, complete, keepBytes, format: fileFormat };
      }
      if (start === 0) return { lastSeq: null, complete, keepBytes, format: fileFormat };
    }
  } finally {
    await fh.close();
  }
}

/** Verifies an export file, streaming. */
export async function verifyExportFile(path: string, opts: ExportVerifyOptions = {}): Promise<ExportVerifyResult> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${path}: ${err.code ?? err.message}`, { hint: 'pass the path of a file written by agentgate audit export' });
  });
  if (!st.isFile()) throw new UsageError(`${path} is not a file`);
  return verifyExport(createReadStream(path, { highWaterMark: 1 << 16 }), opts);
}
