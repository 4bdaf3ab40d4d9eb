/**
 * From a verified claim set to an Identity. IdPs disagree on where groups live: an array
 * (Okta, Entra), a space-separated string (some scope-style setups), or nested
 * (Keycloak's `realm_access.roles`), so the configured claim may be a dotted path.
 */
import type { JWTPayload } from 'jose';
import type { Identity } from './types.js';

export function groupsFromClaims(claims: JWTPayload, groupsClaim: string): string[] {
  const raw = Object.hasOwn(claims, groupsClaim) ? claims[groupsClaim] : lookupPath(claims, groupsClaim);
  let groups: string[] = [];
  if (Array.isArray(raw)) groups = raw.filter((g): g is string => typeof g === 'string');
  else if (typeof raw === 'string') groups = raw.split(/\s+/);
  return [...new Set(groups.map((g) => g.trim()).filter((g) => g !== ''))];
}

export function identityFromClaims(claims: JWTPayload, issuer: string, groups: string[], agentGroups: readonly string[]): Identity {
  const name = stringClaim(claims, 'name') ?? stringClaim(claims, 'preferred_username');
  const email = stringClaim(claims, 'email');
  const identity: Identity = {
    sub: claims.sub ?? '',
    groups,
    kind: groups.some((g) => agentGroups.includes(g)) ? 'agent' : 'human',
    issuer,
    expiresAt: claims.exp ?? 0,
    claims: { ...claims },
  };
  if (name !== undefined) identity.name = name;
  if (email !== undefined) identity.email = email;
  return identity;
}

function stringClaim(claims: JWTPayload, key: string): string | undefined {
  const v = claims[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function lookupPath(claims: JWTPayload, path: string): unknown {
  if (!path.includes('.')) return undefined;
  let cur: unknown = claims;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
