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
 * their value masked — with whatever it spans past its line (a YAML block scalar, an
 * indented block, a multi-line quoted value, a `\`-continued one) — and a value that is a
 * JSON document is masked as objects are (by kind, and everything under a secret-looking
 * key whole). A password in a URL (`scheme://user:PASSWORD@host`) is masked in any value.
 * A TokenRequest's token is masked whole, like a Secret's values. Annotations are masked by their
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
// The value runs to the end of the line; its trailing blanks are cut in code (a lazy value
// before `[ \t]*$` backtracks quadratically on a long run of blanks).
const CONFIG_LINE = /^([ \t]*(?:export[ \t]+|- )?)(["']?[A-Za-z_][\w.\-]*["']?)([ \t]*[:=][ \t]*)([^\n]*)$/;
/** A URL's `scheme://user:password@`: the password part (percent-encoded, so without `@`, `/`, spaces). */
// Anchored at `://`, not at the scheme: an unanchored scheme made every word boundary of a long
// run (`a+a+a+…`) a start scanning to its end. Any scheme is covered, which masks no less.
const URL_PASSWORD = /(:\/\/[^\s:@\/?#"'`]*:)([^\s@\/?#"'`]+)@/g;
/** A YAML block scalar's header after its key: `|`, `>-`, `|2+`…, with an optional comment. */
const BLOCK_SCALAR = /^[|>](?:[1-9][+-]?|[+-][1-9]?)?(?:[ \t]+#.*)?$/;
/** A YAML anchor or tag before a value: `&name `, `!!str `. */
const VALUE_PROPERTIES = /^((?:[&!][^\s]*[ \t]+)*)/;
/** `key: value` pairs inside a YAML flow mapping (`{user: app, password: x}`). */
// The value is greedy and its trailing blanks are split off in code: a lazy value before
// `([ \t]*)` backtracked cubically on a long run of blanks.
const FLOW_PAIR = /([{,][ \t]*)(["']?[A-Za-z_][\w.\-]*["']?)([ \t]*:[ \t]*)([^,{}\[\]]*)(?=[,}])/g;
/**
 * An env var printed in Go syntax (`{Name: "DB_PASSWORD", Value: "…"}`, `EnvVar{Name:"X", Value:"…"}`):
 * the API server's refusal of a pod update diffs the spec this way, its context printing
 * the neighbouring fields — env values included — in a Status message. Each quoted part
 * stops at its first unescaped quote or line end.
 */
const GO_ENV_PAIR = /(Name:[ \t]*"((?:[^"\\\n]|\\.)*)",[ \t]*Value:[ \t]*")((?:[^"\\\n]|\\.)*)"/g;
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
    // What was rewritten matters within one document; a watch's masker lives for many.
    this.#written.clear();
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
    else if (kind === 'TokenRequest') this.#tokenRequest(obj);
  }

  /** A TokenRequest (`kubectl create token`) answers with a bearer token: masked whole, whatever it looks like. */
  #tokenRequest(obj: Json): void {
    const status = obj['status'];
    if (!isObject(status) || typeof status['token'] !== 'string') return;
    this.#done.add(status);
    status['token'] = this.#m.secret(status['token']);
    this.count++;
  }

  /**
   * A value under `key` (or none): the masker's answer, then a password in a URL's user
   * part (`postgres://app:PASSWORD@db/app`) masked as a password is, whatever the key.
   */
  #field(value: string, key: string | undefined): { value: string | null } | undefined {
    const masked = this.#m.field(value, key);
    const text = masked ? masked.value : value;
    if (text === null) return masked;
    const out = text.replace(URL_PASSWORD, (_m, user: string, password: string) => `${user}${this.#m.field(password, 'password')?.value ?? ''}@`);
    return out === text ? masked : { value: out };
  }

  /** Whether a value under `key` is masked whole by its name (a secret-looking key, or a configured name). */
  #named(key: string): boolean {
    return this.#m.field('', key) !== undefined;
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
      const masked = this.#field(v, undefined);
      if (masked) this.count++;
      const text = masked ? masked.value : v;
      if (text === null) return null;
      const shown = this.#embeddedObjects(text, depth) ?? this.#goEnvPairs(text) ?? text;
      return shown === v ? undefined : shown;
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
    this.#keys(obj);
    return undefined;
  }

  /** What the detectors make of each key met (keys repeat: `metadata`, `name`…); bounded. */
  readonly #keyCache = new Map<string, string | undefined>();

  /**
   * Keys are text too: a map keyed by a value (managedFields records a set's members as
   * `v:"…"` keys, a JSON config keyed by token) carries it where the values' sweep does not
   * look. A key a detector flags is renamed to its masked form (made unique when two meet).
   */
  #keys(obj: Json): void {
    let renamed: [string, string][] | undefined;
    for (const k of Object.keys(obj)) {
      let masked = this.#keyCache.get(k);
      if (!this.#keyCache.has(k)) {
        const m = this.#field(k, undefined);
        masked = m && m.value !== k ? (m.value ?? '') : undefined;
        if (this.#keyCache.size >= 10_000) this.#keyCache.clear();
        this.#keyCache.set(k, masked);
      }
      if (masked !== undefined) (renamed ??= []).push([k, masked]);
    }
    if (!renamed) return;
    for (const [k, masked] of renamed) {
      let name = masked;
      for (let n = 2; Object.hasOwn(obj, name); n++) name = `${masked}#${n}`;
      obj[name] = obj[k];
      delete obj[k];
      this.count++;
    }
  }

  /**
   * A string that is a JSON document holding objects with a kind (a manifest an operator
   * keeps as text: a Secret's, with its data): masked as those objects are, wherever the
   * string is. Undefined: not such a document, or nothing in it masked.
   */
  #embeddedObjects(text: string, depth: number): string | undefined {
    const t = text.trimStart();
    if ((!t.startsWith('{') && !t.startsWith('[')) || !text.includes('"kind"') || this.#written.has(text)) return undefined;
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (typeof doc !== 'object' || doc === null) return undefined;
    const before = this.count;
    this.#byKind(doc);
    this.#sweep(doc, depth + 1);
    return this.count !== before ? this.#rewritten(doc) : undefined;
  }

  /**
   * JSON text this masker wrote in place of a document it masked (a last-applied copy, a
   * configuration file, an embedded manifest): the sweep meets it again as a string and
   * must not mask it twice (a Secret's masked data masked anew, in the hash style, would
   * read as another value).
   */
  readonly #written = new Set<string>();

  #rewritten(doc: unknown): string {
    const text = JSON.stringify(doc);
    this.#written.add(text);
    return text;
  }

  /** Go-printed env vars in free text (GO_ENV_PAIR): each value by its variable's name, as an env list is. Undefined: none masked. */
  #goEnvPairs(text: string): string | undefined {
    if (!text.includes('Value:')) return undefined;
    const before = this.count;
    const out = text.replace(GO_ENV_PAIR, (pair: string, head: string, name: string, value: string) => {
      if (value === '') return pair;
      const masked = this.#field(value, name);
      if (!masked || masked.value === value) return pair;
      this.count++;
      return `${head}${masked.value ?? ''}"`;
    });
    return this.count !== before ? out : undefined;
  }

  /**
   * Annotations: free text under a name, masked by the name (`example.com/db-password`) as a
   * ConfigMap value is. A last-applied copy is masked as an object: here when its object has
   * no kind of its own (a pod template's metadata, copied by an operator), else already by kind.
   */
  #annotations(a: Json): void {
    if (!this.#appliedDone.has(a)) this.#lastAppliedIn(a, '');
    for (const [k, v] of Object.entries(a)) {
      if (typeof v !== 'string' || k === LAST_APPLIED) continue;
      const masked = this.#field(v, k);
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
          const masked = value === '' ? undefined : this.#field(value, key);
          if (masked && masked.value !== value) {
            list[i] = `${dashes}${key}=${masked.value ?? ''}`;
            this.count++;
          }
          continue;
        }
        const next = list[i + 1];
        if (typeof next === 'string' && !next.startsWith('-')) {
          const masked = this.#field(next, key);
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
        const r = this.#keyedText(val, k === 'value' && typeof e['name'] === 'string' ? e['name'] : undefined);
        if (r !== undefined) e[k] = r;
      }
    }
  }

  #secret(obj: Json): void {
    const data = obj['data'];
    if (isObject(data)) {
      this.#done.add(data);
      for (const [k, v] of Object.entries(data)) {
        if (typeof v !== 'string') continue;
        const value = Buffer.from(v, 'base64').toString('utf8');
        this.#m.learn?.(value);
        const masked = this.#m.secret(value);
        data[k] = masked === null ? null : Buffer.from(masked, 'utf8').toString('base64');
        this.count++;
      }
    }
    const stringData = obj['stringData'];
    if (isObject(stringData)) {
      this.#done.add(stringData);
      for (const [k, v] of Object.entries(stringData)) {
        if (typeof v !== 'string') continue;
        this.#m.learn?.(v);
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
        if (packed(v)) {
          // Compressed data in base64 (a Helm release, an archive): nothing in it can be read, so all of it is masked.
          data[k] = this.#m.secret(v);
          this.count++;
          continue;
        }
        const masked = this.#field(v, k);
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
        const text = utf8Text(Buffer.from(v, 'base64'));
        let shown: string | null;
        if (text === undefined) {
          // Bytes that are not text (a keystore, an archive, compressed data) cannot be read: masked whole.
          shown = this.#m.secret(v);
        } else {
          // Text: as a `data` value is (by key, the detectors, then line by line).
          const masked = this.#field(text, k);
          const after = masked ? masked.value : text;
          shown = after === null ? null : (this.#configText(after) ?? after);
          if (shown === text) continue;
        }
        binary[k] = shown === null ? null : Buffer.from(shown, 'utf8').toString('base64');
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
        return this.count !== before ? this.#rewritten(doc) : undefined;
      }
    }
    const out = this.#configLines(text);
    return this.count !== before ? out : undefined;
  }

  /**
   * A configuration file, line by line: `key = value` / `key: value` lines by their key, and
   * what a key's value spans beyond its line — a YAML block scalar (`password: |` and the
   * lines indented under it), a nested block (`password:` then indented lines), a quoted
   * value that closes lines later, a `\`-continued properties value — masked whole when the
   * key is a secret's. A YAML anchor (`&pw value`) whose alias a secret key uses
   * (`password: *pw`) is masked as that key. Inline JSON and flow mappings are masked by
   * their own keys. Every line is swept for URL passwords.
   */
  #configLines(text: string): string {
    // A line's `\r` (CRLF files) is set aside and put back; any other character is part of its value.
    const crs: string[] = [];
    const lines = text.split('\n').map((l) => {
      const cr = l.endsWith('\r');
      crs.push(cr ? '\r' : '');
      return cr ? l.slice(0, -1) : l;
    });
    // Anchors a secret key refers to by alias: their values are the secret's.
    const secretAnchors = new Set<string>();
    for (const line of lines) {
      const m = CONFIG_LINE.exec(line);
      const alias = m ? /^\*([^\s,{}\[\]]+)$/.exec(withoutTrailingBlanks(m[4] as string).trim()) : null;
      if (m && alias && this.#named(unquote(m[2] as string))) secretAnchors.add(alias[1] as string);
    }
    const indentOf = (l: string): number => (/^[ \t]*/.exec(l)?.[0].length ?? 0);
    const secretLines = secretManifestValues(lines, indentOf);
    const out: string[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      const m = CONFIG_LINE.exec(line);
      if (!m) {
        out.push(this.#lineUrls(line) + (crs[i] as string));
        continue;
      }
      const [, lead, key, sep, rawWithBlanks] = m as unknown as [string, string, string, string, string];
      const raw = withoutTrailingBlanks(rawWithBlanks);
      const props = VALUE_PROPERTIES.exec(raw)?.[1] ?? '';
      const value = raw.slice(props.length);
      const anchor = /&([^\s]+)/.exec(props)?.[1];
      const secret = this.#named(unquote(key)) || (anchor !== undefined && secretAnchors.has(anchor)) || secretLines.has(i);
      const indent = indentOf(line);
      // Where this key's value ends, when it goes on past its line.
      let last = i;
      const yaml = sep.includes(':');
      if (yaml && (value === '' || BLOCK_SCALAR.test(value))) {
        for (let j = i + 1; j < lines.length; j++) {
          const l = lines[j] as string;
          if (l.trim() === '') continue;
          const deeper = indentOf(l) > indent || (value === '' && indentOf(l) === indent && /^[ \t]*- /.test(l) && !lead.includes('- '));
          if (!deeper) break;
          last = j;
        }
      } else if (/^["']/.test(value) && !closes(value)) {
        const q = value[0] as string;
        for (let j = i + 1; j < lines.length; j++) {
          last = j;
          if ((lines[j] as string).includes(q)) break;
        }
      } else if (/(^|[^\\])(\\\\)*\\$/.test(value)) {
        for (let j = i + 1; j < lines.length; j++) {
          last = j;
          if (!/(^|[^\\])(\\\\)*\\\s*$/.test(lines[j] as string)) break;
        }
      }
      if (last > i && secret) {
        const whole = [value, ...lines.slice(i + 1, last + 1)].join('\n');
        const masked = this.#field(whole, unquote(key)) ?? this.#field(whole, 'password');
        this.count++;
        const mask = masked?.value ?? '';
        if (yaml && (value === '' || BLOCK_SCALAR.test(value))) {
          // The key line stays (with its block header); one line at the content's indent holds the mask.
          const inner = lines.slice(i + 1, last + 1).find((l) => l.trim() !== '') ?? '';
          out.push(line + (crs[i] as string), `${' '.repeat(Math.max(indentOf(inner), indent + 2))}${mask}${crs[last] as string}`);
        } else out.push(`${lead}${key}${sep}${props}${mask}${crs[last] as string}`);
        i = last;
        continue;
      }
      out.push(this.#configLine(line, lead, key, sep, props, value, secret) + (crs[i] as string));
    }
    return out.join('\n');
  }

  /** One `key: value` line whose value ends on it. */
  #configLine(line: string, lead: string, key: string, sep: string, props: string, value: string, secret: boolean): string {
    const quote = /^(["'])(.*)\1$/.exec(value);
    const bare = quote ? (quote[2] as string) : value;
    if (bare === '' || BLOCK_SCALAR.test(bare) || bare.startsWith('*')) return this.#lineUrls(line);
    const name = unquote(key);
    if (secret) {
      const masked = this.#field(bare, name) ?? this.#field(bare, 'password');
      this.count++;
      return `${lead}${key}${sep}${props}${masked?.value ?? ''}`;
    }
    // Inline JSON or a flow mapping: masked by its own keys.
    if (bare.startsWith('{') || bare.startsWith('[')) {
      const inner = this.#configText(bare) ?? this.#flowPairs(bare);
      if (inner !== undefined) return `${lead}${key}${sep}${props}${quote ? `${quote[1]}${inner}${quote[1]}` : inner}`;
    }
    const masked = this.#field(bare, name);
    if (!masked || masked.value === bare) return line;
    this.count++;
    return `${lead}${key}${sep}${props}${masked.value ?? ''}`;
  }

  /** A flow mapping's `key: value` pairs masked by key; undefined when none is. */
  #flowPairs(text: string): string | undefined {
    const before = this.count;
    const out = text.replace(FLOW_PAIR, (pair: string, open: string, key: string, sep: string, valueWithBlanks: string) => {
      const value = withoutTrailingBlanks(valueWithBlanks);
      const tail = valueWithBlanks.slice(value.length);
      const bare = unquote(value.trim());
      if (bare === '' || !this.#named(unquote(key))) return pair;
      this.count++;
      return `${open}${key}${sep}${this.#field(bare, unquote(key))?.value ?? ''}${tail}`;
    });
    return this.count !== before ? out : undefined;
  }

  /** A line that is no `key: value`: only URL passwords. */
  #lineUrls(line: string): string {
    const masked = this.#field(line, undefined);
    if (!masked || masked.value === line) return line;
    this.count++;
    return masked.value ?? '';
  }

  /** Strings under a key that looks like a secret's (or a configured name), in a parsed document: masked whole. */
  #byKey(v: unknown, depth: number): void {
    if (depth > MAX_DEPTH) throw new MaskDepthError('a response nests deeper than agentgate inspects; refused');
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (typeof x !== 'string') this.#byKey(x, depth + 1);
        else {
          const r = this.#keyedText(x, undefined);
          if (r !== undefined) v[i] = r;
        }
      }
      return;
    }
    if (!isObject(v) || this.#done.has(v)) return;
    for (const [k, val] of Object.entries(v)) {
      if (typeof val === 'string') {
        const r = this.#keyedText(val, k);
        if (r !== undefined) v[k] = r;
      } else if (val !== null && typeof val === 'object' && this.#named(k)) this.#allUnder(val, k, depth + 1);
      else this.#byKey(val, depth + 1);
    }
  }

  /**
   * A string under `key` in a configuration document (or an env value): masked by the key
   * and the detectors, and when it is itself configuration text (`DB_PASSWORD=…` lines, a
   * JSON document), line by line as a ConfigMap value is. Undefined: unchanged.
   */
  #keyedText(val: string, key: string | undefined): string | null | undefined {
    const masked = this.#field(val, key);
    if (masked && masked.value !== val) this.count++;
    const out = masked ? masked.value : val;
    if (out === null) return null;
    const text = key !== undefined && this.#named(key) ? undefined : this.#configText(out);
    const result = text ?? out;
    return result === val ? undefined : result;
  }

  /** A secret key's value that is an object or a list (`passwords: {prod: …}`): every string in it, masked as the key's. */
  #allUnder(v: unknown, key: string, depth: number): void {
    if (depth > MAX_DEPTH) throw new MaskDepthError('a response nests deeper than agentgate inspects; refused');
    if (typeof v !== 'object' || v === null) return;
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      const val = o[k];
      if (typeof val === 'string') {
        o[k] = this.#field(val, key)?.value ?? null;
        this.count++;
      } else this.#allUnder(val, key, depth + 1);
    }
  }

  /** Annotation maps whose last-applied copy is masked already. */
  readonly #appliedDone = new WeakSet<object>();

  /** The annotation holds a JSON copy of the applied object: mask that copy as its kind. */
  #lastApplied(obj: Json, kind: string): void {
    const annotations = child(obj['metadata'], 'annotations');
    if (isObject(annotations)) this.#lastAppliedIn(annotations, kind);
  }

  /** `kind`: what a copy without a kind of its own is masked as ('' for none). */
  #lastAppliedIn(annotations: Json, kind: string): void {
    this.#appliedDone.add(annotations);
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
    if (this.count !== before) annotations[LAST_APPLIED] = this.#rewritten(copy);

  }
}

/**
 * A Secret manifest written as YAML (`kind: Secret`, in a file, a list item, a document of
 * several): the lines of its `data` and `stringData` keys, whose values are the Secret's.
 */
function secretManifestValues(lines: readonly string[], indentOf: (l: string) => number): Set<number> {
  const out = new Set<number>();
  const keyCol = (l: string): number => (/^[ \t]*(?:- )?/.exec(l)?.[0].length ?? 0);
  lines.forEach((line, k) => {
    if (!/^[ \t]*(?:- )?kind:[ \t]*["']?Secret["']?[ \t]*(?:#.*)?$/.test(line)) return;
    const col = keyCol(line);
    const item = (l: string): boolean => /^[ \t]*- /.test(l);
    // One line of its mapping: 'in' (nested under a key, or a key of it), 'first' (the list
    // item's `- ` line that opens it), or 'out'.
    const place = (l: string): 'in' | 'first' | 'out' => {
      if (l.trim() === '' || indentOf(l) > col) return 'in';
      if (/^(?:---|\.\.\.)\s*$/.test(l) || keyCol(l) !== col) return 'out';
      return item(l) ? 'first' : 'in';
    };
    const mark = (j: number): void => {
      if (indentOf(lines[j] as string) <= col && /^[ \t]*(?:- )?["']?(?:data|stringData)["']?[ \t]*:/.test(lines[j] as string)) out.add(j);
    };
    if (!item(line)) {
      for (let j = k - 1; j >= 0; j--) {
        const p = place(lines[j] as string);
        if (p === 'out') break;
        mark(j);
        if (p === 'first') break;
      }
    }
    for (let j = k + 1; j < lines.length; j++) {
      if (place(lines[j] as string) !== 'in') break;
      mark(j);
    }
  });
  return out;
}

const FATAL_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes as UTF-8 text, or undefined when they are not text (invalid UTF-8, or a NUL). */
function utf8Text(bytes: Buffer): string | undefined {
  try {
    const text = FATAL_UTF8.decode(bytes);
    return text.includes('\0') ? undefined : text;
  } catch {
    return undefined;
  }
}

/** Base64 of compressed or archived bytes (gzip, zstd, zip, bzip2, xz): a value whose content cannot be read. */
function packed(v: string): boolean {
  const t = v.trim();
  if (t.length < 16 || !/^[A-Za-z0-9+/\r\n]+={0,2}$/.test(t)) return false;
  const head = Buffer.from(t.slice(0, 16), 'base64');
  return (head[0] === 0x1f && head[1] === 0x8b) || head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])) || head.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1')) || head.subarray(0, 3).toString('latin1') === 'BZh' || head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
}

/** A key without its quotes. */
function unquote(key: string): string {
  return key.replace(/^(["'])(.*)\1$/, '$2');
}

/** `text` without its trailing spaces and tabs (a loop: `[ \t]+$` is quadratic on long inner runs of blanks). */
function withoutTrailingBlanks(text: string): string {
  let end = text.length;
  while (end > 0 && (text.charCodeAt(end - 1) === 0x20 || text.charCodeAt(end - 1) === 0x09)) end--;
  return text.slice(0, end);
}

/** Whether a quoted value closes on its own line (its opening quote comes again). */
function closes(value: string): boolean {
  return value.indexOf(value[0] as string, 1) > 0;
}

function child(v: unknown, key: string): unknown {
  return isObject(v) ? v[key] : undefined;
}
