/**
 * Secrets the cluster turns into credentials are credential requests by another path:
 * - type `kubernetes.io/service-account-token`: the token controller fills it with a
 *   long-lived token for the service account its `kubernetes.io/service-account.name`
 *   annotation names. Decided as the TokenRequest itself (`create serviceaccounts/token`).
 * - type `bootstrap.kubernetes.io/token` (in kube-system): the API server accepts
 *   `<token-id>.<token-secret>`, values the writer chose, as `system:bootstrap:<id>` in
 *   `system:bootstrappers` (and the `auth-extra-groups` it lists), which may ask for node
 *   certificates. There is no API request it stands for, so it is decided as the synthetic
 *   `create secrets/bootstrap-token`, which only a rule naming it literally grants.
 * A rule that lets a session create or write Secrets must not mint either, so the proxy
 * reads such a write's body and decides the equivalent request as well.
 *
 * The body is read in the forms a write may come in: JSON (create, replace, merge and
 * strategic patches, a JSON Patch's operations on `/type`), YAML (server-side apply, which
 * creates what does not exist) and Kubernetes protobuf (whose strings are verbatim). A body
 * that cannot be read (compressed, CBOR, another type) cannot be cleared: refused.
 */
import { parse as parseYaml } from 'yaml';
import { mediaType, JSON_PATCH } from './json-patch.js';

export const SERVICE_ACCOUNT_TOKEN_TYPE = 'kubernetes.io/service-account-token';
export const BOOTSTRAP_TOKEN_TYPE = 'bootstrap.kubernetes.io/token';
const CREDENTIAL_TYPES: readonly string[] = [SERVICE_ACCOUNT_TOKEN_TYPE, BOOTSTRAP_TOKEN_TYPE];
const SA_ANNOTATION = 'kubernetes.io/service-account.name';
const PROTOBUF = 'application/vnd.kubernetes.protobuf';

/** What a Secret write's body means for credentials. */
export type SecretWrite =
  | { kind: 'plain' }
  /** It makes a service-account-token Secret for this service account ('' when it names none). */
  | { kind: 'token'; serviceAccount: string }
  /** It makes a bootstrap token (named: the Secret's name, '' when the body names none). */
  | { kind: 'bootstrap'; name: string }
  | { kind: 'unreadable'; why: string };

export function secretWrite(body: Buffer, contentType: string, contentEncoding: string | undefined): SecretWrite {
  if (body.length === 0) return { kind: 'plain' };
  const encoding = (contentEncoding ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== '') return { kind: 'unreadable', why: `this Secret write's body is compressed (${encoding.slice(0, 40)}), so agentgate cannot tell whether it makes a service-account token` };
  const type = mediaType(contentType);
  if (type === PROTOBUF) {
    // Strings are verbatim in protobuf: a body that does not hold the type's bytes cannot set it.
    // A bootstrap token's decision needs nothing but its type (kubectl create secret sends protobuf).
    if (body.includes(Buffer.from(SERVICE_ACCOUNT_TOKEN_TYPE, 'latin1'))) return { kind: 'unreadable', why: `this Secret write in protobuf names the ${SERVICE_ACCOUNT_TOKEN_TYPE} type; send it as JSON so agentgate can read which service account it is for` };
    return body.includes(Buffer.from(BOOTSTRAP_TOKEN_TYPE, 'latin1')) ? { kind: 'bootstrap', name: '' } : { kind: 'plain' };
  }
  let doc: unknown;
  try {
    const text = body.toString('utf8');
    if (type === 'application/json' || type === JSON_PATCH || /^application\/[\w.+-]*\+json$/.test(type)) doc = JSON.parse(text);
    else if (type === 'application/yaml' || type === 'application/apply-patch+yaml' || type === 'text/yaml') doc = parseYaml(text, { maxAliasCount: 100 });
    else return { kind: 'unreadable', why: `this Secret write's body is ${type ? contentType.slice(0, 80) : 'of no declared type'}, which agentgate cannot read to tell whether it makes a service-account token (send JSON or YAML)` };
  } catch {
    return { kind: 'unreadable', why: 'this Secret write\'s body does not parse as its Content-Type says, so agentgate cannot tell whether it makes a service-account token' };
  }
  if (Array.isArray(doc)) {
    // A JSON Patch: an operation that sets /type (the API server keeps a Secret's type immutable, but unknown means no).
    const set = doc.find((op): op is Record<string, unknown> => isRecord(op) && op['path'] === '/type' && CREDENTIAL_TYPES.includes(op['value'] as string));
    if (set === undefined) return { kind: 'plain' };
    return set['value'] === BOOTSTRAP_TOKEN_TYPE ? { kind: 'bootstrap', name: '' } : { kind: 'token', serviceAccount: '' };
  }
  if (!isRecord(doc) || !CREDENTIAL_TYPES.includes(doc['type'] as string)) return { kind: 'plain' };
  const meta = doc['metadata'];
  if (doc['type'] === BOOTSTRAP_TOKEN_TYPE) {
    const name = isRecord(meta) ? meta['name'] : undefined;
    return { kind: 'bootstrap', name: typeof name === 'string' ? name : '' };
  }
  const annotations = isRecord(meta) ? meta['annotations'] : undefined;
  const sa = isRecord(annotations) ? annotations[SA_ANNOTATION] : undefined;
  return { kind: 'token', serviceAccount: typeof sa === 'string' ? sa : '' };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
