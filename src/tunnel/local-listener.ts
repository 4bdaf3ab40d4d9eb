/**
 * The CLI's local listeners (`127.0.0.1:5432` and friends): every accepted socket is
 * joined to a stream from `open()` (a tunnel channel), both directions through
 * `stream.pipeline`, so backpressure and teardown travel end to end.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import type { Duplex } from 'node:stream';
import { AgentgateError, UsageError } from '../errors.js';
import { startDeadline } from '../shared/connection-timers.js';
import type { LoginWatch } from './login-watch.js';

export interface ListenLocalOptions {
  /** Address to bind; loopback unless allowRemote. */
  host: string;
  /** Port to bind; 0 lets the system pick. */
  port: number;
  /** Make the far end for one accepted local socket (typically TunnelClient.openChannel). */
  open: (socket: net.Socket) => Promise<Duplex>;
  /** Permit a non-loopback bind address (the CLI's `--allow-remote`). */
  allowRemote?: boolean;
  /**
   * `open()` failed: speak the protocol's error to the local client here if you can.
   * The socket is closed once this returns (or its promise settles).
   */
  onOpenError?: (socket: net.Socket, err: unknown) => void | Promise<void>;
  /** An established connection broke (resets and the like); for debug logs. */
  onError?: (err: Error) => void;
  /**
   * Close a connection that has not logged in within `timeoutMs` of being accepted; `watch()`
   * makes the protocol's detector, fed what the far end sends until it says so.
   */
  login?: { timeoutMs: number; watch: () => LoginWatch; onTimeout?: () => void };
}

export interface LocalListener {
  server: net.Server;
  /** Where it actually listens (the chosen port when asked for 0). */
  address: { host: string; port: number };
  /** Stop accepting and drop every joined connection. */
  close(): Promise<void>;
}

/** How long a refused local client gets to read our error before we drop it. */
const REFUSAL_LINGER_MS = 2_000;

export async function listenLocal(opts: ListenLocalOptions): Promise<LocalListener> {
  if (!opts.allowRemote && !isLoopback(opts.host)) {
    throw new UsageError(
      `Refusing to listen on ${opts.host}: it is not a loopback address, so other machines could connect to the tunnel.`,
      { hint: 'Bind to 127.0.0.1 (the default), or add --allow-remote if exposing it beyond this machine is what you want.' },
    );
  }
  const live = new Set<{ socket: net.Socket; remote?: Duplex }>();
  // allowHalfOpen: a client that finishes sending (EOF) must still receive the reply.
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    const entry: { socket: net.Socket; remote?: Duplex } = { socket };
    live.add(entry);
    const login = opts.login;
    const stopLogin = login
      ? startDeadline(login.timeoutMs, () => {
          login.onTimeout?.();
          socket.destroy();
          entry.remote?.destroy();
        })
      : undefined;
    socket.once('close', () => {
      stopLogin?.();
      live.delete(entry);
    });
    // Until the pipelines own the socket, a reset must not become an uncaught error.
    const early = (err: Error): void => opts.onError?.(err);
    socket.on('error', early);
    join(entry, early, stopLogin).catch((err: unknown) => {
      early(err as Error);
      socket.destroy();
    });
  });

  async function join(entry: { socket: net.Socket; remote?: Duplex }, early: (err: Error) => void, stopLogin: (() => void) | undefined): Promise<void> {
    const { socket } = entry;
    let remote: Duplex;
    try {
      remote = await opts.open(socket);
    } catch (err) {
      await refuse(socket, err);
      return;
    }
    if (socket.destroyed || !live.has(entry)) {
      remote.destroy();
      return;
    }
    entry.remote = remote;
    socket.removeListener('error', early);
    const report = (err: Error | null | undefined): void => {
      if (err) opts.onError?.(err);
    };
    pipeline(socket, remote, report);
    pipeline(remote, socket, report);
    // After the pipe is attached, so no chunk flows before it does.
    if (opts.login) watchLogin(remote, opts.login.watch(), () => stopLogin?.());
  }

  async function refuse(socket: net.Socket, err: unknown): Promise<void> {
    try {
      await opts.onOpenError?.(socket, err);
    } catch (hookErr) {
      opts.onError?.(hookErr as Error);
    }
    if (socket.destroyed) return;
    const timer = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    socket.resume(); // discard what the client sent so closing does not reset the connection
    socket.end();
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, opts.host, opts.port));
    server.once('error', onError);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => opts.onError?.(err));

  const info = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    server,
    address: { host: info.address, port: info.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const { socket, remote } of live) {
          socket.destroy();
          remote?.destroy();
        }
      });
      return closing;
    },
  };
}

/**
 * Shows the far end's bytes to the login detector until it is satisfied. A second 'data'
 * listener beside the pipeline sees the same chunks and leaves flow control to the pipe.
 */
function watchLogin(remote: Duplex, watch: LoginWatch, loggedIn: () => void): void {
  const onData = (chunk: Buffer): void => {
    if (!watch(chunk)) return;
    remote.removeListener('data', onData);
    loggedIn();
  };
  remote.on('data', onData);
}

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for `localhost`, 127.0.0.0/8 and ::1 (including IPv4-mapped forms). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1');
  if (h.toLowerCase() === 'localhost') return true;
  const family = net.isIP(h);
  if (family === 0) return false;
  return LOOPBACK.check(h, family === 6 ? 'ipv6' : 'ipv4');
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): AgentgateError {
  switch (err.code) {
    case 'EADDRINUSE':
      return new UsageError(`Port ${port} on ${host} is already in use.`, {
        cause: err,
        hint: 'Choose another port with --port N, or use --port 0 to let the system pick a free one.',
      });
    case 'EACCES':
      return new UsageError(`Not permitted to listen on ${host}:${port}.`, {
        cause: err,
        hint: 'Ports below 1024 need privileges: choose a higher --port, or --port 0 for any free port.',
      });
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new UsageError(`Cannot listen on ${host}: it is not an address of this machine.`, {
        cause: err,
        hint: 'Check --bind; 127.0.0.1 is the usual choice.',
      });
    default:
      return new AgentgateError('AG_LISTEN_FAILED', `Could not listen on ${host}:${port}: ${err.message}`, undefined, { cause: err });
  }
}
