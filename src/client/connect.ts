/**
 * `agentgate connect`: find the target, open the tunnel, listen locally, and hand back
 * what a client needs (a connection string carrying the session secret). Runs until the
 * caller closes it. The command module only parses flags and renders.
 */
import type { Dispatcher } from 'undici';
import type { BrokerDiscovery, TargetSummary } from '../shared/api-types.js';
import { BrokerError, PolicyDeniedError, UsageError } from '../errors.js';
import { brokerApi, createBrokerDispatcher, fetchDiscovery } from './broker-http.js';
import type { ResolvedBroker } from './settings.js';
import { startConnectSession, type ConnectSession } from '../tunnel/connect-session.js';
import type { TunnelState, TunnelStateChange } from '../tunnel/dialer.js';

export const DEFAULT_PORTS: Record<TargetSummary['type'], number> = { postgres: 5432, kubernetes: 0, ssh: 0 };

export interface ConnectOptions {
  broker: ResolvedBroker;
  target: string;
  /** Undefined = the protocol's default port (5432 for Postgres). */
  port: number | undefined;
  bind: string;
  allowRemote: boolean;
  getToken: () => Promise<string>;
  /** Where the token came from, for the advice on a refusal. */
  tokenSource?: string;
  onState?: (state: TunnelState, change: TunnelStateChange) => void;
}

export interface OpenConnection {
  target: TargetSummary;
  session: ConnectSession;
  host: string;
  port: number;
  /** The client URL with the secret in it (Postgres), e.g. for DATABASE_URL. */
  url: string | undefined;
  dispatcher: Dispatcher;
  close(): Promise<void>;
}

export async function openConnection(opts: ConnectOptions): Promise<OpenConnection> {
  const dispatcher = createBrokerDispatcher(opts.broker.trust);
  let session: ConnectSession | undefined;
  try {
    const discovery: BrokerDiscovery = await fetchDiscovery(opts.broker.url, dispatcher);
    if (!discovery.ssh_host_key_fingerprint) {
      throw new BrokerError('AG_NO_TUNNEL', `the broker at ${opts.broker.url} offers no tunnel`, {
        hint: 'upgrade the broker; its discovery document has no ssh_host_key_fingerprint',
      });
    }
    const token = await opts.getToken();
    const api = brokerApi(opts.broker.url, dispatcher, discovery);
    const { targets } = await api.targets(token, opts.tokenSource ? { source: opts.tokenSource } : {});
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
    session = startConnectSession({
      endpoint: discovery.tunnel_endpoint,
      dispatcher,
      getToken: opts.getToken,
      hostKeyFingerprint: discovery.ssh_host_key_fingerprint,
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
      dispatcher,
      close: async () => {
        await live.close();
        await dispatcher.close();
      },
    };
  } catch (err) {
    await session?.close().catch(() => {});
    await dispatcher.close().catch(() => {});
    throw err;
  }
}
