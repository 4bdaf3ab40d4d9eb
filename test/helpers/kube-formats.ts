/**
 * The wire formats a real Kubernetes API server answers in, for the stand-in
 * (kube-apiserver.ts): content negotiation over `Accept` as the server does it (media
 * ranges by preference, `q=0` refused, `*` matching its first serializer, the `as=Table` /
 * `as=PartialObjectMetadata` forms), and the encodings themselves — JSON (optionally
 * pretty), YAML, Kubernetes protobuf (the `k8s\0` magic, then a `runtime.Unknown`
 * envelope; a watch frames each event with a 4-byte length) and CBOR (the self-describing
 * tag; a watch as a CBOR sequence).
 *
 * The protobuf and CBOR bodies are opaque but realistic: what matters to a test is that
 * their bytes carry the object's strings verbatim and a Secret's `data` as raw bytes (not
 * base64), as the real encodings do — so a body relayed unread would carry the values.
 */
import { stringify as toYaml } from 'yaml';

export type WireFormat = 'json' | 'yaml' | 'protobuf' | 'cbor';

export const MEDIA_TYPE: Record<WireFormat, string> = {
  json: 'application/json',
  yaml: 'application/yaml',
  protobuf: 'application/vnd.kubernetes.protobuf',
  cbor: 'application/cbor',
};

/** The media type a watch stream of each format is answered with. */
export const STREAM_MEDIA_TYPE: Record<WireFormat, string> = {
  json: 'application/json;stream=watch',
  yaml: 'application/yaml',
  protobuf: 'application/vnd.kubernetes.protobuf;stream=watch',
  cbor: 'application/cbor-seq',
};

export interface Negotiated {
  format: WireFormat;
  /** `Table`, `PartialObjectMetadata`, `PartialObjectMetadataList`, or undefined for the object itself. */
  as: string | undefined;
}

/** One media range of an Accept header: its type and its parameters (values unquoted). */
interface MediaRange {
  type: string;
  params: Map<string, string>;
  q: number;
}

/** Splits on `sep` outside double quotes (a quoted parameter may hold a comma or a semicolon). */
function splitOutsideQuotes(text: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '"') quoted = !quoted;
    if (c === '\\' && quoted && i + 1 < text.length) {
      cur += c + (text[++i] as string);
      continue;
    }
    if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function parseAccept(accept: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const part of splitOutsideQuotes(accept, ',')) {
    const [type, ...rest] = splitOutsideQuotes(part, ';').map((s) => s.trim());
    if (!type) continue;
    const params = new Map<string, string>();
    for (const p of rest) {
      const eq = p.indexOf('=');
      if (eq < 0) continue;
      params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
    }
    const q = params.has('q') ? Number(params.get('q')) : 1;
    ranges.push({ type: type.toLowerCase(), params, q: Number.isFinite(q) ? q : 1 });
  }
  // Most preferred first; equal preferences keep their order.
  return ranges.map((r, i) => ({ r, i })).sort((a, b) => b.r.q - a.r.q || a.i - b.i).map(({ r }) => r);
}

/**
 * What the server answers in for this Accept header, or undefined (406 Not Acceptable).
 * `stream`: a watch, which YAML cannot carry.
 */
export function negotiate(accept: string | undefined, stream: boolean): Negotiated | undefined {
  if (!accept || accept.trim() === '') return { format: 'json', as: undefined };
  const serializers: [string, WireFormat][] = [
    ['application/json', 'json'],
    ['application/yaml', 'yaml'],
    ['application/vnd.kubernetes.protobuf', 'protobuf'],
    ['application/cbor', 'cbor'],
    ['application/cbor-seq', 'cbor'],
  ];
  for (const range of parseAccept(accept)) {
    if (range.q <= 0) continue;
    const match = serializers.find(([type, format]) => (range.type === type || range.type === '*/*' || range.type === `${type.split('/')[0] as string}/*`) && !(stream && format === 'yaml'));
    if (!match) continue;
    const as = range.params.get('as');
    if (as !== undefined && !['Table', 'PartialObjectMetadata', 'PartialObjectMetadataList'].includes(as)) continue;
    if (as !== undefined && range.params.get('g') !== 'meta.k8s.io') continue;
    return { format: match[1], as };
  }
  return undefined;
}

/** A copy with a Secret's `data` and a ConfigMap's `binaryData` as bytes, as the binary encodings carry them. */
function withBytes(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withBytes);
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return v;
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(o)) {
    const bytes = (k === 'data' && o['kind'] === 'Secret') || k === 'binaryData';
    if (bytes && val !== null && typeof val === 'object') {
      out[k] = Object.fromEntries(Object.entries(val as Record<string, unknown>).map(([dk, dv]) => [dk, typeof dv === 'string' ? Buffer.from(dv, 'base64') : dv]));
    } else out[k] = withBytes(val);
  }
  return out;
}

// ─────────────────────────────── protobuf ───────────────────────────────

const PROTOBUF_MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = Math.max(0, Math.floor(n));
  while (v > 0x7f) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

function field(n: number, payload: Buffer): Buffer {
  return Buffer.concat([varint((n << 3) | 2), varint(payload.length), payload]);
}

/** A value as protobuf fields: strings and bytes verbatim, maps as key/value entries, lists repeated. */
function protoValue(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (typeof v === 'number' || typeof v === 'boolean') return Buffer.concat([varint(8), varint(Number(v))]);
  if (v === null || v === undefined) return Buffer.alloc(0);
  if (Array.isArray(v)) return Buffer.concat(v.map((x) => field(1, protoValue(x))));
  return Buffer.concat(Object.entries(v as Record<string, unknown>).map(([k, x]) => field(1, Buffer.concat([field(1, Buffer.from(k, 'utf8')), field(2, protoValue(x))]))));
}

/** `k8s\0` + runtime.Unknown{typeMeta, raw, contentEncoding, contentType}. */
function protobufDocument(doc: Record<string, unknown>): Buffer {
  const typeMeta = Buffer.concat([field(1, Buffer.from(String(doc['apiVersion'] ?? 'v1'), 'utf8')), field(2, Buffer.from(String(doc['kind'] ?? ''), 'utf8'))]);
  return Buffer.concat([PROTOBUF_MAGIC, field(1, typeMeta), field(2, protoValue(withBytes(doc))), field(3, Buffer.alloc(0)), field(4, Buffer.alloc(0))]);
}

// ─────────────────────────────── CBOR ───────────────────────────────

/** CBOR (RFC 8949) of JSON-like values, Buffers as byte strings; `tagged`: the self-describing tag the API server writes first. */
export function cbor(v: unknown, tagged = true): Buffer {
  const head = (major: number, n: number): Buffer => {
    if (n < 24) return Buffer.from([(major << 5) | n]);
    if (n < 256) return Buffer.from([(major << 5) | 24, n]);
    const b = Buffer.alloc(5);
    b[0] = (major << 5) | 26;
    b.writeUInt32BE(n, 1);
    return b;
  };
  const item = (x: unknown): Buffer => {
    if (x === null || x === undefined) return Buffer.from([0xf6]);
    if (x === true) return Buffer.from([0xf5]);
    if (x === false) return Buffer.from([0xf4]);
    if (Buffer.isBuffer(x)) return Buffer.concat([head(2, x.length), x]);
    if (typeof x === 'string') {
      const s = Buffer.from(x, 'utf8');
      return Buffer.concat([head(3, s.length), s]);
    }
    if (typeof x === 'number') return head(0, x);
    if (Array.isArray(x)) return Buffer.concat([head(4, x.length), ...x.map(item)]);
    const entries = Object.entries(x as Record<string, unknown>);
    return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, val]) => [item(k), item(val)])]);
  };
  return Buffer.concat([tagged ? Buffer.from([0xd9, 0xd9, 0xf7]) : Buffer.alloc(0), item(v)]);
}

// ─────────────────────────────── encoding ───────────────────────────────

/** One response document in a format (`pretty`: JSON indented, as `?pretty=true` asks). */
export function encodeDocument(doc: Record<string, unknown>, format: WireFormat, pretty = false): Buffer {
  switch (format) {
    case 'json':
      return Buffer.from(pretty ? `${JSON.stringify(doc, null, 2)}\n` : JSON.stringify(doc), 'utf8');
    case 'yaml':
      return Buffer.from(toYaml(doc), 'utf8');
    case 'protobuf':
      return protobufDocument(doc);
    case 'cbor':
      return cbor(withBytes(doc));
  }
}

/** One watch event as it goes on the wire: a JSON line, a length-prefixed protobuf frame, a CBOR sequence item. */
export function encodeWatchEvent(event: { type: string; object: Record<string, unknown> }, format: WireFormat): Buffer {
  switch (format) {
    case 'protobuf': {
      const raw = protobufDocument(event.object);
      const watchEvent = Buffer.concat([field(1, Buffer.from(event.type, 'utf8')), field(2, field(1, raw))]);
      const typeMeta = Buffer.concat([field(1, Buffer.from('meta.k8s.io/v1', 'utf8')), field(2, Buffer.from('WatchEvent', 'utf8'))]);
      const frame = Buffer.concat([PROTOBUF_MAGIC, field(1, typeMeta), field(2, watchEvent)]);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(frame.length);
      return Buffer.concat([len, frame]);
    }
    case 'cbor':
      return cbor(withBytes(event), false);
    default:
      return Buffer.from(`${JSON.stringify(event)}\n`, 'utf8');
  }
}

/** Whether an Accept-Encoding header accepts gzip (a `q=0` refuses it). */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  for (const part of (acceptEncoding ?? '').split(',')) {
    const [coding, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}
