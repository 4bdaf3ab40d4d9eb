/**
 * Where the access token for a broker request comes from, first match wins:
 *   1. AGENTGATE_TOKEN                       (a token handed to us)
 *   2. --token-file F                        (same, from a file)
 *   3. AGENTGATE_CLIENT_ID + _SECRET         (client credentials at the IdP)
 *   4. ACTIONS_ID_TOKEN_REQUEST_URL + _TOKEN (GitHub Actions OIDC, audience = broker's)
 *   5. the stored `agentgate login`          (refreshed when close to expiry)
 * The first four never touch the token store, so CI needs no keychain and no file.
 */
import { readFile } from 'node:fs/promises';
import * as oidc from 'openid-client';
import { EnvHttpProxyAgent, fetch as undiciFetch } from 'undici';
import { AuthError, UsageError } from '../errors.js';
import type { BrokerDiscovery } from '../shared/api-types.js';
import { freshStoredLogin } from './device-login.js';
import { idpConfig, idpError, isLoopback, oauthErrorCode } from './oidc.js';
import { openTokenStore, type StoredLogin, type TokenStore } from './token-store.js';

export type TokenSourceKind = 'env' | 'token-file' | 'client-credentials' | 'github-actions' | 'login';

export interface ResolvedToken {
  /** The bearer token. Never print it. */
  token: string;
  kind: TokenSourceKind;
  /** Names the source in messages (e.g. `AGENTGATE_TOKEN`); undefined for the stored login. */
  label: string | undefined;
  /** The stored login, when that was the source. */
  login?: StoredLogin;
}

export interface TokenRequest {
  brokerUrl: string;
  discovery: BrokerDiscovery;
  /** `--token-file`. */
  tokenFile?: string;
  env?: NodeJS.ProcessEnv;
  /** Opens the token store (only when no other source applies). */
  store?: () => Promise<TokenStore>;
}

const set = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const v = env[name];
  return v !== undefined && v.trim() !== '' ? v.trim() : undefined;
};

export async function resolveToken(req: TokenRequest): Promise<ResolvedToken> {
  const env = req.env ?? process.env;

  const direct = set(env, 'AGENTGATE_TOKEN');
  if (direct) return { token: direct, kind: 'env', label: 'AGENTGATE_TOKEN' };

  if (req.tokenFile !== undefined && req.tokenFile !== '') {
    return { token: await readTokenFile(req.tokenFile), kind: 'token-file', label: `--token-file ${req.tokenFile}` };
  }

  const clientId = set(env, 'AGENTGATE_CLIENT_ID');
  const clientSecret = set(env, 'AGENTGATE_CLIENT_SECRET');
  if (clientId || clientSecret) {
    if (!clientId || !clientSecret) {
      throw new UsageError(`${clientId ? 'AGENTGATE_CLIENT_SECRET' : 'AGENTGATE_CLIENT_ID'} is not set`, {
        hint: 'client credentials need both AGENTGATE_CLIENT_ID and AGENTGATE_CLIENT_SECRET',
      });
    }
    return {
      token: await clientCredentialsToken(req.discovery, clientId, clientSecret),
      kind: 'client-credentials',
      label: `client credentials (AGENTGATE_CLIENT_ID=${clientId})`,
    };
  }

  const ghUrl = set(env, 'ACTIONS_ID_TOKEN_REQUEST_URL');
  const ghToken = set(env, 'ACTIONS_ID_TOKEN_REQUEST_TOKEN');
  if (ghUrl && ghToken) {
    return { token: await githubActionsToken(ghUrl, ghToken, req.discovery.audience), kind: 'github-actions', label: 'GitHub Actions OIDC' };
  }

  const store = await (req.store ?? (() => openTokenStore({ env })))();
  const login = await freshStoredLogin(req.brokerUrl, store);
  return { token: login.access_token, kind: 'login', label: undefined, login };
}

async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --token-file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      hint: 'pass a readable file that holds only the access token',
    });
  }
  const token = text.trim();
  if (!token || /\s/.test(token)) {
    throw new UsageError(`--token-file ${path} must hold exactly one token`, { hint: 'write only the access token into the file' });
  }
  return token;
}

/** RFC 8707 says a resource indicator is an absolute URI; other audiences are left to the IdP's default. */
function resourceFor(audience: string): string | undefined {
  return URL.canParse(audience) ? audience : undefined;
}

async function clientCredentialsToken(discovery: BrokerDiscovery, clientId: string, secret: string): Promise<string> {
  const config = await idpConfig(discovery.issuer, { clientId, secret });
  const resource = resourceFor(discovery.audience);
  try {
    const tokens = await oidc.clientCredentialsGrant(config, resource ? { resource } : {});
    return tokens.access_token;
  } catch (err) {
    const code = oauthErrorCode(err);
    if (code === 'invalid_client' || code === 'unauthorized_client') {
      throw new AuthError('AG_CLIENT_CREDENTIALS_REJECTED', `the IdP ${discovery.issuer} refused the client credentials for ${clientId} (${code})`, {
        hint: 'check AGENTGATE_CLIENT_ID and AGENTGATE_CLIENT_SECRET, and that the client may use the client_credentials grant',
      });
    }
    throw idpError(err, discovery.issuer, 'issue a client-credentials token');
  }
}

let ghDispatcher: EnvHttpProxyAgent | undefined;

/** GitHub Actions' OIDC token for `audience` (needs `permissions: id-token: write`). */
async function githubActionsToken(requestUrl: string, requestToken: string, audience: string): Promise<string> {
  const url = URL.parse(requestUrl);
  if (!url || (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url)))) {
    throw new AuthError('AG_GITHUB_OIDC_FAILED', 'ACTIONS_ID_TOKEN_REQUEST_URL is not an https URL', {
      hint: 'this variable is set by GitHub Actions; do not set it by hand',
    });
  }
  url.searchParams.set('audience', audience);
  const hint = 'give the job `permissions: id-token: write`, or use AGENTGATE_TOKEN / client credentials instead';
  ghDispatcher ??= new EnvHttpProxyAgent();
  let res: Awaited<ReturnType<typeof undiciFetch>>;
  try {
    res = await undiciFetch(url, {
      headers: { authorization: `bearer ${requestToken}`, accept: 'application/json' },
      dispatcher: ghDispatcher,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    const e = err as { cause?: { code?: string }; message?: string };
    throw new AuthError('AG_GITHUB_OIDC_FAILED', `cannot reach GitHub's OIDC token service at ${url.origin} (${e.cause?.code ?? e.message ?? 'error'})`, { hint });
  }
  const body = (await res.json().catch(() => undefined)) as { value?: unknown } | undefined;
  if (!res.ok || typeof body?.value !== 'string' || body.value === '') {
    throw new AuthError('AG_GITHUB_OIDC_FAILED', `GitHub's OIDC token service answered HTTP ${res.status} without a token`, { hint });
  }
  return body.value;
}

/** Closes pooled connections this module opened. */
export async function closeTokenSourceConnections(): Promise<void> {
  const d = ghDispatcher;
  ghDispatcher = undefined;
  await d?.close();
}
