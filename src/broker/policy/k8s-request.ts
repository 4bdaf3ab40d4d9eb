/**
 * A Kubernetes API request in policy's terms (what the API server's request-info would
 * derive): policy owns this shape; kubernetes/request-info.ts parses HTTP into it.
 */
export interface K8sResourceRequest {
  kind: 'resource';
  /** The verb policy matches on (connect subresources are verbs). */
  verb: string;
  /** The verb the API server's authorizer sees (`create` for POST …/exec). */
  apiVerb: string;
  /** '' for the core group (`/api/v1`). */
  group: string;
  version: string;
  /** '' for cluster-scoped requests and requests across all namespaces. */
  namespace: string;
  resource: string;
  subresource: string;
  /** '' for collections; from `fieldSelector=metadata.name=…` for a list/watch of one object. */
  name: string;
  path: string;
}

export interface K8sNonResourceRequest {
  kind: 'nonResource';
  /** The lower-case HTTP method, as the API server names non-resource verbs. */
  verb: string;
  path: string;
}

export type K8sRequestInfo = K8sResourceRequest | K8sNonResourceRequest;

/** `get pods "web-1" in namespace default`, `list secrets in all namespaces`, `GET /version`. */
export function describeRequest(info: K8sRequestInfo): string {
  if (info.kind === 'nonResource') return `${info.verb.toUpperCase()} ${info.path}`;
  let what = qualifiedResource(info);
  if (info.name) what += ` "${info.name}"`;
  const where = info.namespace && !(info.resource === 'namespaces' && info.group === '') ? ` in namespace ${info.namespace}` : '';
  return `${info.verb || 'request'} ${what}${where}`;
}

/** `pods`, `pods/exec`, `apps/deployments`, `apps/deployments/scale`. */
export function qualifiedResource(info: K8sResourceRequest): string {
  const r = info.subresource ? `${info.resource}/${info.subresource}` : info.resource;
  return info.group ? `${info.group}/${r}` : r;
}

/** True for the reads kubectl needs before anything else: discovery and OpenAPI documents. */
export function isDiscoveryRead(info: K8sRequestInfo): boolean {
  if (info.kind !== 'nonResource' || (info.verb !== 'get' && info.verb !== 'head')) return false;
  const p = info.path;
  return (
    p === '/api' ||
    p === '/apis' ||
    p === '/version' ||
    p === '/openapi/v2' ||
    p.startsWith('/api/') ||
    p.startsWith('/apis/') ||
    p.startsWith('/openapi/v3')
  );
}
