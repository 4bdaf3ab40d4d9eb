/**
 * Which request and response headers cross the proxy. The client's credentials never go
 * upstream (the broker's replace them), nor do hop-by-hop headers, and for the resources
 * we mask the response is asked for as uncompressed JSON.
 */
import type { IncomingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
/** Credentials of the local hop, and front-proxy identity headers the API server may trust. */
const NEVER_UPSTREAM = new Set(['authorization', 'proxy-authorization', 'cookie', 'expect', 'x-agentgate-reason']);

function droppedUpstream(name: string): boolean {
  const n = name.toLowerCase();
  return HOP_BY_HOP.has(n) || NEVER_UPSTREAM.has(n) || n.startsWith('x-remote-') || n.startsWith('impersonate-');
}

/** `Impersonate-User` and friends (`kubectl --as`): acting as someone else is never passed on. */
export function impersonationHeaders(headers: IncomingHttpHeaders): string[] {
  return Object.keys(headers).filter((h) => h.toLowerCase().startsWith('impersonate-'));
}

export interface UpstreamHeaderOptions {
  authorization: string | undefined;
  /**
   * The response will be rewritten: it is asked for as JSON (jsonAccept: never protobuf,
   * CBOR or YAML) and uncompressed. A log (text/plain whatever the Accept) answers its
   * errors in the negotiated form, which must be JSON too.
   */
  forMasking: boolean;
  /** The body was buffered: its exact length. */
  bodyLength?: number;
}

export function upstreamHeaders(headers: IncomingHttpHeaders, o: UpstreamHeaderOptions): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || droppedUpstream(name)) continue;
    out[name] = value;
  }
  // Declared by the client as a hop-by-hop header: drop those too.
  const conn = headers['connection'];
  if (typeof conn === 'string') for (const n of conn.split(',')) delete out[n.trim().toLowerCase()];
  if (o.authorization) out['authorization'] = o.authorization;
  if (o.forMasking) {
    out['accept'] = jsonAccept(headers['accept']);
    out['accept-encoding'] = 'identity';
    // A byte range lets the client choose where the answer is cut (a proxied file server
    // honours it): a value cut there has lost the shape the detectors know. Asked for whole.
    delete out['range'];
    delete out['if-range'];
  }
  if (o.bodyLength !== undefined) {
    delete out['transfer-encoding'];
    out['content-length'] = String(o.bodyLength);
  }
  return out;
}

/**
 * Query parameters with which a client chooses where a text answer starts or ends: the log
 * options the API server passes to the kubelet, and the kubelet takes on its own endpoints
 * (`nodes/…/proxy/containerLogs/…`, `/logs/`) however the request reaches it.
 */
const CUT_PARAMS = ['tailLines', 'limitBytes', 'sinceTime', 'sinceSeconds'];

/**
 * Whether a text answer may start or end where the client chose (masked as cut, see
 * masking/text-stream.ts): a container log, a request carrying a log cut in its query, or
 * an answer that says it is a part (206, Content-Range) of something longer.
 */
export function clientCutAnswer(url: string, status: number, headers: Record<string, string | string[] | undefined>, log: boolean): boolean {
  if (log || status === 206 || headers['content-range'] !== undefined) return true;
  const q = url.indexOf('?');
  if (q < 0) return false;
  const params = new URLSearchParams(url.slice(q + 1));
  // Parameter names are matched without regard to case: a backend's own parser may not care.
  return [...params.keys()].some((k) => CUT_PARAMS.some((c) => c.toLowerCase() === k.toLowerCase()));
}

/** Media types the API server serializes objects in; each is asked for as JSON instead. `*` ranges may pick any of them. */
const SERIALIZED = new Set(['application/json', 'application/yaml', 'application/vnd.kubernetes.protobuf', 'application/cbor', 'application/cbor-seq', '*/*', 'application/*']);
/** Parameters that choose the form of the answer (`as=Table;g=meta.k8s.io;v=v1`), kept; any other is dropped. */
const FORM_PARAMS = new Set(['as', 'g', 'v']);
/** A parameter value passed on: a plain token (a quoted value is unquoted first). */
const TOKEN = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The Accept header asked of the API server for a response agentgate rewrites: each of the
 * client's media ranges that names a serialized form (JSON, YAML, protobuf, CBOR, `*`) is
 * asked for as JSON with the same form parameters (a protobuf Table becomes a JSON Table),
 * most preferred first; ranges the client refuses (`q=0`) and every other type are
 * dropped. Plain JSON when nothing is left. What is sent is rebuilt from tokens, never
 * copied: the API server reads exactly the ranges judged here.
 */
export function jsonAccept(accept: string | string[] | undefined): string {
  const ranges: { range: string; q: number; i: number }[] = [];
  const all = Array.isArray(accept) ? accept.join(',') : (accept ?? '');
  splitOutsideQuotes(all, ',').forEach((part, i) => {
    const [type = '', ...params] = splitOutsideQuotes(part, ';').map((p) => p.trim());
    if (!SERIALIZED.has(type.toLowerCase())) return;
    let q = 1;
    const kept: string[] = [];
    for (const p of params) {
      const eq = p.indexOf('=');
      if (eq < 0) continue;
      const name = p.slice(0, eq).trim().toLowerCase();
      const value = unquoted(p.slice(eq + 1).trim());
      if (name === 'q') q = Number(value);
      else if (FORM_PARAMS.has(name) && TOKEN.test(value)) kept.push(`${name}=${value}`);
    }
    // A malformed q is no preference the client stated: the range is dropped, as one refused.
    if (!(q > 0)) return;
    ranges.push({ range: ['application/json', ...kept].join(';'), q, i });
  });
  const ordered = ranges.sort((a, b) => b.q - a.q || a.i - b.i).map((r) => r.range);
  const unique = [...new Set(ordered)];
  return unique.length > 0 ? unique.join(',') : 'application/json';
}

/** Splits on `sep` outside double-quoted strings (a quoted parameter may hold `,` or `;`). */
function splitOutsideQuotes(text: string, sep: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quoted && c === 0x5c) i++;
    else if (c === 0x22) quoted = !quoted;
    else if (!quoted && text[i] === sep) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

function unquoted(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/**
 * Why a response's codings keep agentgate from reading its body, or undefined when it can:
 * a Content-Encoding other than identity (gzip, br, deflate…), or a Transfer-Encoding other
 * than plain `chunked` — the HTTP client removes the chunk framing but no other transfer
 * coding, so `gzip, chunked` would hand over compressed bytes as if they were the body.
 */
export function unreadableCoding(headers: Record<string, string | string[] | undefined>): string | undefined {
  const list = (v: string | string[] | undefined): string[] =>
    (Array.isArray(v) ? v.join(',') : (v ?? ''))
      .split(',')
      .map((c) => c.trim().toLowerCase())
      .filter((c) => c !== '');
  const content = list(headers['content-encoding']).filter((c) => c !== 'identity');
  if (content.length > 0) return content.join(', ').slice(0, 60);
  const transfer = list(headers['transfer-encoding']);
  if (transfer.some((c) => c !== 'chunked') || transfer.length > 1) return `transfer-encoding ${transfer.join(', ')}`.slice(0, 60);
  return undefined;
}

const RESPONSE_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate']);

/** Response headers for the client; `rewritten` drops what no longer describes the body. */
export function clientHeaders(headers: Record<string, string | string[] | undefined>, rewritten: boolean, mask?: HeaderMask): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    const n = name.toLowerCase();
    if (value === undefined || RESPONSE_DROP.has(n)) continue;
    if (rewritten && (n === 'content-length' || n === 'content-encoding' || n === 'etag' || n === 'content-md5')) continue;
    out[n] = mask ? (Array.isArray(value) ? value.map((v) => mask(v, n)) : mask(value, n)) : value;
  }
  return out;
}

/** A response header's value as the client may see it (a proxied pod answers with any header it likes). */
export type HeaderMask = (value: string, name: string) => string;

/** The handshake's own headers, never masked: a hash of the client's key, the switch itself. */
const HANDSHAKE = new Set(['sec-websocket-accept', 'upgrade', 'connection']);

/** Raw headers (name, value, …) with each value masked (the handshake's own aside). */
export function maskedRawHeaders(rawHeaders: readonly string[], mask: HeaderMask | undefined): string[] {
  if (!mask) return [...rawHeaders];
  return rawHeaders.map((v, i) => {
    const name = (rawHeaders[i - 1] ?? '').toLowerCase();
    return i % 2 === 1 && !HANDSHAKE.has(name) ? mask(v, name) : v;
  });
}

/**
 * Whether a body's declared charset is one the detectors read: they look for ASCII
 * patterns, so any ASCII-compatible encoding is; UTF-16 or UTF-32 text would pass unseen.
 */
export function readableCharset(contentType: string): boolean {
  const m = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType);
  if (!m) return true;
  return ['utf-8', 'utf8', 'us-ascii', 'ascii', 'iso-8859-1', 'latin1', 'windows-1252'].includes(m[1]!.toLowerCase());
}

/**
 * Whether an error body that is not JSON may be scanned as text: text, JSON-like, XML or
 * YAML, or no declared type. A binary form (CBOR, protobuf, octet-stream, images…) is not
 * text, whatever its status: the detectors cannot read it, so it is refused, never relayed.
 */
export function textualBody(contentType: string): boolean {
  const t = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return t === '' || t.startsWith('text/') || ['application/json', 'application/xml', 'application/yaml', 'application/problem+json'].includes(t) || /^application\/[\w.-]+\+(?:json|xml|yaml)$/.test(t);
}

/**
 * The headers of an upgraded request as sent upstream, in node's raw form (name, value,
 * name, value…): repeated headers such as `X-Stream-Protocol-Version` stay repeated.
 */
export function upgradeRequestHeaders(rawHeaders: readonly string[], host: string, authorization: string | undefined, protocols?: readonly string[]): string[] {
  const out = ['Host', host];
  if (authorization) out.push('Authorization', authorization);
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const n = name.toLowerCase();
    // Keep Connection and Upgrade: they are the point of this request.
    if (n === 'host' || NEVER_UPSTREAM.has(n) || n === 'proxy-connection' || n.startsWith('x-remote-') || n.startsWith('impersonate-')) continue;
    // A stream the broker rewrites is offered only what it reads: no extension (compression),
    // and of the client's subprotocols only the listed ones.
    if (protocols && n === 'sec-websocket-extensions') continue;
    if (protocols && n === 'sec-websocket-protocol') {
      const kept = offeredProtocols(rawHeaders[i + 1] as string).filter((p) => protocols.includes(p));
      if (kept.length > 0) out.push(name, kept.join(', '));
      continue;
    }
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}

/** The subprotocols a `Sec-WebSocket-Protocol` value offers, in order. */
export function offeredProtocols(value: string | string[] | undefined): string[] {
  const all = Array.isArray(value) ? value.join(',') : (value ?? '');
  return all
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

/** A response head (status line and headers) in HTTP/1.1 form, from node's parsed response. */
export function responseHead(statusCode: number, statusMessage: string | undefined, rawHeaders: readonly string[], extra: string[] = []): Buffer {
  const lines = [`HTTP/1.1 ${statusCode} ${statusMessage ?? ''}`.trimEnd()];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) lines.push(`${rawHeaders[i]}: ${rawHeaders[i + 1]}`);
  for (let i = 0; i + 1 < extra.length; i += 2) lines.push(`${extra[i]}: ${extra[i + 1]}`);
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
}

/** Raw headers (name, value, …) without the named ones. */
export function withoutHeaders(rawHeaders: readonly string[], names: readonly string[]): string[] {
  const drop = new Set(names.map((n) => n.toLowerCase()));
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (!drop.has((rawHeaders[i] as string).toLowerCase())) out.push(rawHeaders[i] as string, rawHeaders[i + 1] as string);
  }
  return out;
}
