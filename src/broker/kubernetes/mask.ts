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
 * An object of a masked kind is masked wherever it appears, not only at the top: a Secret
 * or ConfigMap copied into another object (a ControllerRevision's `data`, a custom
 * resource's template, a JSON document in a ConfigMap value) is masked as its kind.
 *
 * A ConfigMap value is often a configuration file: lines `key = value`, `key: value`,
 * `export KEY=value` whose key looks like a secret's (or matches a `columns` name) have
 * their value masked, and a value that is a JSON document is masked as objects are (by
 * kind, and strings under a secret-looking key whole). Annotations are masked by their
 * name the same way, and container `args`/`command` by flag name (`--db-password=…`).
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
/** A configuration line: `key = value`, `key: value`, `export KEY=value`, `"key": "value",` (the key may be quoted). */
const CONFIG_LINE = /^([ \t]*(?:export[ \t]+|- )?)(["']?[A-Za-z_][\w.\-]*["']?)([ \t]*[:=][ \t]*)(.*?)[ \t]*$/gm;
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
      // `PartialObjectMetadataList` names the form, not the kind: its items are about the request's kind.
      const itemKind = kind && kind !== 'List' && kind.endsWith('List') && !kind.startsWith('PartialObjectMetadata') ? kind.slice(0, -4) : undefined;
      for (const item of doc['items']) this.#object(item, itemKind);
      return;
    }
    this.#object(doc, undefined);
  }

  /** Objects already masked by kind (a nested object the sweep meets again is left alone). */
  readonly #handled = new WeakSet<object>();

  #object(obj: unknown, hint: string | undefined): void {
    if (!isObject(obj) || this.#handled.has(obj)) return;
    this.#handled.add(obj);
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
    // An object with a kind of its own, anywhere (a copy inside another object): masked as that kind.
    if (depth > 0 && typeof obj['kind'] === 'string' && !obj['kind'].startsWith('PartialObjectMetadata') && obj['kind'] !== 'Table') this.#object(obj, undefined);
    if (Array.isArray(obj['env'])) this.#env(obj['env']);
    if (isObject(obj['annotations'])) this.#annotations(obj['annotations']);
    for (const key of ['args', 'command']) {
      const list = obj[key];
      if (Array.isArray(list)) this.#args(list);
    }
    for (const [k, val] of Object.entries(obj)) {
      if (k === 'env' && Array.isArray(val)) continue;
      const r = this.#sweep(val, depth + 1);
      if (r !== undefined) obj[k] = r;
    }
    return undefined;
  }

  /** Annotations: free text under a name, masked by the name (`example.com/db-password`) as a ConfigMap value is. */
  #annotations(a: Json): void {
    for (const [k, v] of Object.entries(a)) {
      if (typeof v !== 'string' || k === LAST_APPLIED) continue;
      const masked = this.#m.field(v, k);
      if (masked && masked.value !== v) {
        a[k] = masked.value;
        this.count++;
        continue;
      }
      const text = this.#configText(v);
      if (text !== undefined) a[k] = text;
    }
  }

  /**
   * A container's `args` / `command`: `--db-password=VALUE`, `--db-password VALUE` and
   * `KEY=VALUE` lines (a `sh -c` script) masked by their name, as a ConfigMap value is.
   */
  #args(list: unknown[]): void {
    for (let i = 0; i < list.length; i++) {
      const a = list[i];
      if (typeof a !== 'string') continue;
      const flag = /^(--?)([A-Za-z][\w.-]*)(?:=([\s\S]*))?$/.exec(a);
      if (flag) {
        const [, dashes, key, value] = flag as unknown as [string, string, string, string | undefined];
        if (value !== undefined) {
          const masked = value === '' ? undefined : this.#m.field(value, key);
          if (masked && masked.value !== value) {
            list[i] = `${dashes}${key}=${masked.value ?? ''}`;
            this.count++;
          }
          continue;
        }
        const next = list[i + 1];
        if (typeof next === 'string' && !next.startsWith('-')) {
          const masked = this.#m.field(next, key);
          if (masked && masked.value !== next) {
            list[i + 1] = masked.value;
            this.count++;
            i++;
          }
        }
        continue;
      }
      const text = this.#configText(a);
      if (text !== undefined) list[i] = text;
    }
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
        if (typeof v !== 'string') continue;
        const masked = this.#m.field(v, k);
        if (masked) this.count++;
        const value = masked ? masked.value : v;
        data[k] = value === null ? null : (this.#configText(value) ?? value);
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

  /**
   * A configuration file's text: a JSON document masked as objects are (by kind, and by
   * key), else each `key = value` / `key: value` line by its key. Undefined: nothing masked.
   */
  #configText(text: string): string | undefined {
    const before = this.count;
    const t = text.trim();
    if (t.startsWith('{') || t.startsWith('[')) {
      let doc: unknown;
      try {
        doc = JSON.parse(t);
      } catch {
        doc = undefined;
      }
      if (doc !== undefined) {
        this.#byKind(doc);
        this.#sweep(doc, 1);
        this.#byKey(doc, 0);
        return this.count !== before ? JSON.stringify(doc) : undefined;
      }
    }
    const out = text.replace(CONFIG_LINE, (line: string, lead: string, key: string, sep: string, value: string) => {
      const bare = value.trim().replace(/^(["'])(.*)\1$/, '$2');
      if (bare === '' || bare === '|' || bare === '>' || bare.startsWith('&') || bare.startsWith('*')) return line;
      const masked = this.#m.field(bare, key.replace(/["']/g, ''));
      if (!masked || masked.value === bare) return line;
      this.count++;
      return `${lead}${key}${sep}${masked.value ?? ''}`;
    });
    return this.count !== before ? out : undefined;
  }

  /** Strings under a key that looks like a secret's (or a configured name), in a parsed document: masked whole. */
  #byKey(v: unknown, depth: number): void {
    if (depth > MAX_DEPTH) throw new MaskDepthError('a response nests deeper than agentgate inspects; refused');
    if (Array.isArray(v)) {
      for (const x of v) this.#byKey(x, depth + 1);
      return;
    }
    if (!isObject(v) || this.#done.has(v)) return;
    for (const [k, val] of Object.entries(v)) {
      if (typeof val === 'string') {
        const masked = this.#m.field(val, k);
        if (masked && masked.value !== val) {
          v[k] = masked.value;
          this.count++;
        }
      } else this.#byKey(val, depth + 1);
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
