/**
 * The audit store's write-ahead event journal: where an event becomes durable.
 *
 * An append is one `write(2)` of the event's canonical text (one line per event) to a
 * segment file — a few microseconds — where a SQLite commit of the same row (table plus
 * three indexes, each a WAL page) costs tens to a hundred. Once the write returned, the
 * kernel holds the bytes: a broker crash or SIGKILL loses nothing, the same guarantee as
 * SQLite's `synchronous = NORMAL`. The rows reach SQLite (which serves reads and exports)
 * moments later, in large batches, on the store's writer thread; a segment is deleted once
 * every event in it is there.
 *
 * Segments are named by the seq of their first event (`<db>.journal.<seq>`), so recovery
 * reads them in chain order. A segment starts a new file past `SEGMENT_BYTES`.
 *
 * Recovery (at open, before anything is appended): every event after SQLite's head is
 * checked — its text must hash and link to the event before, its seq must follow — and
 * inserted. An unterminated last line is a write cut short by a crash; it was never
 * acknowledged, and is dropped. Anything else that does not check out is damage, and the
 * store refuses to open rather than continue a chain it cannot vouch for.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { sha256Hex } from '../../shared/audit-hash.js';
import type { AuditHead, RawAuditRow } from './store.js';

/** A segment past this size is closed and a new one started (and deleted once indexed). */
export const SEGMENT_BYTES = 16 * 1024 * 1024;

interface Segment {
  path: string;
  firstSeq: number;
  /** Last seq written to it so far. */
  lastSeq: number;
}

/** Where a journal's segment files live and how they are named. */
function segmentPrefix(dbFile: string): string {
  return `${basename(dbFile)}.journal.`;
}

/** Existing segments of `dbFile`'s journal, in seq order. */
export function listSegments(dbFile: string): { path: string; firstSeq: number }[] {
  const dir = dirname(dbFile);
  const prefix = segmentPrefix(dbFile);
  const out: { path: string; firstSeq: number }[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(prefix)) continue;
    const n = Number(name.slice(prefix.length));
    if (Number.isSafeInteger(n) && n > 0) out.push({ path: join(dir, name), firstSeq: n });
  }
  return out.sort((a, b) => a.firstSeq - b.firstSeq);
}

export class JournalDamaged extends Error {}

/**
 * Reads every journalled event after `head`, checked against the chain, as rows ready to
 * insert. Throws JournalDamaged naming the first event that does not check out.
 */
export function readJournal(dbFile: string, head: AuditHead): RawAuditRow[] {
  const rows: RawAuditRow[] = [];
  let tip = head;
  const segments = listSegments(dbFile);
  segments.forEach((seg, i) => {
    const text = readFileSync(seg.path, 'utf8');
    let pos = 0;
    while (pos < text.length) {
      const nl = text.indexOf('\n', pos);
      if (nl < 0) {
        // A write cut short by a crash: only possible at the very end of the journal.
        if (i !== segments.length - 1) throw new JournalDamaged(`${seg.path} has an unfinished line before later segments`);
        break;
      }
      const line = text.slice(pos, nl);
      pos = nl + 1;
      let ev: { seq?: unknown; time?: unknown; session?: unknown; target?: unknown; type?: unknown; prev?: unknown };
      try {
        ev = JSON.parse(line) as typeof ev;
      } catch {
        throw new JournalDamaged(`${seg.path} holds a line that is not JSON after seq ${tip.seq}`);
      }
      if (typeof ev.seq !== 'number' || ev.seq <= head.seq) continue; // already in the database
      const hash = sha256Hex(line);
      if (ev.seq !== tip.seq + 1) throw new JournalDamaged(`seq ${tip.seq + 1} is missing from the journal (found ${ev.seq})`);
      if (ev.prev !== tip.hash) throw new JournalDamaged(`seq ${ev.seq} does not link to the event before it`);
      if (typeof ev.time !== 'string' || typeof ev.type !== 'string') throw new JournalDamaged(`seq ${ev.seq} lacks a time or type`);
      rows.push({
        seq: ev.seq,
        time: ev.time,
        session: typeof ev.session === 'string' ? ev.session : null,
        target: typeof ev.target === 'string' ? ev.target : null,
        type: ev.type,
        event: line,
        prev: ev.prev,
        hash,
      });
      tip = { seq: ev.seq, hash };
    }
  });
  return rows;
}

/** Deletes every segment of `dbFile`'s journal (after recovery put their events in the database). */
export function removeJournal(dbFile: string): void {
  for (const s of listSegments(dbFile)) unlinkSync(s.path);
}

/** The journal being written. Not safe across processes: one broker owns a state directory. */
export class EventJournal {
  readonly #dbFile: string;
  readonly #segmentBytes: number;
  #fd: number | undefined;
  #current: Segment | undefined;
  #size = 0;
  /** Full segments whose events may not all be in the database yet. */
  #closed: Segment[] = [];

  constructor(dbFile: string, segmentBytes = SEGMENT_BYTES) {
    this.#dbFile = dbFile;
    this.#segmentBytes = segmentBytes;
  }

  /** Segment files written so far and not yet deleted (for tests and operators). */
  get segments(): string[] {
    return [...this.#closed, ...(this.#current ? [this.#current] : [])].map((s) => s.path);
  }

  /**
   * Appends the lines of events `firstSeq…lastSeq` (each ends with "\n") and returns once
   * the kernel has them. On a failed write the segment is cut back to where it was, so
   * the journal never holds a partial or unacknowledged event, and the error is thrown.
   */
  append(lines: string, firstSeq: number, lastSeq: number): void {
    if (this.#fd === undefined || this.#size >= this.#segmentBytes) this.#startSegment(firstSeq);
    const fd = this.#fd!;
    const length = Buffer.byteLength(lines, 'utf8');
    try {
      // The string goes down as it is (no Buffer copy on the heap per batch); only a short
      // write, which a regular file gives only when it is running out of room, needs the bytes.
      let off = writeSync(fd, lines, null, 'utf8');
      if (off < length) {
        const buf = Buffer.from(lines, 'utf8');
        while (off < length) off += writeSync(fd, buf, off, length - off);
      }
    } catch (e) {
      try {
        ftruncateSync(fd, this.#size);
      } catch {
        // Recovery drops an unfinished last line anyway; a complete one it keeps, which
        // records an event whose statement was refused: noted, not lost.
      }
      throw e;
    }
    this.#size += length;
    this.#current!.lastSeq = lastSeq;
  }

  /** Everything through `seq` is in the database: delete the full segments it covers. */
  indexed(seq: number): void {
    while (this.#closed.length > 0 && this.#closed[0]!.lastSeq <= seq) {
      const s = this.#closed.shift()!;
      try {
        unlinkSync(s.path);
      } catch {
        // Left behind, it is re-read at the next start and its events skipped as present.
      }
    }
  }

  /** Closes the journal; with `indexedThrough` covering everything written, deletes it too. */
  close(indexedThrough: number): void {
    if (this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#fd = undefined;
      if (this.#current) this.#closed.push(this.#current);
      this.#current = undefined;
    }
    this.indexed(indexedThrough);
  }

  #startSegment(firstSeq: number): void {
    if (this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#closed.push(this.#current!);
    }
    const path = join(dirname(this.#dbFile), `${segmentPrefix(this.#dbFile)}${firstSeq}`);
    // 'a': O_APPEND, so a write lands after whatever is there; 0600 like the database.
    this.#fd = openSync(path, 'a', 0o600);
    this.#size = fstatSync(this.#fd).size;
    this.#current = { path, firstSeq, lastSeq: firstSeq - 1 };
  }
}
