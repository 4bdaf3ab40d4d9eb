/**
 * SQL, Kubernetes and SSH timelines, built from the session's own audit events (no proxy
 * hook): each statement, request or command with its offset from the session's start, the
 * decision (rule, approval and who decided it) and the outcome (tag, rows, SQLSTATE, HTTP
 * status, exit status), and a statement's result sample when the target records one
 * (`recording: { results: N }`). Built on demand, so it is always what the chain holds.
 */
import type { AuditRecord } from '../../shared/audit-hash.js';
import type { RecordedSession, TimelineEntry } from '../../shared/recording.js';
import type { AuditStore } from '../audit/store.js';
import type { BrokerConfig } from '../config/types.js';
import { listRecordings } from './store.js';

const STATEMENTS = new Set(['query', 'k8s.request', 'ssh.command']);

function text(r: AuditRecord): string | null {
  const d = r.detail;
  if (r.type === 'query') return typeof d['sql'] === 'string' ? d['sql'] : null;
  if (r.type === 'k8s.request') {
    const q = typeof d['query'] === 'string' ? `?${d['query']}` : '';
    return `${String(d['method'] ?? '')} ${String(d['path'] ?? '')}${q}`;
  }
  if (r.type === 'ssh.command') return typeof d['command'] === 'string' ? d['command'] : null;
  return null;
}

/** A `query` event's `result_sample`, if it is one (the chain holds it as written). */
function resultSample(r: AuditRecord): TimelineEntry['result_sample'] {
  const s = r.detail['result_sample'];
  if (!s || typeof s !== 'object' || Array.isArray(s)) return undefined;
  const { columns, rows, truncated } = s as Record<string, unknown>;
  if (!Array.isArray(columns) || !Array.isArray(rows)) return undefined;
  return { columns: columns.map(String), rows: rows.filter(Array.isArray).map((row) => (row as unknown[]).map((v) => (v === null ? null : String(v)))), truncated: truncated === true };
}

function outcome(r: AuditRecord): TimelineEntry['outcome'] {
  if (!r.outcome) return null;
  const d = r.detail;
  const o: NonNullable<TimelineEntry['outcome']> = { status: r.outcome.status };
  if (typeof d['tag'] === 'string' && d['tag']) o.tag = d['tag'];
  if (r.outcome.rows !== undefined) o.rows = r.outcome.rows;
  if (r.outcome.sqlstate) o.sqlstate = r.outcome.sqlstate;
  if (typeof d['status_code'] === 'number') o.http_status = d['status_code'];
  if (r.type === 'ssh.command' && 'exit_status' in d) o.exit_status = typeof d['exit_status'] === 'number' ? d['exit_status'] : null;
  if (r.outcome.duration_ms !== undefined) o.duration_ms = r.outcome.duration_ms;
  return o;
}

export interface SessionTimeline {
  /** The session.start event; undefined when the session is not (or no longer) in the log. */
  start: AuditRecord | undefined;
  entries: TimelineEntry[];
}

export async function buildTimeline(audit: AuditStore, session: string): Promise<SessionTimeline> {
  let start: AuditRecord | undefined;
  const decided = new Map<string, TimelineEntry['approvals']>();
  const statements: AuditRecord[] = [];
  for await (const r of audit.read({ session })) {
    if (r.type === 'session.start') start ??= r;
    else if (r.type === 'approval.decided' && typeof r.detail['id'] === 'string') {
      const list = decided.get(r.detail['id']) ?? [];
      list.push({ id: r.detail['id'], approver: typeof r.detail['approver'] === 'string' ? r.detail['approver'] : null, decision: String(r.detail['decision'] ?? '') });
      decided.set(r.detail['id'], list);
    } else if (STATEMENTS.has(r.type)) statements.push(r);
  }
  const t0 = Date.parse(start?.time ?? statements[0]?.time ?? new Date(0).toISOString());
  const entries = statements.map((r): TimelineEntry => {
    const approval = r.decision?.approval;
    const sample = r.type === 'query' ? resultSample(r) : undefined;
    return {
      seq: r.seq,
      time: r.time,
      offset: Math.max(0, Date.parse(r.time) - t0) / 1000,
      type: r.type,
      text: text(r),
      decision: r.decision
        ? { effect: r.decision.effect, rule: r.decision.rule, ...(approval ? { approval } : {}), ...(r.decision.reason ? { reason: r.decision.reason } : {}) }
        : null,
      approvals: approval ? (decided.get(approval) ?? []) : [],
      outcome: outcome(r),
      ...(sample ? { result_sample: sample } : {}),
    };
  });
  return { start, entries };
}

export interface SessionListQuery {
  since?: string | undefined;
  target?: string | undefined;
  /** Only this actor's sessions (non-auditors: always their own). */
  actor?: string | undefined;
  limit: number;
}

/** Sessions from their session.start / session.end events, with the recordings on disk. */
export async function listSessions(audit: AuditStore, config: Pick<BrokerConfig, 'stateDir'>, q: SessionListQuery): Promise<RecordedSession[]> {
  const byId = new Map<string, RecordedSession>();
  const digests = new Map<string, string>();
  for await (const r of audit.read({ ...(q.since ? { since: q.since } : {}), ...(q.target ? { target: q.target } : {}) })) {
    if (!r.session) continue;
    if (r.type === 'session.start') {
      if (q.actor !== undefined && r.actor?.sub !== q.actor) continue;
      byId.set(r.session, {
        session: r.session,
        actor: r.actor?.sub ?? '',
        target: r.target,
        protocol: typeof r.detail['protocol'] === 'string' ? r.detail['protocol'] : null,
        started_at: r.time,
        ended_at: null,
        duration_ms: null,
        statements: null,
        denied: null,
        recordings: [],
      });
      continue;
    }
    const s = byId.get(r.session);
    if (!s) continue;
    if (r.type === 'session.end') {
      s.ended_at = r.time;
      s.duration_ms = typeof r.detail['duration_ms'] === 'number' ? r.detail['duration_ms'] : Date.parse(r.time) - Date.parse(s.started_at);
      s.statements = typeof r.detail['statements'] === 'number' ? r.detail['statements'] : null;
      s.denied = typeof r.detail['denied'] === 'number' ? r.detail['denied'] : null;
    } else if (r.type === 'recording.end' && typeof r.detail['name'] === 'string' && typeof r.detail['sha256'] === 'string') {
      digests.set(r.detail['name'], r.detail['sha256']);
    }
  }
  const sessions = [...byId.values()].slice(-q.limit);
  const wanted = new Set(sessions.map((s) => s.session));
  for (const f of await listRecordings(config)) {
    if (!wanted.has(f.session)) continue;
    byId.get(f.session)!.recordings.push({ name: f.name, bytes: f.bytes, sha256: digests.get(f.name) ?? null });
  }
  return sessions;
}
