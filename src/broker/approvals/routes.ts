/**
 * The approvals API:
 *   GET  /v1/requests[?all=1][&limit=N][&after=ID]
 *                                      requests the caller made or may review (pending unless
 *                                      all), newest first, one page (`next` when more follow)
 *   GET  /v1/requests/events           server-sent events of changes the caller may see
 *   GET  /v1/requests/:id              one request (requester, possible reviewers, auditors; else 404)
 *   POST /v1/requests/:id/decision     {decision: approve|deny, reason?} → the request
 *   POST /v1/requests/:id/withdraw     the requester takes a pending request back → the request
 * A request the caller may not see answers 404, exactly like one that does not exist.
 */
import type { ServerResponse } from 'node:http';
import type { DecisionBody, RequestEventType, RequestsResponse } from '../../shared/api-types.js';
import type { Identity } from '../identity/types.js';
import { HttpError } from '../http/errors.js';
import { readJsonBody, sendJson } from '../http/json.js';
import type { RequestContext, Route } from '../http/types.js';
import { ApprovalServiceError } from './errors.js';
import { MAX_PAGE, MAX_REASON_LENGTH } from './service.js';
import type { ApprovalChange, ApprovalService } from './types.js';
import { canSee, requestView } from './view.js';

export interface ApprovalRoutesOptions {
  /** SSE comment interval that keeps proxies and client body timeouts from cutting the stream. Default 15 000. */
  heartbeatMs?: number;
  /** An SSE client this far behind (bytes buffered) is cut off. Default 1 MiB. */
  maxBufferedBytes?: number;
}

const DECISION_BODY_LIMIT = 16 * 1024;
/** A listing's page unless the caller asks for another size. */
const DEFAULT_PAGE = 50;

export function approvalRoutes(service: ApprovalService, options: ApprovalRoutesOptions = {}): Route[] {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;

  const visible = (ctx: RequestContext, id: string) => {
    const r = service.get(id);
    if (!r || !canSee(must(ctx.identity), r, ctx.broker.config.auditors.groups)) {
      throw new HttpError(404, 'AG_REQUEST_NOT_FOUND', `no approval request ${id}`, { hint: 'list the requests you can see with: agentgate requests --all' });
    }
    return r;
  };

  // Order matters: the router takes the first match, and `events` would match `:id`.
  return [
    {
      method: 'GET',
      path: '/v1/requests/events',
      auth: true,
      handle(ctx) {
        stream(ctx.res, must(ctx.identity), ctx.broker.config.auditors.groups, service, heartbeatMs, maxBuffered);
      },
    },
    {
      method: 'GET',
      path: '/v1/requests',
      auth: true,
      handle(ctx) {
        const viewer = must(ctx.identity);
        const q = ctx.url.searchParams;
        const all = ['1', 'true', 'yes'].includes(q.get('all') ?? '');
        const limitText = q.get('limit');
        const limit = limitText === null ? DEFAULT_PAGE : Number(limitText);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
          throw new HttpError(400, 'AG_BAD_REQUEST', `limit must be a whole number from 1 to ${MAX_PAGE}, got ${JSON.stringify(limitText)}`, { hint: 'page with ?limit=50&after=<next from the previous page>' });
        }
        const after = q.get('after') ?? undefined;
        const page = service.list(viewer, { all, limit, ...(after ? { after } : {}) });
        const body: RequestsResponse = { requests: page.requests.map((r) => requestView(r, viewer)), ...(page.next ? { next: page.next } : {}) };
        sendJson(ctx.res, 200, body);
      },
    },
    {
      method: 'GET',
      path: '/v1/requests/:id',
      auth: true,
      handle(ctx) {
        sendJson(ctx.res, 200, requestView(visible(ctx, ctx.params['id'] ?? ''), must(ctx.identity)));
      },
    },
    {
      method: 'POST',
      path: '/v1/requests/:id/decision',
      auth: true,
      async handle(ctx) {
        const viewer = must(ctx.identity);
        const id = ctx.params['id'] ?? '';
        const body = parseDecision(await readJsonBody(ctx.req, DECISION_BODY_LIMIT));
        visible(ctx, id);
        try {
          const decided = await service.decide(id, viewer, body.decision, body.reason ?? null);
          sendJson(ctx.res, 200, requestView(decided, viewer));
        } catch (err) {
          if (err instanceof ApprovalServiceError) throw new HttpError(err.status, err.code, err.message, { ...(err.hint ? { hint: err.hint } : {}), cause: err });
          throw err;
        }
      },
    },
    {
      method: 'POST',
      path: '/v1/requests/:id/withdraw',
      auth: true,
      async handle(ctx) {
        const viewer = must(ctx.identity);
        const id = ctx.params['id'] ?? '';
        visible(ctx, id);
        try {
          sendJson(ctx.res, 200, requestView(await service.withdrawOwn(id, viewer), viewer));
        } catch (err) {
          if (err instanceof ApprovalServiceError) throw new HttpError(err.status, err.code, err.message, { ...(err.hint ? { hint: err.hint } : {}), cause: err });
          throw err;
        }
      },
    },
  ];
}

function parseDecision(raw: unknown): DecisionBody {
  const bad = (why: string): never => {
    throw new HttpError(400, 'AG_BAD_REQUEST', `decision body: ${why}`, { hint: 'send {"decision": "approve" | "deny", "reason": "…"} (reason required to deny)' });
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('expected a JSON object');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'decision' && k !== 'reason') bad(`unknown field "${k}"`);
  if (o['decision'] !== 'approve' && o['decision'] !== 'deny') bad(`decision must be "approve" or "deny", got ${JSON.stringify(o['decision'])}`);
  const reason = o['reason'];
  if (reason !== undefined && reason !== null && typeof reason !== 'string') bad('reason must be a string');
  if (typeof reason === 'string' && reason.length > MAX_REASON_LENGTH) bad(`reason is longer than ${MAX_REASON_LENGTH} characters`);
  return { decision: o['decision'] as DecisionBody['decision'], ...(typeof reason === 'string' ? { reason } : {}) };
}

/**
 * Server-sent events: `event: <type>` / `data: <RequestView JSON>` per change the viewer may
 * see, a comment as heartbeat. The stream ends when the client goes, when the token it was
 * opened with expires (the client reconnects with a fresh one), or when the service closes.
 */
function stream(res: ServerResponse, viewer: Identity, auditorGroups: readonly string[], service: ApprovalService, heartbeatMs: number, maxBuffered: number): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
    'x-content-type-options': 'nosniff',
  });
  // The first bytes tell the client it is subscribed: a list fetched after them misses nothing.
  res.write(': subscribed\nretry: 3000\n\n');

  const send = (text: string): void => {
    if (res.writableEnded || res.destroyed) return;
    if (res.writableLength > maxBuffered) {
      res.destroy();
      return;
    }
    res.write(text);
  };
  const unsubscribe = service.subscribe((change: ApprovalChange) => {
    if (!canSee(viewer, change.request, auditorGroups)) return;
    const type: RequestEventType = change.type;
    send(`event: ${type}\ndata: ${JSON.stringify(requestView(change.request, viewer))}\n\n`);
  });
  const heartbeat = setInterval(() => send(': ping\n\n'), heartbeatMs);
  heartbeat.unref();
  const expiry = viewer.expiresAt > 0 ? setTimeout(() => res.end(), Math.max(0, Math.min(viewer.expiresAt * 1000 - Date.now(), 2 ** 31 - 1))) : undefined;
  expiry?.unref();
  const end = (): void => {
    if (!res.writableEnded) res.end();
  };
  service.signal.addEventListener('abort', end, { once: true });
  res.once('close', () => {
    unsubscribe();
    clearInterval(heartbeat);
    clearTimeout(expiry);
    service.signal.removeEventListener('abort', end);
  });
  if (service.signal.aborted) end();
}

function must(identity: Identity | undefined): Identity {
  // The handler only runs auth routes after authenticate() succeeded.
  if (!identity) throw new Error('auth route reached without an identity');
  return identity;
}
