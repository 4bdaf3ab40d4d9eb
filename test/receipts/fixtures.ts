/**
 * Receipt test fixtures: a temp state dir with real broker keys, a real SQLite audit store,
 * and helpers to record a session's events and the facts the proxy would report.
 */
import { join } from 'node:path';
import { ensureBrokerKeys, type BrokerKeys } from '../../src/broker/keys.js';
import { openSqliteAuditStore, type SqliteAuditStore } from '../../src/broker/audit/sqlite-store.js';
import type { AuditStore } from '../../src/broker/audit/store.js';
import type { BrokerConfig } from '../../src/broker/config/types.js';
import type { SessionFacts } from '../../src/broker/receipts/types.js';
import type { AuditActor } from '../../src/shared/audit-hash.js';
import { makeBrokerConfig, makeTempDir, type TempDir } from '../broker/fixtures.js';

export const AGENT: AuditActor = { sub: 'agent-7', name: 'Agent Seven', groups: ['ai-agents'], kind: 'agent' };

export interface ReceiptFixture {
  tmp: TempDir;
  config: BrokerConfig;
  keys: BrokerKeys;
  store: SqliteAuditStore;
  close(): Promise<void>;
}

export async function receiptFixture(overrides: Parameters<typeof makeBrokerConfig>[1] = {}): Promise<ReceiptFixture> {
  const tmp = await makeTempDir('agentgate-receipts-');
  const config = makeBrokerConfig(tmp.path, {
    policies: [{ name: 'agents-read', subjects: { groups: ['ai-agents'] }, targets: ['pg-prod'], rules: [{ name: 'agents-read#1', effect: 'allow', extra: {} }] }],
    ...overrides,
  });
  const keys = await ensureBrokerKeys(config);
  const store = await openSqliteAuditStore(join(config.stateDir, 'agentgate.db'));
  return {
    tmp,
    config,
    keys,
    store,
    async close() {
      await store.close().catch(() => {});
      await tmp.remove();
    },
  };
}

/** Records a whole session (start, `statements` queries, end) and returns the facts for it. */
export async function recordSession(
  store: AuditStore,
  session: string,
  opts: { actor?: AuditActor; connect?: string; statements?: number; target?: string } = {},
): Promise<SessionFacts> {
  const actor = opts.actor ?? AGENT;
  const target = opts.target ?? 'pg-prod';
  const startedAt = new Date().toISOString();
  await store.append({
    type: 'session.start',
    session,
    actor,
    target,
    detail: { protocol: 'postgres', ...(opts.connect ? { connect_session: opts.connect } : {}) },
    decision: { effect: 'allow', rule: 'agents-read' },
    outcome: null,
  });
  const n = opts.statements ?? 3;
  for (let i = 0; i < n; i++) {
    await store.append({
      type: 'query',
      session,
      actor,
      target,
      detail: { sql: `select ${i}`, protocol: 'simple', params: 0, tag: 'SELECT 1' },
      decision: { effect: i === n - 1 && n > 1 ? 'deny' : 'allow', rule: 'agents-read#1' },
      outcome: { status: 'ok', rows: 1 },
    });
  }
  await store.append({ type: 'session.end', session, actor, target, detail: { statements: n }, decision: null, outcome: { status: 'ok' } });
  return {
    session,
    connectSession: opts.connect,
    actor,
    target,
    protocol: 'postgres',
    startedAt,
    endedAt: new Date().toISOString(),
    statements: n,
    allowed: n > 1 ? n - 1 : n,
    denied: n > 1 ? 1 : 0,
    held: 0,
    masked: 2,
    approvals: [],
  };
}
