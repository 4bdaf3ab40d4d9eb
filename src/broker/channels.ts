/**
 * Routes each tunnel channel to the adapter for its target's protocol (protocols.ts).
 * Whether the caller may use the target at all is each session's first question, asked
 * of access.ts.
 */
import type { Identity } from './identity/types.js';
import type { TunnelChannel } from '../tunnel/acceptor.js';
import type { TargetConfig } from './config/types.js';
import { actorOf, type AdapterChannel, type ChannelRouterDeps, type ProtocolAdapter } from './protocol-adapter.js';
import { BROKER_PROTOCOLS } from './protocols.js';
import { REASON_HEADER, decodeReasonHeader } from '../shared/reason.js';

export { actorOf, type ChannelRouterDeps } from './protocol-adapter.js';

export interface ChannelRouter {
  route(channel: TunnelChannel<Identity>): void;
  /** Live proxy sessions (for shutdown and tests). */
  readonly active: number;
  /** Drops live connections and their upstream pools. */
  close(): Promise<void>;
}

function header(channel: TunnelChannel<Identity>, name: string): string | undefined {
  const v = channel.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function createChannelRouter(deps: ChannelRouterDeps): ChannelRouter {
  const adapters = new Map<TargetConfig['type'], ProtocolAdapter>();
  const adapterFor = (type: TargetConfig['type']): ProtocolAdapter => {
    let a = adapters.get(type);
    if (!a) {
      a = (BROKER_PROTOCOLS[type] as (d: ChannelRouterDeps) => ProtocolAdapter)(deps);
      adapters.set(type, a);
    }
    return a;
  };
  return {
    get active() {
      let n = 0;
      for (const a of adapters.values()) n += a.active;
      return n;
    },
    async close() {
      for (const a of adapters.values()) await a.close();
    },
    route(channel) {
      const { config, logger } = deps;
      // Own keys only: a target named `__proto__` or `constructor` is no target.
      const target = Object.hasOwn(config.targets, channel.target) ? config.targets[channel.target] : undefined;
      const log = logger.child({ tunnel: channel.tunnelId, target: channel.target, sub: channel.identity.sub });
      if (!target) {
        log.warn('channel for an unknown target refused');
        channel.stream.destroy();
        return;
      }
      const actor = actorOf(channel.identity);
      const ch: AdapterChannel = {
        channel,
        target,
        actor,
        log,
        header: (name) => header(channel, name),
        lease: deps.live?.lease(channel.tunnelId, { actor, target: target.name, protocol: target.type }),
        origin: { tunnel: channel.tunnelId, client_address: `${channel.originator.address}:${channel.originator.port}` },
        reason: decodeReasonHeader(channel.headers[REASON_HEADER]),
        onEnd: (summary) => deps.onSessionEnd?.(summary),
      };
      adapterFor(target.type).serve(ch);
    },
  };
}
