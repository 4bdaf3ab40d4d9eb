/**
 * Recorded sessions over HTTPS, with the receipts' and audit export's rules: auditors see
 * every session, anyone else only their own, and a session one may not see answers the
 * same 404 as one that does not exist.
 * - `GET /v1/recorded-sessions?target=&actor=&since=&limit=`: sessions, newest last.
 * - `GET /v1/recorded-sessions/:session`: the session's timeline and recordings.
 * - `GET /v1/recorded-sessions/:session/recordings/:name`: one recording's bytes.
 * Reading a session's timeline or recording is itself on record (`session.replay`, durable
 * before anything is sent; refused when it cannot be recorded), like an audit export.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditActor } from '../../shared/audit-hash.js';
import { RECORDED_SESSIONS_PATH } from '../../shared/recording.js';
import { isAuditor } from '../audit/auditors.js';
import type { AuditStore } from '../audit/store.js';
import { HttpError } from '../http/errors.js';
import { sendJson } from '../http/json.js';
import type { Route } from '../http/types.js';
import type { Identity } from '../identity/types.js';
import { listRecordings, RECORDING_NAME, recordingsDir } from './store.js';
import { buildTimeline, listSessions } from './timeline.js';

const ID = /^[A-Za-z0-9._:-]{1,200}$/;

function actorOf(identity: Identity): AuditActor {
  return { sub: identity.sub, name: identity.name ?? null, groups: identity.groups, kind: identity.kind };
}

export function createRecordingRoutes(deps: { audit: AuditStore }): Route[] {
  const onRecord = async (identity: Identity, session: string, target: string | null, what: Record<string, string>): Promise<void> => {
    try {
      await deps.audit.append({ type: 'session.replay', session: null, actor: actorOf(identity), target, detail: { of_session: session, ...what }, decision: { effect: 'allow', rule: null }, outcome: null });
    } catch (err) {
      throw new HttpError(503, 'AG_AUDIT_UNAVAILABLE', 'reading a session cannot be recorded in the audit log, so it is refused', {
        hint: "the broker's audit store is failing; its log has the details",
        cause: err,
      });
    }
  };
  const notFound = (session: string): HttpError =>
    new HttpError(404, 'AG_SESSION_NOT_FOUND', `no session ${JSON.stringify(session.slice(0, 200))} that you may read`, {
      hint: 'list the sessions you may read with: agentgate sessions; auditors may read all',
    });
  return [
    {
      method: 'GET',
      path: RECORDED_SESSIONS_PATH,
      auth: true,
      async handle({ res, url, identity, broker }) {
        const id = must(identity);
        const p = url.searchParams;
        const since = p.get('since') ?? undefined;
        if (since !== undefined && Number.isNaN(Date.parse(since))) throw new HttpError(400, 'AG_BAD_QUERY', `since=${JSON.stringify(since)} is not a date`, { hint: 'pass an ISO-8601 time' });
        const limit = Number(p.get('limit') ?? 200);
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new HttpError(400, 'AG_BAD_QUERY', 'limit must be an integer 1-10000', { hint: 'the default is 200' });
        const auditor = isAuditor(id, broker.config);
        const actor = auditor ? (p.get('actor') ?? undefined) : id.sub;
        const sessions = await listSessions(deps.audit, broker.config, { since, target: p.get('target') ?? undefined, actor, limit });
        sendJson(res, 200, { sessions });
      },
    },
    {
      method: 'GET',
      path: `${RECORDED_SESSIONS_PATH}/:session`,
      auth: true,
      async handle({ res, params, identity, broker }) {
        const id = must(identity);
        const session = params['session'] ?? '';
        const t = ID.test(session) ? await buildTimeline(deps.audit, session) : undefined;
        if (!t?.start || (t.start.actor?.sub !== id.sub && !isAuditor(id, broker.config))) throw notFound(session);
        const recordings = (await listRecordings(broker.config, session)).map((f) => ({ name: f.name, bytes: f.bytes }));
        await onRecord(id, session, t.start.target, { what: 'timeline' });
        sendJson(res, 200, {
          session,
          actor: t.start.actor?.sub ?? null,
          target: t.start.target,
          protocol: typeof t.start.detail['protocol'] === 'string' ? t.start.detail['protocol'] : null,
          started_at: t.start.time,
          timeline: t.entries,
          recordings,
        });
      },
    },
    {
      method: 'GET',
      path: `${RECORDED_SESSIONS_PATH}/:session/recordings/:name`,
      auth: true,
      async handle({ res, params, identity, broker }) {
        const id = must(identity);
        const session = params['session'] ?? '';
        const name = params['name'] ?? '';
        const m = RECORDING_NAME.exec(name);
        if (!ID.test(session) || !m || m[1] !== session) throw notFound(session);
        let owner: string | undefined;
        let target: string | null = null;
        for await (const r of deps.audit.read({ session, limit: 1 })) {
          owner = r.actor?.sub;
          target = r.target;
        }
        if (owner === undefined || (owner !== id.sub && !isAuditor(id, broker.config))) throw notFound(session);
        const path = join(recordingsDir(broker.config), name);
        let size: number;
        try {
          size = (await stat(path)).size;
        } catch {
          throw new HttpError(404, 'AG_RECORDING_NOT_FOUND', `session ${session} has no recording ${name}`, { hint: 'recordings are deleted with their audit events by retention' });
        }
        await onRecord(id, session, target, { what: 'recording', name });
        res.writeHead(200, {
          'content-type': 'application/x-asciicast',
          'content-length': String(size),
          'content-disposition': `attachment; filename="${name}"`,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        });
        await new Promise<void>((resolve) => {
          const s = createReadStream(path);
          s.once('error', () => {
            res.destroy();
            resolve();
          });
          s.once('end', () => resolve());
          s.pipe(res);
        });
      },
    },
  ];
}

function must(identity: Identity | undefined): Identity {
  if (!identity) throw new Error('auth route reached without an identity');
  return identity;
}
