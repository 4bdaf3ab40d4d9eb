/**
 * Writes built from masked output. A session whose responses are masked reads `********`
 * (or `****1234`, `h:…`) where values were; `kubectl get cm x -o yaml | kubectl apply -f -`,
 * `replace`, or a patch that carries what it read would store those masks in the cluster in
 * place of the values, damaging the object. A write body that carries agentgate's mask
 * text — as it is, or inside base64 (Secret `data`, ConfigMap `binaryData`) — is refused
 * before the API server sees it. Kubernetes protobuf (what typed clients such as
 * `kubectl create token` send) holds every string and bytes value verbatim, so its bytes are
 * searched as they are. A body agentgate cannot read (CBOR, whose strings may come in
 * chunks; compressed; another charset; anything else) is refused: what cannot be read
 * cannot be checked.
 */
import { mediaType } from './json-patch.js';
import { readableCharset } from './headers.js';
import { FULL_MASK, HASH_HEX_DIGITS, HASH_PREFIX, PARTIAL_PREFIX } from '../masking/styles.js';

/** The masks' text: the `full` and `partial` styles' stars, the `hash` style's `h:` and hex digits. */
const MASK_TEXT = new RegExp(`\\*{${PARTIAL_PREFIX.length},}|(?<![A-Za-z0-9])${HASH_PREFIX}[0-9a-f]{${HASH_HEX_DIGITS}}(?![0-9a-f])`);
/** A run of base64 long enough to hold a mask once decoded. */
const BASE64_RUN = /[A-Za-z0-9+/]{8,}={0,2}/g;

const PROTOBUF = 'application/vnd.kubernetes.protobuf';

/** Media types a write's body is read in: JSON and its patch forms, YAML (server-side apply), Kubernetes protobuf. */
function readableBody(type: string): boolean {
  return type === 'application/json' || /^application\/[\w.+-]*\+json$/.test(type) || type === 'application/yaml' || type === 'application/apply-patch+yaml' || type === 'text/yaml' || type === PROTOBUF;
}

/**
 * Why this write's body may not go to the API server in a session whose responses are
 * masked, or undefined when it carries no mask text.
 */
export function writeBackRefusal(body: Buffer, contentType: string, contentEncoding: string | undefined): string | undefined {
  if (body.length === 0) return undefined;
  const encoding = (contentEncoding ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== '') return `this request body is compressed (${encoding.slice(0, 40)}), so agentgate cannot check it for masked values it would write back`;
  const type = mediaType(contentType);
  if (!readableBody(type) || !readableCharset(contentType)) {
    return `this request body is ${type ? contentType.slice(0, 80) : 'of no declared type'}, which agentgate cannot read to check it for masked values it would write back (send JSON, YAML or Kubernetes protobuf)`;
  }
  // Protobuf's framing bytes are not text: read byte for byte, its strings stay whole.
  const text = body.toString(type === PROTOBUF ? 'latin1' : 'utf8');
  const carries = MASK_TEXT.test(text) || [...text.matchAll(BASE64_RUN)].some((m) => MASK_TEXT.test(Buffer.from(m[0], 'base64').toString('latin1')));
  if (!carries) return undefined;
  return `this request body carries agentgate's mask text (${FULL_MASK} or the like): it was built from masked output, and writing it would replace the values in the cluster with their masks. Write only the fields you mean to change (kubectl patch, kubectl set), or use an identity whose policy has masking: off`;
}
