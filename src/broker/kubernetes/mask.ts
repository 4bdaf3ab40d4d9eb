/**
 * Masks sensitive values inside Kubernetes API objects, in place: whatever shape the
 * response has (an object, a list, a `Table` with its rows' objects, a watch event, a
 * `PartialObjectMetadata`). See value-mask.ts for which values and how.
 *
 * Two passes. By kind: Secret values whole, ConfigMap values by key. Then over the whole
 * document, whatever its kind: every container `env` list (a pod template is copied into
 * Deployments, ReplicaSets, ControllerRevisions, custom resources…) and every string a
 * detector flags. A copy of a value in an object no rule names is masked all the same.
 *
 * Secret `data` stays valid base64 (the masked text, encoded), so typed clients and
 * `kubectl describe` still decode it. The `kubectl.kubernetes.io/last-applied-configuration`
 * annotation, which holds a full copy of an applied object (Secret values included), is
 * masked the same way as the object.
 */
import type { K8sRequestInfo } from './request-info.js';
import type { ValueMasker } from './value-mask.js';

/** Resources whose responses are masked, by API group, with the kind their objects have. */
const MASKED: Record<string, Record<string, string>> = {
  '': { secrets: 'Secret', configmaps: 'ConfigMap', pods: 'Pod', podtemplates: 'PodTemplate', replicationcontrollers: 'ReplicationController' },
  apps: { deployments: 'Deployment', replicasets: 'ReplicaSet', statefulsets: 'StatefulSet', daemonsets: 'DaemonSet' },
  batch: { jobs: 'Job', cronjobs: 'CronJob' },
};

/** Subresources that answer with the object itself (others: logs, scale, eviction… are not masked). */
const OBJECT_SUBRESOURCES = new Set(['', 'status', 'ephemeralcontainers', 'resize']);

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
/** Nesting the sweep follows; real objects stay far below it. */
const MAX_DEPTH = 200;

export class MaskDepthError extends Error {
  override readonly name = 'MaskDepthError';
}

/** The kind of object a masked resource request returns, or undefined when its response is not masked. */
export function maskedKind(info: K8sRequestInfo): string | undefined {
  if (info.kind !== 'resource' || !OBJECT_SUBRESOURCES.has(info.subresource)) return undefined;
  return MASKED[info.group]?.[info.resource];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class ObjectMasker {
  readonly #m: ValueMasker;
  /** The kind of objects this request is about, for list items and metadata-only objects that carry none. */
  readonly #kind: string;
  /** Values masked so far. */
  count = 0;

  constructor(masker: ValueMasker, kind: string) {
    this.#m = masker;
    this.#kind = kind;
  }

  /** Masks one response document (or one watch event) in place. */
  document(doc: unknown): void {
    this.#byKind(doc);
    this.#sweep(doc, 0);
  }

  #byKind(doc: unknown): void {
    if (!isObject(doc)) return;
    if (typeof doc['type'] === 'string' && isObject(doc['object']) && doc['kind'] === undefined) {
      this.#byKind(doc['object']); // a watch event
      return;
    }
    const kind = typeof doc['kind'] === 'string' ? doc['kind'] : undefined;
    if (kind === 'Table') {
      const rows = doc['rows'];
      if (Array.isArray(rows)) for (const row of rows) if (isObject(row)) this.#object(row['object'], undefined);
      return;
    }
    if (Array.isArray(doc['items'])) {
      const itemKind = kind && kind !== 'List' && kind.endsWith('List') ? kind.slice(0, -4) : undefined;
      for (const item of doc['items']) this.#object(item, itemKind);
      return;
    }
    this.#object(doc, undefined);
  }

  #object(obj: unknown, hint: string | undefined): void {
    if (!isObject(obj)) return;
    const own = typeof obj['kind'] === 'string' ? obj['kind'] : undefined;
    // Metadata-only forms (Table rows, as=PartialObjectMetadata) are about the request's kind.
    const kind = own === undefined || own.startsWith('PartialObjectMetadata') ? (hint ?? this.#kind) : own;
    this.#lastApplied(obj, kind);
    if (kind === 'Secret') this.#secret(obj);
    else if (kind === 'ConfigMap') this.#configMap(obj);
  }

  /** Maps already masked by kind: the sweep leaves them alone (a Secret's data is base64 of a mask). */
  readonly #done = new WeakSet<object>();

  /**
   * Every `env` list and every string, anywhere in the document: env values by their
   * variable's name and the detectors, other strings by the detectors. Returns the value to
   * put in place of `v` (a masked string), or undefined to keep it.
   */
  #sweep(v: unknown, depth: number): string | null | undefined {
    if (depth > MAX_DEPTH) throw new MaskDepthError('a response nests deeper than agentgate inspects; refused');
    if (typeof v === 'string') {
      const masked = this.#m.field(v, undefined);
      if (!masked) return undefined;
      this.count++;
      return masked.value;
    }
    if (typeof v !== 'object' || v === null || this.#done.has(v)) return undefined;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const r = this.#sweep(v[i], depth + 1);
        if (r !== undefined) v[i] = r;
      }
      return undefined;
    }
    const obj = v as Json;
    if (Array.isArray(obj['env'])) this.#env(obj['env']);
    for (const [k, val] of Object.entries(obj)) {
      if (k === 'env' && Array.isArray(val)) continue;
      const r = this.#sweep(val, depth + 1);
      if (r !== undefined) obj[k] = r;
    }
    return undefined;
  }

  /** A container's env list (name/value pairs): the value by its name and the detectors. */
  #env(env: unknown[]): void {
    for (const e of env) {
      if (!isObject(e)) continue;
      for (const [k, val] of Object.entries(e)) {
        if (typeof val !== 'string' || k === 'name') {
          // valueFrom and the like: references, but still scanned.
          if (k !== 'name') this.#sweep(val, 1);
          continue;
        }
        const masked = this.#m.field(val, k === 'value' && typeof e['name'] === 'string' ? e['name'] : undefined);
        if (masked) {
          e[k] = masked.value;
          this.count++;
        }
      }
    }
  }

  #secret(obj: Json): void {
    const data = obj['data'];
    if (isObject(data)) {
      this.#done.add(data);
      for (const [k, v] of Object.entries(data)) {
        if (typeof v !== 'string') continue;
        const masked = this.#m.secret(Buffer.from(v, 'base64').toString('utf8'));
        data[k] = masked === null ? null : Buffer.from(masked, 'utf8').toString('base64');
        this.count++;
      }
    }
    const stringData = obj['stringData'];
    if (isObject(stringData)) {
      this.#done.add(stringData);
      for (const [k, v] of Object.entries(stringData)) {
        if (typeof v !== 'string') continue;
        stringData[k] = this.#m.secret(v);
        this.count++;
      }
    }
  }

  #configMap(obj: Json): void {
    const data = obj['data'];
    if (isObject(data)) {
      this.#done.add(data);
      for (const [k, v] of Object.entries(data)) {
        const masked = typeof v === 'string' ? this.#m.field(v, k) : undefined;
        if (masked) {
          data[k] = masked.value;
          this.count++;
        }
      }
    }
    const binary = obj['binaryData'];
    if (isObject(binary)) {
      this.#done.add(binary);
      for (const [k, v] of Object.entries(binary)) {
        if (typeof v !== 'string') continue;
        const masked = this.#m.field(Buffer.from(v, 'base64').toString('utf8'), k);
        if (!masked) continue;
        binary[k] = masked.value === null ? null : Buffer.from(masked.value, 'utf8').toString('base64');
        this.count++;
      }
    }
  }

  /** The annotation holds a JSON copy of the applied object: mask that copy as its kind. */
  #lastApplied(obj: Json, kind: string): void {
    const annotations = child(obj['metadata'], 'annotations');
    if (!isObject(annotations)) return;
    const text = annotations[LAST_APPLIED];
    if (typeof text !== 'string') return;
    let copy: unknown;
    try {
      copy = JSON.parse(text);
    } catch {
      copy = undefined;
    }
    if (!isObject(copy)) {
      // Unreadable: it may hold anything the object does.
      annotations[LAST_APPLIED] = this.#m.secret(text);
      this.count++;
      return;
    }
    const before = this.count;
    this.#object(copy, kind);
    this.#sweep(copy, 1);
    if (this.count !== before) annotations[LAST_APPLIED] = JSON.stringify(copy);

  }
}

function child(v: unknown, key: string): unknown {
  return isObject(v) ? v[key] : undefined;
}
