/**
 * The CLI end of one `agentgate connect` / `agentgate run` session: a fresh random
 * secret, one tunnel to the broker carrying the secret's SCRAM verifier, and a local
 * listener per target whose connections each become a tunnel channel.
 *
 * The secret authenticates local clients (DESIGN.md, "Local listeners are
 * authenticated"): psql presents it as its password, and the broker checks it with
 * SCRAM-SHA-256 against the verifier, so the secret itself crosses no wire. It lives only
 * in this process's memory and dies with the session.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';

import { openTunnel, type OpenTunnelOptions, type TunnelClient, type TunnelState, type TunnelStateChange } from './dialer.js';
import { listenLocal, type LocalListener } from './local-listener.js';
import { tlsFront } from './tls-front.js';
import { LOCAL_PROTOCOLS, type LocalProtocol } from './local-protocols.js';
import type { SecureContext } from 'node:tls';
import { formatScramVerifier, makeScramVerifier } from '../shared/session-secret.js';
import { SESSION_ID_HEADER, SESSION_SSH_KEY_HEADER, SESSION_VERIFIER_HEADER } from '../shared/session-headers.js';
import { REASON_HEADER, encodeReasonHeader } from '../shared/reason.js';
import { generateSshKeyPair } from './host-key.js';

export interface ConnectSessionOptions {
  endpoint: string;
  /** Other brokers' tunnel endpoints, dialed in turn when the current one fails (dialer.ts). */
  alternates?: string[];
  dispatcher: Dispatcher;
  getToken: () => Promise<string>;
  hostKeyFingerprint: string;
  onState?: (state: TunnelState, change: TunnelStateChange) => void;
  /** Reconnect pacing; false to give up on the first loss (tests). */
  reconnect?: { initialMs: number; maxMs: number } | false;
  keepaliveIntervalMs?: number;
  /** Credential renewal over the live tunnel (dialer.ts); false turns it off. */
  renewal?: OpenTunnelOptions['renewal'];
  onRenewal?: OpenTunnelOptions['onRenewal'];
  /** The session's reason (`--reason`), recorded by the broker for every proxy session. */
  reason?: string;
}

export interface ListenTargetOptions {
  target: string;
  type: LocalProtocol;
  host: string;
  port: number;
  allowRemote?: boolean;
  /** How long a local connection waits for a lost tunnel to come back. */
  channelTimeoutMs?: number;
  /** Speak TLS to local clients with this identity (kubectl sends its token only over https). */
  secureContext?: SecureContext;
  /**
   * A local connection must log in (Postgres: startup and SCRAM; TLS clients: the handshake)
   * within this, or it is closed. Default 20 s: longer than the broker's default 15 s
   * login_timeout, whose FATAL the client then normally reads first.
   */
  loginTimeoutMs?: number;
}

/** Default for ListenTargetOptions.loginTimeoutMs (and `agentgate connect --login-timeout`). */
export const DEFAULT_LOCAL_LOGIN_TIMEOUT_MS = 20_000;

export interface ConnectSession {
  /** Random id shared by every channel of this session (recorded at the broker). */
  readonly id: string;
  /** The local clients' password. Never log it. */
  readonly secret: string;
  /**
   * The session's SSH client key pair (SSH targets): the public half went to the broker
   * on the tunnel upgrade; the private half is written only into the session's 0600
   * ssh directory. Never log it.
   */
  readonly sshKey: { private: string; public: string };
  readonly tunnel: TunnelClient;
  /** Channels opened so far: each is one proxy session at the broker, so one receipt. */
  readonly channels: number;
  listen(opts: ListenTargetOptions): Promise<LocalListener>;
  close(): Promise<void>;
}

export function startConnectSession(opts: ConnectSessionOptions): ConnectSession {
  const id = `ags_${randomUUID()}`;
  // URL-safe so it drops into a connection string unescaped.
  const secret = randomBytes(24).toString('base64url');
  const verifier = formatScramVerifier(makeScramVerifier(secret));
  const sshKey = generateSshKeyPair(`agentgate ${id}`);
  const tunnel = openTunnel({
    endpoint: opts.endpoint,
    ...(opts.alternates && opts.alternates.length > 0 ? { alternates: opts.alternates } : {}),
    dispatcher: opts.dispatcher,
    getToken: opts.getToken,
    hostKeyFingerprint: opts.hostKeyFingerprint,
    headers: {
      [SESSION_ID_HEADER]: id,
      [SESSION_VERIFIER_HEADER]: verifier,
      [SESSION_SSH_KEY_HEADER]: sshKey.public.trim(),
      ...(opts.reason !== undefined ? { [REASON_HEADER]: encodeReasonHeader(opts.reason) } : {}),
    },
    ...(opts.onState ? { onState: opts.onState } : {}),
    ...(opts.reconnect !== undefined ? { reconnect: opts.reconnect } : {}),
    ...(opts.keepaliveIntervalMs !== undefined ? { keepaliveIntervalMs: opts.keepaliveIntervalMs } : {}),
    ...(opts.renewal !== undefined ? { renewal: opts.renewal } : {}),
    ...(opts.onRenewal ? { onRenewal: opts.onRenewal } : {}),
  });
  const listeners: LocalListener[] = [];
  let channels = 0;
  return {
    id,
    secret,
    sshKey,
    tunnel,
    get channels() {
      return channels;
    },
    async listen(t) {
      const loginTimeoutMs = t.loginTimeoutMs ?? DEFAULT_LOCAL_LOGIN_TIMEOUT_MS;
      const behaviour = LOCAL_PROTOCOLS[t.type];
      const listener = await listenLocal({
        host: t.host,
        port: t.port,
        ...(t.allowRemote ? { allowRemote: true } : {}),
        ...(behaviour.loginWatch && !t.secureContext ? { login: { timeoutMs: loginTimeoutMs, watch: behaviour.loginWatch } } : {}),
        open: async (socket: Socket) => {
          const ch = tunnel.openChannel(t.target, t.channelTimeoutMs ?? 30_000, { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }).then((c) => {
            channels++;
            return c;
          });
          return t.secureContext ? tlsFront(t.secureContext, ch, loginTimeoutMs) : ch;
        },
        onOpenError: (socket, err) => {
          // Speak the client's protocol where it has a way to show a sentence.
          behaviour.unreachable?.(
            socket,
            `agentgate: cannot reach the broker: ${(err as Error)?.message ?? String(err)}`,
            'the broker connection is down; agentgate connect keeps retrying, try again shortly',
          );
        },
      });
      listeners.push(listener);
      return listener;
    },
    async close() {
      await Promise.allSettled(listeners.map((l) => l.close()));
      await tunnel.close();
    },
  };
}
