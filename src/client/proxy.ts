/**
 * Outbound proxy support for the broker connection: which proxy (if any) the environment
 * names for a URL (`HTTPS_PROXY`/`HTTP_PROXY`, minus `NO_PROXY`), and a CONNECT tunnel
 * through it. The broker connector does its own TLS on top of the tunnel, so certificate
 * pinning works the same with and without a proxy.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { BrokerError } from '../errors.js';

const DEFAULT_PORT: Record<string, number> = { 'http:': 80, 'https:': 443 };

/** The proxy the environment names for `target`, or undefined to connect directly. */
export function proxyFor(target: URL, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  const pick = (...names: string[]): string | undefined => {
    for (const n of names) {
      const v = env[n];
      if (v !== undefined && v.trim() !== '') return v.trim();
    }
    return undefined;
  };
  const raw =
    target.protocol === 'https:'
      ? pick('https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY')
      : pick('http_proxy', 'HTTP_PROXY');
  if (!raw) return undefined;
  if (bypassesProxy(target, pick('no_proxy', 'NO_PROXY') ?? '')) return undefined;
  const proxy = URL.parse(raw.includes('://') ? raw : `http://${raw}`);
  if (!proxy || (proxy.protocol !== 'http:' && proxy.protocol !== 'https:')) {
    throw new BrokerError('AG_PROXY_INVALID', `the proxy setting is not an http(s) URL: ${redactUrl(raw)}`, {
      hint: 'set HTTPS_PROXY to http://host:port (or unset it)',
    });
  }
  return proxy;
}

/**
 * NO_PROXY: comma- or space-separated; `*` matches everything; `host`, `.host` and
 * `*.host` match the host and its subdomains; `host:port` also requires the port.
 */
export function bypassesProxy(target: URL, noProxy: string): boolean {
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase();
  const port = Number(target.port) || DEFAULT_PORT[target.protocol] || 0;
  for (const raw of noProxy.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    let entryPort = 0;
    if (isIP(entry) === 0) {
      // `host:port` or `[v6]:port`; a bare IP (v6 included) has no port.
      const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry) ?? /^([^:]+)(?::(\d+))?$/.exec(entry);
      if (!m?.[1]) continue;
      entry = m[1];
      entryPort = m[2] ? Number(m[2]) : 0;
    }
    if (entryPort && entryPort !== port) continue;
    entry = entry.replace(/^\*?\./, '');
    if (host === entry) return true;
    if (isIP(host) === 0 && host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** Opens a CONNECT tunnel to host:port through `proxy`; resolves with the raw tunnel socket. */
export function connectViaProxy(proxy: URL, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const authority = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const headers: Record<string, string> = { host: authority };
  if (proxy.username || proxy.password) {
    const user = decodeURIComponent(proxy.username);
    const pass = decodeURIComponent(proxy.password);
    headers['proxy-authorization'] = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  }
  const send = proxy.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<Socket>((resolve, reject) => {
    const req = send({
      host: proxy.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(proxy.port) || DEFAULT_PORT[proxy.protocol],
      method: 'CONNECT',
      path: authority,
      headers,
      timeout: timeoutMs,
      agent: false,
    });
    const where = `the proxy ${proxy.protocol}//${proxy.host}`;
    req.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(
          new BrokerError('AG_PROXY_REFUSED', `${where} refused to open a tunnel to ${authority}: HTTP ${res.statusCode}`, {
            hint: res.statusCode === 407 ? 'the proxy wants credentials: put them in HTTPS_PROXY (http://user:pass@host:port)' : 'check HTTPS_PROXY and NO_PROXY',
          }),
        );
        return;
      }
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('timeout', () => req.destroy(new BrokerError('AG_PROXY_TIMEOUT', `${where} did not answer within ${timeoutMs} ms`, { hint: 'check HTTPS_PROXY and NO_PROXY' })));
    req.once('error', (err) =>
      reject(err instanceof BrokerError ? err : new BrokerError('AG_PROXY_UNREACHABLE', `cannot reach ${where}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { hint: 'check HTTPS_PROXY and NO_PROXY', cause: err })),
    );
    req.end();
  });
}

/** A proxy URL without its password, for messages. */
function redactUrl(raw: string): string {
  return raw.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
