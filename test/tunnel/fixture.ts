/**
 * A stand-in broker for tunnel tests: node:https on 127.0.0.1 whose `upgrade` handler
 * accepts the bearer token `good` (else answers 401 with the broker's JSON error) and
 * hands the socket to a real TunnelAcceptor. By default each channel echoes its bytes
 * back uppercased.
 */
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { Socket } from 'node:net';
import { pipeline, Transform } from 'node:stream';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { createTunnelAcceptor } from '../../src/tunnel/acceptor.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../src/tunnel/mux-codec.js';
import { newNonce, NONCE_HEADER } from '../../src/tunnel/mux-identity.js';
import { upgradeToTunnel } from '../../src/tunnel/upgrade.js';
import type { TunnelAcceptor, TunnelChannel } from '../../src/tunnel/acceptor.js';
import { TUNNEL_PATH } from '../../src/tunnel/protocol.js';
import { makeTestCert } from '../helpers/tls.js';

export interface TestIdentity {
  sub: string;
}

export interface TestBroker {
  port: number;
  endpoint: string;
  acceptor: TunnelAcceptor<TestIdentity>;
  /** Every channel the acceptor delivered, in order. */
  channels: TunnelChannel<TestIdentity>[];
  /** Upgrade requests seen, accepted or not. */
  upgrades: number;
  /** The raw sockets of accepted upgrades. */
  tunnelSockets: Duplex[];
  close(): Promise<void>;
}

export interface TestBrokerOptions {
  hostKey: string;
  /** The acceptor's keepalive interval. */
  keepaliveIntervalMs?: number;
  /** The acceptor's limit from `101` to the client's HELLO. */
  handshakeTimeoutMs?: number;
  /** Listen here (to restart a broker on the same port); default 0. */
  port?: number;
  /** The acceptor's renewCredential (default: none, so renewals are refused). */
  renewCredential?: (tunnel: { id: string; identity: TestIdentity }, token: string) => Promise<number>;
  /** Replaces the uppercasing echo. */
  onChannel?: (ch: TunnelChannel<TestIdentity>) => void;
  /** Bearer tokens the stand-in accepts and whom they name; default `good` → alice. */
  tokens?: Record<string, TestIdentity>;
  /** The acceptor's per-identity tunnel limit, keyed by sub when given. */
  maxTunnelsPerIdentity?: number;
  /** The acceptor's per-identity channel limit (with maxTunnelsPerIdentity). */
  maxChannelsPerIdentity?: number;
  /** The acceptor's per-tunnel channel limit (default: the acceptor's). */
  maxChannelsPerTunnel?: number;
}

export async function startTestBroker(opts: TestBrokerOptions): Promise<TestBroker> {
  const { cert, key } = makeTestCert();
  const sockets = new Set<Socket>();
  const broker: TestBroker = {
    port: 0,
    endpoint: '',
    channels: [],
    upgrades: 0,
    tunnelSockets: [],
    acceptor: createTunnelAcceptor<TestIdentity>({
      hostKey: opts.hostKey,
      keepaliveIntervalMs: opts.keepaliveIntervalMs,
      handshakeTimeoutMs: opts.handshakeTimeoutMs,
      ...(opts.renewCredential ? { renewCredential: opts.renewCredential } : {}),
      ...(opts.maxChannelsPerTunnel === undefined ? {} : { maxChannelsPerTunnel: opts.maxChannelsPerTunnel }),
      ...(opts.maxTunnelsPerIdentity === undefined ? {} : { identityKey: (i: TestIdentity) => i.sub, maxTunnelsPerIdentity: opts.maxTunnelsPerIdentity, ...(opts.maxChannelsPerIdentity === undefined ? {} : { maxChannelsPerIdentity: opts.maxChannelsPerIdentity }) }),
      onChannel: (ch) => {
        broker.channels.push(ch);
        (opts.onChannel ?? echoUppercase)(ch);
      },
    }),
    close: async () => {},
  };
  const server: Server = createServer({ cert, key }, (_req, res) => {
    res.writeHead(404).end();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    broker.upgrades++;
    const path = new URL(req.url ?? '/', 'https://broker.invalid').pathname;
    if (path !== TUNNEL_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const tokens = opts.tokens ?? { good: { sub: 'alice' } };
    const presented = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const identity = presented !== undefined && Object.hasOwn(tokens, presented) ? tokens[presented] : undefined;
    if (identity === undefined) {
      const body = JSON.stringify({
        error: { code: 'AG_TOKEN_REJECTED', reason: 'token_expired', message: 'The access token has expired.' },
      });
      socket.end(
        'HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      return;
    }
    broker.tunnelSockets.push(socket);
    broker.acceptor.handleUpgrade({ identity, req, socket, head });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  broker.port = addr.port;
  broker.endpoint = `https://127.0.0.1:${addr.port}${TUNNEL_PATH}`;
  let closing: Promise<void> | undefined;
  broker.close = () => {
    closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await broker.acceptor.close();
      for (const s of sockets) s.destroy();
      await closed;
    })();
    return closing;
  };
  return broker;
}

/** ASCII lowercase to uppercase, byte for byte, so output length equals input length. */
export function upperBytes(chunk: Buffer): Buffer {
  const out = Buffer.from(chunk);
  for (let i = 0; i < out.length; i++) {
    const b = out[i]!;
    if (b >= 0x61 && b <= 0x7a) out[i] = b - 0x20;
  }
  return out;
}

export function uppercaser(): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      cb(null, upperBytes(chunk));
    },
  });
}

export function echoUppercase(ch: TunnelChannel<TestIdentity>): void {
  pipeline(ch.stream, uppercaser(), ch.stream, () => {});
}

/** Poll `cond` until it holds or the deadline passes (no fixed sleeps in tests). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Write `data`, end, and collect everything the stream sends back until it ends. */
export async function roundTrip(stream: Duplex, data: Buffer | string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
  stream.end(data);
  return done;
}

/**
 * A hand-driven tunnel client for wire-level tests: upgrades with a fresh nonce, collects
 * every frame the broker sends, and writes whatever frames (or raw bytes) a test gives it.
 */
export interface RawMuxClient {
  socket: Duplex;
  frames: Array<{ type: number; channel: number; payload: Buffer }>;
  /** Resolves with the first frame (from now on or already seen) that `match` accepts. */
  next(match: (f: { type: number; channel: number; payload: Buffer }) => boolean, what: string): Promise<{ type: number; channel: number; payload: Buffer }>;
  send(type: number, channel: number, payload?: Buffer | string): void;
  closed: Promise<void>;
}

export async function rawMuxClient(endpoint: string, dispatcher: Dispatcher, opts: { hello?: boolean; token?: string } = {}): Promise<RawMuxClient> {
  const socket = await upgradeToTunnel({ endpoint, dispatcher, token: opts.token ?? 'good', headers: { [NONCE_HEADER]: newNonce() } });
  socket.on('error', () => {});
  const frames: RawMuxClient['frames'] = [];
  const decoder = new FrameDecoder((type, channel, payload) => frames.push({ type, channel, payload: Buffer.from(payload) }));
  socket.on('data', (c: Buffer) => decoder.push(c));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const client: RawMuxClient = {
    socket,
    frames,
    closed,
    async next(match, what) {
      let seen = 0;
      await waitFor(() => {
        for (; seen < frames.length; seen++) if (match(frames[seen]!)) return true;
        return false;
      }, what);
      return frames[seen]!;
    },
    send(type, channel, payload) {
      socket.write(encodeFrame(type as FrameType, channel, typeof payload === 'string' ? Buffer.from(payload) : payload));
    },
  };
  if (opts.hello !== false) {
    await client.next((f) => f.type === FrameType.HELLO, "the broker's HELLO");
    client.send(FrameType.HELLO, 0, '{"v":1}');
  }
  return client;
}
