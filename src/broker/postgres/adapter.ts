/** The Postgres proxy as a protocol adapter (one PgProxySession per tunnel channel). */
import type { PostgresTargetConfig } from '../config/types.js';
import type { AdapterFactory } from '../protocol-adapter.js';
import { SESSION_ID_HEADER, SESSION_VERIFIER_HEADER } from '../../shared/session-headers.js';
import { CancelRegistry, PgProxySession } from './proxy-session.js';
import { sessionVerifier } from '../session/secret.js';
import { createSqlGate } from '../policy/sql-gate.js';
import { policyGrantsWrite } from '../policy/sql-rules.js';
import { createFunctionCatalog, type FunctionCatalog } from './function-catalog.js';
import { createCatalogLookup } from './masking-catalog.js';
import { SchemaChanges } from './schema-changes.js';
import { compileMaskingPlan } from '../masking/rules.js';
import { decidingPolicy } from '../access.js';
import { recordingSettings } from '../recording/store.js';
import type { WrittenRelations } from '../masking/written-relations.js';
import { openWrittenRelations } from '../masking/written-relations-file.js';

export const postgresAdapter: AdapterFactory<PostgresTargetConfig> = (deps) => {
  const cancels = new CancelRegistry();
  let active = 0;
  /**
   * Per Postgres target, one catalog connection (read-only, as the target's user) that
   * resolves the functions statements call, shared by every session of the target.
   */
  const functionCatalogs = new Map<string, { catalog: FunctionCatalog; close(): void }>();
  /** Per Postgres target, the schema changes its sessions make, which every session of it must see. */
  const schemaChanges = new Map<string, SchemaChanges>();
  const schemaOf = (target: PostgresTargetConfig): SchemaChanges => {
    let s = schemaChanges.get(target.name);
    if (!s) {
      s = deps.schemaChanges?.open(target.name) ?? new SchemaChanges();
      schemaChanges.set(target.name, s);
    }
    return s;
  };
  /** Per Postgres target, the relations writes filled from masked columns (every session's reads follow them; saved in the state dir). */
  const writtenRelations = new Map<string, WrittenRelations>();
  const writtenOf = (target: PostgresTargetConfig): WrittenRelations => {
    let w = writtenRelations.get(target.name);
    if (!w) {
      const local = openWrittenRelations(deps.config.stateDir, target.name);
      w = deps.writtenRelations ? deps.writtenRelations.open(target.name, local.names()) : local;
      writtenRelations.set(target.name, w);
    }
    return w;
  };
  const functionsOf = (target: PostgresTargetConfig): FunctionCatalog => {
    let entry = functionCatalogs.get(target.name);
    if (!entry) {
      const lookup = createCatalogLookup(target, { params: new Map([['default_transaction_read_only', 'on']]) });
      entry = { catalog: createFunctionCatalog(lookup.rows), close: () => lookup.close() };
      functionCatalogs.set(target.name, entry);
    }
    return entry.catalog;
  };
  return {
    get active() {
      return active;
    },
    close() {
      for (const e of functionCatalogs.values()) e.close();
      functionCatalogs.clear();
      return Promise.resolve();
    },
    serve(ch) {
      const { config } = deps;
      const { channel, target } = ch;
      const session = ch.header(SESSION_ID_HEADER);
      // A policy that grants no write makes the upstream session read-only (defence in depth).
      const readOnly = !policyGrantsWrite(channel.identity, target.name, config.policies);
      const plan = compileMaskingPlan(target.name, config.masking, decidingPolicy(channel.identity, target.name, config.policies)?.masking);
      const recording = recordingSettings(config, target);
      const resultSample = recording.enabled ? recording.results : 0;
      active++;
      new PgProxySession(channel.stream, {
        readOnly,
        target,
        loginTimeoutMs: config.sessions.loginTimeoutMs,
        actor: ch.actor,
        identity: channel.identity,
        config,
        verifier: sessionVerifier(ch.header(SESSION_VERIFIER_HEADER)),
        ...(ch.reason !== undefined ? { reason: ch.reason } : {}),
        ...(resultSample > 0 ? { resultSample } : {}),
        gate: createSqlGate(channel.identity, target.name, config, { functions: functionsOf(target), readOnly }),
        schema: schemaOf(target),
        ...(plan ? { masking: { plan, key: deps.maskingKey, relations: functionsOf(target), written: writtenOf(target) } } : {}),
        ...(deps.approvals ? { approvals: deps.approvals } : {}),
        audit: deps.audit,
        cancels,
        logger: ch.log,
        origin: { ...(session ? { connect_session: session } : {}), ...ch.origin },
        ...(ch.lease ? { lease: ch.lease } : {}),
        onEnd: (summary) => {
          active--;
          ch.onEnd(summary);
        },
      });
    },
  };
};
