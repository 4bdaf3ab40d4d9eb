/**
 * Access-token verification: which issuer, which keys, which claims. The unverified `iss`
 * is read only to pick the trusted issuer whose keys to check against; nothing else from
 * an unverified token is believed. Only asymmetric algorithms are accepted, so a token
 * "signed" with `none` or with HS256 keyed by a public key never reaches a key lookup.
 */
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import type { CiIssuerConfig, IdentityConfig } from '../config/types.js';
import { compileGlob } from '../glob.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { groupsFromClaims, identityFromClaims } from './claims.js';
import { sameIssuer } from './discovery.js';
import { TokenRejectedError } from './errors.js';
import { IssuerKeys } from './issuer.js';
import type { Identity, IdentityVerifier } from './types.js';

export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
const ALLOWED = new Set<string>(ALLOWED_ALGORITHMS);

/** Real access tokens are a few KiB; anything far beyond is not one. */
const MAX_TOKEN_LENGTH = 16 * 1024;

export interface IdentityVerifierOptions {
  /** Floor between JWKS refetches caused by unknown `kid`s. Default 30 000. */
  jwksCooldownMs?: number;
  /** Timeout for each discovery/JWKS request. Default 5 000. */
  fetchTimeoutMs?: number;
  logger?: Logger;
}

interface Trusted {
  kind: 'primary' | 'ci';
  configuredIssuer: string;
  audience: string;
  keys: IssuerKeys;
  ci?: CiIssuerConfig & { subjectGlob: ReturnType<typeof compileGlob> };
}

export function createIdentityVerifier(identity: IdentityConfig, options: IdentityVerifierOptions = {}): IdentityVerifier {
  const logger = options.logger ?? silentLogger;
  const keyOptions = {
    jwksCooldownMs: options.jwksCooldownMs ?? 30_000,
    fetchTimeoutMs: options.fetchTimeoutMs ?? 5_000,
    discoveryTtlMs: 60 * 60_000,
    logger,
  };
  // One key cache per issuer, however many config entries name it.
  const keyCache = new Map<string, IssuerKeys>();
  const keysFor = (issuer: string): IssuerKeys => {
    const id = issuer.replace(/\/+$/, '');
    let keys = keyCache.get(id);
    if (!keys) keyCache.set(id, (keys = new IssuerKeys(issuer, keyOptions)));
    return keys;
  };
  const primary: Trusted = {
    kind: 'primary',
    configuredIssuer: identity.issuer,
    audience: identity.audience,
    keys: keysFor(identity.issuer),
  };
  const ci: Trusted[] = identity.ciIssuers.map((c) => ({
    kind: 'ci',
    configuredIssuer: c.issuer,
    audience: c.audience,
    keys: keysFor(c.issuer),
    ci: { ...c, subjectGlob: compileGlob(c.subject) },
  }));
  const tolerance = identity.clockToleranceSec;

  const reject = (reason: ConstructorParameters<typeof TokenRejectedError>[0], message: string, hint: string, cause?: unknown): TokenRejectedError =>
    new TokenRejectedError(reason, message, { hint, cause });

  async function verify(token: string): Promise<Identity> {
    if (typeof token !== 'string' || token.trim() === '') {
      throw reject('missing_token', 'no bearer token was presented', 'run: agentgate login (or set AGENTGATE_TOKEN)');
    }
    if (token.length > MAX_TOKEN_LENGTH) {
      throw reject('malformed_token', `the bearer token is ${token.length} characters long; an access token is far shorter`, 'run: agentgate login');
    }

    let alg: unknown;
    let unverified: JWTPayload;
    try {
      alg = decodeProtectedHeader(token).alg;
      unverified = decodeJwt(token);
    } catch (err) {
      throw reject('malformed_token', 'the bearer token is not a signed JWT', 'run: agentgate login; the broker needs a JWT access token from the IdP, not an opaque token or an ID token', err);
    }
    if (typeof alg !== 'string' || !ALLOWED.has(alg)) {
      throw reject(
        'unsupported_alg',
        `the token is signed with alg ${show(alg ?? null)}; the broker accepts only ${ALLOWED_ALGORITHMS.join(', ')}`,
        'the IdP must sign access tokens with an asymmetric algorithm (RS256, ES256, EdDSA, …)',
      );
    }

    const iss = unverified.iss;
    if (typeof iss !== 'string' || iss === '') {
      throw reject('malformed_token', 'the token has no "iss" claim', 'run: agentgate login');
    }
    const candidates = sameIssuer(iss, primary.configuredIssuer) ? [primary] : ci.filter((c) => sameIssuer(iss, c.configuredIssuer));
    const chosen = candidates[0];
    if (!chosen) {
      throw reject(
        'wrong_issuer',
        `the token was issued by ${show(iss)}, which this broker does not trust; it trusts ${show(identity.issuer)}${identity.ciIssuers.length > 0 ? ` and ${identity.ciIssuers.length} CI issuer(s)` : ''}`,
        `log in against the broker's IdP: agentgate login --broker <this broker's URL>`,
      );
    }

    const { issuer: exactIssuer, getKey } = await chosen.keys.resolve();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        issuer: exactIssuer,
        audience: [...new Set(candidates.map((c) => c.audience))],
        algorithms: [...ALLOWED_ALGORITHMS],
        clockTolerance: tolerance,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw classify(err, candidates, unverified, tolerance);
    }

    if (chosen.kind === 'primary') return identityFromClaims(payload, exactIssuer, groupsFromClaims(payload, identity.groupsClaim), identity.agentGroups);

    // Several CI entries may share an issuer; the first whose audience and subject both match wins.
    const sub = payload.sub ?? '';
    for (const entry of candidates) {
      if (!audienceIncludes(payload.aud, entry.audience)) continue;
      if (entry.ci?.subjectGlob.test(sub)) {
        return { ...identityFromClaims(payload, exactIssuer, [...entry.ci.groups], []), kind: 'ci' };
      }
    }
    throw reject(
      'subject_not_allowed',
      `CI token subject ${show(sub)} does not match ${candidates.map((c) => JSON.stringify(c.ci?.subject)).join(' or ')} for issuer ${exactIssuer}`,
      'ask the broker operator to allow this workflow in identity.ci_issuers[].subject',
    );
  }

  function classify(err: unknown, candidates: Trusted[], unverified: JWTPayload, toleranceSec: number): TokenRejectedError {
    if (err instanceof TokenRejectedError) return err;
    const expected = [...new Set(candidates.map((c) => c.audience))];
    const expectedText = expected.map((a) => JSON.stringify(a)).join(' or ');
    const audienceHint = `the broker expects audience ${expectedText}; ask your IdP admin to include it in access tokens for client "${identity.clientId}"`;
    const issuerName = candidates[0]?.configuredIssuer ?? '';
    if (err instanceof errors.JWTExpired) {
      const exp = typeof unverified.exp === 'number' ? unverified.exp : undefined;
      const when = exp === undefined ? '' : ` at ${new Date(exp * 1000).toISOString()} (${ago(exp)} ago)`;
      return reject('token_expired', `the token expired${when}`, 'run: agentgate login', err);
    }
    if (err instanceof errors.JWTClaimValidationFailed) {
      switch (err.claim) {
        case 'nbf':
        case 'iat': {
          const at = typeof unverified[err.claim] === 'number' ? ` until ${new Date((unverified[err.claim] as number) * 1000).toISOString()}` : '';
          return reject('token_not_yet_valid', `the token is not valid yet${at}`, `check the clock on the broker and on the IdP; the broker tolerates ${toleranceSec} s of skew`, err);
        }
        case 'aud': {
          const got = err.reason === 'missing' ? 'the token has no "aud" claim' : `the token's audience is ${show(unverified.aud ?? null)}`;
          return reject('wrong_audience', `${got}; the broker expects ${expectedText}`, audienceHint, err);
        }
        case 'iss':
          return reject('wrong_issuer', `the token's issuer ${show(unverified.iss)} is not spelled exactly as the IdP names itself`, 'run: agentgate login', err);
        default:
          return reject('malformed_token', `the token's "${err.claim}" claim is ${err.reason === 'missing' ? 'missing' : 'invalid'}`, 'run: agentgate login', err);
      }
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) {
      return reject('bad_signature', "the token's signature does not verify with the issuer's key", 'run: agentgate login', err);
    }
    if (err instanceof errors.JWKSNoMatchingKey) {
      return reject('unknown_key', `the issuer ${issuerName} publishes no key matching the token's key id`, 'if the IdP just rotated its keys, retry in a minute; otherwise run: agentgate login', err);
    }
    if (err instanceof errors.JWKSMultipleMatchingKeys) {
      return reject('unknown_key', 'the token names no key id and the issuer publishes several keys', 'run: agentgate login', err);
    }
    if (err instanceof errors.JOSEAlgNotAllowed) {
      return reject('unsupported_alg', 'the token is signed with an algorithm the broker does not accept', 'the IdP must sign access tokens with an asymmetric algorithm (RS256, ES256, EdDSA, …)', err);
    }
    // JWSInvalid, JWTInvalid, JOSENotSupported and anything unforeseen: fail closed.
    logger.debug('token failed verification', { error: err });
    return reject('malformed_token', 'the token could not be verified', 'run: agentgate login', err);
  }

  return { verify };
}

/** Quotes a value taken from an unverified token for a message, capped so a hostile token cannot bloat responses or logs. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? text.slice(0, 117) + '…' : text;
}

function audienceIncludes(aud: unknown, expected: string): boolean {
  return aud === expected || (Array.isArray(aud) && aud.includes(expected));
}

function ago(unixSeconds: number): string {
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} days`;
}
