/**
 * One `kubernetes_request` tool call: an HTTPS request to this session's local Kubernetes
 * endpoint (the same listener and per-session certificate a kubeconfig of `agentgate
 * connect` points at, the session secret as bearer token). The broker's Kubernetes proxy
 * judges, holds, masks and records it; nothing here decides anything.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { UsageError } from '../../errors.js';
import { REASON_HEADER, encodeReasonHeader } from '../../shared/reason.js';

export const K8S_VERBS = ['get', 'list', 'create', 'update', 'patch', 'delete'] as const;
export type K8sVerb = (typeof K8S_VERBS)[number];

const METHOD: Record<K8sVerb, Dispatcher.HttpMethod> = { get: 'GET', list: 'GET', create: 'POST', update: 'PUT', patch: 'PATCH', delete: 'DELETE' };

/** What the agent may ask: a raw API path, or a resource (core/v1 unless api_version says otherwise). */
export interface K8sCall {
  verb: K8sVerb;
  path?: string | undefined;
  resource?: string | undefined;
  namespace?: string | undefined;
  name?: string | undefined;
  /** `v1` (core, the default) or `group/version`, e.g. `apps/v1`. */
  api_version?: string | undefined;
  /** The object to create/update, or the merge patch (JSON). */
  body?: unknown;
  /** This call's reason (header x-agentgate-reason; the broker records it and keeps it from the API server). */
  reason?: string | undefined;
}

export interface K8sResponse {
  status: number;
  /** The JSON the API (or the broker, for a refusal) answered, when it was JSON. */
  json?: unknown;
  /** The body as text when it was not JSON (capped). */
  text?: string;
  truncated: boolean;
}

/** Bodies above this are cut (and said to be). */
export const MAX_K8S_BODY = 1024 * 1024;

const SEGMENT = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** The API path for a call; a UsageError names what is wrong. */
export function k8sPath(c: K8sCall): string {
  if (c.path !== undefined) {
    if (c.resource !== undefined || c.namespace !== undefined || c.name !== undefined) throw new UsageError('give either path or resource (+ namespace, name), not both');
    if (!c.path.startsWith('/') || /\s/.test(c.path)) throw new UsageError(`path must be an absolute API path such as /api/v1/namespaces/default/pods, got "${c.path}"`);
    // One call, one answer: a watch or a followed log would never end.
    if (streams(c.path)) throw new UsageError('watch and follow requests stream without end; this tool sends requests that answer once (use list, or kubectl through agentgate connect)');
    return c.path;
  }
  if (c.resource === undefined) throw new UsageError('give path, or resource (with namespace and name where they apply)');
  const version = c.api_version ?? 'v1';
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(version)) throw new UsageError(`api_version must look like v1 or apps/v1, got "${version}"`);
  for (const [k, v] of [['resource', c.resource], ['namespace', c.namespace], ['name', c.name]] as const) {
    if (v !== undefined && !SEGMENT.test(v)) throw new UsageError(`${k} must be a Kubernetes name (lower case letters, digits, '-', '.'), got "${v}"`);
  }
  if ((c.verb === 'list' || c.verb === 'create') && c.name !== undefined) throw new UsageError(`${c.verb} takes no name`);
  if (c.verb !== 'list' && c.verb !== 'create' && c.name === undefined) throw new UsageError(`${c.verb} needs a name`);
  const base = version.includes('/') ? `/apis/${version}` : `/api/${version}`;
  const ns = c.namespace !== undefined ? `/namespaces/${c.namespace}` : '';
  return `${base}${ns}/${c.resource}${c.name !== undefined ? `/${c.name}` : ''}`;
}

/**
 * The query asks for a stream (watch, follow), read as the API server reads it: keys and
 * values percent-decoded, and a boolean as Go's strconv.ParseBool takes it (`t`, `1`, `TRUE`…).
 */
function streams(path: string): boolean {
  const q = path.indexOf('?');
  if (q < 0) return false;
  const params = new URLSearchParams(path.slice(q + 1).split('#')[0]);
  for (const [k, v] of params) if ((k === 'watch' || k === 'follow') && GO_TRUE.has(v)) return true;
  return false;
}
const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);

export interface K8sEndpoint {
  host: string;
  port: number;
  caPem: string;
  secret: string;
}

/** A client for one local endpoint; close() when the session ends. */
export function k8sClient(e: K8sEndpoint): { send(c: K8sCall, signal: AbortSignal): Promise<K8sResponse>; close(): Promise<void> } {
  const dispatcher = new Agent({ connect: { ca: e.caPem } });
  const origin = `https://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
  return {
    async send(c, signal) {
      const path = k8sPath(c);
      if ((c.verb === 'get' || c.verb === 'list' || c.verb === 'delete') && c.body !== undefined) throw new UsageError(`${c.verb} takes no body`);
      if ((c.verb === 'create' || c.verb === 'update' || c.verb === 'patch') && c.body === undefined) throw new UsageError(`${c.verb} needs a body (the object, or for patch a JSON merge patch)`);
      const headers: Record<string, string> = { authorization: `Bearer ${e.secret}`, accept: 'application/json' };
      if (c.reason !== undefined) headers[REASON_HEADER] = encodeReasonHeader(c.reason);
      if (c.body !== undefined) headers['content-type'] = c.verb === 'patch' ? 'application/merge-patch+json' : 'application/json';
      const res = await request(`${origin}${path}`, {
        method: METHOD[c.verb],
        headers,
        ...(c.body !== undefined ? { body: JSON.stringify(c.body) } : {}),
        dispatcher,
        signal,
        // A held request waits for its reviewer: no body or header deadline of ours.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (size + chunk.length > MAX_K8S_BODY) {
          chunks.push(chunk.subarray(0, MAX_K8S_BODY - size));
          truncated = true;
          res.body.destroy();
          break;
        }
        chunks.push(chunk);
        size += chunk.length;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      const type = String(res.headers['content-type'] ?? '');
      if (!truncated && type.includes('json')) {
        try {
          return { status: res.statusCode, json: JSON.parse(text) as unknown, truncated };
        } catch {
          // not JSON after all: hand back the text
        }
      }
      return { status: res.statusCode, text, truncated };
    },
    close: () => dispatcher.close(),
  };
}
