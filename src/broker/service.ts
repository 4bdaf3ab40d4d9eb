/**
 * The broker's one door for the `agentgate broker` command: the command parses flags
 * and renders; everything it runs comes from here. The broker itself (proxies, parsers,
 * native add-ons) loads only when `runBroker` is called.
 */
import type { Broker, RunBrokerOptions } from './index.js';
import type { BrokerConfig } from './config/types.js';

export type { BrokerConfig } from './config/types.js';
export { renderConfigTemplate } from './config/template.js';
export { parseBrokerConfig, loadBrokerConfig } from './config/load.js';
export { ensureBrokerKeys } from './keys.js';
export { createLogger } from './log.js';
export { configWarnings } from './config/warnings.js';

export type { MigrateSqliteResult } from './pgstore/migrate-sqlite.js';

/** `agentgate broker migrate`: loaded only when called. */
export async function migrateSqliteToPostgres(...args: Parameters<typeof import('./pgstore/migrate-sqlite.js').migrateSqliteToPostgres>): ReturnType<typeof import('./pgstore/migrate-sqlite.js').migrateSqliteToPostgres> {
  const m = await import('./pgstore/migrate-sqlite.js');
  return m.migrateSqliteToPostgres(...args);
}

export async function runBroker(config: BrokerConfig, options?: RunBrokerOptions): Promise<Broker> {
  const m = await import('./index.js');
  return m.runBroker(config, options);
}
