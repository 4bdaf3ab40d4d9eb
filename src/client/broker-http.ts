/**
 * The CLI's one HTTP client to the broker (undici). TLS is verified against the system
 * CAs, or those plus a given CA file, or — for a broker's generated self-signed
 * certificate — by a pinned SHA-256 fingerprint checked on every new connection, failing
 * closed. HTTPS_PROXY / NO_PROXY are honoured by tunnelling with CONNECT and doing our own
 * TLS on top, so pinning holds through a proxy too. The dispatcher is exported for the
 * tunnel dialer, which upgrades a connection on it.
 */
import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
import { AgentgateError, AuthError, BrokerError, PolicyDeniedError, UsageError } from '../errors.js';
import type { ApiErrorBody, BrokerDiscovery, TargetsResponse, TokenRejectionReason, WhoAmI } from '../shared/api-types.js';
import { fingerprintsEqual, normalizeFingerprint } from '../shared/fingerprint.js';
import { connectViaProxy, proxyFor } from './proxy.js';

/** How to trust the broker's certificate. Both absent = system CAs. */
export interface BrokerTrust {
  /** PEM file to trust in addition to the system CAs. */
  ca?: string;
  /** Pinned SHA-256 of the broker's certificate (any form `normalizeFingerprint` accepts). */
  fingerprint?: string;
}

export interface BrokerDispatcherOptions {
  /** TCP + TLS (+ proxy CONNECT) deadline. Default 10 s. */
  connectTimeoutMs?: number;
  /** Where HTTPS_PROXY / NO_PROXY are read from. Default process.env. */
  env?: NodeJS.ProcessEnv;
}

const MAX_JSON_BYTES = 1024 * 1024;
const TLS_HINT = 'if the broker uses its generated self-signed certificate, pass --fingerprint SHA256:… (printed by `agentgate broker start`) or --ca FILE with its certificate (or set AGENTGATE_FINGERPRINT / AGENTGATE_CA)';

export function createBrokerDispatcher(trust: BrokerTrust = {}, options: BrokerDispatcherOptions = {}): Dispatcher {
  const timeout = options.connectTimeoutMs ?? 10_000;
  const env = options.env ?? process.env;
  // A malformed pin is a usage error here, never a silent "no match".
  const pinned = trust.fingerprint ? normalizeFingerprint(trust.fingerprint) : undefined;

  let tlsOptions: tls.ConnectionOptions = {};
  if (pinned) {
    // The chain is not checked: the pin below is the identity check, on every handshake.
    tlsOptions = { rejectUnauthorized: false };
  } else if (trust.ca) {
    tlsOptions = { ca: [...defaultCAs(), readCaFile(trust.ca)] };
  }
  // No session resumption when pinning, so every connection shows its certificate.
  const tlsConnect = buildConnector({ ...tlsOptions, allowH2: false, timeout, ...(pinned ? { maxCachedSessions: 0 } : {}) });

  const connect: buildConnector.connector = (opts, callback) => {
    const host = opts.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    const origin = `${opts.protocol}//${opts.hostname}:${port}`;

    const done: buildConnector.Callback = (err, socket) => {
      if (err || !socket) {
        callback(err ?? new Error('no socket'), null);
        return;
      }
      if (pinned && opts.protocol === 'https:') {
        const actual = (socket as tls.TLSSocket).getPeerCertificate()?.fingerprint256;
        if (!actual || !fingerprintsEqual(actual, pinned)) {
          socket.destroy();
          callback(fingerprintMismatch(origin, pinned, actual), null);
          return;
        }
      }
      callback(null, socket);
    };

    let proxy: URL | undefined;
    try {
      proxy = proxyFor(new URL(origin), env);
    } catch (err) {
      callback(err as Error, null);
      return;
    }
    if (!proxy) {
      tlsConnect(opts, done);
      return;
    }
    connectViaProxy(proxy, host, port, timeout).then(
      (tunnel) => {
        if (opts.protocol === 'https:') tlsConnect({ ...opts, httpSocket: tunnel }, done);
        else done(null, tunnel);
      },
      (err: Error) => callback(err, null),
    );
  };

  return new Agent({ connect, connectTimeout: timeout, headersTimeout: 30_000, bodyTimeout: 30_000 });
}

function defaultCAs(): string[] {
  // getCACertificates('default') includes NODE_EXTRA_CA_CERTS (Node ≥ 22.15).
  return typeof tls.getCACertificates === 'function' ? tls.getCACertificates('default') : [...tls.rootCertificates];
}

function readCaFile(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the CA file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      hint: 'pass --ca with a readable PEM file (or fix AGENTGATE_CA)',
    });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new UsageError(`the CA file ${path} holds no PEM certificate`, { hint: 'pass --ca with a PEM file (-----BEGIN CERTIFICATE-----)' });
  }
  return pem;
}

function fingerprintMismatch(origin: string, pinned: string, actual: string | undefined): BrokerError {
  return new BrokerError(
    'AG_BROKER_FINGERPRINT_MISMATCH',
    `the broker at ${origin} presented a certificate with SHA-256 fingerprint ${actual ?? '(none)'}, but ${pinned} is pinned`,
    {
      hint: 'if the broker\'s certificate was replaced on purpose, confirm the new fingerprint with its operator and run `agentgate login --fingerprint <new>`; otherwise stop: the connection may be intercepted',
    },
  );
}

/** Turns a transport failure into an error that names the URL and the next step. */
export function transportError(err: unknown, url: string): AgentgateError {
  if (err instanceof AgentgateError) return err;
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e?.code ?? e?.cause?.code ?? '';
  const origin = URL.parse(url)?.origin ?? url;
  switch (code) {
    case 'ECONNREFUSED':
      return new BrokerError('AG_BROKER_UNREACHABLE', `the broker at ${origin} is unreachable: connection refused`, {
        hint: 'check that this is the right broker URL (--broker / AGENTGATE_BROKER, or the one you logged in to) and that the broker is up (ask its operator)',
        cause: err,
      });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new BrokerError('AG_BROKER_UNREACHABLE', `cannot resolve the broker's host name in ${origin}`, {
        hint: 'check the broker URL (--broker / AGENTGATE_BROKER) and your DNS or VPN',
        cause: err,
      });
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return new BrokerError('AG_BROKER_UNREACHABLE', `the connection to the broker at ${origin} was closed unexpectedly`, {
        hint: 'try again; if it persists, check that the URL points at the broker and not at another service',
        cause: err,
      });
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return new BrokerError('AG_BROKER_TIMEOUT', `the broker at ${origin} did not answer in time`, {
        hint: 'check the network path to the broker (and HTTPS_PROXY / NO_PROXY)',
        cause: err,
      });
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return new BrokerError('AG_BROKER_TLS', `the broker's certificate does not name ${URL.parse(url)?.hostname ?? origin}`, {
        hint: `use the host name the certificate was issued for, or ${TLS_HINT}`,
        cause: err,
      });
  }
  if (isTlsVerifyCode(code)) {
    return new BrokerError('AG_BROKER_TLS', `cannot verify the TLS certificate of ${origin}: ${code}`, { hint: TLS_HINT, cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new BrokerError('AG_BROKER_UNREACHABLE', `request to the broker at ${origin} failed: ${code ? `${code}: ` : ''}${message}`, {
    hint: 'check the broker URL and that the broker is running',
    cause: err,
  });
}

function isTlsVerifyCode(code: string): boolean {
  return (
    /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECRYPT)|ISSUER/.test(code) ||
    code.startsWith('ERR_SSL_') ||
    code === 'EPROTO'
  );
}

/** Reads a JSON body (undefined if it is not JSON), refusing anything larger than `limit` bytes. */
export async function readJson(body: Dispatcher.ResponseData['body'], limit = MAX_JSON_BYTES): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new BrokerError('AG_BROKER_PROTOCOL', `the broker's answer exceeds ${limit} bytes`, { hint: 'check that the URL points at an agentgate broker' });
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

async function getJson(url: string, dispatcher: Dispatcher, token?: string): Promise<{ status: number; json: unknown }> {
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, {
      method: 'GET',
      dispatcher,
      headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
  } catch (err) {
    throw transportError(err, url);
  }
  try {
    return { status: res.statusCode, json: await readJson(res.body) };
  } catch (err) {
    throw transportError(err, url);
  }
}

/** `GET /.well-known/agentgate`: which IdP to log in against, the audience, the client. */
export async function fetchDiscovery(brokerUrl: string, dispatcher: Dispatcher): Promise<BrokerDiscovery> {
  const url = `${brokerUrl}/.well-known/agentgate`;
  const { status, json } = await getJson(url, dispatcher);
  const d = json as Partial<BrokerDiscovery> | undefined;
  if (status !== 200 || !d || typeof d.issuer !== 'string' || typeof d.audience !== 'string' || typeof d.client_id !== 'string') {
    throw new BrokerError('AG_BROKER_PROTOCOL', `${brokerUrl} does not look like an agentgate broker (GET /.well-known/agentgate answered HTTP ${status})`, {
      hint: 'check the broker URL (--broker / AGENTGATE_BROKER)',
    });
  }
  return { ...d, scopes: Array.isArray(d.scopes) ? d.scopes : ['openid', 'offline_access'] } as BrokerDiscovery;
}

/** What the caller knows about the token it sends, to make a refusal's advice precise. */
export interface TokenContext {
  /** Human name of where the token came from, e.g. `AGENTGATE_TOKEN`; undefined = stored login. */
  source?: string;
}

export interface BrokerApi {
  whoami(token: string, ctx?: TokenContext): Promise<WhoAmI>;
  targets(token: string, ctx?: TokenContext): Promise<TargetsResponse>;
  /** Any authenticated JSON GET under the broker URL, with the same error mapping. */
  get<T>(path: string, token: string, ctx?: TokenContext): Promise<T>;
}

export function brokerApi(brokerUrl: string, dispatcher: Dispatcher, discovery?: BrokerDiscovery): BrokerApi {
  const get = async <T>(path: string, token: string, ctx: TokenContext = {}): Promise<T> => {
    const url = `${brokerUrl}${path}`;
    const { status, json } = await getJson(url, dispatcher, token);
    if (status >= 200 && status < 300 && json !== undefined) return json as T;
    throw apiError(status, json, { brokerUrl, discovery, source: ctx.source });
  };
  return {
    get,
    whoami: (token, ctx) => get<WhoAmI>('/v1/whoami', token, ctx),
    targets: (token, ctx) => get<TargetsResponse>('/v1/targets', token, ctx),
  };
}

interface ErrorContext {
  brokerUrl: string;
  discovery: BrokerDiscovery | undefined;
  source: string | undefined;
}

/** Maps a non-2xx answer to our taxonomy; a 401 becomes an AuthError with advice per reason. */
export function apiError(status: number, json: unknown, ctx: ErrorContext): AgentgateError {
  const body = (json as Partial<ApiErrorBody> | undefined)?.error;
  const message = typeof body?.message === 'string' ? body.message : `HTTP ${status}`;
  if (status === 401) {
    const reason = body?.reason;
    return new AuthError('AG_TOKEN_REJECTED', `the broker refused the token${ctx.source ? ` from ${ctx.source}` : ''}: ${message}`, {
      ...(reason ? { reason } : {}),
      hint: rejectionAdvice(reason, ctx),
    });
  }
  if (status === 403) {
    return new PolicyDeniedError(`the broker denied the request: ${message}`, { hint: body?.hint ?? 'ask the broker\'s operator which policy covers you' });
  }
  if (status === 404 && body === undefined) {
    return new BrokerError('AG_BROKER_PROTOCOL', `${ctx.brokerUrl} does not serve this API (HTTP 404)`, {
      hint: 'check the broker URL and that the broker and CLI versions match',
    });
  }
  return new BrokerError(body?.code ?? 'AG_BROKER_ERROR', `the broker answered HTTP ${status}: ${message}`, {
    hint: body?.hint ?? 'try again; if it persists, tell the broker\'s operator',
  });
}

/** The next step for each 401 reason code (src/shared/api-types.ts). */
export function rejectionAdvice(reason: TokenRejectionReason | undefined, ctx: Pick<ErrorContext, 'discovery' | 'source'>): string {
  const login = 'run: agentgate login';
  const orLogin = ctx.source ? `fix or unset ${ctx.source}, or ${login}` : login;
  const d = ctx.discovery;
  switch (reason) {
    case 'missing_token':
      return login;
    case 'malformed_token':
      return `the token is not a JWT; ${orLogin}`;
    case 'token_expired':
      return ctx.source ? `the token from ${ctx.source} has expired; get a fresh one, or ${login}` : login;
    case 'token_not_yet_valid':
      return 'the token is not valid yet: check this machine\'s clock (and the IdP\'s)';
    case 'wrong_issuer':
      return `the broker trusts tokens from ${d?.issuer ?? 'its configured IdP'}; ${orLogin}`;
    case 'wrong_audience':
      return `the broker requires tokens issued for the audience "${d?.audience ?? '(see /.well-known/agentgate)'}"; ask the IdP for that audience (resource/audience parameter), or ${login}`;
    case 'unsupported_alg':
      return 'the token is signed with an algorithm the broker does not accept; tell the broker\'s operator';
    case 'bad_signature':
    case 'unknown_key':
      return `the token is not signed by a key the broker trusts; ${orLogin}`;
    case 'subject_not_allowed':
      return 'this identity is not allowed by the broker (e.g. identity.ci_issuers subject pattern); ask the broker\'s operator';
    case 'issuer_unreachable':
      return 'the broker cannot reach the IdP to check the token; try again later or tell the broker\'s operator';
    default:
      return login;
  }
}
