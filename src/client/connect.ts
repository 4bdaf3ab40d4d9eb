/**
 * `agentgate connect`: find the target, open the tunnel, listen locally, and hand back
 * what a client needs (a connection string carrying the session secret). Runs until the
 * caller closes it. The command module only parses flags and renders.
 */
import type { TargetSummary } from '../shared/api-types.js';
import { BrokerError, PolicyDeniedError, UsageError } from '../errors.js';
import { openBrokerSession, type BrokerSession, type BrokerSessionFlags } from './broker-session.js';
import { resolveToken } from './token-sources.js';
import { startConnectSession, type ConnectSession } from '../tunnel/connect-session.js';
import type { TunnelState, TunnelStateChange } from '../tunnel/dialer.js';

export const DEFAULT_PORTS: Record<TargetSummary['type'], number> = { postgres: 5432, kubernetes: 0, ssh: 0 };

export interface ConnectOptions {
  flags: BrokerSessionFlags;
  target: string;
  /** Undefined = the protocol's default port (5432 for Postgres). */
  port: number | undefined;
  bind: string;
  allowRemote: boolean;
  env?: NodeJS.ProcessEnv;
  onState?: (state: TunnelState, change: TunnelStateChange) => void;
}

export interface OpenConnection {
  target: TargetSummary;
  session: ConnectSession;
  host: string;
  port: number;
  /** The client URL with the secret in it (Postgres), e.g. for DATABASE_URL. */
  url: string | undefined;
  close(): Promise<void>;
}

export async function openConnection(opts: ConnectOptions): Promise<OpenConnection> {
  const env = opts.env ?? process.env;
  const broker: BrokerSession = await openBrokerSession(opts.flags, env);
  let session: ConnectSession | undefined;
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
    const target = targets.find((t) => t.name === opts.target);
    if (!target) {
      const names = targets.map((t) => t.name);
      throw new PolicyDeniedError(`target "${opts.target}" is not available to you: no policy lets this identity reach it, or it does not exist`, {
        hint: names.length > 0 ? `targets you may use: ${names.join(', ')} (see agentgate targets)` : 'ask the broker operator for access; agentgate targets lists what you may use',
      });
    }
    if (target.type !== 'postgres') {
      throw new UsageError(`${target.type} targets are not supported by this version of agentgate connect yet`);
    }
    // Every (re)connect asks again, so a refreshed login is picked up by a long session.
    const getToken = async (): Promise<string> =>
      (await resolveToken({ brokerUrl: broker.url, discovery, env, ...(opts.flags.tokenFile ? { tokenFile: opts.flags.tokenFile } : {}) })).token;
    session = startConnectSession({
      endpoint: discovery.tunnel_endpoint,
      dispatcher: broker.dispatcher,
      getToken,
      hostKeyFingerprint: hostKey,
      ...(opts.onState ? { onState: opts.onState } : {}),
    });
    await session.tunnel.ready(20_000);
    const listener = await session.listen({
      target: target.name,
      type: target.type,
      host: opts.bind,
      port: opts.port ?? DEFAULT_PORTS[target.type],
      allowRemote: opts.allowRemote,
    });
    const { host, port } = listener.address;
    const urlHost = host.includes(':') ? `[${host}]` : host;
    const url = `postgresql://agent:${session.secret}@${urlHost}:${port}/${encodeURIComponent(target.database ?? 'postgres')}?sslmode=disable`;
    const live = session;
    return {
      target,
      session: live,
      host,
      port,
      url,
      close: async () => {
        await live.close();
        await broker.close();
      },
    };
  } catch (err) {
    await session?.close().catch(() => {});
    await broker.close().catch(() => {});
    throw err;
  }
}
