/**
 * A stand-in Kubernetes API server for tests: HTTPS on 127.0.0.1:0 speaking enough of the
 * real API on the wire for the real kubectl: legacy discovery (/api, /apis, /api/v1),
 * /version, OpenAPI stubs, and namespaces, pods, secrets, configmaps, serviceaccounts and
 * apps/v1 controllerrevisions with get, list, create, update (PUT, with the real server's
 * 404 and 409), patch, delete and watch (JSON lines, streamed; or
 * over WebSocket, one event per text message, as the real server answers a watch that asks
 * to upgrade), the server-side `Table` form kubectl asks for, `pods/log` as streamed
 * text/plain, `serviceaccounts/{name}/token` (a TokenRequest answered 201 with a signed
 * JWT), paths routed decoded as Go's net/url does, and `Status` errors. It requires the upstream bearer token the broker must
 * present, records every request it sees, and answers an exec or attach over the WebSocket
 * remote-command protocol (`v4`/`v5.channel.k8s.io`) as a kubelet would: a tty gets a tiny
 * shell, a command without one runs (echo, printenv from the pod's spec, a few test
 * commands; anything else echoes its stdin like cat) with its output on channels 1 and 2 and
 * its status on channel 3. Any other upgrade (SPDY, port-forward) gets 101 and then a raw
 * echo of its bytes: enough to test a byte pipe.
 *
 * There is no Kubernetes API server package for this machine; this is the smallest thing
 * that keeps kubectl honest.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { brotliCompressSync, constants as zlibConstants, createGzip, deflateSync, gzipSync } from 'node:zlib';
import { makeTestCert } from './tls.js';
import { acceptsGzip, encodeDocument, encodeWatchEvent, MEDIA_TYPE, negotiate, STREAM_MEDIA_TYPE, type WireFormat } from './kube-formats.js';
import { WsFrameReader, wsFrame } from '../../src/broker/kubernetes/remote-command.js';

export type KubeResource = 'namespaces' | 'pods' | 'secrets' | 'configmaps' | 'serviceaccounts' | 'controllerrevisions' | 'events';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; creationTimestamp?: string; annotations?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface KubeApiServer {
  /** `https://127.0.0.1:<port>` */
  url: string;
  /** PEM of the self-signed certificate (its own CA). */
  caPem: string;
  /** The bearer token the server accepts. */
  token: string;
  /** Every request seen, in order (upgrades included), but the broker's own (below). */
  readonly requests: RecordedRequest[];
  /**
   * Requests the broker makes for itself, not for a client (`User-Agent: agentgate-broker/…`:
   * listing and watching Secrets to learn their values), kept apart so a test's count of what
   * a client's request caused is exact whenever the broker's background work runs.
   */
  readonly brokerRequests: RecordedRequest[];
  /** Every token a TokenRequest (`serviceaccounts/{name}/token`) was answered with. */
  readonly tokensIssued: readonly string[];
  /** Create or replace an object; open watches see ADDED or MODIFIED. */
  put(resource: KubeResource, obj: KubeObject): KubeObject;
  remove(resource: KubeResource, namespace: string, name: string): boolean;
  get(resource: KubeResource, namespace: string, name: string): KubeObject | undefined;
  /** Open watch streams (optionally of one resource). */
  watchers(resource?: KubeResource): number;
  /** End every open watch stream. */
  endWatches(): void;
  /** Whether a watch of `resource` has ended since it was opened (tests of streaming). */
  readonly watchesEnded: number;
  /** What `pods/log` of this pod answers: each piece written on its own (the stream splits where they do). */
  setLog(namespace: string, pod: string, pieces: string[]): void;
  /**
   * A fault: while set, an upgrade is answered `404` with a head that promises more body
   * than is sent before the connection ends (an API server that breaks off its answer).
   */
  breakUpgradeAnswers: boolean;
  /**
   * While set, every upgrade is answered with this response instead of 101 — what the real
   * server relays for a `…/proxy` upgrade whose backend answers an error (its own body).
   */
  upgradeAnswer: { status: number; contentType: string; body: string; encoding?: string } | undefined;
  /**
   * How an exec echo (raw, or stdin echoed on stdout) treats the end of a stream: `echo`
   * ends when the client does; `ignores-eof` neither ends nor closes on the client's EOF;
   * `ends-after-echo` echoes the first chunk and ends its side at once.
   */
  execPeer: 'echo' | 'ignores-eof' | 'ends-after-echo';
  /**
   * A file in a pod's container, for `cat FILE` and `tar cf - FILE` (exec, with or without a
   * tty): each piece is written on its own (its own stdout frame), `{ pauseMs }` waits
   * between pieces. Files of the pod's Secret volumes exist without this, as the kubelet
   * projects them.
   */
  setFile(namespace: string, pod: string, path: string, pieces: FilePiece[]): void;
  /**
   * What the pod's HTTP server answers a `…/pods/{name}/proxy/…` request (relayed by the API
   * server with the backend's status, headers and body); undefined: 503 as when nothing listens.
   */
  setProxy(namespace: string, pod: string, answer: { status: number; headers: Record<string, string>; body: string | Buffer } | undefined): void;
  /**
   * Answer as a real API server does: in the format `Accept` negotiates (JSON, YAML,
   * protobuf, CBOR; the Table and PartialObjectMetadata forms; 406 when none fits),
   * gzip-compressed past 128 KiB when `Accept-Encoding` allows it, a watch framed in its
   * format (kube-formats.ts). Off by default: the binary forms are realistic, not decodable,
   * and kubectl's typed clients ask for protobuf.
   */
  negotiates: boolean;
  /**
   * A server that does not honour what it was asked (or sits behind a proxy that rewrites):
   * every object answer, watch and log in this format and these codings, whatever the request said.
   */
  answerAs: { format?: WireFormat; contentEncoding?: 'gzip' | 'deflate' | 'br'; transferEncoding?: 'gzip' } | undefined;
  /** Object answers and watch events written in pieces of this many bytes, each on its own: a chunked answer split anywhere. */
  splitWrites: number | undefined;
  /** A watch's bookmarks carry the whole object they follow, not only its resourceVersion. */
  fatBookmarks: boolean;
  close(): Promise<void>;
}

/** A piece of a pod's file as the container writes it: text, bytes, or a pause. */
export type FilePiece = string | Buffer | { pauseMs: number };

const KINDS: Record<KubeResource, string> = { namespaces: 'Namespace', pods: 'Pod', secrets: 'Secret', configmaps: 'ConfigMap', serviceaccounts: 'ServiceAccount', controllerrevisions: 'ControllerRevision', events: 'Event' };
const NAMESPACED: Record<KubeResource, boolean> = { namespaces: false, pods: true, secrets: true, configmaps: true, serviceaccounts: true, controllerrevisions: true, events: true };
/** The group version each resource is served under. */
const GROUP_VERSION: Record<KubeResource, string> = { namespaces: 'v1', pods: 'v1', secrets: 'v1', configmaps: 'v1', serviceaccounts: 'v1', controllerrevisions: 'apps/v1', events: 'v1' };
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

const API_RESOURCES = {
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion: 'v1',
  resources: [
    { name: 'namespaces', singularName: 'namespace', namespaced: false, kind: 'Namespace', verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'], shortNames: ['ns'] },
    { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ALL_VERBS, shortNames: ['po'], categories: ['all'] },
    { name: 'pods/exec', singularName: '', namespaced: true, kind: 'PodExecOptions', verbs: ['create', 'get'] },
    { name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] },
    { name: 'secrets', singularName: 'secret', namespaced: true, kind: 'Secret', verbs: ALL_VERBS },
    { name: 'configmaps', singularName: 'configmap', namespaced: true, kind: 'ConfigMap', verbs: ALL_VERBS, shortNames: ['cm'] },
    { name: 'serviceaccounts', singularName: 'serviceaccount', namespaced: true, kind: 'ServiceAccount', verbs: ALL_VERBS, shortNames: ['sa'] },
    { name: 'events', singularName: 'event', namespaced: true, kind: 'Event', verbs: ALL_VERBS, shortNames: ['ev'] },
    { name: 'serviceaccounts/token', singularName: '', namespaced: true, group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest', verbs: ['create'] },
  ],
};

const APPS_RESOURCES = {
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion: 'apps/v1',
  resources: [{ name: 'controllerrevisions', singularName: 'controllerrevision', namespaced: true, kind: 'ControllerRevision', verbs: ALL_VERBS }],
};

interface Watcher {
  resource: KubeResource;
  namespace: string;
  name: string | undefined;
  table: boolean;
  includeObject: string;
  /** One watch event (a line or frame in the stream's format, or a WebSocket text message). */
  write(event: { type: string; object: Record<string, unknown> }): void;
  end(): void;
  destroy(): void;
  firstTable: boolean;
}

/**
 * `/api/v1[/namespaces/{ns}]/{resource}[/{name}[/{sub}]]` or the same under
 * `/apis/apps/v1`, for the resources this server holds; undefined for anything else.
 */
function resourcePath(path: string): { r: KubeResource; ns: string; name: string | undefined; sub: string | undefined } | undefined {
  const prefix = path.startsWith('/api/v1/') ? '/api/v1/' : path.startsWith('/apis/apps/v1/') ? '/apis/apps/v1/' : undefined;
  if (!prefix) return undefined;
  const parts = path.slice(prefix.length).split('/');
  let ns = '';
  if (parts[0] === 'namespaces' && parts.length >= 3) {
    ns = parts[1] as string;
    parts.splice(0, 2);
  }
  const r = parts[0] as KubeResource | undefined;
  if (!r || !(r in KINDS) || (GROUP_VERSION[r] === 'v1') !== (prefix === '/api/v1/') || parts.length > 3) return undefined;
  return { r, ns, name: parts[1], sub: parts[2] };
}

export async function startKubeApiServer(opts: { token?: string } = {}): Promise<KubeApiServer> {
  const { cert, key } = makeTestCert();
  const token = opts.token ?? `upstream-${randomUUID()}`;
  const store = new Map<string, KubeObject>();
  const requests: RecordedRequest[] = [];
  const brokerRequests: RecordedRequest[] = [];
  const record = (req: IncomingMessage): void => {
    const seen = { method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } };
    (String(req.headers['user-agent'] ?? '').startsWith('agentgate-broker/') ? brokerRequests : requests).push(seen);
  };
  const watchers = new Set<Watcher>();
  const logs = new Map<string, string[]>();
  const files = new Map<string, FilePiece[]>();
  const proxies = new Map<string, { status: number; headers: Record<string, string>; body: string | Buffer }>();
  const upgraded = new Set<Duplex>();
  const tokensIssued: string[] = [];
  let rv = 100;
  /**
   * Recent changes, as the real server's watch cache keeps them: a watch from a
   * resourceVersion is sent every change after it, and one older than the oldest kept is
   * answered `410 Expired`.
   */
  const history: { r: KubeResource; type: 'ADDED' | 'MODIFIED' | 'DELETED'; o: KubeObject; rv: number }[] = [];
  const HISTORY = 1000;
  let watchesEnded = 0;
  let port = 0;

  const keyOf = (r: KubeResource, ns: string, name: string): string => `${r}/${NAMESPACED[r] ? ns : ''}/${name}`;

  /** The first container as the kubelet runs it. */
  type Container = { env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[]; volumeMounts?: { name: string; mountPath: string }[] };
  const podSpec = (ns: string, pod: string): { containers?: Container[]; volumes?: { name: string; secret?: { secretName: string } }[] } | undefined =>
    store.get(keyOf('pods', ns, pod))?.['spec'] as { containers?: Container[]; volumes?: { name: string; secret?: { secretName: string } }[] } | undefined;
  const secretValue = (ns: string, name: string, key: string): string | undefined => {
    const data = store.get(keyOf('secrets', ns, name))?.['data'] as Record<string, string> | undefined;
    const v = data?.[key];
    return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
  };
  /** A file in the pod: set by the test, or a key of a mounted Secret volume (as the kubelet projects it). */
  const fileOf = (ns: string, pod: string, path: string): FilePiece[] | undefined => {
    const set = files.get(`${ns}/${pod}:${path}`);
    if (set) return set;
    const spec = podSpec(ns, pod);
    for (const m of spec?.containers?.[0]?.volumeMounts ?? []) {
      const vol = spec?.volumes?.find((v) => v.name === m.name);
      if (!vol?.secret || !path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`)) continue;
      const v = secretValue(ns, vol.secret.secretName, path.slice(m.mountPath.replace(/\/$/, '').length + 1));
      if (v !== undefined) return [v];
    }
    return undefined;
  };
  const pieceBytes = (p: FilePiece): Buffer => (Buffer.isBuffer(p) ? p : typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.alloc(0));
  /** A one-file ustar archive, as `tar cf - FILE` writes it. */
  const tarOf = (name: string, content: Buffer): Buffer => {
    const h = Buffer.alloc(512);
    const put = (off: number, len: number, v: string): void => void h.write(v.slice(0, len), off, 'latin1');
    put(0, 100, name);
    put(100, 8, '0000644\0');
    put(108, 8, '0000000\0');
    put(116, 8, '0000000\0');
    put(124, 12, `${content.length.toString(8).padStart(11, '0')}\0`);
    put(136, 12, `${Math.floor(Date.now() / 1000).toString(8).padStart(11, '0')}\0`);
    h.fill(0x20, 148, 156);
    put(156, 1, '0');
    put(257, 6, 'ustar\0');
    put(263, 2, '00');
    let sum = 0;
    for (const b of h) sum += b;
    put(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
    return Buffer.concat([h, content, pad, Buffer.alloc(1024)]);
  };

  function status(res: ServerResponse, code: number, reason: string, message: string, details?: Record<string, unknown>): void {
    send(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code });
  }

  function json(res: ServerResponse, code: number, doc: Record<string, unknown>): void {
    send(res, code, doc, { 'audit-id': randomUUID() });
  }

  /** The format this request is answered in (`answerAs` first), or undefined when none fits its Accept. */
  function formatOf(req: IncomingMessage, stream: boolean): WireFormat | undefined {
    if (api.answerAs?.format) return api.answerAs.format;
    if (!api.negotiates) return 'json';
    return negotiate(req.headers.accept, stream)?.format;
  }

  function compressed(body: Buffer, coding: 'gzip' | 'deflate' | 'br'): Buffer {
    return coding === 'gzip' ? gzipSync(body) : coding === 'deflate' ? deflateSync(body) : brotliCompressSync(body);
  }

  /**
   * A document as the real server sends it: in the negotiated format (errors too), gzip past
   * 128 KiB when the client accepts it — or as `answerAs` forces.
   */
  function send(res: ServerResponse, code: number, doc: Record<string, unknown>, extra: Record<string, string> = {}): void {
    const req = res.req;
    const format = formatOf(req, false);
    if (format === undefined) {
      const body = Buffer.from(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `only the following media types are accepted: ${Object.values(MEDIA_TYPE).join(', ')}`, reason: 'NotAcceptable', code: 406 }));
      return writeBody(res, 406, { 'content-type': 'application/json' }, body);
    }
    let body = encodeDocument(doc, format, new URL(req.url ?? '/', 'https://stand-in').searchParams.get('pretty') === 'true');
    const headers: Record<string, string> = { 'content-type': MEDIA_TYPE[format], ...extra };
    const coding = api.answerAs?.contentEncoding ?? (api.negotiates && acceptsGzip(String(req.headers['accept-encoding'] ?? '')) && body.length > 128 * 1024 ? 'gzip' : undefined);
    if (coding) {
      body = compressed(body, coding);
      headers['content-encoding'] = coding;
    }
    writeBody(res, code, headers, body);
  }

  /** A whole body: with its length, or chunked in `splitWrites` pieces, or under a forced transfer coding. */
  function writeBody(res: ServerResponse, code: number, headers: Record<string, string>, body: Buffer): void {
    if (api.answerAs?.transferEncoding) {
      res.writeHead(code, { ...headers, 'transfer-encoding': `${api.answerAs.transferEncoding}, chunked` });
      res.end(gzipSync(body));
      return;
    }
    const n = api.splitWrites;
    if (!n) {
      res.writeHead(code, { ...headers, 'content-length': body.length });
      res.end(body);
      return;
    }
    res.writeHead(code, { ...headers, 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    inPieces(res, body, n).then(
      () => res.end(),
      () => res.destroy(),
    );
  }

  /** Bytes written `n` at a time, each piece on its own turn of the event loop. */
  async function inPieces(out: { write(b: Buffer): unknown }, body: Buffer, n: number): Promise<void> {
    for (let i = 0; i < body.length; i += n) {
      out.write(body.subarray(i, i + n));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  function withKind(r: KubeResource, o: KubeObject): KubeObject {
    return { apiVersion: GROUP_VERSION[r], kind: KINDS[r], ...structuredClone(o) };
  }

  function age(o: KubeObject): string {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(o.metadata.creationTimestamp ?? new Date().toISOString())) / 1000));
    return s < 120 ? `${s}s` : `${Math.round(s / 60)}m`;
  }

  function columns(r: KubeResource): { name: string; type: string; format: string; description: string; priority: number }[] {
    const col = (name: string, format = ''): { name: string; type: string; format: string; description: string; priority: number } => ({ name, type: 'string', format, description: name, priority: 0 });
    switch (r) {
      case 'pods':
        return [col('Name', 'name'), col('Ready'), col('Status'), col('Restarts'), col('Age')];
      case 'secrets':
        return [col('Name', 'name'), col('Type'), col('Data'), col('Age')];
      case 'configmaps':
        return [col('Name', 'name'), col('Data'), col('Age')];
      case 'namespaces':
        return [col('Name', 'name'), col('Status'), col('Age')];
      case 'serviceaccounts':
        return [col('Name', 'name'), col('Secrets'), col('Age')];
      case 'controllerrevisions':
        return [col('Name', 'name'), col('Controller'), col('Revision'), col('Age')];
      case 'events':
        return [col('Last Seen'), col('Type'), col('Reason'), col('Object'), col('Message')];
    }
  }

  function cells(r: KubeResource, o: KubeObject): unknown[] {
    switch (r) {
      case 'pods': {
        const phase = (o['status'] as { phase?: string } | undefined)?.phase ?? 'Pending';
        return [o.metadata.name, phase === 'Running' ? '1/1' : '0/1', phase, '0', age(o)];
      }
      case 'secrets':
        return [o.metadata.name, (o['type'] as string | undefined) ?? 'Opaque', Object.keys((o['data'] as object | undefined) ?? {}).length, age(o)];
      case 'configmaps':
        return [o.metadata.name, Object.keys((o['data'] as object | undefined) ?? {}).length, age(o)];
      case 'namespaces':
        return [o.metadata.name, 'Active', age(o)];
      case 'serviceaccounts':
        return [o.metadata.name, 0, age(o)];
      case 'controllerrevisions':
        return [o.metadata.name, '', String(o['revision'] ?? 1), age(o)];
      case 'events': {
        const about = (o['involvedObject'] as { kind?: string; name?: string } | undefined) ?? {};
        return [age(o), o['type'] ?? 'Normal', o['reason'] ?? '', `${(about.kind ?? '').toLowerCase()}/${about.name ?? ''}`, o['message'] ?? ''];
      }
    }
  }

  function row(r: KubeResource, o: KubeObject, includeObject: string): Record<string, unknown> {
    const out: Record<string, unknown> = { cells: cells(r, o) };
    if (includeObject === 'Object') out['object'] = withKind(r, o);
    else if (includeObject !== 'None') out['object'] = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: structuredClone(o.metadata) };
    return out;
  }

  function table(r: KubeResource, objs: KubeObject[], includeObject: string, withColumns = true): Record<string, unknown> {
    return {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { resourceVersion: String(rv) },
      ...(withColumns ? { columnDefinitions: columns(r) } : {}),
      rows: objs.map((o) => row(r, o, includeObject)),
    };
  }

  function matching(r: KubeResource, ns: string, name: string | undefined): KubeObject[] {
    const out: KubeObject[] = [];
    for (const [k, o] of store) {
      if (!k.startsWith(`${r}/`)) continue;
      if (NAMESPACED[r] && ns && o.metadata.namespace !== ns) continue;
      if (name !== undefined && o.metadata.name !== name) continue;
      out.push(o);
    }
    return out.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  }

  const watches = (w: Pick<Watcher, 'resource' | 'namespace' | 'name'>, r: KubeResource, o: KubeObject): boolean =>
    w.resource === r && !(NAMESPACED[r] && w.namespace && o.metadata.namespace !== w.namespace) && !(w.name !== undefined && w.name !== o.metadata.name);

  function notify(r: KubeResource, type: 'ADDED' | 'MODIFIED' | 'DELETED', o: KubeObject): void {
    history.push({ r, type, o: structuredClone(o), rv: Number(o.metadata.resourceVersion) });
    if (history.length > HISTORY) history.shift();
    for (const w of watchers) if (watches(w, r, o)) sendEvent(w, type, o);
  }

  /** A watch from resourceVersion `since`: the changes after it, or false when they are no longer kept. */
  function replay(w: Watcher, since: number): boolean {
    const oldest = history[0];
    if (oldest !== undefined && history.length >= HISTORY && since < oldest.rv - 1) return false;
    for (const h of history) if (h.rv > since && watches(w, h.r, h.o)) sendEvent(w, h.type, h.o);
    return true;
  }

  function sendEvent(w: Watcher, type: string, o: KubeObject): void {
    const object = w.table ? table(w.resource, [o], w.includeObject, w.firstTable) : withKind(w.resource, o);
    w.firstTable = false;
    w.write({ type, object });
  }

  /**
   * The bookmark that ends a watch's initial events (`sendInitialEvents=true`): the kind and
   * resourceVersion only — or, with `fatBookmarks`, the whole object it follows.
   */
  function sendBookmark(w: Watcher, last: KubeObject | undefined): void {
    const base = api.fatBookmarks && last ? withKind(w.resource, last) : { apiVersion: GROUP_VERSION[w.resource], kind: KINDS[w.resource], metadata: {} };
    const object = { ...base, metadata: { ...(base.metadata as Record<string, unknown>), resourceVersion: String(rv), annotations: { ...((base.metadata as { annotations?: Record<string, string> }).annotations ?? {}), 'k8s.io/initial-events-end': 'true' } } };
    w.write({ type: 'BOOKMARK', object });
  }

  function put(r: KubeResource, obj: KubeObject): KubeObject {
    const ns = NAMESPACED[r] ? (obj.metadata.namespace ?? 'default') : undefined;
    const k = keyOf(r, ns ?? '', obj.metadata.name);
    const existing = store.get(k);
    const o = structuredClone(obj);
    delete o.apiVersion;
    delete o.kind;
    o.metadata = {
      ...o.metadata,
      ...(ns ? { namespace: ns } : {}),
      uid: existing?.metadata.uid ?? randomUUID(),
      resourceVersion: String(++rv),
      creationTimestamp: existing?.metadata.creationTimestamp ?? new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
    };
    if (r === 'pods' && !o['status']) o['status'] = { phase: 'Running' };
    store.set(k, o);
    notify(r, existing ? 'MODIFIED' : 'ADDED', o);
    return withKind(r, o);
  }

  function remove(r: KubeResource, ns: string, name: string): boolean {
    const k = keyOf(r, ns, name);
    const o = store.get(k);
    if (!o) return false;
    store.delete(k);
    o.metadata.resourceVersion = String(++rv);
    notify(r, 'DELETED', o);
    return true;
  }

  for (const ns of ['default', 'kube-system']) put('namespaces', { metadata: { name: ns } });

  /** A signed service-account token (a JWT of the stand-in's key), recorded in tokensIssued. */
  function mintToken(ns: string, name: string, audiences: string[], now: number, seconds: number): string {
    const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
    const sa = store.get(keyOf('serviceaccounts', ns, name)) as KubeObject;
    const claims = { aud: audiences, exp: now + seconds, iat: now, iss: 'https://kubernetes.default.svc.cluster.local', 'kubernetes.io': { namespace: ns, serviceaccount: { name, uid: sa.metadata.uid } }, nbf: now, sub: `system:serviceaccount:${ns}:${name}` };
    const token = `${b64url({ alg: 'RS256', kid: 'stand-in-signing-key' })}.${b64url(claims)}.${randomBytes(256).toString('base64url')}`;
    tokensIssued.push(token);
    return token;
  }

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? JSON.parse(text) : undefined;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://stand-in');
    // As Go's net/url, the path is routed decoded (`/%73ecrets` is `/secrets`).
    let path: string;
    try {
      path = decodeURIComponent(url.pathname).replace(/\/$/, '') || '/';
    } catch {
      return status(res, 400, 'BadRequest', `invalid URL escape in ${url.pathname}`);
    }
    const method = req.method ?? 'GET';
    if (path === '/version') {
      return json(res, 200, { major: '1', minor: '32', gitVersion: 'v1.32.0-standin', gitCommit: '0', gitTreeState: 'clean', buildDate: '2025-01-01T00:00:00Z', goVersion: 'go1.23', compiler: 'gc', platform: 'linux/amd64' });
    }
    if (path === '/api') {
      return json(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }] });
    }
    if (path === '/apis') {
      const apps = { groupVersion: 'apps/v1', version: 'v1' };
      return json(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [{ name: 'apps', versions: [apps], preferredVersion: apps }] });
    }
    if (path === '/api/v1') return json(res, 200, API_RESOURCES);
    if (path === '/apis/apps/v1') return json(res, 200, APPS_RESOURCES);
    if (path.startsWith('/openapi/v3')) return json(res, 200, { paths: {} });
    if (path.startsWith('/openapi')) return status(res, 404, 'NotFound', 'the server could not find the requested resource');

    // `pods/{name}/proxy/…`: the pod's HTTP server's answer relayed with its status, headers and body.
    const proxied = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/proxy(?:\/.*)?$/.exec(path);
    if (proxied) {
      const a = proxies.get(`${proxied[1]}/${proxied[2]}`);
      if (!a) return status(res, 503, 'ServiceUnavailable', 'error trying to reach service: dial tcp: connect: connection refused');
      const body = Buffer.isBuffer(a.body) ? a.body : Buffer.from(a.body, 'utf8');
      // The API server passes the client's Range on; a static file server (nginx) honours one
      // `bytes=a-b` range of a 200 answer with 206 and that slice.
      const range = /^bytes=(\d{1,9})-(\d{1,9})$/.exec(String(req.headers.range ?? ''));
      if (range && a.status === 200 && Number(range[1]) <= Number(range[2]) && Number(range[1]) < body.length) {
        const from = Number(range[1]);
        const to = Math.min(Number(range[2]), body.length - 1);
        res.writeHead(206, { ...a.headers, 'content-range': `bytes ${from}-${to}/${body.length}`, 'content-length': to - from + 1 });
        res.end(body.subarray(from, to + 1));
        return;
      }
      res.writeHead(a.status, { ...a.headers, 'content-length': body.length });
      res.end(body);
      return;
    }
    // `nodes/{node}/proxy/containerLogs/{ns}/{pod}/{container}`: the kubelet's own log
    // endpoint, relayed by the API server, with the same cuts (tailLines, limitBytes).
    const nodeLog = /^\/api\/v1\/nodes\/[^/]+\/proxy\/containerLogs\/([^/]+)\/([^/]+)\/[^/]+$/.exec(path);
    if (nodeLog && method === 'GET') {
      if (!store.has(keyOf('pods', nodeLog[1] as string, nodeLog[2] as string))) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`pod "${nodeLog[2]}" not found\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      for (const piece of logCut(logs.get(`${nodeLog[1]}/${nodeLog[2]}`) ?? [], url.searchParams)) res.write(piece);
      res.end();
      return;
    }
    const target = resourcePath(path);
    if (!target) return status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const { r, ns, name, sub } = target;
    if (sub === 'log' && r === 'pods' && method === 'GET') {
      if (!store.has(keyOf('pods', ns, name as string))) return status(res, 404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' });
      // As the real server streams a container's log: text/plain, chunked, written as it comes
      // (or under the codings `answerAs` forces).
      const te = api.answerAs?.transferEncoding;
      const ce = api.answerAs?.contentEncoding;
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': te ? `${te}, chunked` : 'chunked', ...(ce ? { 'content-encoding': ce } : {}) });
      res.flushHeaders();
      const pieces = logCut(logs.get(`${ns}/${name}`) ?? [], url.searchParams);
      if (te || ce) {
        res.end(te ? gzipSync(pieces.join('')) : compressed(Buffer.from(pieces.join(''), 'utf8'), ce ?? 'gzip'));
        return;
      }
      for (const piece of pieces) {
        res.write(piece);
        await new Promise((resolve) => setImmediate(resolve));
      }
      res.end();
      return;
    }
    // `serviceaccounts/{name}/token`: a TokenRequest in, the same with a signed token out (201).
    if (sub === 'token' && r === 'serviceaccounts' && method === 'POST') {
      const body = (await readJson(req).catch(() => undefined)) as { spec?: { audiences?: string[]; expirationSeconds?: number } } | undefined;
      if (!store.has(keyOf('serviceaccounts', ns, name as string))) return status(res, 404, 'NotFound', `serviceaccounts "${name}" not found`, { name, kind: 'serviceaccounts' });
      const seconds = body?.spec?.expirationSeconds ?? 3600;
      const audiences = body?.spec?.audiences ?? ['https://kubernetes.default.svc.cluster.local'];
      const now = Math.floor(Date.now() / 1000);
      const token = mintToken(ns, name as string, audiences, now, seconds);
      return json(res, 201, {
        kind: 'TokenRequest',
        apiVersion: 'authentication.k8s.io/v1',
        metadata: { name, namespace: ns, creationTimestamp: null },
        spec: { audiences, expirationSeconds: seconds, boundObjectRef: null },
        status: { token, expirationTimestamp: new Date((now + seconds) * 1000).toISOString().replace('.000Z', 'Z') },
      });
    }
    if (sub !== undefined) return status(res, 404, 'NotFound', `the server could not find the requested resource (${sub})`);
    const accept = String(req.headers['accept'] ?? '');
    const watch = url.searchParams.get('watch');
    const watching = method === 'GET' && name === undefined && (watch === '1' || watch === 'true');
    // The form asked for: negotiated as the real server does, else any `as=Table` in the header.
    const form = api.negotiates ? negotiate(accept, watching)?.as : /as=Table/.test(accept) ? 'Table' : undefined;
    const asTable = form === 'Table';
    const includeObject = url.searchParams.get('includeObject') ?? 'Metadata';
    const notFound = (): void => status(res, 404, 'NotFound', `${r} "${name}" not found`, { name, kind: r });
    const metadataOnly = (o: KubeObject): Record<string, unknown> => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: structuredClone(o.metadata) });

    if (method === 'GET' && name === undefined) {
      const field = /metadata\.name=([^,]+)/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
      if (watching) {
        const format = formatOf(req, true);
        if (format === undefined) return status(res, 406, 'NotAcceptable', 'no stream serializer fits the Accept header');
        const coding = api.answerAs?.contentEncoding;
        const te = api.answerAs?.transferEncoding;
        res.writeHead(200, {
          'content-type': api.negotiates || api.answerAs?.format ? STREAM_MEDIA_TYPE[format] : 'application/json',
          'transfer-encoding': te ? `${te}, chunked` : 'chunked',
          ...(coding ? { 'content-encoding': coding } : {}),
          'cache-control': 'no-cache, private',
        });
        res.flushHeaders();
        // A forced coding compresses the stream, flushed event by event.
        const gz = coding || te ? createGzip({ flush: zlibConstants.Z_SYNC_FLUSH }) : undefined;
        if (gz) gz.pipe(res);
        const out: { write(b: Buffer): unknown } = gz ?? res;
        let queue: Promise<void> = Promise.resolve();
        const w: Watcher = {
          resource: r,
          namespace: ns,
          name: field,
          table: asTable,
          includeObject,
          write: (event) => {
            const bytes = encodeWatchEvent(form === 'PartialObjectMetadata' ? { type: event.type, object: { ...event.object, kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1' } } : event, format);
            const n = api.splitWrites;
            if (!n) return void out.write(bytes);
            queue = queue.then(() => inPieces(out, bytes, n)).catch(() => {});
          },
          end: () => void queue.then(() => (gz ? gz.end() : res.end())).catch(() => {}),
          destroy: () => res.destroy(),
          firstTable: true,
        };
        watchers.add(w);
        const since = url.searchParams.get('resourceVersion');
        const initial = url.searchParams.get('sendInitialEvents') === 'true';
        if (!since || since === '0' || initial) {
          const all = matching(r, ns, field);
          for (const o of all) sendEvent(w, 'ADDED', o);
          if (initial && url.searchParams.get('allowWatchBookmarks') === 'true') sendBookmark(w, all.at(-1));
        } else if (!replay(w, Number(since))) {
          w.write({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${since} (${rv})`, reason: 'Expired', code: 410 } });
          w.end();
        }
        const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '0');
        const timer = timeout > 0 ? setTimeout(() => w.end(), timeout * 1000) : undefined;
        res.once('close', () => {
          clearTimeout(timer);
          if (watchers.delete(w)) watchesEnded++;
        });
        return;
      }
      // A page of the list (`limit`, `continue`: the index of the next item), as the real server chunks it.
      const all = matching(r, ns, field);
      const limit = Number(url.searchParams.get('limit') ?? '0');
      const start = Number(Buffer.from(url.searchParams.get('continue') ?? '', 'base64url').toString('utf8') || '0');
      const end = limit > 0 ? start + limit : all.length;
      const items = all.slice(start, end);
      const listMeta = { resourceVersion: String(rv), ...(end < all.length ? { continue: Buffer.from(String(end), 'utf8').toString('base64url'), remainingItemCount: all.length - end } : {}) };
      if (asTable) return json(res, 200, { ...table(r, items, includeObject), metadata: listMeta });
      if (form === 'PartialObjectMetadataList') return json(res, 200, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata: listMeta, items: items.map(metadataOnly) });
      return json(res, 200, { kind: `${KINDS[r]}List`, apiVersion: GROUP_VERSION[r], metadata: listMeta, items: items.map((o) => structuredClone(o)) });
    }
    if (method === 'GET') {
      const o = store.get(keyOf(r, ns, name as string));
      if (!o) return notFound();
      if (asTable) return json(res, 200, table(r, [o], includeObject));
      if (form === 'PartialObjectMetadata') return json(res, 200, metadataOnly(o));
      return json(res, 200, withKind(r, o));
    }
    // PATCH of one object, as the real server does it: RFC 6902 JSON Patch
    // (application/json-patch+json, ops add/remove/replace/copy/move/test) or RFC 7386 merge
    // patch (application/merge-patch+json, also accepted for strategic merge on these kinds);
    // `dryRun=All` answers with the patched object and stores nothing.
    if (method === 'PATCH' && name !== undefined) {
      const ctype = String(req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      const body = await readJson(req).catch(() => undefined);
      const o = store.get(keyOf(r, ns, name));
      if (!o) return notFound();
      let patched: KubeObject;
      try {
        if (ctype === 'application/json-patch+json') patched = jsonPatch(structuredClone(o), body);
        else if (ctype === 'application/merge-patch+json' || ctype === 'application/strategic-merge-patch+json') {
          if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('a merge patch must be a JSON object');
          patched = mergePatch(structuredClone(o), body) as KubeObject;
        }
        else return status(res, 415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`);
      } catch (err) {
        return status(res, 422, 'Invalid', (err as Error).message);
      }
      patched.metadata = { ...patched.metadata, name, ...(ns ? { namespace: ns } : {}) };
      if (r === 'pods') {
        const refused = podUpdateRefusal(name, o['spec'], patched['spec']);
        if (refused) return status(res, 422, 'Invalid', refused.message, { name, kind: 'Pod', causes: [{ reason: 'FieldValueForbidden', message: refused.cause, field: 'spec' }] });
      }
      if (url.searchParams.get('dryRun') === 'All') return json(res, 200, withKind(r, patched));
      return json(res, 200, withKind(r, put(r, patched)));
    }
    if ((method === 'POST' || method === 'PUT') && !/^application\/json\b/.test(String(req.headers['content-type'] ?? ''))) {
      req.resume();
      return status(res, 415, 'UnsupportedMediaType', `the stand-in only reads JSON bodies, not ${String(req.headers['content-type'] ?? 'none')}`);
    }
    // PUT of one object (update, `kubectl replace`): the body replaces it whole. As the real
    // server: the name must match the path, a stale resourceVersion is a 409 Conflict, and
    // these kinds are not created by an update (404).
    if (method === 'PUT' && name !== undefined) {
      const body = (await readJson(req).catch(() => undefined)) as KubeObject | undefined;
      if (!body || typeof body !== 'object' || !body.metadata) return status(res, 400, 'BadRequest', 'the body of the request was not a valid object');
      if (body.metadata.name !== name) return status(res, 400, 'BadRequest', `the name of the object (${String(body.metadata.name)}) does not match the name on the URL (${name})`);
      const o = store.get(keyOf(r, ns, name));
      if (!o) return notFound();
      const sent = body.metadata.resourceVersion;
      if (sent !== undefined && sent !== o.metadata.resourceVersion) {
        return status(res, 409, 'Conflict', `Operation cannot be fulfilled on ${r} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: r });
      }
      if (url.searchParams.get('dryRun') === 'All') return json(res, 200, withKind(r, { ...structuredClone(body), metadata: { ...body.metadata, namespace: ns || undefined } as KubeObject['metadata'] }));
      return json(res, 200, put(r, { ...body, metadata: { ...body.metadata, ...(ns ? { namespace: ns } : {}) } }));
    }
    if (method === 'POST' && name === undefined) {
      const body = (await readJson(req)) as KubeObject | undefined;
      if (!body?.metadata?.name) return status(res, 422, 'Invalid', `${KINDS[r]} is invalid: metadata.name: Required value`);
      if (store.has(keyOf(r, ns, body.metadata.name))) return status(res, 409, 'AlreadyExists', `${r} "${body.metadata.name}" already exists`, { name: body.metadata.name, kind: r });
      const created = put(r, { ...body, metadata: { ...body.metadata, ...(ns ? { namespace: ns } : {}) } });
      json(res, 201, created);
      // The token controller: a Secret of type service-account-token naming a service account
      // of its namespace gets a long-lived token for it (after the create is answered).
      const sa = created.metadata.annotations?.['kubernetes.io/service-account.name'];
      if (r === 'secrets' && created['type'] === 'kubernetes.io/service-account-token' && sa !== undefined && store.has(keyOf('serviceaccounts', ns, sa))) {
        const token = mintToken(ns, sa, ['https://kubernetes.default.svc.cluster.local'], Math.floor(Date.now() / 1000), 10 * 365 * 86400);
        const b64 = (v: string): string => Buffer.from(v, 'utf8').toString('base64');
        put(r, { ...created, data: { ...((created['data'] ?? {}) as Record<string, string>), token: b64(token), namespace: b64(ns) } });
      }
      return;
    }
    if (method === 'DELETE' && name !== undefined) {
      await readJson(req).catch(() => undefined);
      const o = store.get(keyOf(r, ns, name));
      if (!o) return notFound();
      remove(r, ns, name);
      return json(res, 200, withKind(r, o));
    }
    return status(res, 405, 'MethodNotAllowed', `${method} is not supported on ${r} by the stand-in`);
  }

  const server = https.createServer({ cert, key }, (req, res) => {
    record(req);
    if (req.headers.authorization !== `Bearer ${token}`) {
      status(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) status(res, 500, 'InternalError', err.message);
      else res.destroy();
    });
  });

  /** A watch asked for over WebSocket: 101, then each event as one text message. */
  function webSocketWatch(req: IncomingMessage, socket: Duplex, r: KubeResource, ns: string): void {
    const url = new URL(req.url ?? '/', 'https://stand-in');
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'] ?? '')}${WEBSOCKET_GUID}`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on('error', () => {});
    upgraded.add(socket);
    const field = /metadata\.name=([^,]+)/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
    const w: Watcher = {
      resource: r,
      namespace: ns,
      name: field,
      table: false,
      includeObject: 'Object',
      write: (event) => socket.write(wsFrame(0x1, Buffer.from(JSON.stringify(event), 'utf8'))),
      end: () => socket.end(wsFrame(0x8, Buffer.alloc(0))),
      destroy: () => socket.destroy(),
      firstTable: false,
    };
    watchers.add(w);
    socket.once('close', () => {
      upgraded.delete(socket);
      if (watchers.delete(w)) watchesEnded++;
    });
    for (const o of matching(r, ns, field)) sendEvent(w, 'ADDED', o);
  }

  /**
   * `kubectl exec -it` over the remote-command WebSocket protocol: a tiny line shell behind
   * a pretend tty — it echoes what is typed, answers `echo …` and `size` (the last resize,
   * channel 4), and `exit` ends with a Success status on channel 3.
   */
  function webSocketShell(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string, ns: string, pod: string): void {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'] ?? '')}${WEBSOCKET_GUID}`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`);
    socket.on('error', () => {});
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    const out = (channel: number, text: string): void => {
      if (socket.writable) socket.write(wsFrame(0x2, Buffer.concat([Buffer.from([channel]), Buffer.from(text, 'utf8')])));
    };
    let size: string | undefined;
    let line = '';
    let ended = false;
    const reader = new WsFrameReader((op, p) => {
      if (op === 0x8) {
        // The closing handshake: the client's answer to ours (or its own close) ends the connection.
        socket.end(ended ? undefined : wsFrame(0x8, Buffer.alloc(0)));
        return;
      }
      if (ended) return;
      if (op !== 0x2 || p.length === 0) return;
      if (p[0] === 4) {
        const r = JSON.parse(p.subarray(1).toString('utf8')) as { Width: number; Height: number };
        // The prompt once the terminal's size is known (kubectl sends it first).
        if (size === undefined) out(1, '$ ');
        size = `${r.Width}x${r.Height}`;
        return;
      }
      if (p[0] !== 0) return;
      for (const ch of p.subarray(1).toString('utf8')) {
        if (ch !== '\r') {
          line += ch;
          out(1, ch);
          continue;
        }
        out(1, '\r\n');
        const cmd = line;
        line = '';
        if (cmd === 'exit') {
          ended = true;
          out(3, JSON.stringify({ metadata: {}, status: 'Success' }));
          socket.write(wsFrame(0x8, Buffer.from([0x03, 0xe8])));
          return;
        }
        if (cmd.startsWith('cat ')) {
          // A file through the terminal (onlcr: \n becomes \r\n), its pieces and pauses as written; then the prompt.
          const pieces = fileOf(ns, pod, cmd.slice(4).trim());
          (async () => {
            for (const p of pieces ?? [`cat: ${cmd.slice(4).trim()}: No such file or directory\n`]) {
              if (typeof p === 'object' && !Buffer.isBuffer(p)) await new Promise((r) => setTimeout(r, p.pauseMs));
              else out(1, pieceBytes(p).toString('utf8').replace(/\r?\n/g, '\r\n'));
            }
            out(1, '$ ');
          })().catch(() => {});
          continue;
        }
        if (cmd.startsWith('echo ')) out(1, `${cmd.slice(5)}\r\n`);
        else if (cmd === 'size') out(1, `size-${size ?? 'unknown'}\r\n`);
        out(1, '$ ');
      }
    });
    socket.on('data', (b: Buffer) => reader.push(b));
    if (head.length > 0) reader.push(head);
  }

  /**
   * A command without a tty over the remote-command protocol, as the kubelet runs one:
   * `echo ARGS`, `printenv` (the first container's env from the stored pod), `chunks A B …`
   * (each argument its own stdout frame, then a newline), `noline N` (N bytes with no line
   * break, in 64 KiB frames), `fail ARGS` (ARGS on stderr, exit 3); anything else echoes each stdin
   * message on stdout until stdin closes (v5's close message) — the exec ends with its
   * status on channel 3 and a WebSocket close.
   */
  function webSocketCommand(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string, ns: string, pod: string): void {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'] ?? '')}${WEBSOCKET_GUID}`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`);
    socket.on('error', () => {});
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    const out = (channel: number, data: string | Buffer): void => {
      if (socket.writable) socket.write(wsFrame(0x2, Buffer.concat([Buffer.from([channel]), Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8')])));
    };
    let ended = false;
    const exit = (code: number): void => {
      if (ended) return;
      ended = true;
      const status =
        code === 0
          ? { metadata: {}, status: 'Success' }
          : { metadata: {}, status: 'Failure', message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(code) }] } };
      out(3, JSON.stringify(status));
      if (socket.writable) socket.write(wsFrame(0x8, Buffer.from([0x03, 0xe8])));
    };
    const command = new URL(req.url ?? '/', 'https://stand-in').searchParams.getAll('command');
    const [name, ...args] = command;
    const reader = new WsFrameReader((op, p) => {
      if (op === 0x8) {
        socket.end(ended ? undefined : wsFrame(0x8, Buffer.alloc(0)));
        return;
      }
      if (ended || op !== 0x2 || p.length === 0) return;
      if (p[0] === 0 && p.length > 1) {
        out(1, p.subarray(1));
        if (api.execPeer === 'ends-after-echo') socket.end();
      }
      // v5: the client closed its stdin.
      if (p[0] === 255 && p[1] === 0) exit(0);
    });
    socket.on('data', (b: Buffer) => reader.push(b));
    if (api.execPeer === 'ignores-eof') (socket as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
    else socket.once('end', () => socket.end());
    if (head.length > 0) reader.push(head);
    // The command starts a moment after the switch, as a kubelet's process does: kubectl
    // registers its streams only once the connection is up, and drops what comes before.
    const run = (): void => {
      switch (name) {
        case 'echo':
          out(1, `${args.join(' ')}\n`);
          return exit(0);
        case 'printenv': {
          // A variable from a Secret (valueFrom.secretKeyRef) holds the Secret's value, as the kubelet sets it.
          const env = podSpec(ns, pod)?.containers?.[0]?.env ?? [];
          const value = (e: (typeof env)[number]): string => e.value ?? (e.valueFrom?.secretKeyRef ? (secretValue(ns, e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key) ?? '') : '');
          out(1, `HOSTNAME=${pod}\n${env.map((e) => `${e.name}=${value(e)}\n`).join('')}`);
          return exit(0);
        }
        case 'cat': {
          // `cat FILE…`: each file's pieces as the container writes them; `cat` alone echoes stdin (below).
          if (args.length === 0) break;
          (async () => {
            let code = 0;
            for (const f of args) {
              const pieces = fileOf(ns, pod, f);
              if (!pieces) {
                out(2, `cat: ${f}: No such file or directory\n`);
                code = 1;
                continue;
              }
              for (const p of pieces) {
                if (typeof p === 'object' && !Buffer.isBuffer(p)) await new Promise((r) => setTimeout(r, p.pauseMs));
                else out(1, pieceBytes(p));
              }
            }
            exit(code);
          })().catch(() => {});
          return;
        }
        case 'tar': {
          // `tar cf - [-C DIR] FILE` (kubectl cp from the pod): a ustar archive on stdout.
          const c = args.indexOf('-C');
          const dir = c >= 0 ? (args[c + 1] ?? '') : '';
          const file = args.filter((a, i) => i > 1 && a !== '-C' && args[i - 1] !== '-C').at(-1) ?? '';
          const path = dir ? `${dir.replace(/\/$/, '')}/${file}` : file;
          const pieces = fileOf(ns, pod, path);
          if (!pieces) {
            out(2, `tar: ${path}: Cannot stat: No such file or directory\n`);
            return exit(2);
          }
          out(1, tarOf(file.replace(/^\//, ''), Buffer.concat(pieces.map(pieceBytes))));
          return exit(0);
        }
        case 'frames': {
          // Raw WebSocket frames exactly as given (base64 each), `sleep:MS` between: how a
          // server frames its side (fragments, control frames, statuses). No status is added.
          ended = true;
          (async () => {
            for (const a of args) {
              if (a.startsWith('sleep:')) await new Promise((r) => setTimeout(r, Number(a.slice(6))));
              else if (socket.writable) socket.write(Buffer.from(a, 'base64'));
            }
          })().catch(() => {});
          return;
        }
        case 'chunks':
          for (const a of args) out(1, a);
          out(1, '\n');
          return exit(0);
        case 'noline': {
          let left = Number(args[0] ?? 0);
          while (left > 0) {
            const n = Math.min(left, 65536);
            out(1, Buffer.alloc(n, 'x'));
            left -= n;
          }
          out(1, '\n');
          return exit(0);
        }
        case 'fail':
          out(2, `${args.join(' ')}\n`);
          return exit(3);
      }
    };
    setTimeout(run, 100);
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    record(req);
    if (req.headers.authorization !== `Bearer ${token}`) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    if (api.breakUpgradeAnswers) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"kind":"Status","message":"pods');
      return;
    }
    if (api.upgradeAnswer) {
      const a = api.upgradeAnswer;
      socket.end(`HTTP/1.1 ${a.status} Answer\r\nContent-Type: ${a.contentType}\r\n${a.encoding ? `Content-Encoding: ${a.encoding}\r\n` : ''}Content-Length: ${Buffer.byteLength(a.body)}\r\nConnection: close\r\n\r\n${a.body}`);
      return;
    }
    const watchUrl = new URL(req.url ?? '/', 'https://stand-in');
    const watchTarget = resourcePath(watchUrl.pathname.replace(/\/$/, ''));
    const watching = ['1', 'true'].includes(watchUrl.searchParams.get('watch') ?? '');
    if (watchTarget && watching && watchTarget.name === undefined && String(req.headers.upgrade ?? '').toLowerCase() === 'websocket') {
      webSocketWatch(req, socket, watchTarget.r, watchTarget.ns);
      return;
    }
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)$/.exec((req.url ?? '').split('?')[0] ?? '');
    if (!m || !store.has(keyOf('pods', m[1] as string, m[2] as string))) {
      // Like the real server: not switched, so the connection stays an HTTP connection
      // (keep-alive), and whatever the client sends next is parsed as its next request.
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'pods not found', reason: 'NotFound', code: 404 });
      socket.write(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      if (head.length > 0) socket.unshift(head);
      server.emit('connection', socket);
      return;
    }
    const proto = req.headers['sec-websocket-protocol'];
    const channelProto = String(proto ?? '')
      .split(',')
      .map((x) => x.trim())
      .find((x) => x === 'v5.channel.k8s.io' || x === 'v4.channel.k8s.io');
    // An exec or attach over the remote-command protocol is run (a tty gets the little
    // shell); anything else gets the raw echo.
    const tty = new URL(req.url ?? '/', 'https://stand-in').searchParams.get('tty') === 'true';
    if (String(req.headers.upgrade ?? '').toLowerCase() === 'websocket' && channelProto && m[3] !== 'portforward') {
      if (tty) webSocketShell(req, socket, head, channelProto, m[1] as string, m[2] as string);
      else webSocketCommand(req, socket, head, channelProto, m[1] as string, m[2] as string);
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\n' +
        `Upgrade: ${req.headers.upgrade ?? ''}\r\nConnection: Upgrade\r\n` +
        (proto ? `Sec-WebSocket-Protocol: ${String(proto).split(',')[0]?.trim()}\r\n` : '') +
        '\r\n',
    );
    if (head.length > 0) socket.write(head);
    socket.on('error', () => {});
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    if (api.execPeer === 'ends-after-echo') socket.once('data', (b: Buffer) => socket.end(b));
    else {
      // Ignoring EOF takes a half-open socket: otherwise Node ends it on the peer's end.
      if (api.execPeer === 'ignores-eof') (socket as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
      socket.pipe(socket, { end: api.execPeer === 'echo' });
    }
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;

  const api: KubeApiServer = {
    negotiates: false,
    answerAs: undefined,
    splitWrites: undefined,
    fatBookmarks: false,
    breakUpgradeAnswers: false,
    execPeer: 'echo',
    upgradeAnswer: undefined,
    url: `https://127.0.0.1:${port}`,
    caPem: cert,
    token,
    requests,
    brokerRequests,
    tokensIssued,
    put,
    remove,
    get: (r, ns, name) => {
      const o = store.get(keyOf(r, ns, name));
      return o ? withKind(r, o) : undefined;
    },
    watchers: (r) => [...watchers].filter((w) => r === undefined || w.resource === r).length,
    endWatches() {
      for (const w of watchers) w.end();
    },
    setLog(namespace, pod, pieces) {
      logs.set(`${namespace}/${pod}`, [...pieces]);
    },
    setFile(namespace, pod, path, pieces) {
      files.set(`${namespace}/${pod}:${path}`, [...pieces]);
    },
    setProxy(namespace, pod, answer) {
      if (answer) proxies.set(`${namespace}/${pod}`, answer);
      else proxies.delete(`${namespace}/${pod}`);
    },
    get watchesEnded() {
      return watchesEnded;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const w of watchers) w.destroy();
        for (const s of upgraded) s.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return api;
}

const POD_UPDATABLE = '`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';

/**
 * The real server's refusal of a pod update that changes more than images: `Forbidden`
 * with a diff of the old and new spec in Go syntax (cmp.Diff), whose context prints the
 * neighbouring fields in full — a container's env values included.
 */
function podUpdateRefusal(name: string, before: unknown, after: unknown): { message: string; cause: string } | undefined {
  const norm = (spec: unknown): Record<string, unknown> => {
    const s = structuredClone((spec ?? {}) as Record<string, unknown>);
    for (const c of (s['containers'] ?? []) as Record<string, unknown>[]) delete c['image'];
    return s;
  };
  if (JSON.stringify(norm(before)) === JSON.stringify(norm(after))) return undefined;
  const oldSpec = (before ?? {}) as Record<string, unknown>;
  const newSpec = (after ?? {}) as Record<string, unknown>;
  const lines = ['  core.PodSpec{'];
  const keys = [...new Set([...Object.keys(oldSpec), ...Object.keys(newSpec)])];
  const changed = keys.map((k) => JSON.stringify(oldSpec[k]) !== JSON.stringify(newSpec[k]));
  keys.forEach((k, i) => {
    const field = `${k.charAt(0).toUpperCase()}${k.slice(1)}`;
    if (changed[i]) {
      lines.push(`- \t${field}: ${goValue(oldSpec[k])},`, `+ \t${field}: ${goValue(newSpec[k])},`);
    } else if (changed[i - 1] || changed[i + 1]) lines.push(`  \t${field}: ${goValue(oldSpec[k])},`);
  });
  lines.push('  }');
  const cause = `Forbidden: pod updates may not change fields other than ${POD_UPDATABLE}\n${lines.join('\n')}\n`;
  return { message: `Pod "${name}" is invalid: spec: ${cause}`, cause };
}

/** A JSON value printed the way Go's cmp prints a struct value (`{Name: "A", Value: "x"}`). */
function goValue(v: unknown): string {
  if (v === undefined || v === null) return 'nil';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return `{${v.map(goValue).join(', ')}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `${k.charAt(0).toUpperCase()}${k.slice(1)}: ${goValue(x)}`)
    .join(', ')}}`;
}

/** RFC 6901 pointer tokens. */
function pointer(p: unknown): string[] {
  if (typeof p !== 'string' || (p !== '' && !p.startsWith('/'))) throw new Error(`invalid JSON pointer ${String(p)}`);
  return p === '' ? [] : p.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function getAt(doc: unknown, toks: string[]): unknown {
  let cur: unknown = doc;
  for (const t of toks) {
    if (cur === null || typeof cur !== 'object' || !(t in (cur as Record<string, unknown>))) throw new Error(`the path ${toks.join('/')} does not exist`);
    cur = (cur as Record<string, unknown>)[t];
  }
  return cur;
}

function setAt(doc: unknown, toks: string[], value: unknown, op: 'add' | 'replace' | 'remove'): void {
  const parent = getAt(doc, toks.slice(0, -1)) as Record<string, unknown> | unknown[];
  const last = toks[toks.length - 1] as string;
  if (Array.isArray(parent)) {
    const i = last === '-' && op === 'add' ? parent.length : /^(0|[1-9]\d*)$/.test(last) ? Number(last) : NaN;
    // RFC 6902: an index past the end (add: the length itself is allowed) is an error.
    if (Number.isNaN(i) || i > parent.length || (op !== 'add' && i >= parent.length)) throw new Error(`the array index ${last} is out of range`);
    if (op === 'add') parent.splice(i, 0, value);
    else if (op === 'replace') parent[i] = value;
    else parent.splice(i, 1);
    return;
  }
  if (parent === null || typeof parent !== 'object') throw new Error(`the path ${toks.join('/')} has no parent object`);
  // RFC 6902: replace and remove need the member to exist; add creates or replaces it.
  if (op !== 'add' && !(last in parent)) throw new Error(`the path ${toks.join('/')} does not exist`);
  if (op === 'remove') delete parent[last];
  else parent[last] = value;
}

/** RFC 6902 JSON Patch (what the API server applies for application/json-patch+json). */
function jsonPatch(doc: KubeObject, ops: unknown): KubeObject {
  if (!Array.isArray(ops)) throw new Error('a JSON patch must be an array of operations');
  for (const op of ops as Record<string, unknown>[]) {
    const path = pointer(op['path']);
    switch (op['op']) {
      case 'add':
      case 'replace':
        setAt(doc, path, structuredClone(op['value']), op['op']);
        break;
      case 'remove':
        setAt(doc, path, undefined, 'remove');
        break;
      case 'copy':
        setAt(doc, path, structuredClone(getAt(doc, pointer(op['from']))), 'add');
        break;
      case 'move': {
        const from = pointer(op['from']);
        const v = getAt(doc, from);
        setAt(doc, from, undefined, 'remove');
        setAt(doc, path, v, 'add');
        break;
      }
      case 'test':
        if (JSON.stringify(getAt(doc, path)) !== JSON.stringify(op['value'])) throw new Error('testing value failed');
        break;
      default:
        throw new Error(`unknown JSON patch operation ${String(op['op'])}`);
    }
  }
  return doc;
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? (target as Record<string, unknown>) : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * The kubelet's cuts of a container log: `tailLines` keeps the last N lines, then
 * `limitBytes` the first N bytes of what is left (which may end inside a line, or inside a
 * character). A cut log goes out as one piece.
 */
function logCut(pieces: readonly string[], query: URLSearchParams): string[] {
  const tail = query.get('tailLines');
  const limit = query.get('limitBytes');
  if (tail === null && limit === null) return [...pieces];
  let text = Buffer.from(pieces.join(''), 'utf8');
  if (tail !== null) {
    const lines = text.toString('utf8').split(/(?<=\n)/);
    text = Buffer.from(lines.slice(Math.max(0, lines.length - Number(tail))).join(''), 'utf8');
  }
  if (limit !== null) text = text.subarray(0, Number(limit));
  return [text.toString('utf8')];
}
