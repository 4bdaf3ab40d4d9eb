/**
 * CLI end of the tunnel: one TLS connection to the broker per `connect`/`run`, upgraded
 * to the `agentgate-mux/1` multiplex, carrying one channel per local connection. The
 * broker proves its tunnel host key over this TLS connection (mux-identity.ts); the key
 * is pinned by fingerprint (from discovery), and a mismatch fails closed.
 * When the broker goes away the dialer reconnects with backoff and a fresh token, and
 * channels asked for meanwhile wait for it (up to their timeout).
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { AgentgateError, BrokerError, UsageError } from '../errors.js';
import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import type { BackoffPolicy } from './backoff.js';
import { CredentialRenewer, type CredentialExchange, type RenewalEvent } from './credential-renewal.js';
import { FrameType } from './mux-codec.js';
import { newNonce, NONCE_HEADER, tlsBinding, verifyHello } from './mux-identity.js';
import { ChannelRefusedError, MuxSession } from './mux-session.js';
import { isValidTargetName } from './protocol.js';
import { isPermanentTunnelError, tunnelEndpointUrl, upgradeToTunnel } from './upgrade.js';

/**
 * `connecting`: before the first successful connection. `up`: channels can open.
 * `down`: the connection was lost and the dialer is reconnecting. `closed`: for good,
 * after close() or an error that retrying cannot fix (the state change carries it).
 */
export type TunnelState = 'connecting' | 'up' | 'down' | 'closed';

export interface TunnelStateChange {
  /** Why the tunnel went down or closed, when it was not close(). */
  error?: Error;
}

export interface OpenTunnelOptions {
  /** `https://…/v1/tunnel`, from discovery's `tunnel_endpoint`. */
  endpoint: string;
  /**
   * Other brokers' tunnel endpoints (several brokers on one store, sharing TLS and host
   * keys): after a failed attempt or a lost connection the next one in turn is dialed.
   */
  alternates?: string[];
  /** Carries TLS trust/pinning and HTTPS_PROXY; used for every (re)connect. */
  dispatcher: Dispatcher;
  /** Called before every connection attempt, so a reconnect presents a fresh token. */
  getToken: () => Promise<string>;
  /** Discovery's `ssh_host_key_fingerprint` (`SHA256:…`). */
  hostKeyFingerprint: string;
  /** Sent on every upgrade request (per-session data in `X-Agentgate-*`). */
  headers?: Record<string, string>;
  /** Keepalive interval; default 15 s. */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection counts as lost; default 3. */
  keepaliveCountMax?: number;
  /** Upper bound for one attempt's HTTP upgrade and, separately, the broker's HELLO; default 20 s. */
  handshakeTimeoutMs?: number;
  /** Reconnect pacing (default 0.5 s doubling to 30 s, jittered); `false` to give up on the first loss. */
  reconnect?: BackoffPolicy | false;
  onState?: (state: TunnelState, change: TunnelStateChange) => void;
  /**
   * Renewal of the live connection's credential (getToken again, re-presented before the
   * token expires); `false` turns it off. See credential-renewal.ts for the defaults.
   */
  renewal?: { renewBeforeMs?: number; retryMs?: number } | false;
  onRenewal?: (event: RenewalEvent) => void;
}

export interface ChannelOriginator {
  address: string;
  port: number;
}

export interface TunnelClient {
  /**
   * A byte stream to `target` through the broker. While the tunnel is connecting or
   * down this waits for it, up to `timeoutMs` (default 30 s) in all.
   */
  openChannel(target: string, timeoutMs?: number, originator?: ChannelOriginator): Promise<Duplex>;
  /** Resolves once the tunnel is up; rejects with the fatal error, or after `timeoutMs` (default 30 s). */
  ready(timeoutMs?: number): Promise<void>;
  readonly state: TunnelState;
  /** The most recent connection error, for messages; cleared when the tunnel comes up. */
  readonly lastError: Error | undefined;
  /** The broker's tunnel host key (SSH wire blob) once a connection verified it against the pinned fingerprint. */
  readonly hostKey: Buffer | undefined;
  close(): Promise<void>;
}

/** Start dialing at once. Throws BrokerError if the endpoint is not an https URL. */
export function openTunnel(opts: OpenTunnelOptions): TunnelClient {
  tunnelEndpointUrl(opts.endpoint);
  for (const e of opts.alternates ?? []) tunnelEndpointUrl(e);
  return new Tunnel(opts);
}

interface LiveConnection {
  session: MuxSession;
  /** The host key blob the handshake verified. */
  hostKey: Buffer;
  /** Resolves when the connection is gone, with the error that ended it if any. */
  closed: Promise<Error | undefined>;
  exchangeCredential: CredentialExchange;
}

interface Waiter {
  resolve(conn: LiveConnection): void;
  reject(err: Error): void;
}

const DEFAULT_CHANNEL_TIMEOUT_MS = 30_000;

class Tunnel implements TunnelClient {
  readonly #opts: OpenTunnelOptions;
  readonly #abort = new AbortController();
  readonly #waiters = new Set<Waiter>();
  #state: TunnelState = 'connecting';
  #current: LiveConnection | undefined;
  #lastHostKey: Buffer | undefined;
  #lastError: Error | undefined;
  #fatal: Error | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  readonly #endpoints: string[];
  /** Index in #endpoints of the broker dialed next. */
  #at = 0;

  constructor(opts: OpenTunnelOptions) {
    this.#opts = opts;
    this.#endpoints = [opts.endpoint, ...(opts.alternates ?? [])];
    // A failure the loop did not expect ends the tunnel as a permanent one would.
    this.#run().catch((err: unknown) => this.#giveUp(asError(err)));
  }

  get state(): TunnelState {
    return this.#state;
  }

  get hostKey(): Buffer | undefined {
    return this.#current?.hostKey ?? this.#lastHostKey;
  }

  get lastError(): Error | undefined {
    return this.#lastError;
  }

  async ready(timeoutMs = DEFAULT_CHANNEL_TIMEOUT_MS): Promise<void> {
    await this.#waitUp(timeoutMs);
  }

  async openChannel(target: string, timeoutMs = DEFAULT_CHANNEL_TIMEOUT_MS, originator?: ChannelOriginator): Promise<Duplex> {
    if (!isValidTargetName(target)) {
      throw new UsageError(`"${target.slice(0, 80)}" is not a valid target name.`, {
        hint: 'Run `agentgate targets` to see the names you can use.',
      });
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const conn = await this.#waitUp(Math.max(0, deadline - Date.now()));
      const remaining = deadline - Date.now();
      try {
        return await openOn(conn.session, target, originator, Math.max(1, remaining));
      } catch (err) {
        if (err instanceof AgentgateError) throw err;
        // The connection died under us: wait for it to be noticed, then for the next one.
        const left = deadline - Date.now();
        if (left <= 0) throw this.#notUpError(timeoutMs);
        await raceTimeout(conn.closed, left);
      }
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    this.#wake?.();
    this.#rejectWaiters(this.#fatal ?? closedError());
    this.#setState('closed', {});
    const conn = this.#current;
    this.#current = undefined;
    if (conn) {
      conn.session.end();
      // A broker that no longer answers must not hold the exit up.
      if ((await raceTimeout(conn.closed, 2_000)) === TIMED_OUT) conn.session.destroy();
    }
  }

  async #run(): Promise<void> {
    const policy = this.#opts.reconnect === false ? undefined : (this.#opts.reconnect ?? DEFAULT_BACKOFF);
    let attempt = 0;
    while (!this.#closed) {
      let conn: LiveConnection;
      let token: string;
      try {
        ({ conn, token } = await this.#connectOnce());
      } catch (err) {
        if (this.#closed) return;
        const e = asError(err);
        this.#lastError = e;
        if (isPermanentTunnelError(e) || policy === undefined) {
          this.#giveUp(e);
          return;
        }
        this.#rotate();
        await this.#sleep(backoffDelay(policy, attempt++));
        continue;
      }
      if (this.#closed) {
        conn.session.destroy();
        return;
      }
      attempt = 0;
      this.#current = conn;
      this.#lastHostKey = conn.hostKey;
      this.#lastError = undefined;
      this.#setState('up', {});
      for (const w of [...this.#waiters]) w.resolve(conn);

      const renewal = this.#opts.renewal;
      const renewer =
        renewal === false
          ? undefined
          : new CredentialRenewer(conn.exchangeCredential, token, {
              getToken: this.#opts.getToken,
              ...renewal,
              ...(this.#opts.onRenewal ? { onRenewal: this.#opts.onRenewal } : {}),
            });
      const why = await conn.closed;
      renewer?.stop();
      if (this.#current === conn) this.#current = undefined;
      if (this.#closed) return;
      const lost = new BrokerError('AG_TUNNEL_LOST', `Lost the connection to the broker${why ? `: ${why.message}` : '.'}`, {
        cause: why,
        hint: 'Check that the broker is running and reachable; agentgate reconnects on its own.',
      });
      this.#lastError = lost;
      if (policy === undefined) {
        this.#giveUp(lost);
        return;
      }
      this.#setState('down', { error: lost });
      // Another broker, if there is one, is tried first: this one may have died.
      this.#rotate();
      await this.#sleep(backoffDelay(policy, attempt++));
    }
  }

  #rotate(): void {
    this.#at = (this.#at + 1) % this.#endpoints.length;
  }

  async #connectOnce(): Promise<{ conn: LiveConnection; token: string }> {
    const token = await this.#opts.getToken();
    if (this.#closed) throw closedError();
    const nonce = newNonce();
    const socket = await upgradeToTunnel({
      endpoint: this.#endpoints[this.#at] ?? this.#opts.endpoint,
      dispatcher: this.#opts.dispatcher,
      token,
      headers: { ...this.#opts.headers, [NONCE_HEADER]: nonce },
      timeoutMs: this.#opts.handshakeTimeoutMs,
      signal: this.#abort.signal,
    });
    if (this.#closed) {
      socket.destroy();
      throw closedError();
    }
    const conn = await muxHandshake(socket, {
      fingerprint: this.#opts.hostKeyFingerprint,
      nonce: Buffer.from(nonce, 'base64url'),
      keepaliveInterval: this.#opts.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: this.#opts.keepaliveCountMax ?? 3,
      readyTimeout: this.#opts.handshakeTimeoutMs ?? 20_000,
    });
    return { conn, token };
  }

  #giveUp(err: Error): void {
    this.#fatal = err;
    this.#closed = true;
    this.#rejectWaiters(err);
    this.#setState('closed', { error: err });
  }

  #waitUp(timeoutMs: number): Promise<LiveConnection> {
    if (this.#state === 'up' && this.#current) return Promise.resolve(this.#current);
    if (this.#closed) return Promise.reject(this.#fatal ?? closedError());
    return new Promise<LiveConnection>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (conn) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve(conn);
        },
        reject: (err) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          reject(err);
        },
      };
      const timer = setTimeout(() => waiter.reject(this.#notUpError(timeoutMs)), timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  #notUpError(timeoutMs: number): BrokerError {
    const secs = Math.max(1, Math.round(timeoutMs / 1000));
    const last = this.#lastError ? ` Last error: ${this.#lastError.message}` : '';
    const hint = 'Check that the broker is running and reachable from here (and HTTPS_PROXY, if you use one).';
    if (this.#state === 'connecting') {
      return new BrokerError('AG_TUNNEL_DOWN', `Could not connect to the broker within ${secs}s.${last}`, { cause: this.#lastError, hint });
    }
    return new BrokerError('AG_TUNNEL_DOWN', `The connection to the broker is down and did not come back within ${secs}s.${last}`, {
      cause: this.#lastError,
      hint,
    });
  }

  #rejectWaiters(err: Error): void {
    for (const w of [...this.#waiters]) w.reject(err);
  }

  #setState(state: TunnelState, change: TunnelStateChange): void {
    if (state === this.#state) return;
    this.#state = state;
    try {
      this.#opts.onState?.(state, change);
    } catch {
      // A failing observer must not break the tunnel.
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

interface HandshakeOptions {
  fingerprint: string;
  nonce: Buffer;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  readyTimeout: number;
}

/** Start the mux on an upgraded socket; resolves once the broker's HELLO proved its host key. */
function muxHandshake(socket: Duplex, o: HandshakeOptions): Promise<LiveConnection> {
  return new Promise<LiveConnection>((resolve, reject) => {
    const s = socket as Partial<Socket>;
    if (typeof s.setNoDelay === 'function') s.setNoDelay(true);
    const binding = tlsBinding(socket, o.nonce);
    /** Credential exchanges awaiting their reply, by request id. */
    const replies = new Map<number, (err: Error | undefined, line?: string) => void>();
    let nextRequest = 1;
    let settled = false;
    const session = new MuxSession(socket, {
      role: 'cli',
      keepaliveIntervalMs: o.keepaliveInterval,
      keepaliveCountMax: o.keepaliveCountMax,
      onControl: (type, id, payload) => {
        if (type === FrameType.CREDENTIAL_REPLY) {
          replies.get(id)?.(undefined, payload.toString('utf8'));
          return;
        }
        // HELLO; verifyHello throws (ending the session) unless the proof holds.
        const hostKey = verifyHello(payload, { fingerprint: o.fingerprint, nonce: o.nonce, binding });
        session.sendHello(Buffer.from('{"v":1}'));
        settled = true;
        clearTimeout(timer);
        resolve({ session, hostKey, closed: session.closed, exchangeCredential });
      },
    });
    const exchangeCredential: CredentialExchange = (line, timeoutMs) =>
      new Promise<string>((res, rej) => {
        if (!session.isOpen) return rej(new Error('the tunnel is closed'));
        const id = nextRequest++;
        const done = (err: Error | undefined, reply?: string): void => {
          clearTimeout(t);
          replies.delete(id);
          if (err) rej(err);
          else res(reply as string);
        };
        const t = setTimeout(() => done(new Error(`no answer within ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
        replies.set(id, done);
        session.sendControl(FrameType.CREDENTIAL, id, Buffer.from(line));
      });
    const timer = setTimeout(() => session.destroy(new Error(`the broker sent no HELLO within ${Math.round(o.readyTimeout / 1000)}s`)), o.readyTimeout);
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- session.closed never rejects
    void session.closed.then((err) => {
      for (const done of [...replies.values()]) done(new Error(`the tunnel closed${err ? `: ${err.message}` : ''}`));
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err instanceof BrokerError && err.code === 'AG_TUNNEL_HOST_KEY_MISMATCH') return reject(err);
      const why = err?.message ?? 'the connection closed during the handshake';
      reject(new BrokerError('AG_TUNNEL_HANDSHAKE', `The tunnel handshake with the broker failed: ${why}`, { cause: err }));
    });
  });
}

/** Open one channel; broker refusals become BrokerError, losses plain Error. */
function openOn(session: MuxSession, target: string, originator: ChannelOriginator | undefined, timeoutMs: number): Promise<Duplex> {
  return new Promise<Duplex>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(
        new BrokerError('AG_TUNNEL_CHANNEL_TIMEOUT', `The broker did not open a channel to ${target} in time.`, {
          hint: 'The broker may be overloaded; try again.',
        }),
      );
    }, timeoutMs);
    session.open({ target, address: originator?.address ?? '127.0.0.1', port: originator?.port ?? 0 }).then(
      (channel) => {
        // Timed out already: do not leak a late channel.
        if (done) return void channel.destroy();
        done = true;
        clearTimeout(timer);
        resolve(channel);
      },
      (err: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err instanceof ChannelRefusedError) {
          // The broker's reason (from its pinned, verified end) says which limit or check it was.
          const tooMany = err.code === 'AG_TUNNEL_TOO_MANY_CHANNELS';
          reject(
            new BrokerError('AG_TUNNEL_CHANNEL_REFUSED', `The broker refused a connection to ${target} (${err.code}): ${err.message}.`, {
              cause: err,
              hint: tooMany
                ? 'Close connections you no longer use (a smaller connection pool), or other agentgate sessions of this login.'
                : 'Run `agentgate targets` to check the name and that policy lets you reach it.',
            }),
          );
        } else {
          // The connection went away before the answer.
          reject(err);
        }
      },
    );
  });
}

const TIMED_OUT = Symbol('timed out');

function raceTimeout<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function closedError(): BrokerError {
  return new BrokerError('AG_TUNNEL_CLOSED', 'The tunnel to the broker is closed.');
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
