/**
 * The whole broker: the HTTPS service, the tunnel acceptor, the protocol proxies and the
 * audit store, started and stopped together. `agentgate broker start` runs this.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BrokerConfig } from './config/types.js';
import type { AuditStore } from './audit/store.js';
import { openSqliteAuditStore } from './audit/sqlite-store.js';
import { openPostgresStore, type PostgresStore } from './pgstore/audit-store.js';
import { loadOrCreateBrokerId } from './pgstore/broker-id.js';
import type { SharedWrittenRelations } from './pgstore/written-relations.js';
import type { SharedSchemaChanges } from './pgstore/schema-changes.js';
import type { ReceiptStore } from './receipts/types.js';
import { createLogger, type Logger } from './log.js';
import { startBroker, type RunningBroker, type StartBrokerOptions } from './server.js';
import { createTunnelAcceptor } from '../tunnel/acceptor.js';
import { TUNNEL_PATH } from '../tunnel/protocol.js';
import type { Identity } from './identity/types.js';
import { createChannelRouter, type ChannelRouter } from './channels.js';
import { ensureBrokerKeys } from './keys.js';
import type { SessionSummary } from './session-summary.js';
import { BrokerError } from '../errors.js';
import { loadSqlParser } from './policy/sql-classify.js';
import { loadOrCreateMaskingKey } from './masking/key.js';
import { createApprovalService } from './approvals/service.js';
import { approvalRoutes } from './approvals/routes.js';
import type { ApprovalService } from './approvals/types.js';
import { createReceiptService, type ReceiptService } from './receipts/service.js';
import { createReceiptRoutes } from './receipts/routes.js';
import { createAuditExportRoutes } from './audit/export-routes.js';
import { startRetention } from './audit/retention.js';
import { pruneRecordings } from './recording/store.js';
import { createRecordingRoutes } from './recording/routes.js';
import { markCleanStop, recoverInterrupted } from './audit/interrupted.js';
import { trackUnsettled } from './audit/unsettled.js';
import { LiveSessions } from './live-sessions.js';
import { liveSessionRoutes } from './live-session-routes.js';
import { SESSION_ID_HEADER } from '../shared/session-headers.js';
import { sendJson } from './http/json.js';
import type { Route } from './http/types.js';

// `agentgate broker migrate` reaches the migration through this module (the CLI's one door into the broker).
export { migrateSqliteToPostgres, type MigrateSqliteResult } from './pgstore/migrate-sqlite.js';

export interface RunBrokerOptions extends Omit<StartBrokerOptions, 'upgradeHandlers'> {
  /** Use this store instead of opening the configured one (tests). */
  audit?: AuditStore;
  onSessionEnd?: (summary: SessionSummary) => void;
}

export interface Broker extends RunningBroker {
  audit: AuditStore;
  /** Live sessions' deadlines, listing and revocation. */
  live: LiveSessions;
  channels: ChannelRouter;
  approvals: ApprovalService;
  receipts: ReceiptService;
}

export async function runBroker(config: BrokerConfig, options: RunBrokerOptions = {}): Promise<Broker> {
  const logger: Logger = options.logger ?? createLogger();
  const keys = await ensureBrokerKeys(config);
  // The SQL parser is WASM: compiled once here so classifying a statement is synchronous.
  await loadSqlParser();
  let audit = options.audit;
  let receiptStore: ReceiptStore | undefined;
  // In a store several brokers share, each broker's events carry its id (crash recovery reads its own).
  let brokerId: string | undefined;
  let pgStore: PostgresStore | undefined;
  if (!audit) {
    if (config.store.kind === 'postgres') {
      brokerId = await loadOrCreateBrokerId(config.stateDir);
      // The URL is a secret: revealed only to the driver, never logged.
      pgStore = await openPostgresStore(config.store.url.reveal(), { brokerId, logger: logger.child({ component: 'audit', broker_id: brokerId }) });
      receiptStore = pgStore.receipts;
      audit = pgStore;
      logger.info('audit store: PostgreSQL, shared with any other broker on it', { broker_id: brokerId, head: pgStore.head().seq });
    } else {
      mkdirSync(dirname(config.store.path), { recursive: true, mode: 0o700 });
      audit = await openSqliteAuditStore(config.store.path, { sync: config.audit.sync, logger: logger.child({ component: 'audit' }) });
    }
  }
  const store = audit;
  const localApprovals = createApprovalService({ config, audit: store, logger });
  // Several brokers: requests are listed, decided and granted through any of them.
  let approvals: ApprovalService = localApprovals;
  // Several brokers: a copy of a masked column written through one reads masked through all.
  let sharedWritten: SharedWrittenRelations | undefined;
  // Several brokers: a schema change made through one drops what the others cached of it.
  let sharedSchema: SharedSchemaChanges | undefined;
  if (pgStore) {
    try {
      approvals = await pgStore.shareApprovals(localApprovals);
      sharedWritten = await pgStore.shareWrittenRelations();
      sharedSchema = await pgStore.shareSchemaChanges();
    } catch (err) {
      await approvals.close();
      await pgStore.close();
      throw err;
    }
  }
  const closeWritten = async (): Promise<void> => {
    await sharedWritten?.close();
    await sharedSchema?.close();
  };
  let brokerUrl = `https://${config.listen.host}:${config.listen.port}`;
  const receipts = createReceiptService({ config, keys, audit: store, logger: logger.child({ component: 'receipts' }), brokerUrl: () => brokerUrl, ...(receiptStore ? { store: receiptStore } : {}) });
  // Before any session: what a crash of the last run left open is closed and on record.
  try {
    await recoverInterrupted({ audit: store, stateDir: config.stateDir, logger: logger.child({ component: 'audit' }), issue: (s) => receipts.issue(s), ...(brokerId ? { brokerId } : {}) });
  } catch (err) {
    await approvals.close();
    await closeWritten();
    if (!options.audit) await store.close();
    receipts.close();
    throw err;
  }
  // Sessions an outage of the store cut short are closed on record once it answers again.
  const unsettled = trackUnsettled({ audit: store, logger: logger.child({ component: 'audit' }), issue: (s) => receipts.issue(s) });
  const retention = startRetention({
    config,
    audit: store,
    signer: receipts.signer,
    logger: logger.child({ component: 'audit' }),
    alsoPrune: (before) => pruneRecordings(config, before),
  });
  const onSessionEnd = (summary: SessionSummary): void => {
    // The proxy calls this once session.end is durable, so the receipt's head covers the whole session.
    receipts.issue(summary).catch((err: unknown) => logger.error('could not issue a session receipt', { session: summary.session, error: (err as Error).message }));
    options.onSessionEnd?.(summary);
  };
  const live = new LiveSessions({
    leewayMs: (config.sessions?.expiryLeewaySeconds ?? 30) * 1000,
    maxDurationMs: config.sessions?.maxDurationSeconds === undefined ? undefined : config.sessions.maxDurationSeconds * 1000,
    logger: logger.child({ component: 'sessions' }),
  });
  // Set once the HTTPS side is up; renewals arrive only over tunnels, which come after.
  let verify: ((token: string) => Promise<Identity>) | undefined;
  const channels = createChannelRouter({
    live,
    config,
    audit: store,
    logger: logger.child({ component: 'proxy' }),
    approvals,
    maskingKey: loadOrCreateMaskingKey(config.stateDir),
    ...(sharedWritten ? { writtenRelations: sharedWritten } : {}),
    ...(sharedSchema ? { schemaChanges: sharedSchema } : {}),
    sshHostKey: keys.sshHostKey,
    onSessionEnd,
  });
  const acceptor = createTunnelAcceptor<Identity>({
    hostKey: keys.sshHostKey,
    onChannel: (ch) => channels.route(ch),
    logger: logger.child({ component: 'tunnel' }),
    // One login's tunnels are counted together (JSON: no separator can be forged into a sub).
    identityKey: (identity) => JSON.stringify([identity.issuer, identity.sub]),
    onTunnelOpen: (t) => {
      const session = t.headers[SESSION_ID_HEADER];
      live.openTunnel(t.id, t.identity, Array.isArray(session) ? session[0] : session);
    },
    onTunnelClose: (id) => live.closeTunnel(id),
    renewCredential: async (t, token) => {
      if (!verify) throw new BrokerError('AG_BROKER_STARTING', 'the broker is still starting');
      return live.renew(t.id, await verify(token));
    },
  });
  let http: RunningBroker;
  try {
    http = await startBroker(config, { ...options, logger, keys, routes: [
        ...(options.routes ?? []),
        ...approvalRoutes(approvals),
        ...createReceiptRoutes(receipts),
        ...createAuditExportRoutes({ audit: store, signer: receipts.signer }),
        ...liveSessionRoutes({ live, audit: store }),
        ...createRecordingRoutes({ audit: store }),
        readyRoute(store),
      ], upgradeHandlers: { [TUNNEL_PATH]: (ctx) => acceptor.handleUpgrade(ctx) } });
  } catch (err) {
    retention.stop();
    await approvals.close();
    await closeWritten();
    await store.close();
    receipts.close();
    throw err;
  }
  brokerUrl = http.url;
  verify = (token) => http.verifier.verify(token);
  let closing: Promise<void> | undefined;
  return {
    ...http,
    audit: store,
    live,
    channels,
    approvals,
    receipts,
    close: () =>
      (closing ??= (async () => {
        // First: settles held statements and ends the event streams, so http.close() need not wait for them.
        await approvals.close();
        await acceptor.close();
        live.close();
        await channels.close();
        await http.close();
        retention.stop();
        await closeWritten();
        if (!store.failed) await unsettled.settle();
        if (!options.audit) await store.close();
        receipts.close();
        // Every session ended and is on record: the next start need not look back.
        if (!store.failed && unsettled.owed === 0) markCleanStop(config.stateDir);
      })()),
  };
}

/**
 * `GET /readyz` for load balancers: 503 while the audit store cannot be written (every
 * statement would be refused), 200 otherwise. `/healthz` stays "the process is up".
 */
function readyRoute(store: AuditStore): Route {
  return {
    method: 'GET',
    path: '/readyz',
    auth: false,
    handle: ({ res }) => (store.failed ? sendJson(res, 503, { ok: false, reason: 'the audit store is unavailable, so statements are refused' }) : sendJson(res, 200, { ok: true })),
  };
}
