/**
 * The CLI's HTTP half of the tunnel: `GET /v1/tunnel` with a bearer token and
 * `Upgrade: agentgate-mux/1`, sent through the caller's undici Dispatcher so that TLS
 * pinning and HTTPS_PROXY apply. undici's own `upgrade()` turns every non-101 answer
 * into a bare "bad upgrade", losing the status and the broker's JSON reason, so this
 * dispatches the same upgrade request with a handler that also reads refusals.
 */
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { AgentgateError, AuthError, BrokerError } from '../errors.js';
import type { ApiErrorBody, TokenRejectionReason } from '../shared/api-types.js';
import { TUNNEL_UPGRADE_PROTOCOL } from './protocol.js';

export interface UpgradeOptions {
  /** Absolute `https://…/v1/tunnel` URL. */
  endpoint: string | URL;
  dispatcher: Dispatcher;
  token: string;
  /** Extra request headers (per-session data in `X-Agentgate-*`). */
  headers?: Record<string, string>;
  /** Upper bound for the whole exchange; default 20 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Refusal bodies are small JSON; anything longer is cut off unread. */
const MAX_ERROR_BODY = 16 * 1024;

/**
 * Upgrade one connection to the tunnel protocol. Resolves with the raw socket
 * (already past the `101`); rejects with AuthError on 401, BrokerError otherwise.
 */
export function upgradeToTunnel(opts: UpgradeOptions): Promise<Duplex> {
  let url: URL;
  try {
    url = tunnelEndpointUrl(opts.endpoint);
  } catch (err) {
    return Promise.reject(err);
  }
  const timeoutMs = opts.timeoutMs ?? 20_000;
  return new Promise<Duplex>((resolve, reject) => {
    let settled = false;
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let contentType = '';
    const body: Buffer[] = [];
    let bodySize = 0;

    const finish = (err: Error | undefined, socket?: Duplex): void => {
      if (settled) {
        socket?.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(socket as Duplex);
    };
    const abortWith = (err: Error): void => {
      finish(err);
      try {
        controller?.abort(err);
      } catch {
        // the request is already over
      }
    };
    const onAbort = (): void => abortWith(new BrokerError('AG_TUNNEL_ABORTED', 'The tunnel connection attempt was cancelled.'));
    const timer = setTimeout(() => {
      abortWith(
        new BrokerError('AG_TUNNEL_TIMEOUT', `The broker at ${url.origin} did not answer the tunnel request within ${Math.round(timeoutMs / 1000)}s.`, {
          hint: 'Check that the broker is running and reachable from here (and HTTPS_PROXY, if you use one).',
        }),
      );
    }, timeoutMs);
    if (opts.signal?.aborted) {
      onAbort();
      return;
    }
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (settled) c.abort(new Error('tunnel request cancelled'));
      },
      onRequestUpgrade(_c, statusCode, _headers, socket) {
        if (statusCode !== 101) {
          socket.destroy();
          finish(new BrokerError('AG_TUNNEL_BAD_UPGRADE', `The broker answered the tunnel request with status ${statusCode} instead of 101.`));
          return;
        }
        finish(undefined, socket);
      },
      onResponseStart(_c, statusCode, headers) {
        status = statusCode;
        const ct = headers['content-type'];
        contentType = Array.isArray(ct) ? (ct[0] ?? '') : (ct ?? '');
      },
      onResponseData(_c, chunk) {
        if (bodySize < MAX_ERROR_BODY) {
          body.push(chunk);
          bodySize += chunk.length;
        }
      },
      onResponseEnd() {
        finish(refusalError(url, status, contentType, Buffer.concat(body).subarray(0, MAX_ERROR_BODY)));
      },
      onResponseError(_c, err) {
        finish(connectError(url, err));
      },
    };

    try {
      opts.dispatcher.dispatch(
        {
          origin: url.origin,
          path: url.pathname + url.search,
          method: 'GET',
          headers: { ...withoutAuthorization(opts.headers), authorization: `Bearer ${opts.token}` },
          upgrade: TUNNEL_UPGRADE_PROTOCOL,
        },
        handler,
      );
    } catch (err) {
      finish(new BrokerError('AG_BROKER_UNREACHABLE', `Could not open the tunnel to ${url.origin}: ${(err as Error).message}`, { cause: err }));
    }
  });
}

function withoutAuthorization(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() !== 'authorization') out[k] = v;
  return out;
}

/** Parse and check the tunnel endpoint: an absolute https URL (the tunnel never runs in clear). */
export function tunnelEndpointUrl(endpoint: string | URL): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new BrokerError('AG_TUNNEL_BAD_ENDPOINT', `The tunnel endpoint "${String(endpoint).slice(0, 200)}" is not a valid URL.`, {
      hint: "Check the broker URL (AGENTGATE_BROKER); the endpoint comes from the broker's discovery document.",
    });
  }
  if (url.protocol !== 'https:') {
    throw new BrokerError('AG_TUNNEL_BAD_ENDPOINT', `The tunnel endpoint ${url.origin} is not https; the tunnel only runs over TLS.`, {
      hint: "Check the broker URL (AGENTGATE_BROKER); the endpoint comes from the broker's discovery document.",
    });
  }
  return url;
}

/** Refusals that retrying cannot fix: the dialer stops reconnecting on these. */
export function isPermanentTunnelError(err: unknown): boolean {
  if (err instanceof AuthError) return true;
  if (err instanceof Error && permanent.has(err)) return true;
  return err instanceof AgentgateError && PERMANENT_CODES.has(err.code);
}

const PERMANENT_CODES = new Set(['AG_TUNNEL_BAD_ENDPOINT', 'AG_TUNNEL_REFUSED', 'AG_TUNNEL_HOST_KEY_MISMATCH', 'AG_TUNNEL_BAD_UPGRADE', 'AG_TUNNEL_TLS']);
const permanent = new WeakSet<Error>();

/** Node's codes for a broker certificate that failed verification. */
const TLS_VERIFY_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function connectError(url: URL, err: Error): Error {
  // A typed error raised while connecting (the dispatcher's certificate pinning, say)
  // is a verdict, not a network blip: pass it on and do not retry it.
  if (err instanceof AgentgateError) {
    permanent.add(err);
    return err;
  }
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (TLS_VERIFY_CODES.has(code)) {
    return new BrokerError('AG_TUNNEL_TLS', `The broker's TLS certificate at ${url.origin} could not be verified (${code}).`, {
      cause: err,
      hint: 'Trust the broker with AGENTGATE_CA (a PEM file) or pin it with AGENTGATE_FINGERPRINT, as its operator tells you.',
    });
  }
  return new BrokerError('AG_BROKER_UNREACHABLE', `Could not open the tunnel to ${url.origin}: ${err.message}`, {
    cause: err,
    hint: 'Check that the broker is running and reachable from here (and HTTPS_PROXY, if you use one).',
  });
}

function refusalError(url: URL, status: number, contentType: string, raw: Buffer): Error {
  const parsed = contentType.includes('json') ? parseApiError(raw) : undefined;
  const brokerSays = parsed?.message ? `: ${parsed.message}` : '';
  if (status === 401) {
    return new AuthError('AG_TOKEN_REJECTED', `The broker rejected your token for the tunnel${brokerSays}`, {
      reason: parsed?.reason,
      hint: parsed?.hint ?? 'Run `agentgate login` (or set AGENTGATE_TOKEN to a valid token) and try again.',
    });
  }
  // Overload and gateway answers are worth retrying; other refusals will not change.
  const transient = status >= 500 || status === 408 || status === 429;
  return new BrokerError(
    transient ? 'AG_TUNNEL_UNAVAILABLE' : 'AG_TUNNEL_REFUSED',
    `The broker at ${url.origin} refused the tunnel (HTTP ${status})${brokerSays}`,
    {
      hint:
        parsed?.hint ??
        (transient
          ? 'The broker is overloaded or restarting; agentgate keeps retrying.'
          : 'Check the broker URL (AGENTGATE_BROKER) and that this CLI and the broker are compatible versions.'),
    },
  );
}

function parseApiError(raw: Buffer): { message?: string; reason?: TokenRejectionReason; hint?: string } | undefined {
  try {
    const json = JSON.parse(raw.toString('utf8')) as Partial<ApiErrorBody>;
    const e = json.error;
    if (!e || typeof e !== 'object') return undefined;
    return {
      message: typeof e.message === 'string' ? e.message.slice(0, 500) : undefined,
      reason: typeof e.reason === 'string' ? e.reason : undefined,
      hint: typeof e.hint === 'string' ? e.hint.slice(0, 500) : undefined,
    };
  } catch {
    return undefined;
  }
}
