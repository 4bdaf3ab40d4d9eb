/**
 * What a Kubernetes API request is, derived from its method, path and query the way the
 * API server's own RequestInfoFactory does (k8s.io/apiserver/pkg/endpoints/request), so
 * policy sees exactly what the server's authorizer would:
 *
 *   /api/v1/namespaces/{ns}/{resource}/{name}/{subresource}
 *   /apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/{subresource}
 *   /api/v1/{resource}/{name}                    (cluster-scoped, or all namespaces)
 *   /api/v1/watch/…, /api/v1/proxy/…             (legacy verb prefixes)
 *
 * Anything else (/api, /apis, /api/v1, /apis/apps/v1, /version, /openapi/…, /healthz) is
 * a non-resource request named by its path.
 *
 * One deliberate difference: the connect subresources exec, attach, portforward and proxy
 * become the policy verb (the API server calls `POST …/pods/p/exec` a `create` on
 * `pods/exec`; `apiVerb` keeps that), so a rule can say `verbs: [exec]`.
 */

import type { K8sNonResourceRequest, K8sRequestInfo } from '../policy/k8s-request.js';
export type { K8sResourceRequest, K8sNonResourceRequest, K8sRequestInfo } from '../policy/k8s-request.js';
export { describeRequest, qualifiedResource, isDiscoveryRead } from '../policy/k8s-request.js';

/** Subresources that open a stream or a connection; policy treats them as verbs. */
export const CONNECT_VERBS: ReadonlySet<string> = new Set(['exec', 'attach', 'portforward', 'proxy']);

const SPECIAL_VERBS = new Set(['proxy', 'watch']);
/** `/namespaces/{ns}/status` and `/finalize` are subresources of the namespace itself. */
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

export class RequestPathError extends Error {
  override readonly name = 'RequestPathError';
}

/**
 * Splits a raw (still percent-encoded) path into decoded segments. Paths whose meaning
 * could differ between us and the API server are refused: an encoded `/`, a `.` or `..`
 * segment, an empty segment in the middle, a NUL, a malformed escape.
 */
export function splitPath(rawPath: string): string[] {
  if (!rawPath.startsWith('/')) throw new RequestPathError('the request path must start with /');
  const trimmed = rawPath.replace(/^\/+/, '').replace(/\/$/, '');
  if (rawPath.startsWith('//')) throw new RequestPathError('the request path has an empty segment');
  if (trimmed === '') return [];
  return trimmed.split('/').map((seg) => {
    if (seg === '') throw new RequestPathError('the request path has an empty segment');
    let decoded: string;
    try {
      decoded = decodeURIComponent(seg);
    } catch {
      throw new RequestPathError('the request path has a malformed percent-escape');
    }
    if (decoded === '.' || decoded === '..' || decoded.includes('/') || decoded.includes('\0')) {
      throw new RequestPathError('the request path has a "." or ".." segment, an encoded "/" or a NUL');
    }
    return decoded;
  });
}

/**
 * Derives the request info. `url` is the request target as received (`/api/v1/pods?watch=1`).
 * Throws RequestPathError for a path we refuse to interpret.
 */
export function parseRequestInfo(method: string, url: string): K8sRequestInfo {
  // A request target never holds a fragment (RFC 9112). Servers and fronting proxies differ
  // on a raw `#` (Go keeps it in the path, a WHATWG parser drops what follows): refused.
  if (url.includes('#')) throw new RequestPathError('the request target holds a raw "#" (a fragment is never sent to a server; percent-encode it as %23)');
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const parts = splitPath(rawPath);
  const path = '/' + parts.join('/');
  const nonResource: K8sNonResourceRequest = { kind: 'nonResource', verb: method.toLowerCase(), path };

  // /api/{version}/… or /apis/{group}/{version}/…, with at least one part after the version.
  let rest: string[];
  let group = '';
  if (parts[0] === 'api' && parts.length >= 3) {
    rest = parts.slice(1);
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    group = parts[1] as string;
    rest = parts.slice(2);
  } else {
    return nonResource;
  }
  const version = rest[0] as string;
  rest = rest.slice(1);

  let apiVerb: string;
  let specialVerb = false;
  if (SPECIAL_VERBS.has(rest[0] as string)) {
    if (rest.length < 2) throw new RequestPathError(`a /${rest[0]} request must name a resource`);
    apiVerb = rest[0] as string;
    rest = rest.slice(1);
    specialVerb = true;
  } else {
    apiVerb = methodVerb(method);
  }

  let namespace = '';
  if (rest[0] === 'namespaces' && rest.length > 1) {
    namespace = rest[1] as string;
    // /namespaces/{ns}/{resource}/…, unless what follows is the namespace's own subresource.
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2] as string)) rest = rest.slice(2);
  }

  const resource = rest[0] ?? '';
  let name = rest[1] ?? '';
  // With the legacy /proxy/ prefix everything after the name is the proxied path.
  const subresource = rest.length >= 3 && !(specialVerb && apiVerb === 'proxy') ? (rest[2] as string) : '';

  if (name === '' && apiVerb === 'get') {
    apiVerb = isTrue(query.get('watch')) ? 'watch' : 'list';
    const selected = exactName(query.get('fieldSelector'));
    if (selected !== undefined) name = selected;
  }
  if (name === '' && apiVerb === 'delete') apiVerb = 'deletecollection';

  const verb = CONNECT_VERBS.has(subresource) ? subresource : apiVerb;
  return { kind: 'resource', verb, apiVerb, group, version, namespace, resource, subresource, name, path };
}

/**
 * Whether the API server gives `method` a verb (GET, HEAD, POST, PUT, PATCH, DELETE). Any
 * other (OPTIONS, PROPFIND, TRACE…) gets the empty verb, which a rule without `verbs` would
 * match though its author never thought of it: the proxy refuses such requests.
 */
export function hasApiVerb(method: string): boolean {
  return methodVerb(method) !== '';
}

function methodVerb(method: string): string {
  switch (method.toUpperCase()) {
    case 'POST':
      return 'create';
    case 'GET':
    case 'HEAD':
      return 'get';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return 'delete';
    default:
      return '';
  }
}

/** The API server's query-bool conversion: only `0` and `false` (any case) are false. */
function isTrue(v: string | null): boolean {
  if (v === null) return false;
  return !(v === '0' || v.toLowerCase() === 'false');
}

/** `metadata.name=x` (or `==`) among a field selector's AND-ed terms, if it names a valid path segment. */
function exactName(selector: string | null): string | undefined {
  if (!selector) return undefined;
  for (const term of selector.split(',')) {
    // The value is trimmed apart: `\s*(.*?)\s*$` in one pattern is quadratic on a blank run.
    const m = /^\s*metadata\.name\s*(?:==|=)/.exec(term);
    if (!m) continue;
    const v = term.slice(m[0].length).trim();
    if (v !== '' && v !== '.' && v !== '..' && !/[/%\n\r\u2028\u2029]/.test(v)) return v;
  }
  return undefined;
}
