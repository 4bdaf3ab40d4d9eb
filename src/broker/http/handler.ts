/**
 * The request listener: route, authenticate, run, map errors to JSON, and log one line
 * per request (method, path, status, ms, sub). The path is logged without its query
 * string and no header is logged, so a credential cannot leak through here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { TokenRejectedError } from '../identity/errors.js';
import type { Identity } from '../identity/types.js';
import { authenticate, rejection } from './auth.js';
import { HttpError, errorBody, methodNotAllowed, notFound } from './errors.js';
import { sendJson } from './json.js';
import type { Router } from './router.js';
import type { BrokerContext } from './types.js';

/** Paths that a load balancer polls; logged at debug so they do not drown the rest. */
const QUIET_PATHS = new Set(['/healthz']);

export function createRequestHandler(router: Router, broker: BrokerContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const started = performance.now();
    const requestId = randomBytes(8).toString('hex');
    const path = pathOf(req);
    let identity: Identity | undefined;
    let reason: string | undefined;
    res.setHeader('x-request-id', requestId);
    res.once('close', () => {
      const fields = {
        request_id: requestId,
        method: req.method,
        path,
        status: res.statusCode,
        ms: Math.round((performance.now() - started) * 10) / 10,
        sub: identity?.sub,
        ...(reason === undefined ? {} : { reason }),
        ...(res.writableFinished ? {} : { aborted: true }),
      };
      if (QUIET_PATHS.has(path) && res.statusCode < 400) broker.logger.debug('request', fields);
      else broker.logger.info('request', fields);
    });

    void (async () => {
      const match = router.match(req.method ?? 'GET', path);
      if (match.kind === 'none') throw notFound(path);
      if (match.kind === 'method') throw methodNotAllowed(req.method ?? '', path, match.allowed);
      const { route, params } = match;
      if (route.auth) identity = await authenticate(req, broker.verifier);
      await route.handle({
        req,
        res,
        url: new URL(req.url ?? '/', 'https://broker.invalid'),
        params,
        identity,
        baseUrl: baseUrlFor(req, broker.url),
        broker,
        logger: broker.logger.child({ request_id: requestId }),
      });
    })().catch((err: unknown) => {
      if (res.headersSent) {
        broker.logger.error('request failed after the response started', { request_id: requestId, path, error: err });
        res.destroy();
        return;
      }
      if (err instanceof TokenRejectedError) {
        reason = err.reason;
        const r = rejection(err);
        sendJson(res, r.status, r.body, r.headers);
      } else if (err instanceof HttpError) {
        sendJson(res, err.status, err.toBody(), err.headers);
      } else {
        broker.logger.error('request failed', { request_id: requestId, path, error: err, stack: err instanceof Error ? err.stack : undefined });
        sendJson(res, 500, errorBody('AG_INTERNAL', 'the broker hit an internal error', { hint: `the broker's log has the details under request_id ${requestId}` }));
      }
    });
  };
}

/** The URL path without query or fragment; `/` for anything unparsable. */
export function pathOf(req: IncomingMessage): string {
  const raw = req.url ?? '/';
  const q = raw.search(/[?#]/);
  const path = q >= 0 ? raw.slice(0, q) : raw;
  return path.startsWith('/') ? path : '/';
}

// host[:port] or [v6][:port]; anything else in Host is ignored rather than reflected.
const HOST_HEADER = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/** The URL the client used to reach us, so discovery hands back names that work for it. */
export function baseUrlFor(req: IncomingMessage, fallback: string): string {
  const host = req.headers.host;
  return typeof host === 'string' && HOST_HEADER.test(host) ? `https://${host}` : fallback;
}
