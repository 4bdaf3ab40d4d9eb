/**
 * Masks sensitive values inside Kubernetes API objects, in place: whatever shape the
 * response has (an object, a list, a `Table` with its rows' objects, a watch event, a
 * `PartialObjectMetadata`). See value-mask.ts for which values and how.
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
    if (!isObject(doc)) return;
    if (typeof doc['type'] === 'string' && isObject(doc['object']) && doc['kind'] === undefined) {
      this.document(doc['object']); // a watch event
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
    const spec = obj['spec'];
    switch (kind) {
      case 'Secret':
        this.#secret(obj);
        return;
      case 'ConfigMap':
        this.#configMap(obj);
        return;
      case 'Pod':
        this.#podSpec(spec);
        return;
      case 'PodTemplate':
        this.#podSpec(child(obj['template'], 'spec'));
        return;
      case 'CronJob':
        this.#podSpec(child(child(child(child(spec, 'jobTemplate'), 'spec'), 'template'), 'spec'));
        return;
      case 'Deployment':
      case 'ReplicaSet':
      case 'StatefulSet':
      case 'DaemonSet':
      case 'Job':
      case 'ReplicationController':
        this.#podSpec(child(child(spec, 'template'), 'spec'));
        return;
      default:
        return;
    }
  }

  #secret(obj: Json): void {
    const data = obj['data'];
    if (isObject(data)) {
      for (const [k, v] of Object.entries(data)) {
        if (typeof v !== 'string') continue;
        const masked = this.#m.secret(Buffer.from(v, 'base64').toString('utf8'));
        data[k] = masked === null ? null : Buffer.from(masked, 'utf8').toString('base64');
        this.count++;
      }
    }
    const stringData = obj['stringData'];
    if (isObject(stringData)) {
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
      for (const [k, v] of Object.entries(binary)) {
        if (typeof v !== 'string') continue;
        const masked = this.#m.field(Buffer.from(v, 'base64').toString('utf8'), k);
        if (!masked) continue;
        binary[k] = masked.value === null ? null : Buffer.from(masked.value, 'utf8').toString('base64');
        this.count++;
      }
    }
  }

  #podSpec(spec: unknown): void {
    if (!isObject(spec)) return;
    for (const list of ['containers', 'initContainers', 'ephemeralContainers']) {
      const containers = spec[list];
      if (!Array.isArray(containers)) continue;
      for (const c of containers) {
        const env = isObject(c) ? c['env'] : undefined;
        if (!Array.isArray(env)) continue;
        for (const e of env) {
          if (!isObject(e) || typeof e['value'] !== 'string') continue;
          const masked = this.#m.field(e['value'], typeof e['name'] === 'string' ? e['name'] : undefined);
          if (masked) {
            e['value'] = masked.value;
            this.count++;
          }
        }
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
    if (this.count !== before) annotations[LAST_APPLIED] = JSON.stringify(copy);
  }
}

function child(v: unknown, key: string): unknown {
  return isObject(v) ? v[key] : undefined;
}
