/**
 * The operators' API over live sessions:
 *   GET  /v1/live-sessions          every live proxy session (operators and auditors)
 *   POST /v1/live-sessions/revoke   {session} | {sub} → ends them at once (operators only)
 * A revocation is recorded as a `session.revoke` event naming the operator, and each
 * ended session's `session.end` says `revoked` and by whom.
 */
import type { AuditStore } from './audit/store.js';
import { isAuditor } from './audit/auditors.js';
import { actorOf } from './channels.js';
import type { BrokerConfig } from './config/types.js';
import { HttpError } from './http/errors.js';
import { readJsonBody, sendJson } from './http/json.js';
import type { Route } from './http/types.js';
import type { Identity } from './identity/types.js';
import type { LiveSessions } from './live-sessions.js';
import type { LiveSessionsResponse, RevokeResponse } from '../shared/api-types.js';

export const LIVE_SESSIONS_PATH = '/v1/live-sessions';
export const REVOKE_PATH = '/v1/live-sessions/revoke';

export function isOperator(identity: Pick<Identity, 'groups'>, config: Pick<BrokerConfig, 'operators'>): boolean {
  return (config.operators?.groups ?? []).some((g) => identity.groups.includes(g));
}

function notOperator(identity: Identity, config: BrokerConfig, what: string): HttpError {
  return new HttpError(403, 'AG_NOT_OPERATOR', `${identity.sub} may not ${what}`, {
    hint: `only members of the operators groups (${config.operators?.groups.join(', ') || 'none configured'}) may; set operators.groups in the broker config`,
  });
}

export function liveSessionRoutes(deps: { live: LiveSessions; audit: AuditStore }): Route[] {
  return [
    {
      method: 'GET',
      path: LIVE_SESSIONS_PATH,
      auth: true,
      handle({ res, identity, broker }) {
        if (!identity) throw new Error('auth route reached without an identity');
        if (!isOperator(identity, broker.config) && !isAuditor(identity, broker.config)) throw notOperator(identity, broker.config, 'list live sessions');
        const body: LiveSessionsResponse = { sessions: deps.live.list() };
        sendJson(res, 200, body);
      },
    },
    {
      method: 'POST',
      path: REVOKE_PATH,
      auth: true,
      async handle({ req, res, identity, broker }) {
        if (!identity) throw new Error('auth route reached without an identity');
        if (!isOperator(identity, broker.config)) throw notOperator(identity, broker.config, 'revoke sessions');
        const body = (await readJsonBody(req, 4096)) as { session?: unknown; sub?: unknown } | undefined;
        const session = typeof body?.session === 'string' && body.session !== '' ? body.session : undefined;
        const sub = typeof body?.sub === 'string' && body.sub !== '' ? body.sub : undefined;
        if ((session === undefined) === (sub === undefined)) {
          throw new HttpError(400, 'AG_BAD_REVOKE', 'expected a JSON body with exactly one of "session" or "sub"', { hint: 'agentgate broker revoke <session-id|sub>' });
        }
        const ended = deps.live.revoke(session !== undefined ? { session } : { sub: sub as string }, identity.sub);
        if (session !== undefined && ended.length === 0) {
          throw new HttpError(404, 'AG_SESSION_NOT_LIVE', `no live session ${session}`, { hint: 'list live sessions with: agentgate broker sessions' });
        }
        // On record before the operator is told it happened.
        await deps.audit.append({
          type: 'session.revoke',
          session: session ?? null,
          actor: actorOf(identity),
          target: null,
          detail: { ...(session !== undefined ? { session } : { sub: sub as string }), ended },
          decision: null,
          outcome: { status: 'ok' },
        });
        const reply: RevokeResponse = { ended };
        sendJson(res, 200, reply);
      },
    },
  ];
}
