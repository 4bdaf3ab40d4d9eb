/**
 * `agentgate connect`: find the target, open the tunnel, listen locally, and hand back
 * what a client needs (a connection string carrying the session secret). Runs until the
 * caller closes it. The command module only parses flags and renders.
 */
import { didYouMean } from '../shared/did-you-mean.js';
import { assertPortFree } from './port-check.js';
import { CLIENT_PROTOCOLS } from './protocols.js';
import type { TargetSummary } from '../shared/api-types.js';
import { BrokerError, PolicyDeniedError, UsageError } from '../errors.js';
import { openBrokerSession, type BrokerSession, type BrokerSessionFlags } from './broker-session.js';
import { resolveToken } from './token-sources.js';
import { startConnectSession, type ConnectSession } from '../tunnel/connect-session.js';
import type { TunnelState, TunnelStateChange } from '../tunnel/dialer.js';
import type { RenewalEvent } from '../tunnel/credential-renewal.js';

/** `connect` without --port: each protocol's default (protocols.ts). */
export const DEFAULT_PORTS = Object.fromEntries(Object.entries(CLIENT_PROTOCOLS).map(([type, p]) => [type, p.defaultPort])) as Record<TargetSummary['type'], number>;

export interface ConnectOptions {
  flags: BrokerSessionFlags;
  target: string;
  /** Undefined = the protocol's default port (5432 for Postgres). */
  port: number | undefined;
  bind: string;
  allowRemote: boolean;
  /** A local connection must log in within this (ms); default DEFAULT_LOCAL_LOGIN_TIMEOUT_MS. */
  loginTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  onState?: (state: TunnelState, change: TunnelStateChange) => void;
  onRenewal?: (event: RenewalEvent) => void;
  reason?: string;
}

export interface OpenConnection {
  target: TargetSummary;
  session: ConnectSession;
  broker: BrokerSession;
  host: string;
  port: number;
  /** The client URL with the secret in it (Postgres), e.g. for DATABASE_URL. */
  url: string | undefined;
  /** The kubeconfig written for a Kubernetes target (0600). */
  kubeconfig: string | undefined;
  /** The OpenSSH client config written for an SSH target (0600); use `ssh -F <it> <target>`. */
  sshConfig: string | undefined;
  /** Ends the tunnel but keeps the broker session (to collect receipts). */
  closeTunnel(): Promise<void>;
  close(): Promise<void>;
}

export interface TargetRequest {
  name: string;
  /** Undefined = the protocol's default port; 0 = any free port. */
  port?: number;
}

export interface OpenConnectionsOptions {
  flags: BrokerSessionFlags;
  targets: TargetRequest[];
  bind: string;
  allowRemote: boolean;
  /** A local connection must log in within this (ms); default DEFAULT_LOCAL_LOGIN_TIMEOUT_MS. */
  loginTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Where kubeconfigs are written (default: a private temp dir removed on close). */
  kubeconfigDir?: string;
  onState?: (state: TunnelState, change: TunnelStateChange) => void;
  /** Each credential renewal over the live tunnel, and each failure to renew. */
  onRenewal?: (event: RenewalEvent) => void;
  /** The session's reason (`--reason` / AGENTGATE_REASON), already normalized. */
  reason?: string;
}

export interface Endpoint {
  target: TargetSummary;
  host: string;
  port: number;
  url: string | undefined;
  kubeconfig: string | undefined;
  sshConfig: string | undefined;
  /** Kubernetes: the local listener's certificate (what the kubeconfig trusts). */
  caPem?: string;
}

export interface OpenConnections {
  broker: BrokerSession;
  session: ConnectSession;
  endpoints: Endpoint[];
  /** Ends the tunnel (every proxy session of it ends, and the broker issues receipts); keeps the broker session for collecting them. */
  closeTunnel(): Promise<void>;
  close(): Promise<void>;
}

/** One `connect` target: the single-target form of openConnections. */
export async function openConnection(opts: ConnectOptions): Promise<OpenConnection> {
  const c = await openConnections({
    flags: opts.flags,
    targets: [{ name: opts.target, ...(opts.port !== undefined ? { port: opts.port } : {}) }],
    bind: opts.bind,
    allowRemote: opts.allowRemote,
    ...(opts.loginTimeoutMs !== undefined ? { loginTimeoutMs: opts.loginTimeoutMs } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.onState ? { onState: opts.onState } : {}),
    ...(opts.onRenewal ? { onRenewal: opts.onRenewal } : {}),
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
  });
  const e = c.endpoints[0] as Endpoint;
  return { target: e.target, session: c.session, broker: c.broker, host: e.host, port: e.port, url: e.url, kubeconfig: e.kubeconfig, sshConfig: e.sshConfig, closeTunnel: c.closeTunnel, close: c.close };
}

/** One tunnel to the broker, with a local endpoint per target. */
export async function openConnections(opts: OpenConnectionsOptions): Promise<OpenConnections> {
  const env = opts.env ?? process.env;
  const broker: BrokerSession = await openBrokerSession(opts.flags, env);
  let session: ConnectSession | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const discovery = broker.discovery;
    const hostKey = discovery.ssh_host_key_fingerprint;
    if (!hostKey) {
      throw new BrokerError('AG_NO_TUNNEL', `the broker at ${broker.url} offers no tunnel`, {
        hint: 'upgrade the broker; its discovery document has no ssh_host_key_fingerprint',
      });
    }
    const first = await broker.token();
    const { targets } = await broker.api.targets(first.token, broker.tokenContext(first));
    const chosen: TargetSummary[] = [];
    for (const req of opts.targets) {
      const target = targets.find((t) => t.name === req.name);
      if (!target) {
        // The broker lists only what this identity may reach; whether another target exists it does not say (unknown means no).
        const names = targets.map((t) => t.name);
        const near = didYouMean(req.name, names);
        throw new PolicyDeniedError(`no target "${req.name}" among the targets you may use${near ? ` (did you mean ${near}?)` : ''}`, {
          hint:
            names.length > 0
              ? `yours: ${names.join(', ')}; if "${req.name}" is right, ask the broker operator for access to it`
              : 'no policy gives you any target yet: ask the broker operator for access',
        });
      }
      chosen.push(target);
    }
    for (const [i, target] of chosen.entries()) await assertPortFree(opts.bind, opts.targets[i]?.port ?? DEFAULT_PORTS[target.type]);
    // Every (re)connect and every renewal asks again: a stored login refreshes, a token file is re-read.
    const getToken = async (): Promise<string> =>
      (await resolveToken({ brokerUrl: broker.url, discovery, env, ...(opts.flags.tokenFile ? { tokenFile: opts.flags.tokenFile } : {}) })).token;
    // The same tunnel path on every other broker given: the tunnel fails over to them.
    const tunnelPath = new URL(discovery.tunnel_endpoint).pathname;
    session = startConnectSession({
      endpoint: discovery.tunnel_endpoint,
      alternates: broker.alternates.map((u) => new URL(tunnelPath, `${u}/`).toString()),
      dispatcher: broker.dispatcher,
      getToken,
      hostKeyFingerprint: hostKey,
      ...(opts.onState ? { onState: opts.onState } : {}),
      ...(opts.onRenewal ? { onRenewal: opts.onRenewal } : {}),
      ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    });
    await session.tunnel.ready(20_000);
    const endpoints: Endpoint[] = [];
    for (const [i, target] of chosen.entries()) {
      const req = opts.targets[i] as TargetRequest;
      const opened = await CLIENT_PROTOCOLS[target.type].open(session, {
        target,
        host: opts.bind,
        port: req.port ?? DEFAULT_PORTS[target.type],
        allowRemote: opts.allowRemote,
        ...(opts.loginTimeoutMs !== undefined ? { loginTimeoutMs: opts.loginTimeoutMs } : {}),
        kubeconfigDir: opts.kubeconfigDir,
      });
      cleanups.push(...opened.cleanups);
      const { url, kubeconfig, sshConfig, caPem } = opened.fields;
      endpoints.push({ target, host: opened.address.host, port: opened.address.port, url, kubeconfig, sshConfig, ...(caPem !== undefined ? { caPem } : {}) });
    }
    const live = session;
    let tunnelClosed: Promise<void> | undefined;
    const closeTunnel = (): Promise<void> => (tunnelClosed ??= live.close());
    return {
      broker,
      session: live,
      endpoints,
      closeTunnel,
      close: async () => {
        await closeTunnel();
        for (const c of cleanups) await c().catch(() => {});
        await broker.close();
      },
    };
  } catch (err) {
    await session?.close().catch(() => {});
    for (const c of cleanups) await c().catch(() => {});
    await broker.close().catch(() => {});
    throw err;
  }
}
