/**
 * A Secret written with type `kubernetes.io/service-account-token` is a credential request
 * by another path: the token controller fills it with a long-lived token for the service
 * account its `kubernetes.io/service-account.name` annotation names. A rule that lets a
 * session create or write Secrets must not mint that token unless the policy would allow
 * the TokenRequest itself (`create serviceaccounts/token`), so the proxy reads such a
 * write's body and decides that equivalent request as well.
 *
 * The body is read in the forms a write may come in: JSON (create, replace, merge and
 * strategic patches, a JSON Patch's operations on `/type`), YAML (server-side apply, which
 * creates what does not exist) and Kubernetes protobuf (whose strings are verbatim). A body
 * that cannot be read (compressed, CBOR, another type) cannot be cleared: refused.
 */
import { parse as parseYaml } from 'yaml';
import { mediaType, JSON_PATCH } from './json-patch.js';

export const SERVICE_ACCOUNT_TOKEN_TYPE = 'kubernetes.io/service-account-token';
const SA_ANNOTATION = 'kubernetes.io/service-account.name';
const PROTOBUF = 'application/vnd.kubernetes.protobuf';

/** What a Secret write's body means for credentials. */
export type SecretWrite =
  | { kind: 'plain' }
  /** It makes a service-account-token Secret for this service account ('' when it names none). */
  | { kind: 'token'; serviceAccount: string }
  | { kind: 'unreadable'; why: string };

export function secretWrite(body: Buffer, contentType: string, contentEncoding: string | undefined): SecretWrite {
  if (body.length === 0) return { kind: 'plain' };
  const encoding = (contentEncoding ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== '') return { kind: 'unreadable', why: `this Secret write's body is compressed (${encoding.slice(0, 40)}), so agentgate cannot tell whether it makes a service-account token` };
  const type = mediaType(contentType);
  if (type === PROTOBUF) {
    // Strings are verbatim in protobuf: a body that does not hold the type's bytes cannot set it.
    return body.includes(Buffer.from(SERVICE_ACCOUNT_TOKEN_TYPE, 'latin1'))
      ? { kind: 'unreadable', why: 'this Secret write in protobuf names the service-account-token type; send it as JSON so agentgate can read which service account it is for' }
      : { kind: 'plain' };
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
    const sets = doc.some((op) => isRecord(op) && op['path'] === '/type' && op['value'] === SERVICE_ACCOUNT_TOKEN_TYPE);
    return sets ? { kind: 'token', serviceAccount: '' } : { kind: 'plain' };
  }
  if (!isRecord(doc) || doc['type'] !== SERVICE_ACCOUNT_TOKEN_TYPE) return { kind: 'plain' };
  const meta = doc['metadata'];
  const annotations = isRecord(meta) ? meta['annotations'] : undefined;
  const sa = isRecord(annotations) ? annotations[SA_ANNOTATION] : undefined;
  return { kind: 'token', serviceAccount: typeof sa === 'string' ? sa : '' };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
