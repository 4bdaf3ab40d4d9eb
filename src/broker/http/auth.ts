/**
 * Bearer authentication (RFC 6750) for /v1/* and for Upgrade requests. The token is read
 * from the Authorization header only, never from the query string (which ends up in logs).
 */
import type { IncomingMessage } from 'node:http';
import type { ApiErrorBody } from '../../shared/api-types.js';
import { TokenRejectedError } from '../identity/errors.js';
import type { Identity, IdentityVerifier } from '../identity/types.js';
import { errorBody } from './errors.js';

export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m?.[1];
}

export async function authenticate(req: IncomingMessage, verifier: IdentityVerifier): Promise<Identity> {
  const token = bearerToken(req);
  if (token === undefined) {
    const present = typeof req.headers.authorization === 'string';
    throw new TokenRejectedError('missing_token', present ? 'the Authorization header is not of the form "Bearer <token>"' : 'this endpoint needs an Authorization: Bearer <access token> header', {
      hint: 'run: agentgate login (or set AGENTGATE_TOKEN)',
    });
  }
  return verifier.verify(token);
}

export interface Rejection {
  status: number;
  headers: Record<string, string>;
  body: ApiErrorBody;
}

/** Status, headers and body for a refused token: 401 with WWW-Authenticate, or 503 when the IdP is down. */
export function rejection(err: TokenRejectedError): Rejection {
  const body = errorBody(err.code, err.message, { reason: err.reason, hint: err.hint });
  if (err.status === 503) return { status: 503, headers: { 'retry-after': '5' }, body };
  // RFC 6750 §3.1: no error code when the request carried no credentials at all.
  const challenge = err.reason === 'missing_token' ? 'Bearer realm="agentgate"' : `Bearer realm="agentgate", error="invalid_token", error_description="${quotable(err.message)}"`;
  return { status: 401, headers: { 'www-authenticate': challenge }, body };
}

/** error_description allows %x20-21 / %x23-5B / %x5D-7E only. */
function quotable(s: string): string {
  return s.replace(/"/g, "'").replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?').slice(0, 300);
}
