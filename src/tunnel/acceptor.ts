/**
 * Broker end of the tunnel. The broker's HTTP server authenticates `GET /v1/tunnel`
 * and hands the raw socket here; we answer `101`, then speak SSH on it as the server.
 * The client authenticates with SSH `none` (its identity came with the upgrade), and
 * each `direct-tcpip` channel it opens becomes one TunnelChannel for the protocol
 * proxies. Failures stay inside their tunnel: nothing here may throw into the server.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, ServerChannel, Session, TcpipRequestInfo } from 'ssh2';
import { encodeLine, MAX_CREDENTIAL_LINE, parseCredentialRequest, readLine, type CredentialReply } from './credential-exchange.js';
import { parseSshKey } from './host-key.js';
import { CREDENTIAL_SUBSYSTEM, isValidTargetName, TUNNEL_UPGRADE_PROTOCOL } from './protocol.js';
import { coalesceWrites } from './write-coalescing.js';

export interface TunnelLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** One local connection on the CLI side, arriving at the broker. */
export interface TunnelChannel<I = unknown> {
  /** Whoever the broker authenticated on the upgrade request. */
  identity: I;
  /** The target name the CLI asked for (the `direct-tcpip` host). Not yet authorized. */
  target: string;
  /** Random id of the SSH connection this channel rides on. */
  tunnelId: string;
  /**
   * Headers of the upgrade request (per-session data travels in `X-Agentgate-*`).
   * `Authorization`, `Cookie` and `Proxy-Authorization` are removed.
   */
  headers: IncomingHttpHeaders;
  /** Bytes to and from the CLI's local client. */
  stream: Duplex;
  /** The local client's address on the CLI's machine, as the CLI reported it. */
  originator: { address: string; port: number };
}

export interface TunnelAcceptorOptions<I = unknown> {
  /** The SSH host key (OpenSSH or PEM private key). */
  hostKey: string | Buffer;
  onChannel: (channel: TunnelChannel<I>) => void;
  logger?: TunnelLogger;
  /** SSH keepalive towards the CLI; default 15 s. Three unanswered probes end the tunnel. */
  keepaliveIntervalMs?: number;
  /** How long a client may take from `101` to finishing SSH authentication; default 30 s. */
  handshakeTimeoutMs?: number;
  /** A tunnel was accepted (before any of its channels) and, later, is gone. */
  onTunnelOpen?: (tunnel: { id: string; identity: I; headers: IncomingHttpHeaders }) => void;
  onTunnelClose?: (id: string) => void;
  /**
   * A fresh access token presented over the `credential@agentgate` subsystem. Resolves with
   * the tunnel's new deadline (epoch ms); rejects with a coded error the CLI is shown.
   * Without it the subsystem is refused.
   */
  renewCredential?: (tunnel: { id: string; identity: I }, token: string) => Promise<number>;
}

export interface TunnelUpgradeContext<I = unknown> {
  identity: I;
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
}

export interface TunnelAcceptor<I = unknown> {
  /** Take over an authenticated upgrade request: writes the `101` (or an error) itself. */
  handleUpgrade(ctx: TunnelUpgradeContext<I>): void;
  /** Number of live tunnels (SSH connections). */
  readonly size: number;
  /** End every tunnel and refuse new ones; resolves when their sockets have closed. */
  close(): Promise<void>;
}

interface LiveTunnel {
  id: string;
  socket: Duplex;
  connection: Connection | undefined;
}

const NOOP_LOGGER: TunnelLogger = { debug() {}, info() {}, warn() {}, error() {} };
const SECRET_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);

export function createTunnelAcceptor<I = unknown>(opts: TunnelAcceptorOptions<I>): TunnelAcceptor<I> {
  // Parsed here to fail fast on a bad key; ssh2's Server wants the raw form.
  parseSshKey(opts.hostKey);
  const hostKey = opts.hostKey;
  const log = opts.logger ?? NOOP_LOGGER;
  const keepaliveInterval = opts.keepaliveIntervalMs ?? 15_000;
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 30_000;
  const live = new Set<LiveTunnel>();
  let closed = false;

  function handleUpgrade(ctx: TunnelUpgradeContext<I>): void {
    const { socket, req, head, identity } = ctx;
    // Until ssh2 owns the socket, a reset must not become an uncaught 'error'.
    socket.on('error', (err: Error) => log.debug('tunnel socket error', { error: err.message }));

    if (closed) {
      refuse(socket, 503, 'AG_BROKER_SHUTTING_DOWN', 'The broker is shutting down.');
      return;
    }
    const asked = String(req.headers.upgrade ?? '').trim().toLowerCase();
    if (asked !== TUNNEL_UPGRADE_PROTOCOL) {
      refuse(socket, 400, 'AG_TUNNEL_BAD_UPGRADE', `This endpoint upgrades to ${TUNNEL_UPGRADE_PROTOCOL} only.`);
      return;
    }

    const tunnel: LiveTunnel = { id: randomUUID(), socket, connection: undefined };
    const headers = publicHeaders(req.headers);
    live.add(tunnel);
    opts.onTunnelOpen?.({ id: tunnel.id, identity, headers });
    socket.once('close', () => {
      live.delete(tunnel);
      opts.onTunnelClose?.(tunnel.id);
      log.debug('tunnel closed', { tunnelId: tunnel.id });
    });

    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\n' +
        `Upgrade: ${TUNNEL_UPGRADE_PROTOCOL}\r\n` +
        'Connection: Upgrade\r\n\r\n',
    );
    if (head.length > 0) socket.unshift(head);
    const s = socket as Partial<Socket>;
    if (typeof s.setNoDelay === 'function') s.setNoDelay(true);
    coalesceWrites(socket);

    const handshakeTimer = setTimeout(() => {
      log.warn('tunnel handshake timed out', { tunnelId: tunnel.id });
      socket.destroy();
    }, handshakeTimeoutMs);
    handshakeTimer.unref();
    socket.once('close', () => clearTimeout(handshakeTimer));

    try {
      startSsh(tunnel, identity, headers, handshakeTimer);
    } catch (err) {
      log.error('tunnel setup failed', { tunnelId: tunnel.id, error: (err as Error)?.message });
      socket.destroy();
    }
  }

  function startSsh(tunnel: LiveTunnel, identity: I, headers: IncomingHttpHeaders, handshakeTimer: NodeJS.Timeout): void {
    // One ssh2 Server per tunnel (it is only a parser factory, it never listens), so the
    // connection callback closes over this request's identity and headers.
    const server = new ssh2.Server(
      { hostKeys: [hostKey], ident: 'agentgate', keepaliveInterval },
      (conn: Connection) => {
        tunnel.connection = conn;
        conn.on('error', (err: Error & { level?: string }) => {
          log.debug('tunnel ssh error', { tunnelId: tunnel.id, error: err.message });
          // A client that stopped answering keepalives may not read our FIN either.
          if (err.level === 'client-timeout') tunnel.socket.destroy();
        });
        conn.on('authentication', (auth: AuthContext) => {
          // Identity was established on the HTTP upgrade; SSH only carries bytes.
          if (auth.method === 'none') auth.accept();
          else auth.reject(['none']);
        });
        conn.once('ready', () => {
          clearTimeout(handshakeTimer);
          log.info('tunnel up', { tunnelId: tunnel.id });
        });
        conn.on('tcpip', (accept: () => ServerChannel, reject: () => void, info: TcpipRequestInfo) => {
          const target = info.destIP;
          if (!isValidTargetName(target)) {
            log.warn('tunnel channel refused: bad target name', { tunnelId: tunnel.id });
            reject();
            return;
          }
          const stream = accept();
          // Consumers add their own handlers; this one keeps a reset from crashing the broker.
          stream.on('error', (err: Error) => log.debug('tunnel channel error', { tunnelId: tunnel.id, target, error: err.message }));
          try {
            opts.onChannel({
              identity,
              target,
              tunnelId: tunnel.id,
              headers,
              stream,
              originator: { address: info.srcIP, port: info.srcPort },
            });
          } catch (err) {
            log.error('tunnel channel handler failed', { tunnelId: tunnel.id, target, error: (err as Error)?.message });
            stream.destroy();
          }
        });
        // Session channels exist only for the credential subsystem, one at a time; ssh2
        // refuses their shell, exec, pty and other requests on its own (no listeners), and,
        // with no 'openssh.streamlocal' or 'request' listeners, unix sockets and remote forwarding.
        let renewing = false;
        conn.on('session', (accept: () => Session, reject: () => void) => {
          if (!opts.renewCredential || renewing) return reject();
          renewing = true;
          const session = accept();
          session.once('close', () => {
            renewing = false;
          });
          session.on('subsystem', (acceptSub: () => ServerChannel, rejectSub: () => void, info: { name: string }) => {
            if (info.name !== CREDENTIAL_SUBSYSTEM) return rejectSub();
            renew(tunnel, identity, acceptSub()).catch((err: unknown) => log.debug('credential renewal failed', { tunnelId: tunnel.id, error: String(err) }));
          });
        });
      },
    );
    server.on('error', (err: Error) => log.debug('tunnel server error', { tunnelId: tunnel.id, error: err.message }));
    server.injectSocket(tunnel.socket as Socket);
  }

  /** One credential exchange; never rejects (failures are answered on the channel or logged). */
  async function renew(tunnel: LiveTunnel, identity: I, channel: ServerChannel): Promise<void> {
    channel.on('error', (err: Error) => log.debug('credential channel error', { tunnelId: tunnel.id, error: err.message }));
    let reply: CredentialReply;
    try {
      const request = parseCredentialRequest(await readLine(channel, MAX_CREDENTIAL_LINE, 10_000));
      if (!request) {
        reply = { ok: false, error: { code: 'AG_CREDENTIAL_MALFORMED', message: 'expected one JSON line {"token": …}' } };
      } else {
        const until = await (opts.renewCredential as NonNullable<typeof opts.renewCredential>)({ id: tunnel.id, identity }, request.token);
        reply = { ok: true, expires_at: new Date(until).toISOString() };
      }
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown; hint?: unknown };
      reply = {
        ok: false,
        error: {
          code: typeof e.code === 'string' && e.code.startsWith('AG_') ? e.code : 'AG_CREDENTIAL_REJECTED',
          message: typeof e.message === 'string' ? e.message : 'the credential was refused',
          ...(typeof e.hint === 'string' ? { hint: e.hint } : {}),
        },
      };
      log.info('tunnel credential renewal refused', { tunnelId: tunnel.id, code: reply.error.code });
    }
    try {
      channel.end(encodeLine(reply));
    } catch {
      // the client went away; nothing to answer
    }
  }

  async function close(): Promise<void> {
    closed = true;
    const waits: Promise<void>[] = [];
    for (const t of live) {
      waits.push(new Promise<void>((resolve) => {
        if (t.socket.destroyed) return resolve();
        t.socket.once('close', () => resolve());
      }));
      try {
        t.connection?.end();
      } catch {
        // already gone
      }
      t.socket.destroy();
    }
    await Promise.all(waits);
  }

  return {
    handleUpgrade,
    get size() {
      return live.size;
    },
    close,
  };
}

function publicHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!SECRET_HEADERS.has(k)) out[k] = v;
  }
  return out;
}

/** Answer a refused upgrade with the broker's JSON error shape and close. */
function refuse(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  const reason = status === 503 ? 'Service Unavailable' : 'Bad Request';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
