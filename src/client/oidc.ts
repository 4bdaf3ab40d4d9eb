/**
 * Talking to the IdP with openid-client: discovery (https only, except an issuer on this
 * machine, which development setups run over http), requests through HTTPS_PROXY like
 * the broker connection, and errors that say which IdP failed and what to do.
 */
import * as oidc from 'openid-client';
import { EnvHttpProxyAgent, fetch as undiciFetch } from 'undici';
import { AgentgateError, AuthError } from '../errors.js';

let idpDispatcher: EnvHttpProxyAgent | undefined;

/** openid-client's fetch hook, sending requests through the environment's proxy settings. */
function idpFetch(): oidc.CustomFetch {
  idpDispatcher ??= new EnvHttpProxyAgent();
  const dispatcher = idpDispatcher;
  return (url, options) => undiciFetch(url, { ...options, dispatcher } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>;
}

/** Closes pooled IdP connections so the process can exit promptly. */
export async function closeIdpConnections(): Promise<void> {
  const d = idpDispatcher;
  idpDispatcher = undefined;
  await d?.close();
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

export function isLoopback(url: URL): boolean {
  return LOOPBACK.has(url.hostname) || url.hostname.endsWith('.localhost');
}

export interface IdpClient {
  /** Client id; `secret` for a confidential client (client credentials). */
  clientId: string;
  secret?: string;
}

/** Discovers the IdP and returns an openid-client configuration for `client`. */
export async function idpConfig(issuer: string, client: IdpClient): Promise<oidc.Configuration> {
  const url = URL.parse(issuer);
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new AgentgateError('AG_IDP_INVALID', `the broker names an IdP issuer that is not a URL: ${JSON.stringify(issuer)}`, 1, {
      hint: 'tell the broker\'s operator to fix identity.issuer',
    });
  }
  const insecure = url.protocol === 'http:';
  if (insecure && !isLoopback(url)) {
    throw new AgentgateError('AG_IDP_INSECURE', `the IdP ${issuer} is not served over https`, 1, {
      hint: 'plain http is accepted only for an IdP on this machine; tell the broker\'s operator to use an https issuer',
    });
  }
  const execute = insecure ? [oidc.allowInsecureRequests] : [];
  let config: oidc.Configuration;
  try {
    config = await oidc.discovery(url, client.clientId, undefined, oidc.None(), { execute, [oidc.customFetch]: idpFetch() });
  } catch (err) {
    throw idpError(err, issuer, 'read its OpenID configuration');
  }
  if (client.secret === undefined) return config;
  // RFC 8414: no advertised methods means client_secret_basic.
  const methods = config.serverMetadata().token_endpoint_auth_methods_supported;
  const auth =
    !methods || methods.includes('client_secret_basic') ? oidc.ClientSecretBasic(client.secret) : oidc.ClientSecretPost(client.secret);
  const confidential = new oidc.Configuration(config.serverMetadata(), client.clientId, client.secret, auth);
  confidential[oidc.customFetch] = idpFetch();
  if (insecure) oidc.allowInsecureRequests(confidential);
  return confidential;
}

/** The OAuth `error` code of an IdP refusal (in the body, or a 401's WWW-Authenticate), if that is what `err` is. */
export function oauthErrorCode(err: unknown): string | undefined {
  return oauthError(err)?.error;
}

function oauthError(err: unknown): { error: string; description?: string } | undefined {
  if (err instanceof oidc.ResponseBodyError) {
    return { error: err.error, ...(err.error_description ? { description: err.error_description } : {}) };
  }
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    const params = err.cause.find((c) => c.parameters.error)?.parameters;
    if (params?.error) return { error: params.error, ...(params.error_description ? { description: params.error_description } : {}) };
    return { error: err.status === 401 ? 'invalid_client' : `http_${err.status}` };
  }
  return undefined;
}

/** Describes a failed IdP exchange without echoing anything secret. */
export function idpError(err: unknown, issuer: string, doing: string): AgentgateError {
  if (err instanceof AgentgateError) return err;
  const refusal = oauthError(err);
  if (refusal) {
    const desc = refusal.description ? `: ${refusal.description}` : '';
    return new AuthError('AG_IDP_REFUSED', `the IdP ${issuer} refused to ${doing} (${refusal.error}${desc})`, {
      hint: 'check the client configuration with the broker\'s operator, then try again',
      cause: err,
    });
  }
  const e = err as { code?: string; cause?: { code?: string; message?: string }; message?: string };
  const detail = e?.cause?.code ?? e?.code ?? e?.cause?.message ?? e?.message ?? String(err);
  return new AgentgateError('AG_IDP_UNREACHABLE', `could not ${doing} at the IdP ${issuer} (${detail})`, 1, {
    hint: 'check the network path to the IdP (and HTTPS_PROXY / NO_PROXY), then try again',
    cause: err,
  });
}
