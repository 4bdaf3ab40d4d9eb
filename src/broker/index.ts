/**
 * The whole broker: the HTTPS service, the tunnel acceptor, the protocol proxies and the
 * audit store, started and stopped together. `agentgate broker start` runs this.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BrokerConfig } from './config/types.js';
import type { AuditStore } from './audit/store.js';
import { openSqliteAuditStore } from './audit/sqlite-store.js';
import { createLogger, type Logger } from './log.js';
import { startBroker, type RunningBroker, type StartBrokerOptions } from './server.js';
import { createTunnelAcceptor } from '../tunnel/acceptor.js';
import { TUNNEL_PATH } from '../tunnel/protocol.js';
import type { Identity } from './identity/types.js';
import { createChannelRouter, type ChannelRouter } from './channels.js';
import { ensureBrokerKeys } from './keys.js';
import type { SessionSummary } from './postgres/proxy-session.js';
import { BrokerError } from '../errors.js';

export interface RunBrokerOptions extends Omit<StartBrokerOptions, 'upgradeHandlers'> {
  /** Use this store instead of opening the configured one (tests). */
  audit?: AuditStore;
  onSessionEnd?: (summary: SessionSummary) => void;
}

export interface Broker extends RunningBroker {
  audit: AuditStore;
  channels: ChannelRouter;
}

export async function runBroker(config: BrokerConfig, options: RunBrokerOptions = {}): Promise<Broker> {
  const logger: Logger = options.logger ?? createLogger();
  const keys = await ensureBrokerKeys(config);
  let audit = options.audit;
  if (!audit) {
    if (config.store.kind !== 'sqlite') {
      throw new BrokerError('AG_STORE_UNSUPPORTED', 'the PostgreSQL audit store is not available in this version', {
        hint: 'remove `store:` from the config to use the SQLite store in state_dir',
      });
    }
    mkdirSync(dirname(config.store.path), { recursive: true, mode: 0o700 });
    audit = await openSqliteAuditStore(config.store.path, { sync: config.audit.sync, logger: logger.child({ component: 'audit' }) });
  }
  const store = audit;
  const channels = createChannelRouter({
    config,
    audit: store,
    logger: logger.child({ component: 'proxy' }),
    ...(options.onSessionEnd ? { onSessionEnd: options.onSessionEnd } : {}),
  });
  const acceptor = createTunnelAcceptor<Identity>({
    hostKey: keys.sshHostKey,
    onChannel: (ch) => channels.route(ch),
    logger: logger.child({ component: 'tunnel' }),
  });
  let http: RunningBroker;
  try {
    http = await startBroker(config, { ...options, logger, keys, upgradeHandlers: { [TUNNEL_PATH]: (ctx) => acceptor.handleUpgrade(ctx) } });
  } catch (err) {
    await store.close();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    ...http,
    audit: store,
    channels,
    close: () =>
      (closing ??= (async () => {
        await acceptor.close();
        await http.close();
        if (!options.audit) await store.close();
      })()),
  };
}
