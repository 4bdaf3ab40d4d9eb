/**
 * What a crash leaves open, closed on the next start.
 *
 * A statement's intent is durable before it is forwarded and its outcome after the server
 * answered, so a broker killed in between leaves intents without outcomes, and sessions
 * without a session.end. The chain is append-only: rather than rewrite anything, the next
 * start appends, for each such intent, its outcome with status `unknown` (the statement
 * may or may not have run: the broker stopped), then the session's session.end with
 * reason `broker stopped`, and issues the session's receipt from what the log holds.
 *
 * Where to look: a run marker in the state directory names the head at the previous start
 * and is removed at a clean stop. Found at start, it means the last run did not stop
 * cleanly, and only the events after its seq are read.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import type { AuditActor, AuditDecision, AuditRecord, JsonValue } from '../../shared/audit-hash.js';
import type { Logger } from '../log.js';
import type { SessionSummary } from '../session-summary.js';
import type { AuditStore, NewAuditEvent } from './store.js';

const MARKER = 'broker.running';

/** The outcome event type that closes each intent type. */
const OUTCOME_OF: Record<string, string> = {
  'query.intent': 'query',
  'k8s.request.intent': 'k8s.request',
  'ssh.command.intent': 'ssh.command',
  // An upgrade (exec, attach, port-forward) is recorded before it is forwarded as a
  // k8s.request with no outcome; its stream's end is the outcome.
  'k8s.request': 'k8s.stream.end',
};

interface OpenSession {
  actor: AuditActor | null;
  target: string | null;
  protocol: string;
  startedAt: string;
  connectSession: string | undefined;
  policy: string | null;
  reason: string | undefined;
  lastTime: string;
  /** Intents without an outcome yet, by `${type}#${id}`. */
  intents: Map<string, AuditRecord>;
  statements: number;
  allowed: number;
  denied: number;
  /** Its session.end is on record (only what it left open needs closing). */
  ended: boolean;
}

export interface InterruptedResult {
  /** Sessions closed with reason `broker stopped`. */
  sessions: number;
  /** Intents given an `unknown` outcome. */
  unknown: number;
}

export interface RecoverOptions {
  audit: AuditStore;
  stateDir: string;
  logger: Logger;
  /** Issues the receipt of a session closed here. */
  issue?: (summary: SessionSummary) => Promise<unknown>;
  /** Identifies this broker run in the marker (default: the process id). */
  pid?: number;
  /**
   * In a store several brokers share: only this broker's events are looked at, so a broker
   * restarting never closes sessions another broker is still serving.
   */
  brokerId?: string;
}

/**
 * Closes what the previous run left open (when it did not stop cleanly), then marks this
 * run as started. Call it once the store is open and before any session starts.
 */
export async function recoverInterrupted(opts: RecoverOptions): Promise<InterruptedResult> {
  const path = join(opts.stateDir, MARKER);
  const from = readMarker(path);
  const result: InterruptedResult = { sessions: 0, unknown: 0 };
  if (from !== undefined) {
    const open = await openSessions(opts.audit, { afterSeq: from, ...(opts.brokerId !== undefined ? { broker: opts.brokerId } : {}) });
    for (const [session, s] of open) {
      // Ended sessions are left alone here (an outage's are settled while the broker runs: unsettled.ts).
      if (s.ended) continue;
      const unknown = await closeSession(opts, session, s, STOPPED);
      result.sessions++;
      result.unknown += unknown;
    }
    if (result.sessions > 0) {
      opts.logger.warn('the previous broker run stopped without ending its sessions: recorded them as ended by the stop', {
        sessions: result.sessions,
        statements_with_unknown_outcome: result.unknown,
      });
    }
  }
  // Another broker may have written since this store opened: the marker names the newest event.
  await opts.audit.refreshHead?.();
  await writeFileAtomic(path, `${JSON.stringify({ seq: opts.audit.head().seq, pid: opts.pid ?? process.pid, started_at: new Date().toISOString() })}\n`, { mode: 0o600, durable: true });
  return result;
}

/** A clean stop: every session ended, the store closed. The next start need not look back. */
export function markCleanStop(stateDir: string): void {
  rmSync(join(stateDir, MARKER), { force: true });
}

function readMarker(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const seq = (JSON.parse(text) as { seq?: unknown }).seq;
    if (typeof seq === 'number' && Number.isSafeInteger(seq) && seq >= 0) return seq;
  } catch {
    // fall through: an unreadable marker means a start that was cut short; look at all of it
  }
  return 0;
}

/**
 * A session that lost events to an audit store outage (an outcome, its session.end) while
 * the broker went on running: once the store answers again, its intents without an outcome
 * get `unknown` ones and, if it has no session.end, it is ended and given its receipt, as
 * the next start does after a crash. `afterSeq`: a seq before its session.start.
 * Idempotent: what is on record already is not repeated. Returns the intents closed.
 */
export async function settleSession(opts: Pick<RecoverOptions, 'audit' | 'logger' | 'issue'>, session: string, afterSeq: number): Promise<number> {
  const s = (await openSessions(opts.audit, { afterSeq, session })).get(session);
  if (!s || (s.ended && s.intents.size === 0)) return 0;
  return closeSession(opts, session, s, OUTAGE);
}

/** Why the log closes what was left open: a stop (found at the next start) or a store outage (found when it ends). */
interface Closing {
  note: string;
  reason: string;
}
const STOPPED: Closing = { note: 'the broker stopped after forwarding this; whether it ran is unknown', reason: 'broker stopped' };
const OUTAGE: Closing = {
  note: 'the audit log was unavailable when this ended, so its outcome was not recorded; whether it ran is unknown',
  reason: 'audit log unavailable',
};

async function openSessions(audit: AuditStore, q: { afterSeq: number; broker?: string; session?: string }): Promise<Map<string, OpenSession>> {
  const open = new Map<string, OpenSession>();
  for await (const r of audit.read(q)) {
    if (!r.session) continue;
    if (r.type === 'session.start') {
      open.set(r.session, {
        actor: r.actor,
        target: r.target,
        protocol: typeof r.detail['protocol'] === 'string' ? r.detail['protocol'] : 'unknown',
        startedAt: r.time,
        connectSession: typeof r.detail['connect_session'] === 'string' ? r.detail['connect_session'] : undefined,
        policy: r.decision?.rule ?? null,
        reason: typeof r.detail['reason'] === 'string' ? r.detail['reason'] : undefined,
        lastTime: r.time,
        intents: new Map(),
        statements: 0,
        allowed: 0,
        denied: 0,
        ended: false,
      });
      continue;
    }
    const s = open.get(r.session);
    if (!s) continue;
    s.lastTime = r.time;
    if (r.type === 'session.end') {
      // Kept (with what it left open): an outage may have cost an outcome and not the end.
      if (s.intents.size === 0) open.delete(r.session);
      else s.ended = true;
      continue;
    }
    const id = r.detail['id'];
    const isIntent = r.type.endsWith('.intent') || (r.type === 'k8s.request' && r.outcome === null);
    if (isIntent) {
      if (typeof id === 'number') s.intents.set(`${OUTCOME_OF[r.type] ?? ''}#${id}`, r);
      continue;
    }
    if (typeof id === 'number') s.intents.delete(`${r.type}#${id}`);
    if (r.type === 'query' || r.type === 'k8s.request' || r.type === 'ssh.command') {
      if (r.outcome?.status === 'skipped') continue;
      s.statements++;
      if (r.decision?.effect === 'allow') s.allowed++;
      else if (r.decision?.effect === 'deny') s.denied++;
    }
  }
  return open;
}

async function closeSession(opts: Pick<RecoverOptions, 'audit' | 'logger' | 'issue'>, session: string, s: OpenSession, why: Closing): Promise<number> {
  const base = { session, actor: s.actor, target: s.target };
  const appends: Promise<unknown>[] = [];
  for (const intent of s.intents.values()) {
    const type = OUTCOME_OF[intent.type] ?? 'query';
    const decision: AuditDecision | null = intent.decision;
    appends.push(
      opts.audit.append({
        ...base,
        type,
        detail: { ...(intent.detail as { [k: string]: JsonValue | undefined }), intent_seq: intent.seq, note: why.note },
        decision,
        outcome: { status: 'unknown' },
      } satisfies NewAuditEvent),
    );
    s.statements++;
    if (decision?.effect === 'allow') s.allowed++;
  }
  const unknown = s.intents.size;
  if (s.ended) {
    await Promise.all(appends);
    return unknown;
  }
  const endedAt = new Date().toISOString();
  appends.push(
    opts.audit.append({
      ...base,
      type: 'session.end',
      detail: { statements: s.statements, allowed: s.allowed, denied: s.denied, unknown, reason: why.reason, last_event_at: s.lastTime },
      decision: null,
      outcome: { status: 'unknown' },
    }),
  );
  await Promise.all(appends);
  if (opts.issue && s.actor && s.target && (s.protocol === 'postgres' || s.protocol === 'kubernetes' || s.protocol === 'ssh')) {
    const summary: SessionSummary = {
      session,
      connectSession: s.connectSession,
      actor: s.actor,
      target: s.target,
      protocol: s.protocol,
      policy: s.policy,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
      startedAt: s.startedAt,
      endedAt,
      statements: s.statements,
      allowed: s.allowed,
      denied: s.denied,
      held: 0,
      errors: 0,
      rows: 0,
      bytes: 0,
      masked: 0,
      unknown,
      approvals: [],
    };
    try {
      await opts.issue(summary);
    } catch (err) {
      opts.logger.error(`could not issue the receipt of a session ended as "${why.reason}"`, { session, error: (err as Error).message });
    }
  }
  return unknown;
}
