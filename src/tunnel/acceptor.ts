/**
 * Broker end of the tunnel. The broker's HTTP server authenticates `GET /v1/tunnel`
 * and hands the raw socket here; we answer `101`, prove the broker's identity in a HELLO
 * frame (mux-identity.ts), and run the multiplex (mux-session.ts) on the TLS stream: each
 * channel the CLI opens becomes one TunnelChannel for the protocol proxies. Failures stay
 * inside their tunnel: nothing here may throw into the server.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { encodeLine, MAX_CREDENTIAL_LINE, parseCredentialRequest, type CredentialReply } from './credential-exchange.js';
import { parseSshKey } from './host-key.js';
import { FrameType } from './mux-codec.js';
import { makeHello, NONCE_HEADER, parseNonce, tlsBinding } from './mux-identity.js';
import { MuxSession, type OpenRequest } from './mux-session.js';
import { isValidTargetName, TUNNEL_UPGRADE_PROTOCOL } from './protocol.js';

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
  /** The target name the CLI asked for (in its OPEN frame). Not yet authorized. */
  target: string;
  /** Random id of the tunnel connection this channel rides on. */
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
  /** The tunnel host key (OpenSSH or PEM private key), whose fingerprint discovery publishes. */
  hostKey: string | Buffer;
  onChannel: (channel: TunnelChannel<I>) => void;
  logger?: TunnelLogger;
  /** Keepalive towards the CLI; default 15 s. Three unanswered probes end the tunnel. */
  keepaliveIntervalMs?: number;
  /**
   * Who a tunnel belongs to, for the per-identity tunnel limit (the broker: issuer and
   * subject). Without it tunnels are not counted per identity.
   */
  identityKey?: (identity: I) => string;
  /** Tunnels live at once per identityKey; default DEFAULT_MAX_TUNNELS_PER_IDENTITY. */
  maxTunnelsPerIdentity?: number;
  /** Channels live at once across all tunnels of one identityKey; default DEFAULT_MAX_CHANNELS_PER_IDENTITY. */
  maxChannelsPerIdentity?: number;
  /** Channels (local connections) live at once on one tunnel; default DEFAULT_MAX_CHANNELS_PER_TUNNEL. */
  maxChannelsPerTunnel?: number;
  /** How long a client may take from `101` to accepting the broker's HELLO; default 30 s. */
  handshakeTimeoutMs?: number;
  /** A tunnel was accepted (before any of its channels) and, later, is gone. */
  onTunnelOpen?: (tunnel: { id: string; identity: I; headers: IncomingHttpHeaders }) => void;
  onTunnelClose?: (id: string) => void;
  /**
   * A fresh access token presented in a CREDENTIAL frame. Resolves with the tunnel's new
   * deadline (epoch ms); rejects with a coded error the CLI is shown. Without it every
   * renewal is refused.
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
  /** Number of live tunnels (connections). */
  readonly size: number;
  /** End every tunnel and refuse new ones; resolves when their sockets have closed. */
  close(): Promise<void>;
}

interface LiveTunnel {
  id: string;
  /** identityKey of its identity, when the acceptor counts per identity. */
  owner: string | undefined;
  socket: Duplex;
  session: MuxSession | undefined;
}

const NOOP_LOGGER: TunnelLogger = { debug() {}, info() {}, warn() {}, error() {} };
const SECRET_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);
const KEEPALIVE_COUNT_MAX = 3;
/**
 * Each channel may hold a window (512 KiB) of the client's data while its proxy is busy, so
 * a client opening channels without end could make one tunnel hold memory without end.
 * 2048 leaves room for an application's whole pool behind one `agentgate connect` (the
 * bench holds 1,000 clients through one) while bounding what one tunnel can hold.
 */
export const DEFAULT_MAX_CHANNELS_PER_TUNNEL = 2048;
/**
 * The channel cap bounds one tunnel; this bounds how many tunnels one login may hold, so a
 * client cannot multiply the first by opening tunnels without end. One `agentgate connect`
 * or `run` holds one; a refused upgrade is answered 429, which the CLI retries with backoff.
 */
export const DEFAULT_MAX_TUNNELS_PER_IDENTITY = 64;
/**
 * Each channel may become a proxy session with its own upstream connection (an fd here, a
 * backend at the target), so one login's channels are capped across its tunnels too: the
 * two caps above alone would still let it hold 64 × 256.
 */
export const DEFAULT_MAX_CHANNELS_PER_IDENTITY = 4096;

export function createTunnelAcceptor<I = unknown>(opts: TunnelAcceptorOptions<I>): TunnelAcceptor<I> {
  const hostKey = parseSshKey(opts.hostKey);
  const log = opts.logger ?? NOOP_LOGGER;
  const keepaliveInterval = opts.keepaliveIntervalMs ?? 15_000;
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 30_000;
  const live = new Set<LiveTunnel>();
  /** Live tunnels per identityKey. */
  const perIdentity = new Map<string, number>();
  const maxPerIdentity = opts.maxTunnelsPerIdentity ?? DEFAULT_MAX_TUNNELS_PER_IDENTITY;
  /** Live channels per identityKey, across its tunnels. */
  const channelsPerIdentity = new Map<string, number>();
  const maxChannelsPerIdentity = opts.maxChannelsPerIdentity ?? DEFAULT_MAX_CHANNELS_PER_IDENTITY;
  let closed = false;

  function handleUpgrade(ctx: TunnelUpgradeContext<I>): void {
    const { socket, req, head, identity } = ctx;
    // Until the session owns the socket, a reset must not become an uncaught 'error'.
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
    const nonce = parseNonce(req.headers[NONCE_HEADER]);
    if (!nonce) {
      refuse(socket, 400, 'AG_TUNNEL_BAD_UPGRADE', `The tunnel request needs a ${NONCE_HEADER} header (32 random bytes, base64url).`);
      return;
    }

    const owner = opts.identityKey?.(identity);
    if (owner !== undefined) {
      const held = perIdentity.get(owner) ?? 0;
      if (held >= maxPerIdentity) {
        log.warn('tunnel refused: too many tunnels for this identity', { held });
        refuse(socket, 429, 'AG_TUNNEL_LIMIT', `This login already holds ${held} tunnels to the broker, its limit; close some agentgate connect/run sessions (agentgate retries meanwhile).`);
        return;
      }
      perIdentity.set(owner, held + 1);
    }

    const tunnel: LiveTunnel = { id: randomUUID(), owner, socket, session: undefined };
    const headers = publicHeaders(req.headers);
    live.add(tunnel);
    opts.onTunnelOpen?.({ id: tunnel.id, identity, headers });
    socket.once('close', () => {
      if (owner !== undefined) {
        const left = (perIdentity.get(owner) ?? 1) - 1;
        if (left > 0) perIdentity.set(owner, left);
        else perIdentity.delete(owner);
      }
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

    const handshakeTimer = setTimeout(() => {
      log.warn('tunnel handshake timed out', { tunnelId: tunnel.id });
      socket.destroy();
    }, handshakeTimeoutMs);
    handshakeTimer.unref();
    socket.once('close', () => clearTimeout(handshakeTimer));

    try {
      startSession(tunnel, identity, headers, nonce, handshakeTimer);
    } catch (err) {
      log.error('tunnel setup failed', { tunnelId: tunnel.id, error: (err as Error)?.message });
      socket.destroy();
    }
  }

  function startSession(tunnel: LiveTunnel, identity: I, headers: IncomingHttpHeaders, nonce: Buffer, handshakeTimer: NodeJS.Timeout): void {
    let renewing = false;
    const session = new MuxSession(tunnel.socket, {
      role: 'broker',
      keepaliveIntervalMs: keepaliveInterval,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      maxChannels: opts.maxChannelsPerTunnel ?? DEFAULT_MAX_CHANNELS_PER_TUNNEL,
      onControl: (type, id, payload) => {
        if (type === FrameType.HELLO) {
          // The CLI checked our proof and goes on: the handshake is done.
          clearTimeout(handshakeTimer);
          log.info('tunnel up', { tunnelId: tunnel.id });
          return;
        }
        // CREDENTIAL: one exchange at a time per tunnel.
        if (renewing) {
          answer(session, id, { ok: false, error: { code: 'AG_CREDENTIAL_BUSY', message: 'a renewal is already in progress on this tunnel' } });
          return;
        }
        renewing = true;
        renew(tunnel, identity, payload)
          .then((reply) => answer(session, id, reply))
          .catch((err: unknown) => log.debug('credential renewal failed', { tunnelId: tunnel.id, error: String(err) }))
          .finally(() => {
            renewing = false;
          });
      },
      onOpen: (id, request) => openChannel(session, tunnel, identity, headers, id, request),
    });
    tunnel.session = session;
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- session.closed never rejects
    void session.closed.then((err) => log.debug('tunnel session ended', { tunnelId: tunnel.id, error: err?.message }));
    session.sendHello(makeHello(hostKey, nonce, tlsBinding(tunnel.socket, nonce)));
  }

  function openChannel(session: MuxSession, tunnel: LiveTunnel, identity: I, headers: IncomingHttpHeaders, id: number, request: OpenRequest): void {
    const target = request.target;
    if (!isValidTargetName(target)) {
      log.warn('tunnel channel refused: bad target name', { tunnelId: tunnel.id });
      session.refuse(id, 'AG_TUNNEL_BAD_TARGET', 'not a valid target name');
      return;
    }
    const owner = tunnel.owner;
    if (owner !== undefined) {
      const held = channelsPerIdentity.get(owner) ?? 0;
      if (held >= maxChannelsPerIdentity) {
        log.warn('tunnel channel refused: too many channels for this identity', { tunnelId: tunnel.id, held });
        session.refuse(id, 'AG_TUNNEL_TOO_MANY_CHANNELS', `this login already has ${held} connections open through the broker, its limit; close some and try again`);
        return;
      }
      channelsPerIdentity.set(owner, held + 1);
    }
    const stream = session.accept(id);
    if (owner !== undefined) {
      stream.once('close', () => {
        const left = (channelsPerIdentity.get(owner) ?? 1) - 1;
        if (left > 0) channelsPerIdentity.set(owner, left);
        else channelsPerIdentity.delete(owner);
      });
    }
    // Consumers add their own handlers; this one keeps a reset from crashing the broker.
    stream.on('error', (err: Error) => log.debug('tunnel channel error', { tunnelId: tunnel.id, target, error: err.message }));
    try {
      opts.onChannel({
        identity,
        target,
        tunnelId: tunnel.id,
        headers,
        stream,
        originator: { address: request.address, port: request.port },
      });
    } catch (err) {
      log.error('tunnel channel handler failed', { tunnelId: tunnel.id, target, error: (err as Error)?.message });
      stream.destroy();
    }
  }

  function answer(session: MuxSession, id: number, reply: CredentialReply): void {
    session.sendControl(FrameType.CREDENTIAL_REPLY, id, Buffer.from(encodeLine(reply)));
  }

  /** One credential exchange; never rejects (failures become the reply). */
  async function renew(tunnel: LiveTunnel, identity: I, payload: Buffer): Promise<CredentialReply> {
    const request = payload.length <= MAX_CREDENTIAL_LINE ? parseCredentialRequest(payload.toString('utf8').trimEnd()) : undefined;
    if (!request) return { ok: false, error: { code: 'AG_CREDENTIAL_MALFORMED', message: 'expected one JSON line {"token": …}' } };
    if (!opts.renewCredential) return { ok: false, error: { code: 'AG_CREDENTIAL_UNSUPPORTED', message: 'this broker does not renew credentials on a live tunnel' } };
    try {
      const until = await opts.renewCredential({ id: tunnel.id, identity }, request.token);
      return { ok: true, expires_at: new Date(until).toISOString() };
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown; hint?: unknown };
      const reply: CredentialReply = {
        ok: false,
        error: {
          code: typeof e.code === 'string' && e.code.startsWith('AG_') ? e.code : 'AG_CREDENTIAL_REJECTED',
          message: typeof e.message === 'string' ? e.message : 'the credential was refused',
          ...(typeof e.hint === 'string' ? { hint: e.hint } : {}),
        },
      };
      log.info('tunnel credential renewal refused', { tunnelId: tunnel.id, code: reply.error.code });
      return reply;
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
      t.session?.destroy(new Error('the broker is shutting down'));
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
  const reason = STATUS_CODES[status] ?? 'Error';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
