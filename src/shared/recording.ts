/**
 * Recordings as broker and CLI both see them: the receipt subject naming a recording, the
 * asciicast v2 reader the player and `--verify` use, and the timeline line shape.
 */

/** A receipt subject `agentgate-recording:<file name>` carries that recording's SHA-256. */
export const RECORDING_SUBJECT_PREFIX = 'agentgate-recording:';

export interface CastHeaderV2 {
  version: 2;
  width: number;
  height: number;
  timestamp?: number;
  title?: string;
  [key: string]: unknown;
}

export type CastEvent = [number, string, string];

export interface ParsedCast {
  header: CastHeaderV2;
  events: CastEvent[];
}

export class CastFormatError extends Error {
  override readonly name = 'CastFormatError';
}

/** Reads an asciicast v2 file's text; throws CastFormatError naming the line. */
export function parseCast(text: string): ParsedCast {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let header: unknown;
  try {
    header = JSON.parse(lines[0] ?? '');
  } catch {
    throw new CastFormatError('line 1: the header is not JSON');
  }
  const h = header as Partial<CastHeaderV2> | null;
  if (!h || typeof h !== 'object' || h.version !== 2 || typeof h.width !== 'number' || typeof h.height !== 'number') {
    throw new CastFormatError('line 1: not an asciicast v2 header (version 2, width, height)');
  }
  const events: CastEvent[] = [];
  for (let i = 1; i < lines.length; i++) {
    let e: unknown;
    try {
      e = JSON.parse(lines[i]!);
    } catch {
      throw new CastFormatError(`line ${i + 1}: not JSON`);
    }
    if (!Array.isArray(e) || e.length !== 3 || typeof e[0] !== 'number' || typeof e[1] !== 'string' || typeof e[2] !== 'string') {
      throw new CastFormatError(`line ${i + 1}: not an event [time, code, data]`);
    }
    events.push(e as CastEvent);
  }
  return { header: h as CastHeaderV2, events };
}

/** One line of a SQL / Kubernetes / SSH timeline (`agentgate replay --json`). */
export interface TimelineEntry {
  seq: number;
  time: string;
  /** Seconds since the session started. */
  offset: number;
  type: string;
  /** The statement, request line or command, as the audit holds it (masked). */
  text: string | null;
  decision: { effect: string; rule: string | null; approval?: string; reason?: string } | null;
  approvals: { id: string; approver: string | null; decision: string }[];
  outcome: { status: string; tag?: string; rows?: number; sqlstate?: string; http_status?: number; exit_status?: number | null; duration_ms?: number } | null;
  /** The first rows of a statement's result as the client got them (`recording: { results: N }`). */
  result_sample?: { columns: string[]; rows: (string | null)[][]; truncated: boolean };
}

/** GET /v1/recorded-sessions: one line per session. */
export interface RecordedSession {
  session: string;
  actor: string;
  target: string | null;
  protocol: string | null;
  started_at: string;
  ended_at: string | null;
  duration_ms: number | null;
  statements: number | null;
  denied: number | null;
  recordings: { name: string; bytes: number; sha256: string | null }[];
}

export const RECORDED_SESSIONS_PATH = '/v1/recorded-sessions';
