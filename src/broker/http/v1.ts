/** Authenticated identity endpoints: who am I, and what may I reach. */
import type { TargetsResponse, WhoAmI } from '../../shared/api-types.js';
import { reachableTargets } from '../access.js';
import type { Identity } from '../identity/types.js';
import { sendJson } from './json.js';
import type { Route } from './types.js';

export const whoamiRoute: Route = {
  method: 'GET',
  path: '/v1/whoami',
  auth: true,
  handle({ res, identity, baseUrl }) {
    const id = must(identity);
    const body: WhoAmI = { sub: id.sub, groups: id.groups, kind: id.kind, issuer: id.issuer, expires_at: id.expiresAt, broker: baseUrl };
    if (id.name !== undefined) body.name = id.name;
    if (id.email !== undefined) body.email = id.email;
    sendJson(res, 200, body);
  },
};

export const targetsRoute: Route = {
  method: 'GET',
  path: '/v1/targets',
  auth: true,
  handle({ res, identity, broker }) {
    const body: TargetsResponse = { targets: reachableTargets(must(identity), broker.config) };
    sendJson(res, 200, body);
  },
};

function must(identity: Identity | undefined): Identity {
  // The handler only runs auth routes after authenticate() succeeded.
  if (!identity) throw new Error('auth route reached without an identity');
  return identity;
}
