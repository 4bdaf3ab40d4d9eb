/**
 * Human login: the OAuth 2.0 device authorization grant (RFC 8628) against the IdP the
 * broker names, silent refresh of a stored login, and revocation at logout.
 * Tokens only ever travel to the IdP, the broker and the token store.
 */
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { AuthError } from '../errors.js';
import type { BrokerDiscovery } from '../shared/api-types.js';
import { idpConfig, idpError, oauthErrorCode } from './oidc.js';
import { openTokenStore, type StoredLogin, type TokenStore } from './token-store.js';

/** What the user must do in a browser. */
export interface DevicePrompt {
  verification_uri: string;
  verification_uri_complete?: string;
  user_code: string;
  /** Seconds until the code expires. */
  expires_in: number;
}

export interface DeviceLoginOptions {
  /** Shows the prompt to the user (stderr). */
  prompt(p: DevicePrompt): void;
  /** Stops waiting (Ctrl-C). */
  signal?: AbortSignal;
}

/** Refresh when less than this many seconds remain. */
export const REFRESH_MARGIN_SEC = 60;

const nowSec = (): number => Math.floor(Date.now() / 1000);

export async function deviceLogin(discovery: BrokerDiscovery, options: DeviceLoginOptions): Promise<StoredLogin> {
  const { issuer, client_id: clientId } = discovery;
  const config = await idpConfig(issuer, { clientId });
  if (!config.serverMetadata().device_authorization_endpoint) {
    throw new AuthError('AG_IDP_NO_DEVICE_FLOW', `the IdP ${issuer} does not offer the device authorization grant`, {
      hint: 'ask the broker\'s operator to enable the device flow for the client ' + clientId + ', or use AGENTGATE_TOKEN / client credentials',
    });
  }
  const scopes = discovery.scopes.length > 0 ? discovery.scopes : ['openid', 'offline_access'];
  let dar: oidc.DeviceAuthorizationResponse;
  try {
    dar = await oidc.initiateDeviceAuthorization(config, { scope: scopes.join(' ') });
  } catch (err) {
    throw idpError(err, issuer, 'start a device login');
  }
  options.prompt({
    verification_uri: dar.verification_uri,
    user_code: dar.user_code,
    expires_in: dar.expires_in,
    ...(typeof dar.verification_uri_complete === 'string' ? { verification_uri_complete: dar.verification_uri_complete } : {}),
  });

  let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
  try {
    // openid-client waits `interval` between polls and adds 5 s on each slow_down (RFC 8628 §3.5).
    const deadline = AbortSignal.timeout(dar.expires_in * 1000);
    const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
    tokens = await oidc.pollDeviceAuthorizationGrant(config, dar, undefined, { signal });
  } catch (err) {
    throw deviceError(err, issuer, options.signal);
  }
  return toStoredLogin(tokens, issuer, clientId);
}

function deviceError(err: unknown, issuer: string, userSignal: AbortSignal | undefined): Error {
  const code = oauthErrorCode(err);
  if (userSignal?.aborted) return new AuthError('AG_LOGIN_CANCELLED', 'login cancelled', { hint: 'run agentgate login again when ready' });
  // Our deadline (expires_in) surfaces from openid-client as a ClientError OAUTH_TIMEOUT.
  const timedOut = err instanceof oidc.ClientError && (err.code === 'OAUTH_TIMEOUT' || err.code === 'OAUTH_ABORT');
  if (code === 'expired_token' || timedOut) {
    return new AuthError('AG_LOGIN_EXPIRED', 'the code expired before the sign-in in the browser was finished', {
      hint: 'run agentgate login again and finish the sign-in within the time shown',
    });
  }
  if (code === 'access_denied') {
    return new AuthError('AG_LOGIN_DENIED', 'the sign-in was denied in the browser', {
      hint: 'run agentgate login again and approve the request; if you did approve, ask your IdP admin whether you may use this client',
    });
  }
  return idpError(err, issuer, 'complete the device login');
}

/** Unverified JWT claims, for display and expiry only (the broker does the verifying). */
function peekJwt(token: string): Record<string, unknown> | undefined {
  try {
    return decodeJwt(token) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export function toStoredLogin(
  tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
  issuer: string,
  clientId: string,
  previous?: StoredLogin,
): StoredLogin {
  const now = nowSec();
  const at = peekJwt(tokens.access_token);
  const expiresAt =
    typeof tokens.expires_in === 'number' ? now + tokens.expires_in : typeof at?.['exp'] === 'number' ? at['exp'] : now + 300;
  const id = tokens.claims() as Record<string, unknown> | undefined;
  const source = id ?? at;
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const claims: StoredLogin['claims'] = source
    ? {
        sub: str(source['sub']) ?? previous?.claims.sub ?? 'unknown',
        ...(str(source['name']) ? { name: str(source['name']) } : {}),
        ...(str(source['email']) ? { email: str(source['email']) } : {}),
        ...(str(source['preferred_username']) ? { preferred_username: str(source['preferred_username']) } : {}),
      }
    : (previous?.claims ?? { sub: 'unknown' });
  const login: StoredLogin = {
    access_token: tokens.access_token,
    expires_at: expiresAt,
    issuer,
    client_id: clientId,
    claims: id || !previous ? claims : previous.claims,
  };
  // Without rotation the IdP sends no new refresh token: keep the old one.
  const refresh = tokens.refresh_token ?? previous?.refresh_token;
  if (refresh) login.refresh_token = refresh;
  const scope = tokens.scope ?? previous?.scope;
  if (scope) login.scope = scope;
  return login;
}

/** Uses the refresh token; any refusal means the session is over. */
export async function refreshLogin(login: StoredLogin): Promise<StoredLogin> {
  if (!login.refresh_token) {
    throw new AuthError('AG_SESSION_EXPIRED', 'your login has expired and cannot be renewed (the IdP issued no refresh token)', {
      hint: 'run: agentgate login',
    });
  }
  const config = await idpConfig(login.issuer, { clientId: login.client_id }).catch((err: unknown) => {
    throw sessionExpired(err, login.issuer);
  });
  try {
    const tokens = await oidc.refreshTokenGrant(config, login.refresh_token);
    return toStoredLogin(tokens, login.issuer, login.client_id, login);
  } catch (err) {
    throw sessionExpired(err, login.issuer);
  }
}

function sessionExpired(err: unknown, issuer: string): AuthError {
  if (oauthErrorCode(err) !== undefined) {
    return new AuthError('AG_SESSION_EXPIRED', 'your session has expired (the IdP no longer accepts the refresh token)', {
      hint: 'run: agentgate login',
      cause: err,
    });
  }
  const detail = idpError(err, issuer, 'renew the login').message;
  return new AuthError('AG_REFRESH_FAILED', `your login has expired and could not be renewed: ${detail}`, {
    hint: 'check the network path to the IdP; if it persists, run: agentgate login',
    cause: err,
  });
}

/** The access token of the stored login for `broker`, refreshed first if needed (see freshStoredLogin). */
export async function getAccessToken(broker: string, store?: TokenStore): Promise<string> {
  return (await freshStoredLogin(broker, store ?? (await openTokenStore()))).access_token;
}

/**
 * The stored login for `broker`, refreshed (and saved) when less than a minute remains.
 * No login → AuthError telling the user to log in.
 */
export async function freshStoredLogin(broker: string, store: TokenStore): Promise<StoredLogin> {
  const login = await store.get(broker);
  if (!login) {
    throw new AuthError('AG_NOT_LOGGED_IN', `not logged in to ${broker}`, { hint: `run: agentgate login --broker ${broker}` });
  }
  const now = nowSec();
  if (login.expires_at - now > REFRESH_MARGIN_SEC) return login;
  try {
    const fresh = await refreshLogin(login);
    await store.set(broker, fresh);
    return fresh;
  } catch (err) {
    // A token that still works for a few seconds beats failing on an IdP hiccup.
    if (login.expires_at > now && err instanceof AuthError && err.code === 'AG_REFRESH_FAILED') return login;
    throw err;
  }
}

/**
 * Revokes the refresh token where the IdP has a revocation endpoint (RFC 7009).
 * Returns what happened, for the logout message; never throws for IdP trouble.
 */
export async function revokeLogin(login: StoredLogin): Promise<'revoked' | 'unsupported' | 'nothing' | { failed: string }> {
  if (!login.refresh_token) return 'nothing';
  try {
    const config = await idpConfig(login.issuer, { clientId: login.client_id });
    if (!config.serverMetadata().revocation_endpoint) return 'unsupported';
    await oidc.tokenRevocation(config, login.refresh_token, { token_type_hint: 'refresh_token' });
    return 'revoked';
  } catch (err) {
    return { failed: idpError(err, login.issuer, 'revoke the refresh token').message };
  }
}
